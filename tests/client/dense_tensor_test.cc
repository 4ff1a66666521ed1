#include "client/dense_tensor.h"

#include <cmath>
#include <cstdint>
#include <limits>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace invnet::client {
namespace {

using ::invnet::testing::IsOk;
using ::invnet::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(DenseTensorTest, MatrixHasShapeAndZeros) {
  DenseTensor m = DenseTensor::Matrix(2, 3);
  EXPECT_TRUE(m.is_matrix());
  EXPECT_EQ(m.rows(), 2);
  EXPECT_EQ(m.cols(), 3);
  EXPECT_THAT(m.values, ElementsAre(0, 0, 0, 0, 0, 0));
  m.at(1, 2) = 7;
  EXPECT_EQ(m.values[5], 7);
  EXPECT_THAT(m.ValidateMatrix("m"), IsOk());
}

TEST(DenseTensorTest, RowsAndColsAreZeroForOtherRanks) {
  DenseTensor v{{4}, {1, 2, 3, 4}};
  EXPECT_FALSE(v.is_matrix());
  EXPECT_EQ(v.rows(), 0);
  EXPECT_EQ(v.cols(), 0);
  EXPECT_THAT(v.Validate("v"), IsOk());
  EXPECT_THAT(v.ValidateMatrix("v"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("v: expected a rank-2")));
}

TEST(DenseTensorTest, EmptyBatchIsStructurallyValid) {
  DenseTensor empty{{0, 5}, {}};
  EXPECT_THAT(empty.ValidateMatrix("y"), IsOk());
}

TEST(DenseTensorTest, RejectsNegativeShape) {
  DenseTensor t{{2, -1}, {}};
  EXPECT_THAT(t.Validate("measurements"), StatusIs(absl::StatusCode::kInvalidArgument,
                                                   "measurements: shape[1] = -1 is negative"));
}

TEST(DenseTensorTest, RejectsSizeMismatch) {
  DenseTensor t{{2, 3}, {1, 2, 3, 4, 5}};
  EXPECT_THAT(t.Validate("y"), StatusIs(absl::StatusCode::kInvalidArgument,
                                        "y: shape [2, 3] needs 6 values, got 5"));
}

TEST(DenseTensorTest, RejectsOverflowingShape) {
  const int64_t big = int64_t{1} << 40;
  DenseTensor t{{big, big}, {}};
  EXPECT_THAT(t.Validate("y"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too many elements")));
  EXPECT_THAT(NumElements({big, big}, "y").status(), StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_TRUE(NumElements({3, 4}, "y").ok());
  EXPECT_EQ(*NumElements({3, 4}, "y"), 12);
  EXPECT_EQ(*NumElements({}, "y"), 1);  // a scalar
}

TEST(DenseTensorTest, RejectsNonFiniteValuesNamingTheElement) {
  DenseTensor nan{{2, 2}, {1, 2, 3, std::nanf("")}};
  EXPECT_THAT(nan.Validate("y"), StatusIs(absl::StatusCode::kInvalidArgument,
                                          "y: row 2, column 2 is not finite (NaN)"));
  DenseTensor inf{{3}, {1, std::numeric_limits<float>::infinity(), 3}};
  EXPECT_THAT(inf.Validate("x"),
              StatusIs(absl::StatusCode::kInvalidArgument, "x: value 2 is not finite (Inf)"));
}

TEST(DenseTensorTest, ProtoRoundTrip) {
  DenseTensor t{{2, 3}, {1.5f, -2, 3, 4, 5e-7f, 6}};
  v1::Tensor proto = t.ToProto();
  EXPECT_THAT(proto.shape(), ElementsAre(2, 3));
  ASSERT_EQ(proto.values_size(), 6);
  absl::StatusOr<DenseTensor> back = DenseTensor::FromProto(proto, "t");
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->shape, t.shape);
  EXPECT_EQ(back->values, t.values);
}

TEST(DenseTensorTest, ToProtoReplacesPreviousContents) {
  v1::Tensor proto;
  proto.add_shape(9);
  proto.add_values(1);
  DenseTensor{{1, 2}, {3, 4}}.ToProto(&proto);
  EXPECT_THAT(proto.shape(), ElementsAre(1, 2));
  EXPECT_THAT(proto.values(), ElementsAre(3, 4));
}

TEST(DenseTensorTest, FromProtoValidatesAndNamesTheField) {
  v1::Tensor proto;
  proto.add_shape(2);
  proto.add_shape(2);
  proto.add_values(1);
  EXPECT_THAT(DenseTensor::FromProto(proto, "reconstructions"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("reconstructions: shape [2, 2] needs 4 values, got 1")));
  proto.add_values(2);
  proto.add_values(std::numeric_limits<float>::infinity());
  proto.add_values(4);
  EXPECT_THAT(DenseTensor::FromProto(proto, "outputs"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outputs: row 2, column 1")));
}

TEST(DenseTensorTest, FromProtoAllowingNaNKeepsNaNAndStillRefusesInfAndBadShapes) {
  v1::Tensor proto;
  proto.add_shape(2);
  proto.add_shape(2);
  proto.add_values(1);
  proto.add_values(std::numeric_limits<float>::quiet_NaN());
  proto.add_values(3);
  EXPECT_THAT(DenseTensor::FromProtoAllowingNaN(proto, "posterior_std"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("posterior_std: shape [2, 2] needs 4 values, got 3")));
  proto.add_values(4);
  absl::StatusOr<DenseTensor> t = DenseTensor::FromProtoAllowingNaN(proto, "posterior_std");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(std::isnan(t->at(0, 1)));
  EXPECT_EQ(t->at(1, 1), 4);
  EXPECT_THAT(DenseTensor::FromProto(proto, "posterior_std"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NaN")));
  proto.set_values(2, -std::numeric_limits<float>::infinity());
  EXPECT_THAT(DenseTensor::FromProtoAllowingNaN(proto, "posterior_std"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("posterior_std: row 2, column 1")));
}

}  // namespace
}  // namespace invnet::client
