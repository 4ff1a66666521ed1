#ifndef INVNET_PROTO_TIMESTAMP_H_
#define INVNET_PROTO_TIMESTAMP_H_

// absl::Time <-> google.protobuf.Timestamp, the contract's one time type (here, not in base/,
// because it needs protobuf, which models/ must not link).

#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"

namespace invnet {

google::protobuf::Timestamp ToProtoTimestamp(absl::Time time);
absl::Time FromProtoTimestamp(const google::protobuf::Timestamp& timestamp);

}  // namespace invnet

#endif  // INVNET_PROTO_TIMESTAMP_H_
