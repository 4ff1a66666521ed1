#include "client/linear_operator.h"

#include <cmath>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace invnet::client {
namespace {

using ::invnet::testing::IsOk;
using ::invnet::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::FloatNear;
using ::testing::HasSubstr;
using ::testing::Pointwise;

DenseTensor Matrix(int64_t rows, int64_t cols, std::vector<float> values) {
  DenseTensor t;
  t.shape = {rows, cols};
  t.values = std::move(values);
  return t;
}

v1::Operator Dense(int64_t m, int64_t n, std::vector<float> values) {
  v1::Operator op;
  Matrix(m, n, std::move(values)).ToProto(op.mutable_dense()->mutable_matrix());
  return op;
}

v1::Operator Convolution(int64_t n, std::vector<double> kernel, v1::Boundary boundary) {
  v1::Operator op;
  op.mutable_convolution()->set_dim(n);
  for (double k : kernel) op.mutable_convolution()->add_kernel(k);
  op.mutable_convolution()->set_boundary(boundary);
  return op;
}

TEST(ClientOperatorTest, DenseAppliesTheMatrixAndItsTranspose) {
  absl::StatusOr<ClientOperator> op = ClientOperator::Create(Dense(2, 3, {1, 2, 3, 4, 5, 6}));
  ASSERT_THAT(op, IsOk());
  EXPECT_EQ(op->output_dim(), 2);
  EXPECT_EQ(op->input_dim(), 3);
  absl::StatusOr<DenseTensor> y = op->Apply(Matrix(2, 3, {1, 0, 0, 1, 1, 1}));
  ASSERT_THAT(y, IsOk());
  EXPECT_THAT(y->shape, ElementsAre(2, 2));
  EXPECT_THAT(y->values, ElementsAre(1, 4, 6, 15));
  absl::StatusOr<DenseTensor> x = op->Adjoint(Matrix(1, 2, {1, -1}));
  ASSERT_THAT(x, IsOk());
  EXPECT_THAT(x->values, ElementsAre(-3, -3, -3));
  absl::StatusOr<DenseTensor> normal = op->Normal(Matrix(1, 3, {1, 0, 0}));
  ASSERT_THAT(normal, IsOk());
  EXPECT_THAT(normal->values, ElementsAre(17, 22, 27));  // first column of A^T A
}

TEST(ClientOperatorTest, IdentityCopies) {
  v1::Operator proto;
  proto.mutable_identity()->set_dim(2);
  absl::StatusOr<ClientOperator> op = ClientOperator::Create(proto);
  ASSERT_THAT(op, IsOk());
  EXPECT_THAT(op->Apply(Matrix(1, 2, {3, -4}))->values, ElementsAre(3, -4));
  EXPECT_THAT(op->Normal(Matrix(1, 2, {3, -4}))->values, ElementsAre(3, -4));
}

// (A x)_i = sum_j k_j x_{i + j - c}, c = (len - 1) / 2 (models/operators.h), written out.
std::vector<float> ConvolveByDefinition(const std::vector<float>& x, const std::vector<double>& k,
                                        bool periodic) {
  const int64_t n = static_cast<int64_t>(x.size()), c = (static_cast<int64_t>(k.size()) - 1) / 2;
  std::vector<float> out(x.size());
  for (int64_t i = 0; i < n; ++i) {
    double sum = 0;
    for (int64_t j = 0; j < static_cast<int64_t>(k.size()); ++j) {
      const int64_t idx = i + j - c;
      if (idx >= 0 && idx < n) {
        sum += k[j] * x[idx];
      } else if (periodic) {
        sum += k[j] * x[(idx % n + n) % n];
      }
    }
    out[i] = static_cast<float>(sum);
  }
  return out;
}

TEST(ClientOperatorTest, ConvolutionFollowsTheProtoDefinition) {
  const std::vector<float> x = {1, 2, 3, 4, 5};
  // An even-length, asymmetric kernel exercises the centre convention.
  const std::vector<double> kernel = {0.5, 0.25, -1, 2};
  for (v1::Boundary boundary :
       {v1::BOUNDARY_PERIODIC, v1::BOUNDARY_ZERO, v1::BOUNDARY_UNSPECIFIED}) {
    SCOPED_TRACE(v1::Boundary_Name(boundary));
    absl::StatusOr<ClientOperator> op = ClientOperator::Create(Convolution(5, kernel, boundary));
    ASSERT_THAT(op, IsOk());
    absl::StatusOr<DenseTensor> y = op->Apply(Matrix(1, 5, x));
    ASSERT_THAT(y, IsOk());
    EXPECT_THAT(
        y->values,
        Pointwise(FloatNear(1e-6), ConvolveByDefinition(x, kernel, boundary != v1::BOUNDARY_ZERO)));
  }
  // Hand-checked periodic value: y_0 = 0.5 x_4 + 0.25 x_0 - x_1 + 2 x_2 (c = 1).
  absl::StatusOr<ClientOperator> op =
      ClientOperator::Create(Convolution(5, kernel, v1::BOUNDARY_PERIODIC));
  EXPECT_FLOAT_EQ(op->Apply(Matrix(1, 5, x))->values[0], 0.5 * 5 + 0.25 * 1 - 2 + 2 * 3);
}

TEST(ClientOperatorTest, AdjointIsTheTranspose) {
  // <A x, y> = <x, A^T y> for every operator kind.
  const std::vector<v1::Operator> ops = {
      Dense(3, 2, {1, -2, 0.5, 3, -1, 4}),
      Convolution(6, {0.2, 0.5, 0.3}, v1::BOUNDARY_PERIODIC),
      Convolution(6, {1, -1, 2, 0.5}, v1::BOUNDARY_ZERO),
  };
  for (const v1::Operator& proto : ops) {
    absl::StatusOr<ClientOperator> op = ClientOperator::Create(proto);
    ASSERT_THAT(op, IsOk());
    DenseTensor x = DenseTensor::Matrix(1, op->input_dim());
    DenseTensor y = DenseTensor::Matrix(1, op->output_dim());
    for (int64_t i = 0; i < op->input_dim(); ++i) x.values[i] = std::sin(1.0 + i);
    for (int64_t i = 0; i < op->output_dim(); ++i) y.values[i] = std::cos(2.0 * i);
    const DenseTensor ax = *op->Apply(x), aty = *op->Adjoint(y);
    double lhs = 0, rhs = 0;
    for (int64_t i = 0; i < op->output_dim(); ++i) lhs += ax.values[i] * y.values[i];
    for (int64_t i = 0; i < op->input_dim(); ++i) rhs += x.values[i] * aty.values[i];
    EXPECT_NEAR(lhs, rhs, 1e-5) << proto.ShortDebugString();
  }
}

TEST(ClientOperatorTest, RejectsBadOperatorsAndInputs) {
  EXPECT_THAT(ClientOperator::Create(v1::Operator()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no kind")));
  EXPECT_THAT(ClientOperator::Create(Dense(2, 2, {1, 2, 3})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("operator.dense.matrix")));
  EXPECT_THAT(ClientOperator::Create(Convolution(3, {1, 1, 1, 1}, v1::BOUNDARY_ZERO)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("kernel")));
  EXPECT_THAT(ClientOperator::Create(Convolution(3, {NAN}, v1::BOUNDARY_ZERO)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NaN")));
  v1::Operator zero_dim;
  zero_dim.mutable_identity()->set_dim(0);
  EXPECT_THAT(ClientOperator::Create(zero_dim), StatusIs(absl::StatusCode::kInvalidArgument));
  absl::StatusOr<ClientOperator> op = ClientOperator::Create(Dense(2, 3, {1, 2, 3, 4, 5, 6}));
  ASSERT_THAT(op, IsOk());
  EXPECT_THAT(op->Apply(Matrix(1, 2, {1, 2})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected [batch, 3]")));
  EXPECT_THAT(op->Adjoint(Matrix(1, 3, {1, 2, 3})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected [batch, 2]")));
}

}  // namespace
}  // namespace invnet::client
