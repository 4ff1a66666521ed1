#include "models/archive.h"

#include <algorithm>
#include <array>
#include <cstring>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"

namespace invnet {
namespace {

constexpr char kMagic[8] = {'I', 'N', 'V', 'N', 'E', 'T', 'A', 'R'};
constexpr uint32_t kFormatVersion = 1;
constexpr uint32_t kMaxKeyLength = 1024;
constexpr uint32_t kMaxKindLength = 256;
constexpr int kMaxRank = 8;

enum EntryType : uint8_t { kInt = 1, kDouble = 2, kString = 3, kTensor = 4 };
enum TensorCode : uint8_t { kF32 = 1, kF64 = 2, kI64 = 3 };

void AppendU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void AppendU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Bounds-checked little-endian reader over a byte range.
class Cursor {
 public:
  explicit Cursor(absl::string_view data) : data_(data) {}
  bool ReadU8(uint8_t* v) {
    if (data_.size() < 1) return false;
    *v = static_cast<uint8_t>(data_[0]);
    data_.remove_prefix(1);
    return true;
  }
  bool ReadU32(uint32_t* v) {
    if (data_.size() < 4) return false;
    *v = 0;
    for (int i = 0; i < 4; ++i) *v |= uint32_t(static_cast<uint8_t>(data_[i])) << (8 * i);
    data_.remove_prefix(4);
    return true;
  }
  bool ReadU64(uint64_t* v) {
    if (data_.size() < 8) return false;
    *v = 0;
    for (int i = 0; i < 8; ++i) *v |= uint64_t(static_cast<uint8_t>(data_[i])) << (8 * i);
    data_.remove_prefix(8);
    return true;
  }
  bool ReadBytes(uint64_t n, absl::string_view* out) {
    if (data_.size() < n) return false;
    *out = data_.substr(0, n);
    data_.remove_prefix(n);
    return true;
  }
  size_t remaining() const { return data_.size(); }

 private:
  absl::string_view data_;
};

std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}

absl::Status Damaged(absl::string_view why) {
  return absl::DataLossError(absl::StrCat("archive is damaged: ", why));
}

}  // namespace

uint32_t Crc32(absl::string_view data) {
  static const std::array<uint32_t, 256> table = MakeCrcTable();
  uint32_t c = 0xFFFFFFFFu;
  for (char ch : data) c = table[(c ^ static_cast<uint8_t>(ch)) & 0xff] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

void ArchiveWriter::PutInt(const std::string& key, int64_t value) {
  std::string payload;
  AppendU64(&payload, static_cast<uint64_t>(value));
  entries_[key] = {kInt, std::move(payload)};
}

void ArchiveWriter::PutDouble(const std::string& key, double value) {
  uint64_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  std::string payload;
  AppendU64(&payload, bits);
  entries_[key] = {kDouble, std::move(payload)};
}

void ArchiveWriter::PutString(const std::string& key, absl::string_view value) {
  entries_[key] = {kString, std::string(value)};
}

void ArchiveWriter::PutTensor(const std::string& key, const at::Tensor& value) {
  at::Tensor t = value.detach().cpu();
  uint8_t code;
  if (t.scalar_type() == at::kFloat) {
    code = kF32;
  } else if (t.scalar_type() == at::kLong) {
    code = kI64;
  } else {
    t = t.to(at::kDouble);
    code = kF64;
  }
  t = t.contiguous();
  std::string payload;
  payload.push_back(static_cast<char>(code));
  payload.push_back(static_cast<char>(t.dim()));
  for (int64_t d : t.sizes()) AppendU64(&payload, static_cast<uint64_t>(d));
  // Element bytes are copied as stored: invnet runs on little-endian hosts only (x86-64, arm64).
  payload.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  entries_[key] = {kTensor, std::move(payload)};
}

void ArchiveWriter::PutDoubles(const std::string& key, const std::vector<double>& values) {
  PutTensor(key, at::tensor(values, at::kDouble));
}

std::string ArchiveWriter::Finish() const {
  std::string out(kMagic, sizeof(kMagic));
  AppendU32(&out, kFormatVersion);
  AppendU32(&out, static_cast<uint32_t>(kind_.size()));
  out += kind_;
  AppendU64(&out, entries_.size());
  for (const auto& [key, entry] : entries_) {
    AppendU32(&out, static_cast<uint32_t>(key.size()));
    out += key;
    out.push_back(static_cast<char>(entry.first));
    AppendU64(&out, entry.second.size());
    out += entry.second;
  }
  AppendU32(&out, Crc32(out));
  return out;
}

absl::StatusOr<ArchiveReader> ArchiveReader::Parse(std::string bytes,
                                                   absl::string_view expected_kind) {
  if (bytes.size() < sizeof(kMagic) || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("not an invnet ", expected_kind, " file (wrong magic bytes)"));
  }
  if (bytes.size() < sizeof(kMagic) + 4 + 4 + 8 + 4) return Damaged("truncated header");
  absl::string_view body(bytes.data(), bytes.size() - 4);
  Cursor trailer(absl::string_view(bytes).substr(bytes.size() - 4));
  uint32_t stored_crc = 0;
  trailer.ReadU32(&stored_crc);
  if (Crc32(body) != stored_crc) return Damaged("checksum mismatch (truncated or corrupted)");

  Cursor cur(body.substr(sizeof(kMagic)));
  uint32_t version = 0;
  cur.ReadU32(&version);
  if (version == 0 || version > kFormatVersion) {
    return absl::InvalidArgumentError(absl::StrCat("archive format version ", version,
                                                   " is not one this invnet reads (1 .. ",
                                                   kFormatVersion, ")"));
  }
  uint32_t kind_len = 0;
  absl::string_view kind;
  if (!cur.ReadU32(&kind_len) || kind_len > kMaxKindLength || !cur.ReadBytes(kind_len, &kind)) {
    return Damaged("bad kind field");
  }
  if (kind != expected_kind) {
    return absl::InvalidArgumentError(
        absl::StrCat("archive holds '", kind, "', expected '", expected_kind, "'"));
  }
  uint64_t count = 0;
  if (!cur.ReadU64(&count)) return Damaged("truncated entry count");
  ArchiveReader reader;
  for (uint64_t e = 0; e < count; ++e) {
    uint32_t key_len = 0;
    absl::string_view key;
    uint8_t type = 0;
    uint64_t payload_len = 0;
    absl::string_view payload;
    if (!cur.ReadU32(&key_len) || key_len > kMaxKeyLength || !cur.ReadBytes(key_len, &key) ||
        !cur.ReadU8(&type) || !cur.ReadU64(&payload_len) ||
        !cur.ReadBytes(payload_len, &payload)) {
      return Damaged(absl::StrCat("entry ", e, " is truncated"));
    }
    if (type < kInt || type > kTensor) return Damaged(absl::StrCat("entry ", e, " has bad type"));
    if ((type == kInt || type == kDouble) && payload_len != 8) {
      return Damaged(absl::StrCat("entry '", key, "' has bad length"));
    }
    if (!reader.entries_.emplace(std::string(key), Entry{type, std::string(payload)}).second) {
      return Damaged(absl::StrCat("duplicate entry '", key, "'"));
    }
  }
  if (cur.remaining() != 0) return Damaged("trailing bytes after the last entry");
  return reader;
}

