// invnet reconstruct, forward, estimate, pairs and bench: the calls on a trained model.

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/cli.h"
#include "client/cli_internal.h"
#include "client/dense_tensor.h"
#include "client/format.h"
#include "client/load_generator.h"
#include "client/tensor_io.h"
#include "proto/base/file_io.h"
#include "proto/base/status_macros.h"

namespace invnet::client::cli {

namespace {

absl::Status CheckModelFlags(const Invocation& inv) {
  INVNET_RETURN_IF_ERROR(RequireFlag(inv, "model", inv.flags.model, "NAME"));
  if (inv.has("version"))
    INVNET_RETURN_IF_ERROR(RequireAtLeast<int64_t>("version", inv.flags.version, 0));
  return CheckOutputFlag(inv);
}

std::string Destination(const Invocation& inv) {
  return inv.has("output") ? inv.flags.output : "stdout";
}

// The rows of one request, at most: --chunk_rows, or what the server allows.
absl::StatusOr<int64_t> ChunkRows(const Invocation& inv) {
  INVNET_RETURN_IF_ERROR(RequireAtLeast<int64_t>("chunk_rows", inv.flags.chunk_rows, 1));
  return inv.flags.chunk_rows;
}

// Calls `call(begin, count)` for consecutive row ranges covering [0, rows), at most
// `chunk_rows` rows each. When the server refuses a range as larger than its --max_batch
// (RESOURCE_EXHAUSTED "... limit of N (--max_batch)"), the rest goes in ranges of that limit
// (half the range when the message names no number).
template <typename Call>
absl::Status InChunks(int64_t rows, int64_t chunk_rows, Call call) {
  int64_t chunk = std::max<int64_t>(1, std::min(chunk_rows, rows));
  for (int64_t begin = 0; begin < rows;) {
    const int64_t count = std::min(chunk, rows - begin);
    absl::Status status = call(begin, count);
    if (status.code() == absl::StatusCode::kResourceExhausted && count > 1 &&
        absl::StrContains(status.message(), "--max_batch")) {
      int64_t limit = 0;
      const size_t at = status.message().find("limit of ");
      if (at != absl::string_view::npos) {
        const absl::string_view rest = status.message().substr(at + 9);
        (void)absl::SimpleAtoi(rest.substr(0, rest.find(' ')), &limit);
      }
      chunk = limit >= 1 && limit < count ? limit : count / 2;
      continue;
    }
    INVNET_RETURN_IF_ERROR(status);
    begin += count;
  }
  return absl::OkStatus();
}

// Per-sample solver diagnostics as CSV, one row per input row (counted from 1).
std::string DiagnosticsCsv(const v1::ReconstructResponse& r) {
  std::string csv = "row,iterations,converged,error_bound,forward_residual\n";
  for (int i = 0; i < r.iterations_size(); ++i) {
    absl::StrAppend(
        &csv, i + 1, ",", r.iterations(i), ",",
        i < r.converged_size() && r.converged(i) ? "true" : "false", ",",
        i < r.error_bound_size() ? absl::StrFormat("%.9g", r.error_bound(i)) : "", ",",
        i < r.forward_residual_size() ? absl::StrFormat("%.9g", r.forward_residual(i)) : "", "\n");
  }
  return csv;
}

// "0.12, 0.081 per component" over the rows where the std is defined, and how many are not.
std::string PosteriorStdSummary(const DenseTensor& std) {
  std::vector<double> sum(static_cast<size_t>(std.cols()), 0.0);
  int64_t defined = 0;
  for (int64_t r = 0; r < std.rows(); ++r) {
    bool nan = false;
    for (int64_t c = 0; c < std.cols(); ++c) nan = nan || std::isnan(std.at(r, c));
    if (nan) continue;
    ++defined;
    for (int64_t c = 0; c < std.cols(); ++c) sum[static_cast<size_t>(c)] += std.at(r, c);
  }
  std::vector<std::string> means;
  constexpr int64_t kShown = 8;
  for (int64_t c = 0; c < std::min(kShown, std.cols()); ++c) {
    means.push_back(defined > 0 ? FormatNumber(sum[static_cast<size_t>(c)] / defined) : "-");
  }
  std::string out = absl::StrCat(absl::StrJoin(means, ", "), std.cols() > kShown ? ", ..." : "",
                                 " per component");
  if (defined < std.rows()) {
    absl::StrAppend(&out, "; undefined (NaN) in ", std.rows() - defined, " of ", std.rows(),
                    " samples");
  }
  return out;
}

struct EstimatorInfo {
  const char* name;
  v1::Estimator value;
  bool (v1::EstimateResponse::*has)() const;
  const v1::Tensor& (v1::EstimateResponse::*get)() const;
};

const std::vector<EstimatorInfo>& Estimators() {
  static const auto* estimators = new std::vector<EstimatorInfo>{
      {"posterior_mean", v1::ESTIMATOR_POSTERIOR_MEAN, &v1::EstimateResponse::has_posterior_mean,
       &v1::EstimateResponse::posterior_mean},
      {"posterior_std", v1::ESTIMATOR_POSTERIOR_STD, &v1::EstimateResponse::has_posterior_std,
       &v1::EstimateResponse::posterior_std},
      {"map", v1::ESTIMATOR_MAP, &v1::EstimateResponse::has_map, &v1::EstimateResponse::map},
      {"wiener", v1::ESTIMATOR_WIENER, &v1::EstimateResponse::has_wiener,
       &v1::EstimateResponse::wiener},
      {"pseudo_inverse", v1::ESTIMATOR_PSEUDO_INVERSE, &v1::EstimateResponse::has_pseudo_inverse,
       &v1::EstimateResponse::pseudo_inverse},
  };
  return *estimators;
}

// "out.npy" + "map" -> "out.map.npy" (estimate's files, pairs' .x and .y files).
std::string SuffixedPath(const std::string& output, absl::string_view estimator) {
  const size_t dot = output.rfind('.');
  const size_t slash = output.rfind('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) {
    return absl::StrCat(output, ".", estimator);
  }
  return absl::StrCat(output.substr(0, dot), ".", estimator, output.substr(dot));
}

}  // namespace

absl::Status RunReconstruct(const Invocation& inv, const Operands&, Context& ctx) {
  INVNET_RETURN_IF_ERROR(CheckModelFlags(inv));
  INVNET_ASSIGN_OR_RETURN(const int64_t chunk_rows, ChunkRows(inv));
  if (inv.has("diagnostics") && inv.flags.diagnostics.empty()) {
    return UsageError("--diagnostics must name a file");
  }
  const bool want_std = inv.has("posterior_std");
  if (want_std) {
    absl::Status format = TensorFileFormatFromPath(inv.flags.posterior_std).status();
    if (!format.ok()) return UsageError(absl::StrCat("--posterior_std ", format.message()));
  }
  v1::ReconstructRequest request;
  request.set_posterior_std(want_std);
  request.set_model(inv.flags.model);
  request.set_version(inv.flags.version);
  v1::SolverOptions* solver = request.mutable_solver();
  if (inv.has("tolerance")) {
    INVNET_RETURN_IF_ERROR(RequirePositive("tolerance", inv.flags.tolerance));
    solver->set_tolerance(inv.flags.tolerance);
  }
  if (inv.has("max_iterations")) {
    INVNET_RETURN_IF_ERROR(RequireAtLeast<int64_t>("max_iterations", inv.flags.max_iterations, 1));
    solver->set_max_iterations(inv.flags.max_iterations);
  }
  if (inv.has("anderson")) solver->set_anderson(inv.flags.anderson);
  if (inv.has("anderson_memory")) {
    INVNET_RETURN_IF_ERROR(
        RequireAtLeast<int64_t>("anderson_memory", inv.flags.anderson_memory, 1));
    solver->set_anderson_memory(inv.flags.anderson_memory);
  }
  INVNET_ASSIGN_OR_RETURN(DenseTensor measurements, ReadInput(inv));

  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  // The chunks' answers, concatenated in order; every chunk after the first asks for the
  // version that answered the first, so that one model answers them all.
  v1::ReconstructResponse response;
  DenseTensor x;
  DenseTensor posterior_std;
  INVNET_RETURN_IF_ERROR(
      InChunks(measurements.rows(), chunk_rows, [&](int64_t begin, int64_t count) -> absl::Status {
        RowRange(measurements, begin, count).ToProto(request.mutable_measurements());
        INVNET_ASSIGN_OR_RETURN(v1::ReconstructResponse part, client->Reconstruct(request));
        INVNET_ASSIGN_OR_RETURN(DenseTensor part_x,
                                DenseTensor::FromProto(part.reconstructions(), "reconstructions"));
        AppendRows(part_x, &x);
        if (want_std) {
          INVNET_ASSIGN_OR_RETURN(DenseTensor part_std, DenseTensor::FromProtoAllowingNaN(
                                                            part.posterior_std(), "posterior_std"));
          if (part_std.shape != part_x.shape) {
            return absl::InternalError(absl::StrCat(
                "the server answered posterior_std of shape ", ShapeToString(part_std.shape),
                " for reconstructions of shape ", ShapeToString(part_x.shape)));
          }
          AppendRows(part_std, &posterior_std);
          part.clear_posterior_std();
        }
        request.set_version(part.version());
        part.clear_reconstructions();
        response.MergeFrom(part);  // appends the per-sample fields, keeps model and version
        return absl::OkStatus();
      }));
  INVNET_RETURN_IF_ERROR(WriteResult(x, inv.flags.output, ctx));
  if (inv.has("diagnostics")) {
    INVNET_RETURN_IF_ERROR(WriteFileAtomically(inv.flags.diagnostics, DiagnosticsCsv(response)));
  }
  if (want_std) INVNET_RETURN_IF_ERROR(WriteMatrix(inv.flags.posterior_std, posterior_std));

  const int64_t batch = x.rows();
  int64_t max_iterations = 0;
  double total_iterations = 0;
  for (int64_t it : response.iterations()) {
    max_iterations = std::max(max_iterations, it);
    total_iterations += static_cast<double>(it);
  }
  const int64_t converged =
      std::count(response.converged().begin(), response.converged().end(), true);
  double max_bound = 0;
  for (double b : response.error_bound()) max_bound = std::max(max_bound, b);
  double max_residual = 0;
  for (double r : response.forward_residual()) max_residual = std::max(max_residual, r);

  std::ostream& err = *ctx.err;
  err << "reconstructed " << batch << " samples (dimension " << x.cols() << ") with model "
      << response.model() << " version " << response.version() << " -> " << Destination(inv)
      << "\n";
  if (inv.has("diagnostics")) {
    err << "per-sample diagnostics (iterations, converged, error_bound, forward_residual) -> "
        << inv.flags.diagnostics << "\n";
  }
  PrintFields(err,
              {{"iterations",
                absl::StrCat("mean ",
                             FormatNumber(response.iterations().empty()
                                              ? 0.0
                                              : total_iterations / response.iterations_size()),
                             ", max ", max_iterations)},
               {"converged", absl::StrCat(converged, "/", response.converged_size(), " (",
                                          Percent(converged, response.converged_size()), ")")},
               {"max error bound", FormatNumber(max_bound)},
               {"max forward residual", FormatNumber(max_residual)}},
              "  ");
  if (want_std) {
    err << "posterior std (" << response.posterior_std_method() << ", from the network's "
        << "Jacobian) -> " << inv.flags.posterior_std << "\n";
    PrintFields(err, {{"mean", PosteriorStdSummary(posterior_std)}}, "  ");
  }
  if (converged < response.converged_size()) {
    err << "warning: " << response.converged_size() - converged << " of "
        << response.converged_size()
        << " samples did not converge; their error bounds say how far they may be off\n";
  }
  return absl::OkStatus();
}

absl::Status RunBench(const Invocation& inv, const Operands&, Context& ctx) {
  INVNET_ASSIGN_OR_RETURN(LoadOptions options, BuildLoadOptions(inv));
  const CliFlags& f = inv.flags;
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  // The input dimension comes from the model's description.
  v1::GetModelRequest get;
  get.set_name(f.model);
  INVNET_ASSIGN_OR_RETURN(v1::GetModelResponse model, client->GetModel(get));
  const v1::ModelVersion* version = nullptr;
  for (const v1::ModelVersion& v : model.model().versions()) {
    if (f.version == 0 || v.version() == f.version) version = &v;
  }
  if (version == nullptr) {
    return absl::NotFoundError(absl::StrCat("model ", f.model, " has no version ", f.version));
  }
  options.version = version->version();
  const int64_t dim =
      f.rpc == "reconstruct" ? version->measurement_dim() : version->architecture().dim();
  INVNET_ASSIGN_OR_RETURN(LoadReport report, RunLoad(client->channel(), dim, options));
  *ctx.out << FormatLoadReport(report, options);
  if (report.requests == 0) {
    return absl::UnavailableError("bench: no request succeeded (see the errors above)");
  }
  return absl::OkStatus();
}

absl::Status RunForward(const Invocation& inv, const Operands&, Context& ctx) {
  INVNET_RETURN_IF_ERROR(CheckModelFlags(inv));
  v1::ForwardRequest request;
  request.set_model(inv.flags.model);
  request.set_version(inv.flags.version);
  INVNET_ASSIGN_OR_RETURN(const int64_t chunk_rows, ChunkRows(inv));
  INVNET_ASSIGN_OR_RETURN(DenseTensor signals, ReadInput(inv));
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  v1::ForwardResponse response;
  DenseTensor outputs;
  INVNET_RETURN_IF_ERROR(
      InChunks(signals.rows(), chunk_rows, [&](int64_t begin, int64_t count) -> absl::Status {
        RowRange(signals, begin, count).ToProto(request.mutable_signals());
        INVNET_ASSIGN_OR_RETURN(response, client->Forward(request));
        INVNET_ASSIGN_OR_RETURN(DenseTensor part,
                                DenseTensor::FromProto(response.outputs(), "outputs"));
        AppendRows(part, &outputs);
        request.set_version(response.version());
        return absl::OkStatus();
      }));
  INVNET_RETURN_IF_ERROR(WriteResult(outputs, inv.flags.output, ctx));
  *ctx.err << "phi(x) for " << outputs.rows() << " samples (dimension " << outputs.cols()
           << ") with model " << response.model() << " version " << response.version() << " -> "
           << Destination(inv) << "\n";
  return absl::OkStatus();
}

absl::Status RunEstimate(const Invocation& inv, const Operands&, Context& ctx) {
  INVNET_RETURN_IF_ERROR(CheckModelFlags(inv));
  v1::EstimateRequest request;
  request.set_model(inv.flags.model);
  request.set_version(inv.flags.version);
  if (inv.has("estimators")) {
    for (absl::string_view word :
         absl::StrSplit(inv.flags.estimators, ',', absl::SkipWhitespace())) {
      word = absl::StripAsciiWhitespace(word);
      auto it = std::find_if(Estimators().begin(), Estimators().end(),
                             [&](const EstimatorInfo& e) { return word == e.name; });
      if (it == Estimators().end()) {
        return UsageError(absl::StrCat("--estimators: '", word,
                                       "' is not one of posterior_mean, posterior_std, map, "
                                       "wiener, pseudo_inverse"));
      }
      request.add_estimators(it->value);
    }
  }
  INVNET_ASSIGN_OR_RETURN(const int64_t chunk_rows, ChunkRows(inv));
  INVNET_ASSIGN_OR_RETURN(DenseTensor measurements, ReadInput(inv));
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  // model, version, map_objective and map_gradient_norm of every chunk
  v1::EstimateResponse response;
  std::map<const EstimatorInfo*, DenseTensor> merged;
  INVNET_RETURN_IF_ERROR(
      InChunks(measurements.rows(), chunk_rows, [&](int64_t begin, int64_t count) -> absl::Status {
        RowRange(measurements, begin, count).ToProto(request.mutable_measurements());
        INVNET_ASSIGN_OR_RETURN(v1::EstimateResponse part, client->Estimate(request));
        for (const EstimatorInfo& e : Estimators()) {
          if (!(part.*e.has)()) continue;
          INVNET_ASSIGN_OR_RETURN(DenseTensor tensor,
                                  DenseTensor::FromProto((part.*e.get)(), e.name));
          AppendRows(tensor, &merged[&e]);
        }
        request.set_version(part.version());
        response.set_model(part.model());
        response.set_version(part.version());
        response.mutable_map_objective()->MergeFrom(part.map_objective());
        response.mutable_map_gradient_norm()->MergeFrom(part.map_gradient_norm());
        return absl::OkStatus();
      }));

  std::vector<std::pair<const EstimatorInfo*, DenseTensor>> results;
  for (const EstimatorInfo& e : Estimators()) {
    auto it = merged.find(&e);
    if (it != merged.end()) results.emplace_back(&e, std::move(it->second));
  }
  if (results.empty()) return absl::InternalError("the server returned no estimates");
  std::vector<std::string> written;
  for (const auto& [e, tensor] : results) {
    if (!inv.has("output")) {
      if (results.size() > 1) *ctx.out << "# " << e->name << "\n";
      *ctx.out << EncodeCsv(tensor);
      continue;
    }
    const std::string path =
        results.size() == 1 ? inv.flags.output : SuffixedPath(inv.flags.output, e->name);
    INVNET_RETURN_IF_ERROR(WriteMatrix(path, tensor));
    written.push_back(path);
  }

  std::vector<std::string> names;
  for (const auto& result : results) names.push_back(result.first->name);
  std::ostream& err = *ctx.err;
  err << "estimated " << measurements.rows() << " samples with the reference estimators of model "
      << response.model() << " version " << response.version() << "\n";
  std::vector<std::pair<std::string, std::string>> fields = {
      {"estimators", absl::StrJoin(names, ", ")},
      {"output", written.empty() ? "stdout" : absl::StrJoin(written, ", ")}};
  if (!response.map_objective().empty()) {
    double sum = 0, max = -INFINITY;
    for (double v : response.map_objective()) {
      sum += v;
      max = std::max(max, v);
    }
    fields.push_back(
        {"map objective", absl::StrCat("mean ", FormatNumber(sum / response.map_objective_size()),
                                       ", max ", FormatNumber(max))});
  }
  if (!response.map_gradient_norm().empty()) {
    double sum = 0, max = 0;
    for (double v : response.map_gradient_norm()) {
      sum += v;
      max = std::max(max, v);
    }
    fields.push_back({"map grad norm",
                      absl::StrCat("mean ", FormatNumber(sum / response.map_gradient_norm_size()),
                                   ", max ", FormatNumber(max))});
  }
  PrintFields(err, fields, "  ");
  return absl::OkStatus();
}

absl::Status RunPairs(const Invocation& inv, const Operands&, Context& ctx) {
  INVNET_RETURN_IF_ERROR(CheckModelFlags(inv));
  INVNET_RETURN_IF_ERROR(RequireFlag(inv, "output", inv.flags.output, "FILE"));
  if (!inv.has("count")) return UsageError("--count N is required");
  INVNET_RETURN_IF_ERROR(RequireAtLeast<int64_t>("count", inv.flags.count, 1));
  v1::DrawTestPairsRequest request;
  request.set_model(inv.flags.model);
  request.set_version(inv.flags.version);
  request.set_count(inv.flags.count);
  request.set_seed(inv.flags.seed);
  INVNET_ASSIGN_OR_RETURN(auto client, ConnectFor(inv, ctx));
  INVNET_ASSIGN_OR_RETURN(v1::DrawTestPairsResponse response, client->DrawTestPairs(request));
  INVNET_ASSIGN_OR_RETURN(DenseTensor x, DenseTensor::FromProto(response.signals(), "signals"));
  INVNET_ASSIGN_OR_RETURN(DenseTensor y,
                          DenseTensor::FromProto(response.measurements(), "measurements"));
  const std::string x_path = SuffixedPath(inv.flags.output, "x");
  const std::string y_path = SuffixedPath(inv.flags.output, "y");
  INVNET_RETURN_IF_ERROR(WriteMatrix(x_path, x));
  INVNET_RETURN_IF_ERROR(WriteMatrix(y_path, y));
  *ctx.err << "drew " << x.rows() << " held-out test pairs (seed " << request.seed()
           << ") from the problem of model " << response.model() << " version "
           << response.version() << "\n";
  PrintFields(*ctx.err,
              {{"signals x", absl::StrCat(ShapeToString(x.shape), " -> ", x_path)},
               {"measurements y", absl::StrCat(ShapeToString(y.shape), " -> ", y_path)}},
              "  ");
  return absl::OkStatus();
}

absl::StatusOr<LoadOptions> BuildLoadOptions(const Invocation& inv) {
  INVNET_RETURN_IF_ERROR(RequireFlag(inv, "model", inv.flags.model, "NAME"));
  const CliFlags& f = inv.flags;
  if (f.rpc != "reconstruct" && f.rpc != "forward") {
    return UsageError(absl::StrCat("--rpc must be reconstruct or forward, got '", f.rpc, "'"));
  }
  INVNET_RETURN_IF_ERROR(RequireAtLeast<int64_t>("batch", f.batch, 1));
  INVNET_RETURN_IF_ERROR(RequireAtLeast<int64_t>("concurrency", f.concurrency, 1));
  INVNET_RETURN_IF_ERROR(RequireAtLeast<int64_t>("requests", f.requests, 0));
  INVNET_RETURN_IF_ERROR(RequirePositive("duration", f.duration));
  if (!(f.rate >= 0) || !(f.warmup >= 0)) return UsageError("--rate and --warmup must be >= 0");
  if (inv.has("tolerance")) INVNET_RETURN_IF_ERROR(RequirePositive("tolerance", f.tolerance));
  LoadOptions options;
  options.rpc = f.rpc;
  options.model = f.model;
  options.batch = f.batch;
  options.concurrency = static_cast<int>(f.concurrency);
  // --requests alone means "until N are done": --duration's default must not cut it short.
  options.duration =
      f.requests > 0 && !inv.has("duration") ? absl::InfiniteDuration() : absl::Seconds(f.duration);
  options.requests = f.requests;
  options.rate = f.rate;
  options.warmup = absl::Seconds(f.warmup);
  if (inv.has("tolerance")) options.tolerance = f.tolerance;
  return options;
}

}  // namespace invnet::client::cli
