#ifndef INVNET_SERVER_REPOSITORY_CHECK_H_
#define INVNET_SERVER_REPOSITORY_CHECK_H_

// An offline check of a repository (invnet-server --check_repository): every model version is
// loaded, checksum-verified and re-certified, every dataset and job record read, exactly as the
// server would at start, but nothing on disk changes.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace invnet::server {

struct RepositoryReport {
  int64_t model_versions = 0;  // that load and certify
  int64_t datasets = 0;        // that read back intact
  int64_t jobs = 0;            // readable job records
  // Entries the server would skip: "models/foo/3: DATA_LOSS: checksum mismatch ...".
  std::vector<std::string> damaged;
  // What a crash left and the next start clears: staging directories, temporary files,
  // records of jobs that were running. Never served, so not damage.
  std::vector<std::string> leftovers;
  bool healthy() const { return damaged.empty(); }
};

// NOT_FOUND when `root` is not a repository (no models/ directory).
absl::StatusOr<RepositoryReport> CheckRepository(const std::string& root);

// Human-readable report, one entry per line, ending with a verdict line.
std::string FormatRepositoryReport(const std::string& root, const RepositoryReport& report);

}  // namespace invnet::server

#endif  // INVNET_SERVER_REPOSITORY_CHECK_H_