std::vector<std::string> ArchiveReader::KeysWithPrefix(absl::string_view prefix) const {
  std::vector<std::string> keys;
  for (auto it = entries_.lower_bound(std::string(prefix));
       it != entries_.end() && absl::string_view(it->first).substr(0, prefix.size()) == prefix;
       ++it) {
    keys.push_back(it->first);
  }
  return keys;
}

absl::StatusOr<const ArchiveReader::Entry*> ArchiveReader::Find(const std::string& key,
                                                                uint8_t type) const {
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    return absl::InvalidArgumentError(absl::StrCat("missing field '", key, "'"));
  }
  if (it->second.type != type) {
    return absl::InvalidArgumentError(absl::StrCat("field '", key, "' has the wrong type"));
  }
  return &it->second;
}

absl::StatusOr<int64_t> ArchiveReader::GetInt(const std::string& key) const {
  auto entry = Find(key, kInt);
  if (!entry.ok()) return entry.status();
  uint64_t v = 0;
  Cursor((*entry)->payload).ReadU64(&v);
  return static_cast<int64_t>(v);
}

absl::StatusOr<double> ArchiveReader::GetDouble(const std::string& key) const {
  auto entry = Find(key, kDouble);
  if (!entry.ok()) return entry.status();
  uint64_t bits = 0;
  Cursor((*entry)->payload).ReadU64(&bits);
  double v;
  std::memcpy(&v, &bits, sizeof(v));
  return v;
}

absl::StatusOr<std::string> ArchiveReader::GetString(const std::string& key) const {
  auto entry = Find(key, kString);
  if (!entry.ok()) return entry.status();
  return (*entry)->payload;
}

absl::StatusOr<at::Tensor> ArchiveReader::GetTensor(const std::string& key) const {
  auto entry = Find(key, kTensor);
  if (!entry.ok()) return entry.status();
  Cursor cur((*entry)->payload);
  uint8_t code = 0;
  uint8_t rank = 0;
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", key, "': ", why));
  };
  if (!cur.ReadU8(&code) || !cur.ReadU8(&rank)) return bad("truncated header");
  if (rank > kMaxRank) return bad("rank above 8");
  at::ScalarType dtype;
  int64_t element_size;
  switch (code) {
    case kF32:
      dtype = at::kFloat;
      element_size = 4;
      break;
    case kF64:
      dtype = at::kDouble;
      element_size = 8;
      break;
    case kI64:
      dtype = at::kLong;
      element_size = 8;
      break;
    default:
      return bad("unknown element type");
  }
  std::vector<int64_t> dims;
  uint64_t numel = 1;
  // The product of the non-zero dimensions bounds the element count and every stride, and is
  // checked before it is multiplied: dims [2^32, 2^32] must not wrap around to 0 elements.
  uint64_t volume = 1;
  for (int i = 0; i < rank; ++i) {
    uint64_t d = 0;
    if (!cur.ReadU64(&d)) return bad("truncated shape");
    if (d > (uint64_t{1} << 40)) return bad("dimension too large");
    const uint64_t factor = std::max<uint64_t>(d, 1);
    if (volume > (uint64_t{1} << 40) / factor) return bad("too many elements");
    volume *= factor;
    numel *= d;
    dims.push_back(static_cast<int64_t>(d));
  }
  if (cur.remaining() != numel * element_size) return bad("data length does not match shape");
  at::Tensor t = at::empty(dims, dtype);
  if (numel > 0) {
    absl::string_view data;
    cur.ReadBytes(numel * element_size, &data);
    std::memcpy(t.data_ptr(), data.data(), data.size());
  }
  return t;
}

absl::StatusOr<std::vector<double>> ArchiveReader::GetDoubles(const std::string& key) const {
  auto t = GetTensor(key);
  if (!t.ok()) return t.status();
  if (t->dim() != 1) {
    return absl::InvalidArgumentError(absl::StrCat("field '", key, "' must be a vector"));
  }
  at::Tensor d = t->to(at::kDouble).contiguous();
  return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

}  // namespace invnet
