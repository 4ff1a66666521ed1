#include "server/auth.h"

#include <cstdint>
#include <iterator>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "proto/base/file_io.h"
#include "proto/base/option_files.h"

namespace invnet::server {
namespace {

constexpr size_t kMinTokenLength = 16;
// A token file is a handful of lines; anything this large is the wrong file.
constexpr int64_t kMaxTokenFileBytes = int64_t{1} << 20;

// Compares a presented token with a stored one in time that depends only on the stored token's
// length (and on neither token's content), so response times reveal nothing about how much of a
// guess was right.
bool EqualInConstantTime(absl::string_view presented, absl::string_view stored) {
  uint32_t diff = presented.size() == stored.size() ? 0 : 1;
  for (size_t i = 0; i < stored.size(); ++i) {
    const unsigned char p = i < presented.size() ? static_cast<unsigned char>(presented[i]) : 0;
    diff |= p ^ static_cast<unsigned char>(stored[i]);
  }
  return diff == 0;
}

bool Includes(Scope granted, Scope needed) {
  return granted == Scope::kAdmin || needed == Scope::kInfer;
}

absl::Status CheckTokenText(absl::string_view token) {
  if (token.size() < kMinTokenLength) {
    return absl::InvalidArgumentError(absl::StrCat("the token has ", token.size(),
                                                   " characters, at least ", kMinTokenLength,
                                                   " are required"));
  }
  if (!IsPrintableAsciiWord(token)) {
    return absl::InvalidArgumentError(
        "the token must consist of printable ASCII characters without spaces");
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view ScopeName(Scope scope) { return scope == Scope::kAdmin ? "admin" : "infer"; }

namespace {

struct MethodScope {
  const char* full_method;
  Scope scope;
};

// Reads and computations are kInfer; what changes the server's state is kAdmin.
constexpr MethodScope kMethodScopes[] = {
    {"/invnet.v1.ReconstructionService/Reconstruct", Scope::kInfer},
    {"/invnet.v1.ReconstructionService/Forward", Scope::kInfer},
    {"/invnet.v1.ReconstructionService/Estimate", Scope::kInfer},
    {"/invnet.v1.ReconstructionService/DrawTestPairs", Scope::kInfer},
    {"/invnet.v1.ReconstructionService/Evaluate", Scope::kInfer},
    {"/invnet.v1.TrainingService/Train", Scope::kAdmin},
    {"/invnet.v1.TrainingService/GetTrainingJob", Scope::kInfer},
    {"/invnet.v1.TrainingService/ListTrainingJobs", Scope::kInfer},
    {"/invnet.v1.TrainingService/CancelTrainingJob", Scope::kAdmin},
    {"/invnet.v1.TrainingService/WatchTrainingJob", Scope::kInfer},
    {"/invnet.v1.ModelService/ListModels", Scope::kInfer},
    {"/invnet.v1.ModelService/GetModel", Scope::kInfer},
    {"/invnet.v1.ModelService/DeleteModel", Scope::kAdmin},
    {"/invnet.v1.DatasetService/UploadDataset", Scope::kAdmin},
    {"/invnet.v1.DatasetService/ListDatasets", Scope::kInfer},
    {"/invnet.v1.DatasetService/DeleteDataset", Scope::kAdmin},
};

}  // namespace

std::optional<Scope> RequiredScope(absl::string_view full_method) {
  for (const MethodScope& entry : kMethodScopes) {
    if (full_method == entry.full_method) return entry.scope;
  }
  return std::nullopt;
}

std::vector<std::string> MethodsWithScope() {
  std::vector<std::string> methods;
  for (const MethodScope& entry : kMethodScopes) methods.emplace_back(entry.full_method);
  return methods;
}

absl::StatusOr<Authorizer> Authorizer::FromFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path, kMaxTokenFileBytes);
  if (!text.ok()) return text.status();
  return FromText(*text, path);
}

absl::StatusOr<Authorizer> Authorizer::FromText(absl::string_view text, absl::string_view source) {
  Authorizer authorizer;
  std::vector<int> line_of;  // the line each token came from, for duplicate errors
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    const auto at_line = [&](absl::string_view message) {
      return absl::InvalidArgumentError(absl::StrCat(source, ":", line_number, ": ", message));
    };
    const std::vector<absl::string_view> words =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (words.size() != 2) {
      return at_line(absl::StrCat("expected '<scope> <token>' (2 words), found ", words.size()));
    }
    Token token;
    if (words[0] == "infer") {
      token.scope = Scope::kInfer;
    } else if (words[0] == "admin") {
      token.scope = Scope::kAdmin;
    } else {
      return at_line(absl::StrCat("unknown scope '", words[0], "' (expected infer or admin)"));
    }
    absl::Status valid = CheckTokenText(words[1]);
    if (!valid.ok()) return at_line(valid.message());
    for (size_t i = 0; i < authorizer.tokens_.size(); ++i) {
      if (authorizer.tokens_[i].value == words[1]) {
        return at_line(absl::StrCat("the same token as line ", line_of[i]));
      }
    }
    token.value = std::string(words[1]);
    authorizer.tokens_.push_back(std::move(token));
    line_of.push_back(line_number);
  }
  if (authorizer.tokens_.empty()) {
    // An empty Authorizer allows everything: an empty file must not silently mean that.
    return absl::InvalidArgumentError(absl::StrCat(source, ": no tokens"));
  }
  return authorizer;
}

absl::Status Authorizer::Check(const grpc::ServerContext& context,
                               absl::string_view full_method) const {
  const std::optional<Scope> needed = RequiredScope(full_method);
  if (!needed.has_value()) {
    return absl::InternalError(absl::StrCat("no authorization scope for ", full_method));
  }
  if (!enabled()) return absl::OkStatus();
  const auto& metadata = context.client_metadata();
  const auto [begin, end] = metadata.equal_range("authorization");
  if (begin == end) return CheckHeader(absl::nullopt, *needed);
  if (std::next(begin) != end) {
    return absl::UnauthenticatedError("authorization: more than one authorization header");
  }
  return CheckHeader(absl::string_view(begin->second.data(), begin->second.size()), *needed);
}

absl::Status Authorizer::CheckHeader(absl::optional<absl::string_view> authorization,
                                     Scope needed) const {
  if (!enabled()) return absl::OkStatus();
  if (!authorization.has_value()) {
    return absl::UnauthenticatedError(
        "authorization: this server requires a bearer token (metadata 'authorization: Bearer "
        "<token>')");
  }
  absl::string_view value = absl::StripAsciiWhitespace(*authorization);
  if (absl::EqualsIgnoreCase(value, "bearer")) {
    return absl::UnauthenticatedError("authorization: the bearer token is empty");
  }
  // The scheme name is case-insensitive (RFC 6750, RFC 7235).
  constexpr absl::string_view kScheme = "bearer ";
  if (!absl::StartsWithIgnoreCase(value, kScheme)) {
    return absl::UnauthenticatedError("authorization: expected 'Bearer <token>'");
  }
  const absl::string_view presented =
      absl::StripLeadingAsciiWhitespace(value.substr(kScheme.size()));
  // Every stored token is compared, so the time taken does not reveal which one matched.
  const Token* match = nullptr;
  for (const Token& token : tokens_) {
    if (EqualInConstantTime(presented, token.value)) match = &token;
  }
  if (match == nullptr) return absl::UnauthenticatedError("authorization: unknown bearer token");
  if (!Includes(match->scope, needed)) {
    return absl::PermissionDeniedError(absl::StrCat("this call needs a token with the '",
                                                    ScopeName(needed), "' scope; this token has '",
                                                    ScopeName(match->scope), "'"));
  }
  return absl::OkStatus();
}

}  // namespace invnet::server
