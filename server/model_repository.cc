#include "server/model_repository.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proto/base/file_io.h"
#include "proto/base/status_macros.h"
#include "server/names.h"

namespace invnet::server {
namespace fs = std::filesystem;
namespace {

constexpr char kCheckpointFile[] = "model.ckpt";

absl::Status RenamePath(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("rename ", from, " to ", to));
  }
  return absl::OkStatus();
}

std::string Parent(const std::string& path) { return fs::path(path).parent_path().string(); }

}  // namespace

void RemoveTree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
}

absl::Status MakeDirectories(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) return ErrnoToStatus(ec.value(), absl::StrCat("create directory ", path));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ModelRepository>> ModelRepository::Open(const std::string& root,
                                                                        bool read_only) {
  if (read_only) {
    std::error_code ec;
    if (!fs::is_directory(absl::StrCat(root, "/models"), ec)) {
      return absl::NotFoundError(absl::StrCat("repository: ", root, " has no models/ directory"));
    }
  } else {
    for (const char* area : {"models", "tmp", "trash"}) {
      INVNET_RETURN_IF_ERROR(MakeDirectories(absl::StrCat(root, "/", area)));
    }
  }
  std::unique_ptr<ModelRepository> repo(new ModelRepository(root));
  // Leftovers of a crash: unfinished publications and deletions.
  for (const char* area : {"tmp", "trash"}) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(absl::StrCat(root, "/", area), ec)) {
      if (read_only) {
        repo->leftovers_.push_back(
            absl::StrCat(area, "/", entry.path().filename().string()));
      } else {
        RemoveTree(entry.path().string());
      }
    }
  }
  repo->LoadAll();
  return repo;
}

void ModelRepository::LoadAll() {
  std::error_code ec;
  const std::string models_root = root_ + "/models";
  for (const auto& model_entry : fs::directory_iterator(models_root, ec)) {
    const std::string name = model_entry.path().filename().string();
    if (!ValidateName(name, "model").ok() || !model_entry.is_directory()) {
      load_problems_.push_back(absl::StrCat("models/", name, ": not a model directory, ignored"));
      continue;
    }
    std::error_code inner;
    for (const auto& version_entry : fs::directory_iterator(model_entry.path(), inner)) {
      const std::string dir = version_entry.path().filename().string();
      const std::string where = absl::StrCat("models/", name, "/", dir);
      int64_t version = 0;
      if (!absl::SimpleAtoi(dir, &version) || version < 1 || absl::StrCat(version) != dir) {
        load_problems_.push_back(absl::StrCat(where, ": not a version directory, ignored"));
        continue;
      }
      const std::string path = absl::StrCat(version_entry.path().string(), "/", kCheckpointFile);
      absl::StatusOr<Checkpoint> ck = LoadCheckpoint(path);
      absl::StatusOr<std::shared_ptr<HostedModel>> model =
          ck.ok() ? HostedModel::Build(name, version, *std::move(ck),
                                       static_cast<int64_t>(fs::file_size(path, inner)))
                  : absl::StatusOr<std::shared_ptr<HostedModel>>(ck.status());
      absl::MutexLock lock(&mu_);
      highest_version_[name] = std::max(highest_version_[name], version);
      if (!model.ok()) {
        load_problems_.push_back(absl::StrCat(where, ": ", model.status().ToString()));
        continue;
      }
      models_[name][version] = *std::move(model);
    }
  }
}

std::string ModelRepository::ModelDir(const std::string& name) const {
  return absl::StrCat(root_, "/models/", name);
}

std::string ModelRepository::UniquePath(const std::string& area) {
  absl::MutexLock lock(&mu_);
  return absl::StrCat(root_, "/", area, "/", ::getpid(), "-", absl::ToUnixNanos(absl::Now()),
                      "-", unique_counter_++);
}

absl::StatusOr<std::shared_ptr<const HostedModel>> ModelRepository::Get(const std::string& name,
                                                                         int64_t version) const {
  if (version < 0) {
    return absl::InvalidArgumentError(absl::StrCat("version: ", version, " must be >= 0"));
  }
  absl::MutexLock lock(&mu_);
  auto it = models_.find(name);
  if (it == models_.end() || it->second.empty()) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' not found"));
  }
  if (version == 0) return it->second.rbegin()->second;
  auto v = it->second.find(version);
  if (v == it->second.end()) {
    return absl::NotFoundError(
        absl::StrCat("model '", name, "' has no version ", version, " (latest is ",
                     it->second.rbegin()->first, ")"));
  }
  return v->second;
}

