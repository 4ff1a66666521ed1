#ifndef INVNET_MODELS_ARCHIVE_H_
#define INVNET_MODELS_ARCHIVE_H_

// A small self-describing binary container of named values (integers, doubles, strings and
// tensors), with a checksum. Checkpoints are archives; so are other records invnet keeps on disk.
//
// Layout (all integers little-endian):
//   magic[8]  format_version:u32  kind_len:u32 kind[kind_len]  entry_count:u64
//   entry*:   key_len:u32 key[key_len] type:u8 payload_len:u64 payload[payload_len]
//   crc32:u32 over every preceding byte
// Tensor payload: dtype:u8 (1 f32, 2 f64, 3 i64) rank:u8 dims:i64[rank] data (row-major).
//
// Reading never trusts the file: every length is bounds-checked before use, so a truncated,
// bit-flipped or foreign file gives an error, never a crash. Error codes from Parse:
// INVALID_ARGUMENT when the file is not an archive of the expected kind or is from a newer
// format; DATA_LOSS when it is damaged (checksum, truncation, inconsistent lengths).

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace invnet {

class ArchiveWriter {
 public:
  // `kind` names what the archive holds ("invnet.checkpoint"); readers check it.
  explicit ArchiveWriter(std::string kind) : kind_(std::move(kind)) {}

  void PutInt(const std::string& key, int64_t value);
  void PutDouble(const std::string& key, double value);
  void PutString(const std::string& key, absl::string_view value);
  // float32, float64 or int64 tensors of rank <= 8 (other dtypes are converted to float64).
  void PutTensor(const std::string& key, const at::Tensor& value);
  void PutDoubles(const std::string& key, const std::vector<double>& values);

  // The encoded archive. Keys are written in sorted order, so equal content gives equal bytes.
  std::string Finish() const;

 private:
  std::string kind_;
  std::map<std::string, std::pair<uint8_t, std::string>> entries_;
};

class ArchiveReader {
 public:
  // Parses and verifies `bytes` (see the header comment for the codes).
  static absl::StatusOr<ArchiveReader> Parse(std::string bytes, absl::string_view expected_kind);

  bool Has(const std::string& key) const { return entries_.count(key) > 0; }
  // Keys starting with `prefix`, in sorted order.
  std::vector<std::string> KeysWithPrefix(absl::string_view prefix) const;

  // INVALID_ARGUMENT naming the key when it is missing or holds another type.
  absl::StatusOr<int64_t> GetInt(const std::string& key) const;
  absl::StatusOr<double> GetDouble(const std::string& key) const;
  absl::StatusOr<std::string> GetString(const std::string& key) const;
  absl::StatusOr<at::Tensor> GetTensor(const std::string& key) const;
  absl::StatusOr<std::vector<double>> GetDoubles(const std::string& key) const;

 private:
  struct Entry {
    uint8_t type;
    std::string payload;
  };
  absl::StatusOr<const Entry*> Find(const std::string& key, uint8_t type) const;
  std::map<std::string, Entry> entries_;
};

// CRC-32 (IEEE 802.3 polynomial), as zlib computes it.
uint32_t Crc32(absl::string_view data);

}  // namespace invnet

#endif  // INVNET_MODELS_ARCHIVE_H_
