#include "server/status_util.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace invnet::server {

grpc::Status ExplainUnparsableRequest(const grpc::Status& status, absl::string_view rpc) {
  if (status.error_code() != grpc::StatusCode::INTERNAL || !status.error_message().empty()) {
    return status;
  }
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      absl::StrCat("the ", rpc,
                                   " request could not be parsed: its bytes are not a serialized "
                                   "message of this method's request type"));
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

}  // namespace invnet::server
