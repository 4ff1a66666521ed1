#ifndef INVNET_SERVER_MODEL_REPOSITORY_H_
#define INVNET_SERVER_MODEL_REPOSITORY_H_

// The published models, on disk and in memory.
//
// Layout under the repository root:
//   models/<name>/<version>/model.ckpt   one directory per published version (1, 2, ...)
//   tmp/                                 staging; emptied at start
//   trash/                               deleted entries on their way out; emptied at start
// A version is published by writing its checkpoint into a fresh directory under tmp/ and
// renaming that directory into place: a crash leaves either no version or a complete one, never
// a half-written model that the server would then serve. Deletion renames the entry into trash/
// first, so it disappears atomically.
//
// Thread safety: all methods may be called concurrently. Lookups return shared, immutable
// HostedModels: a version deleted while a request uses it stays alive until the request ends.

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "models/checkpoint.h"
#include "server/hosted_model.h"

namespace invnet::server {

class ModelRepository {
 public:
  // Opens the repository at `root` (creating its directories), clears tmp/ and trash/, and
  // loads every model version. A version that fails to load is skipped and described in
  // load_problems(); the rest serve. INTERNAL/PERMISSION_DENIED when the root is unusable.
  // With read_only (invnet-server --check_repository) nothing on disk changes: a missing
  // models/ directory is NOT_FOUND and the leftovers in tmp/ and trash/ are listed in
  // leftovers() instead of removed.
  static absl::StatusOr<std::unique_ptr<ModelRepository>> Open(const std::string& root,
                                                               bool read_only = false);

  const std::string& root() const { return root_; }
  // "models/foo/3: DATA_LOSS: ..." for every entry skipped at Open.
  const std::vector<std::string>& load_problems() const { return load_problems_; }
  // "tmp/123-...": what an interrupted publication or deletion left (read_only Open only).
  const std::vector<std::string>& leftovers() const { return leftovers_; }

  // version 0 = the latest. NOT_FOUND naming the model or version.
  absl::StatusOr<std::shared_ptr<const HostedModel>> Get(const std::string& name,
                                                         int64_t version) const;
  // Every version of every model, by name then version.
  std::vector<std::shared_ptr<const HostedModel>> List() const;
  // The versions of one model, ascending. NOT_FOUND when it has none.
  absl::StatusOr<std::vector<std::shared_ptr<const HostedModel>>> Versions(
      const std::string& name) const;

  // Builds (restores and certifies) the checkpoint, saves it as the next version of `name` and
  // starts serving it. Nothing is published on error (RESOURCE_EXHAUSTED when the disk is full,
  // the checkpoint's codes when it does not restore).
  absl::StatusOr<std::shared_ptr<const HostedModel>> Publish(const std::string& name,
                                                             Checkpoint checkpoint);
  // Removes one version (version > 0) or the whole model (version 0). NOT_FOUND when absent.
  absl::Status Delete(const std::string& name, int64_t version);

  int64_t num_versions() const;
  // Publish refuses (RESOURCE_EXHAUSTED) once this many versions are served (--max_models).
  void set_max_versions(int64_t max_versions);
  int64_t max_versions() const;

 private:
  explicit ModelRepository(std::string root) : root_(std::move(root)) {}
  void LoadAll();
  std::string ModelDir(const std::string& name) const;
  // A fresh, unique directory path under tmp/ or trash/.
  std::string UniquePath(const std::string& area);

  const std::string root_;
  std::vector<std::string> load_problems_;
  std::vector<std::string> leftovers_;
  mutable absl::Mutex mu_;
  // name -> version -> model
  std::map<std::string, std::map<int64_t, std::shared_ptr<const HostedModel>>> models_
      ABSL_GUARDED_BY(mu_);
  // Highest version ever seen per name, so a deleted version number is never reused.
  std::map<std::string, int64_t> highest_version_ ABSL_GUARDED_BY(mu_);
  uint64_t unique_counter_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t max_versions_ ABSL_GUARDED_BY(mu_) = std::numeric_limits<int64_t>::max();
};

// Recursively removes `path`; errors are ignored (used for tmp/ and trash/ entries).
void RemoveTree(const std::string& path);
// Creates `path` (and missing parents). INTERNAL etc. on failure.
absl::Status MakeDirectories(const std::string& path);

}  // namespace invnet::server

#endif  // INVNET_SERVER_MODEL_REPOSITORY_H_
