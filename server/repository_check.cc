#include "server/repository_check.h"

#include "absl/strings/str_cat.h"
#include "proto/base/status_macros.h"
#include "server/dataset_store.h"
#include "server/job_manager.h"
#include "server/model_repository.h"

namespace invnet::server {

absl::StatusOr<RepositoryReport> CheckRepository(const std::string& root) {
  RepositoryReport report;
  INVNET_ASSIGN_OR_RETURN(auto models, ModelRepository::Open(root, /*read_only=*/true));
  INVNET_ASSIGN_OR_RETURN(auto datasets, DatasetStore::Open(root, /*read_only=*/true));
  JobManagerOptions job_options;
  job_options.read_only = true;
  INVNET_ASSIGN_OR_RETURN(auto jobs, JobManager::Create(root, models.get(), datasets.get(),
                                                        job_options));
  report.model_versions = static_cast<int64_t>(models->List().size());
  report.datasets = static_cast<int64_t>(datasets->List().size());
  report.jobs = static_cast<int64_t>(jobs->List().size());
  for (const auto* list : {&models->load_problems(), &datasets->load_problems(),
                           &jobs->load_problems()}) {
    report.damaged.insert(report.damaged.end(), list->begin(), list->end());
  }
  for (const auto* list : {&models->leftovers(), &datasets->leftovers(), &jobs->leftovers()}) {
    report.leftovers.insert(report.leftovers.end(), list->begin(), list->end());
  }
  return report;
}

std::string FormatRepositoryReport(const std::string& root, const RepositoryReport& report) {
  std::string out = absl::StrCat("repository ", root, ": ", report.model_versions,
                                 " model versions, ", report.datasets, " datasets, ",
                                 report.jobs, " job records intact\n");
  for (const std::string& entry : report.damaged) absl::StrAppend(&out, "DAMAGED   ", entry, "\n");
  for (const std::string& entry : report.leftovers) {
    absl::StrAppend(&out, "LEFTOVER  ", entry, "\n");
  }
  if (report.healthy()) {
    absl::StrAppend(&out, "OK: nothing damaged",
                    report.leftovers.empty()
                        ? ""
                        : " (the leftovers of an interrupted write are cleared at the next start)",
                    "\n");
  } else {
    absl::StrAppend(&out, "DAMAGED: ", report.damaged.size(),
                    " entries would be skipped at start (the rest serves); restore them from a "
                    "backup or remove them\n");
  }
  return out;
}

}  // namespace invnet::server
