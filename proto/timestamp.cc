#include "proto/timestamp.h"

#include "google/protobuf/util/time_util.h"

namespace invnet {

using google::protobuf::util::TimeUtil;

google::protobuf::Timestamp ToProtoTimestamp(absl::Time time) {
  // TimeUtil keeps nanos in [0, 1e9) for times before 1970 too.
  return TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(time));
}

absl::Time FromProtoTimestamp(const google::protobuf::Timestamp& timestamp) {
  return absl::FromUnixSeconds(timestamp.seconds()) + absl::Nanoseconds(timestamp.nanos());
}

}  // namespace invnet
