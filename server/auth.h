#ifndef INVNET_SERVER_AUTH_H_
#define INVNET_SERVER_AUTH_H_

// Bearer-token authorization for the invnet services.
//
// The server reads a token file (--auth_tokens_file) at start; every RPC handler of the four
// invnet.v1 services checks the caller's `authorization: Bearer <token>` metadata against it in
// its first line, for the scope that RequiredScope's table gives the method. The
// grpc.health.v1 service and reflection are not checked (load balancers and container health
// checks call them without credentials).
//
// Token file: one token per line as `<scope> <token>`, scope `infer` or `admin` (admin implies
// infer); blank lines and lines starting with `#` are ignored. A token is at least 16 printable
// ASCII characters without spaces, and appears once.
//
//   infer  4f9c1e7a2b3d8e6f0a1b2c3d4e5f6a7b
//   admin  9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a
//
// Thread safety: an Authorizer is immutable after construction; Check may be called
// concurrently from any thread.

#include <grpcpp/server_context.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/optional.h"

namespace invnet::server {

// What a call may do. kInfer: Reconstruct, Forward, Estimate, DrawTestPairs, Evaluate and every read
// (Get/List/Watch). kAdmin: everything that changes the server's state (Train,
// CancelTrainingJob, DeleteModel, UploadDataset, DeleteDataset), and everything kInfer may.
enum class Scope { kInfer, kAdmin };

// "infer" or "admin".
absl::string_view ScopeName(Scope scope);

// The scope each RPC of the four invnet.v1 services needs: the one table of it (auth.cc), keyed
// by full method name ("/invnet.v1.TrainingService/Train"). nullopt for a method it does not
// list (Authorizer::Check refuses those, whether tokens are configured or not).
std::optional<Scope> RequiredScope(absl::string_view full_method);
// Every method the table lists, for the test that it names exactly the services' RPCs.
std::vector<std::string> MethodsWithScope();

class Authorizer {
 public:
  // Allows every call (no token file: the server's local default).
  Authorizer() = default;

  // Reads a token file (format above). NOT_FOUND when it does not exist; INVALID_ARGUMENT for
  // a malformed line ("<path>:<line>: ..."), a duplicate token or a file without any token;
  // the other codes of invnet::ReadFileToString for I/O errors.
  static absl::StatusOr<Authorizer> FromFile(const std::string& path);
  // The same for the text of a token file; `source` names it in error messages.
  static absl::StatusOr<Authorizer> FromText(absl::string_view text, absl::string_view source);

  // False for the default Authorizer, which allows everything.
  bool enabled() const { return !tokens_.empty(); }
  int num_tokens() const { return static_cast<int>(tokens_.size()); }

  // OK when the call's `authorization` metadata carries a known bearer token whose scope
  // includes RequiredScope(full_method) (always OK when !enabled()). UNAUTHENTICATED
  // ("authorization: ...") when the header is missing, repeated, not "Bearer <token>" or the
  // token is unknown; PERMISSION_DENIED naming the scope needed when the token's scope does not
  // include it; INTERNAL for a method without a scope in the table (a handler's mistake: it
  // fails closed, and every test of that RPC shows it).
  absl::Status Check(const grpc::ServerContext& context, absl::string_view full_method) const;

  // Check for the value of the `authorization` header (nullopt: absent), for tests.
  absl::Status CheckHeader(absl::optional<absl::string_view> authorization, Scope needed) const;

 private:
  struct Token {
    std::string value;
    Scope scope;
  };
  std::vector<Token> tokens_;
};

}  // namespace invnet::server

#endif  // INVNET_SERVER_AUTH_H_
