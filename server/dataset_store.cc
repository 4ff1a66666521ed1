#include "server/dataset_store.h"

#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include <ATen/ATen.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "models/archive.h"
#include "models/tensor_checks.h"
#include "proto/base/file_io.h"
#include "proto/base/status.h"
#include "proto/base/status_macros.h"
#include "server/model_repository.h"
#include "server/names.h"

namespace invnet::server {
namespace fs = std::filesystem;
namespace {

constexpr char kKind[] = "invnet.dataset";
constexpr char kSuffix[] = ".dataset";

absl::StatusOr<std::pair<at::Tensor, absl::Time>> ReadDataset(const std::string& path) {
  INVNET_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  INVNET_ASSIGN_OR_RETURN(ArchiveReader reader, ArchiveReader::Parse(std::move(bytes), kKind));
  INVNET_ASSIGN_OR_RETURN(at::Tensor samples, reader.GetTensor("samples"));
  INVNET_ASSIGN_OR_RETURN(int64_t created_ms, reader.GetInt("created_unix_ms"));
  if (samples.dim() != 2 || samples.size(0) < 1 || samples.scalar_type() != at::kFloat) {
    return absl::DataLossError(absl::StrCat(path, ": samples must be a float32 [N, n] tensor"));
  }
  return std::make_pair(samples, absl::FromUnixMillis(created_ms));
}

}  // namespace

std::string DatasetFingerprint(const at::Tensor& samples) {
  const at::Tensor data = samples.to(at::kFloat).contiguous();
  const uint32_t crc = Crc32(absl::string_view(static_cast<const char*>(data.data_ptr()),
                                               data.numel() * sizeof(float)));
  return absl::StrFormat("%dx%d-crc32-%08x", data.size(0), data.size(1), crc);
}

absl::Status CheckDatasetUnchanged(const DatasetRef& ref, const at::Tensor& samples,
                                   absl::string_view since) {
  const bool same_shape = samples.dim() == 2 && samples.size(1) == ref.dim &&
                          (ref.num_samples == 0 || samples.size(0) == ref.num_samples);
  if (same_shape && (ref.fingerprint.empty() || DatasetFingerprint(samples) == ref.fingerprint)) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "dataset '", ref.name, "' has changed since ", since, " (it was ",
      ref.num_samples, " x ", ref.dim, ", now ", samples.dim() == 2 ? samples.size(0) : 0, " x ",
      samples.dim() == 2 ? samples.size(1) : 0,
      same_shape ? ", other values" : "", "); upload the original again or train a new model"));
}

absl::StatusOr<std::unique_ptr<DatasetStore>> DatasetStore::Open(const std::string& root,
                                                                  bool read_only) {
  const std::string dir = root + "/datasets";
  if (!read_only) INVNET_RETURN_IF_ERROR(MakeDirectories(dir));
  std::unique_ptr<DatasetStore> store(new DatasetStore(dir));
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string file = entry.path().filename().string();
    if (!absl::EndsWith(file, kSuffix)) {
      // A temporary file of an interrupted write: never visible as a dataset.
      if (absl::StrContains(file, kTemporaryFileMarker)) {
        if (read_only) {
          store->leftovers_.push_back(absl::StrCat("datasets/", file));
        } else {
          RemoveTree(entry.path().string());
        }
      }
      continue;
    }
    const std::string name = file.substr(0, file.size() - sizeof(kSuffix) + 1);
    if (!ValidateName(name, "dataset").ok()) continue;
    absl::StatusOr<std::pair<at::Tensor, absl::Time>> data = ReadDataset(entry.path().string());
    if (!data.ok()) {
      store->load_problems_.push_back(absl::StrCat("datasets/", file, ": ", data.status().ToString()));
      continue;
    }
    DatasetInfo info{name, data->first.size(0), data->first.size(1),
                     static_cast<int64_t>(fs::file_size(entry.path(), ec)), data->second,
                     DatasetFingerprint(data->first)};
    absl::MutexLock lock(&store->mu_);
    store->datasets_[name] = info;
  }
  return store;
}

std::string DatasetStore::PathOf(const std::string& name) const {
  return absl::StrCat(dir_, "/", name, kSuffix);
}

absl::Status DatasetStore::Reserve(const std::string& name) {
  INVNET_RETURN_IF_ERROR(ValidateName(name, "dataset.name"));
  absl::MutexLock lock(&mu_);
  if (datasets_.count(name) > 0 || reserved_.count(name) > 0) {
    return absl::AlreadyExistsError(absl::StrCat("dataset '", name, "' already exists"));
  }
  reserved_.insert(name);
  return absl::OkStatus();
}

void DatasetStore::Release(const std::string& name) {
  absl::MutexLock lock(&mu_);
  reserved_.erase(name);
}

absl::StatusOr<DatasetInfo> DatasetStore::Save(const std::string& name,
                                               const at::Tensor& samples) {
  absl::Status valid = samples.defined() && samples.dim() == 2
                           ? CheckBatch(samples, samples.size(1), "dataset samples")
                           : absl::InvalidArgumentError("dataset samples: must be [N, n]");
  DatasetInfo info{name, 0, 0, 0, absl::Now()};
  if (valid.ok()) {
    ArchiveWriter writer(kKind);
    writer.PutTensor("samples", samples.to(at::kFloat));
    writer.PutInt("created_unix_ms", absl::ToUnixMillis(info.created));
    const std::string bytes = writer.Finish();
    valid = WriteFileAtomically(PathOf(name), bytes);
    info.num_samples = samples.size(0);
    info.dim = samples.size(1);
    info.size_bytes = static_cast<int64_t>(bytes.size());
    info.fingerprint = DatasetFingerprint(samples);
  }
  absl::MutexLock lock(&mu_);
  reserved_.erase(name);
  if (!valid.ok()) return valid;
  datasets_[name] = info;
  return info;
}

absl::StatusOr<at::Tensor> DatasetStore::Load(const std::string& name) const {
  INVNET_RETURN_IF_ERROR(Info(name).status());
  absl::StatusOr<std::pair<at::Tensor, absl::Time>> data = ReadDataset(PathOf(name));
  // The archive's own errors do not say which file they came from.
  if (!data.ok()) return Annotate(data.status(), absl::StrCat("dataset '", name, "'"));
  return data->first;
}

absl::StatusOr<DatasetInfo> DatasetStore::Info(const std::string& name) const {
  INVNET_RETURN_IF_ERROR(ValidateName(name, "dataset"));
  absl::MutexLock lock(&mu_);
  auto it = datasets_.find(name);
  if (it == datasets_.end()) {
    return absl::NotFoundError(absl::StrCat("dataset '", name, "' not found"));
  }
  return it->second;
}

std::vector<DatasetInfo> DatasetStore::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<DatasetInfo> all;
  for (const auto& [name, info] : datasets_) all.push_back(info);
  return all;
}

absl::Status DatasetStore::Delete(const std::string& name) {
  INVNET_RETURN_IF_ERROR(Info(name).status());
  absl::MutexLock lock(&mu_);
  if (::unlink(PathOf(name).c_str()) != 0 && errno != ENOENT) {
    return ErrnoToStatus(errno, absl::StrCat("delete dataset ", name));
  }
  INVNET_RETURN_IF_ERROR(SyncDirectory(dir_));
  datasets_.erase(name);
  return absl::OkStatus();
}

}  // namespace invnet::server
