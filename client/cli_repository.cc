// invnet health, invnet models list|show|delete, invnet datasets upload|list|delete.

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cli.h"
#include "client/cli_internal.h"
#include "client/dense_tensor.h"
#include "client/format.h"
#include "proto/base/status_macros.h"

namespace invnet::client::cli {

namespace {

void PrintModelVersion(const v1::ModelVersion& v, std::ostream& out) {
  out << "model " << v.name() << " version " << v.version() << "\n";
  std::vector<std::pair<std::string, std::string>> fields = {
      {"created", FormatTimestamp(v.created())},
      {"job", v.job_id().empty() ? "-" : v.job_id()},
      {"preset", v.preset().empty() ? "-" : v.preset()},
      {"problem", ProblemSummary(v.problem())},
      {"dims", absl::StrCat("m=", v.measurement_dim(), " -> n=", v.architecture().dim())},
      {"architecture", ArchitectureSummary(v.architecture())},
      {"training", TrainingSummary(v.training(), v.problem())},
      {"lipschitz", absl::StrCat(FormatNumber(v.lower_lipschitz()), " <= |phi(a)-phi(b)|/|a-b| <= ",
                                 FormatNumber(v.upper_lipschitz()))},
      {"size", FormatBytes(v.size_bytes())},
  };
  if (!v.block_lipschitz().empty()) {
    std::vector<std::string> blocks;
    for (double l : v.block_lipschitz()) blocks.push_back(FormatNumber(l));
    fields.push_back({"block lipschitz", absl::StrJoin(blocks, ", ")});
  }
  for (const std::string& warning : v.warnings()) fields.push_back({"warning", warning});
  // Sorted, so the output does not depend on the map's iteration order.
  const std::map<std::string, double> metrics(v.metrics().begin(), v.metrics().end());
  for (const auto& [name, value] : metrics) fields.push_back({name, FormatNumber(value)});
  PrintFields(out, fields, "  ");
}

}  // namespace

absl::Status RunHealth(const Invocation& inv, const Operands&, Context& ctx) {
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  INVNET_ASSIGN_OR_RETURN(InvnetClient::HealthStatus status, client->Health(inv.flags.service));
  const std::string name = grpc::health::v1::HealthCheckResponse::ServingStatus_Name(status);
  *ctx.out << name << "\n";
  if (status != grpc::health::v1::HealthCheckResponse::SERVING) {
    return absl::UnavailableError(absl::StrCat("server ", inv.flags.server, " is ", name));
  }
  return absl::OkStatus();
}

absl::Status RunModelsList(const Invocation& inv, const Operands&, Context& ctx) {
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  INVNET_ASSIGN_OR_RETURN(v1::ListModelsResponse response, client->ListModels());
  if (response.models().empty()) {
    *ctx.out << "no models\n";
    return absl::OkStatus();
  }
  Table table({"MODEL", "VERSIONS", "LATEST", "OPERATOR", "DIMS", "LOSS", "VAL_MSE", "CREATED"});
  for (const v1::Model& model : response.models()) {
    if (model.versions().empty()) {
      table.AddRow({model.name(), "0"});
      continue;
    }
    const v1::ModelVersion& latest = *model.versions().rbegin();
    table.AddRow({model.name(), absl::StrCat(model.versions_size()), absl::StrCat(latest.version()),
                  OperatorSummary(latest.problem().operator_()),
                  absl::StrCat("m=", latest.measurement_dim(), " n=", latest.architecture().dim()),
                  LossName(latest.training().loss()), FindMetric(latest, "val_mse"),
                  FormatTimestamp(latest.created())});
  }
  table.Print(*ctx.out);
  return absl::OkStatus();
}

absl::Status RunModelsShow(const Invocation& inv, const Operands& operands, Context& ctx) {
  if (inv.has("version"))
    INVNET_RETURN_IF_ERROR(RequireAtLeast<int64_t>("version", inv.flags.version, 1));
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  v1::GetModelRequest request;
  request.set_name(operands[0]);
  INVNET_ASSIGN_OR_RETURN(v1::GetModelResponse response, client->GetModel(request));
  bool printed = false;
  for (const v1::ModelVersion& version : response.model().versions()) {
    if (inv.has("version") && version.version() != inv.flags.version) continue;
    if (printed) *ctx.out << "\n";
    PrintModelVersion(version, *ctx.out);
    printed = true;
  }
  if (!printed && inv.has("version")) {
    return absl::NotFoundError(
        absl::StrCat("model ", operands[0], " has no version ", inv.flags.version));
  }
  if (!printed) *ctx.out << "model " << operands[0] << " has no versions\n";
  return absl::OkStatus();
}

absl::Status RunModelsDelete(const Invocation& inv, const Operands& operands, Context& ctx) {
  // Deleting every version must be asked for explicitly.
  if (inv.has("version") == (inv.has("all_versions") && inv.flags.all_versions)) {
    return UsageError("models delete: give --version=N or --all_versions");
  }
  if (inv.has("version"))
    INVNET_RETURN_IF_ERROR(RequireAtLeast<int64_t>("version", inv.flags.version, 1));
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  v1::DeleteModelRequest request;
  request.set_name(operands[0]);
  if (inv.has("version")) {
    request.set_version(inv.flags.version);
  } else {
    request.set_all_versions(true);
  }
  INVNET_RETURN_IF_ERROR(client->DeleteModel(request).status());
  if (request.version() > 0) {
    *ctx.out << "deleted version " << request.version() << " of model " << operands[0] << "\n";
  } else {
    *ctx.out << "deleted model " << operands[0] << " (every version)\n";
  }
  return absl::OkStatus();
}

absl::Status RunDatasetsUpload(const Invocation& inv, const Operands& operands, Context& ctx) {
  if (inv.has("rows_per_chunk")) {
    INVNET_RETURN_IF_ERROR(RequireAtLeast<int64_t>("rows_per_chunk", inv.flags.rows_per_chunk, 0));
  }
  INVNET_ASSIGN_OR_RETURN(DenseTensor samples, ReadInput(inv));
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  INVNET_ASSIGN_OR_RETURN(v1::Dataset dataset,
                          client->UploadDataset(operands[0], samples, inv.flags.rows_per_chunk));
  *ctx.out << "uploaded dataset " << dataset.name() << ": " << dataset.num_samples()
           << " samples of dimension " << dataset.dim() << " (" << FormatBytes(dataset.size_bytes())
           << ")\n";
  return absl::OkStatus();
}

absl::Status RunDatasetsList(const Invocation& inv, const Operands&, Context& ctx) {
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  INVNET_ASSIGN_OR_RETURN(v1::ListDatasetsResponse response, client->ListDatasets());
  if (response.datasets().empty()) {
    *ctx.out << "no datasets\n";
    return absl::OkStatus();
  }
  Table table({"DATASET", "DIM", "SAMPLES", "SIZE", "CREATED"});
  for (const v1::Dataset& d : response.datasets()) {
    table.AddRow({d.name(), absl::StrCat(d.dim()), absl::StrCat(d.num_samples()),
                  FormatBytes(d.size_bytes()), FormatTimestamp(d.created())});
  }
  table.Print(*ctx.out);
  return absl::OkStatus();
}

absl::Status RunDatasetsDelete(const Invocation& inv, const Operands& operands, Context& ctx) {
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  v1::DeleteDatasetRequest request;
  request.set_name(operands[0]);
  INVNET_RETURN_IF_ERROR(client->DeleteDataset(request).status());
  *ctx.out << "deleted dataset " << operands[0] << "\n";
  return absl::OkStatus();
}

}  // namespace invnet::client::cli
