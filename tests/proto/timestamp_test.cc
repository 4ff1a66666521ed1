#include "proto/timestamp.h"

#include "gtest/gtest.h"

namespace invnet {
namespace {

TEST(ProtoTimestamp, RoundTripsToTheNanosecond) {
  const absl::Time t = absl::FromUnixSeconds(1796083200) + absl::Nanoseconds(123456789);
  const google::protobuf::Timestamp ts = ToProtoTimestamp(t);
  EXPECT_EQ(ts.seconds(), 1796083200);
  EXPECT_EQ(ts.nanos(), 123456789);
  EXPECT_EQ(FromProtoTimestamp(ts), t);
}

TEST(ProtoTimestamp, TimesBefore1970KeepNanosNonNegative) {
  // The proto requires 0 <= nanos < 1e9; a plain division would give nanos = -500000000.
  const absl::Time t = absl::UnixEpoch() - absl::Milliseconds(1500);
  const google::protobuf::Timestamp ts = ToProtoTimestamp(t);
  EXPECT_EQ(ts.seconds(), -2);
  EXPECT_EQ(ts.nanos(), 500000000);
  EXPECT_EQ(FromProtoTimestamp(ts), t);
}

TEST(ProtoTimestamp, TheEpochIsAllZero) {
  const google::protobuf::Timestamp ts = ToProtoTimestamp(absl::UnixEpoch());
  EXPECT_EQ(ts.seconds(), 0);
  EXPECT_EQ(ts.nanos(), 0);
}

}  // namespace
}  // namespace invnet
