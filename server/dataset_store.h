#ifndef INVNET_SERVER_DATASET_STORE_H_
#define INVNET_SERVER_DATASET_STORE_H_

// Uploaded training signals: <root>/datasets/<name>.dataset, each an archive (models/archive.h)
// of kind "invnet.dataset" holding the samples [N, n] as float32, written atomically, so a
// dataset is either absent or complete.
//
// Thread safety: all methods may be called concurrently.

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "models/problem.h"

namespace invnet::server {

struct DatasetInfo {
  std::string name;
  int64_t num_samples = 0;
  int64_t dim = 0;
  int64_t size_bytes = 0;
  absl::Time created;
  std::string fingerprint;  // DatasetFingerprint(samples)
};

// Identifies samples [N, n] float32 by shape and content: "<N>x<n>-crc32-<8 hex digits>". A model
// records it (DatasetRef::fingerprint) to notice when its dataset was replaced.
std::string DatasetFingerprint(const at::Tensor& samples);

// OK when `samples` are still those `ref` describes; FAILED_PRECONDITION naming the dataset
// otherwise (its dimension, size or content changed). A ref without a fingerprint (an older
// checkpoint) is compared by shape only. `since` ends the message's "has changed since ...".
absl::Status CheckDatasetUnchanged(const DatasetRef& ref, const at::Tensor& samples,
                                   absl::string_view since = "this model was trained on it");

class DatasetStore {
 public:
  // Opens <root>/datasets (creating it) and indexes every dataset; damaged files are skipped and
  // described in load_problems().
  // With read_only nothing on disk changes: temporary files are listed in leftovers().
  static absl::StatusOr<std::unique_ptr<DatasetStore>> Open(const std::string& root,
                                                            bool read_only = false);
  const std::vector<std::string>& load_problems() const { return load_problems_; }
  const std::vector<std::string>& leftovers() const { return leftovers_; }

  // Reserves `name` for an upload in progress: ALREADY_EXISTS when it is taken or being
  // uploaded. Every successful Reserve is followed by exactly one Save or Release.
  absl::Status Reserve(const std::string& name);
  void Release(const std::string& name);
  // Writes a reserved dataset (samples [N, n] float32, finite) and releases the reservation.
  absl::StatusOr<DatasetInfo> Save(const std::string& name, const at::Tensor& samples);

  // NOT_FOUND naming the dataset; DATA_LOSS when its file is damaged.
  absl::StatusOr<at::Tensor> Load(const std::string& name) const;
  absl::StatusOr<DatasetInfo> Info(const std::string& name) const;
  std::vector<DatasetInfo> List() const;
  absl::Status Delete(const std::string& name);

 private:
  explicit DatasetStore(std::string dir) : dir_(std::move(dir)) {}
  std::string PathOf(const std::string& name) const;

  const std::string dir_;
  std::vector<std::string> load_problems_;
  std::vector<std::string> leftovers_;
  mutable absl::Mutex mu_;
  std::map<std::string, DatasetInfo> datasets_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> reserved_ ABSL_GUARDED_BY(mu_);
};

}  // namespace invnet::server

#endif  // INVNET_SERVER_DATASET_STORE_H_