std::vector<std::shared_ptr<const HostedModel>> ModelRepository::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<const HostedModel>> all;
  for (const auto& [name, versions] : models_) {
    for (const auto& [version, model] : versions) all.push_back(model);
  }
  return all;
}

absl::StatusOr<std::vector<std::shared_ptr<const HostedModel>>> ModelRepository::Versions(
    const std::string& name) const {
  absl::MutexLock lock(&mu_);
  auto it = models_.find(name);
  if (it == models_.end() || it->second.empty()) {
    return absl::NotFoundError(absl::StrCat("model '", name, "' not found"));
  }
  std::vector<std::shared_ptr<const HostedModel>> versions;
  for (const auto& [version, model] : it->second) versions.push_back(model);
  return versions;
}

int64_t ModelRepository::num_versions() const {
  absl::MutexLock lock(&mu_);
  int64_t count = 0;
  for (const auto& [name, versions] : models_) count += static_cast<int64_t>(versions.size());
  return count;
}

absl::StatusOr<std::shared_ptr<const HostedModel>> ModelRepository::Publish(
    const std::string& name, Checkpoint checkpoint) {
  INVNET_RETURN_IF_ERROR(ValidateName(name, "model_name"));
  if (const int64_t limit = max_versions(); num_versions() >= limit) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the repository already serves its maximum of ", limit,
        " model versions (--max_models); delete some first"));
  }
  const std::string bytes = SerializeCheckpoint(checkpoint);
  // Build first: a checkpoint that does not restore and certify is never written.
  INVNET_ASSIGN_OR_RETURN(std::shared_ptr<HostedModel> model,
                          HostedModel::Build(name, 0, std::move(checkpoint),
                                             static_cast<int64_t>(bytes.size())));
  const std::string staging = UniquePath("tmp");
  INVNET_RETURN_IF_ERROR(MakeDirectories(staging));
  absl::Status written =
      WriteFileAtomically(absl::StrCat(staging, "/", kCheckpointFile), bytes);
  if (!written.ok()) {
    RemoveTree(staging);
    return written;
  }
  const std::string model_dir = ModelDir(name);
  absl::MutexLock lock(&mu_);
  absl::Status status = MakeDirectories(model_dir);
  if (status.ok()) status = SyncDirectory(Parent(model_dir));
  const int64_t version = highest_version_[name] + 1;
  const std::string final_dir = absl::StrCat(model_dir, "/", version);
  if (status.ok()) status = RenamePath(staging, final_dir);
  if (status.ok()) status = SyncDirectory(model_dir);
  if (!status.ok()) {
    RemoveTree(staging);
    return status;
  }
  highest_version_[name] = version;
  model->version = version;
  models_[name][version] = model;
  return std::shared_ptr<const HostedModel>(model);
}

absl::Status ModelRepository::Delete(const std::string& name, int64_t version) {
  INVNET_RETURN_IF_ERROR(ValidateName(name, "name"));
  if (version < 0) {
    return absl::InvalidArgumentError(absl::StrCat("version: ", version, " must be >= 0"));
  }
  const std::string trash = UniquePath("trash");
  {
    absl::MutexLock lock(&mu_);
    auto it = models_.find(name);
    if (it == models_.end() || it->second.empty()) {
      return absl::NotFoundError(absl::StrCat("model '", name, "' not found"));
    }
    if (version > 0 && it->second.count(version) == 0) {
      return absl::NotFoundError(absl::StrCat("model '", name, "' has no version ", version));
    }
    const std::string target =
        version == 0 ? ModelDir(name) : absl::StrCat(ModelDir(name), "/", version);
    INVNET_RETURN_IF_ERROR(RenamePath(target, trash));
    INVNET_RETURN_IF_ERROR(SyncDirectory(Parent(target)));
    if (version == 0) {
      models_.erase(it);
    } else {
      it->second.erase(version);
      if (it->second.empty()) models_.erase(it);
    }
  }
  RemoveTree(trash);
  return absl::OkStatus();
}

void ModelRepository::set_max_versions(int64_t max_versions) {
  absl::MutexLock lock(&mu_);
  max_versions_ = max_versions;
}

int64_t ModelRepository::max_versions() const {
  absl::MutexLock lock(&mu_);
  return max_versions_;
}

}  // namespace invnet::server
