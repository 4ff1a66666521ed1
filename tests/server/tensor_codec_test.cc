#include "server/tensor_codec.h"

#include <cmath>

#include <ATen/ATen.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace invnet::server {
namespace {

using ::invnet::testing::StatusIs;
using ::testing::HasSubstr;

v1::Tensor Make(std::vector<int64_t> shape, std::vector<float> values) {
  v1::Tensor t;
  for (int64_t d : shape) t.add_shape(d);
  for (float v : values) t.add_values(v);
  return t;
}

TEST(TensorCodecTest, RoundTrip) {
  at::Tensor x = at::randn({3, 4});
  v1::Tensor proto;
  EncodeTensor(x, &proto);
  EXPECT_THAT(proto.shape(), ::testing::ElementsAre(3, 4));
  ASSERT_OK_AND_ASSIGN(at::Tensor back, DecodeBatch(proto, 4, "x"));
  EXPECT_TRUE(at::equal(back, x));
  // float64 inputs are encoded as float32.
  EncodeTensor(x.to(at::kDouble), &proto);
  ASSERT_OK_AND_ASSIGN(back, DecodeTensor(proto, -1, "x"));
  EXPECT_TRUE(at::equal(back, x));
}

TEST(TensorCodecTest, ValuesMustMatchTheShape) {
  EXPECT_THAT(DecodeBatch(Make({2, 2}, {1, 2, 3}), 2, "measurements"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("measurements: values_size 3 != product of shape [2, 2] = 4")));
  EXPECT_THAT(DecodeBatch(Make({2, 2}, {1, 2, 3, 4, 5}), 2, "measurements"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("values_size 5")));
}

TEST(TensorCodecTest, HostileShapes) {
  EXPECT_THAT(DecodeBatch(Make({-1, 2}, {1, 2}), 2, "y"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("negative")));
  EXPECT_THAT(DecodeBatch(Make({int64_t{1} << 40, int64_t{1} << 40}, {}), 2, "y"),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("exceeds the limit")));
  EXPECT_THAT(DecodeBatch(Make({int64_t{1} << 62, 4}, {}), 4, "y"),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(DecodeBatch(Make({0, 3}, {}), 3, "y"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty batch")));
  EXPECT_THAT(DecodeBatch(Make({6}, {1, 2, 3, 4, 5, 6}), 3, "y"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rank 2")));
  EXPECT_THAT(DecodeBatch(Make({2, 3}, {1, 2, 3, 4, 5, 6}), 2, "y"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected 2 values")));
  TensorLimits small;
  small.max_elements = 10;
  EXPECT_THAT(DecodeBatch(Make({4, 3}, std::vector<float>(12, 1.0f)), 3, "y", small),
              StatusIs(absl::StatusCode::kResourceExhausted));
}

TEST(TensorCodecTest, BatchesAboveTheLimitAreRefusedNamingTheFlag) {
  v1::Tensor proto;
  proto.add_shape(5);
  proto.add_shape(2);
  for (int i = 0; i < 10; ++i) proto.add_values(0.5f);
  TensorLimits limits;
  limits.max_batch = 5;
  EXPECT_TRUE(DecodeBatch(proto, 2, "measurements", limits).ok());
  limits.max_batch = 4;
  absl::StatusOr<at::Tensor> refused = DecodeBatch(proto, 2, "measurements", limits);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(), ::testing::HasSubstr("measurements: a batch of 5"));
  EXPECT_THAT(refused.status().message(), ::testing::HasSubstr("--max_batch"));
}

TEST(TensorCodecTest, NonFiniteValues) {
  EXPECT_THAT(DecodeBatch(Make({1, 3}, {1, NAN, 3}), 3, "signals"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("signals: value 1 is NaN")));
  EXPECT_THAT(DecodeBatch(Make({1, 2}, {INFINITY, 0}), 2, "signals"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace invnet::server
