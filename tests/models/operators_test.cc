#include "models/operators.h"

#include <cmath>

#include <ATen/ATen.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace invnet {
namespace {

using ::invnet::testing::StatusIs;
using ::testing::HasSubstr;

std::vector<OperatorSpec> AllKindsOfOperators() {
  std::vector<OperatorSpec> specs;
  OperatorSpec identity;
  identity.kind = OperatorKind::kIdentity;
  identity.dim = 7;
  specs.push_back(identity);
  OperatorSpec dense;
  dense.kind = OperatorKind::kDense;
  dense.matrix = at::randn({5, 9}, at::kDouble);
  specs.push_back(dense);
  OperatorSpec tall = dense;
  tall.matrix = at::randn({12, 4}, at::kDouble);
  specs.push_back(tall);
  for (Boundary boundary : {Boundary::kPeriodic, Boundary::kZero}) {
    for (std::vector<double> kernel :
         {std::vector<double>{0.25, 0.5, 0.25}, std::vector<double>{0.1, 0.7, 0.15, 0.05},
          std::vector<double>{1.0}, GaussianBlurKernel(2.0, 11)}) {
      OperatorSpec conv;
      conv.kind = OperatorKind::kConvolution;
      conv.dim = 16;
      conv.kernel = kernel;
      conv.boundary = boundary;
      specs.push_back(conv);
    }
  }
  return specs;
}

TEST(OperatorsTest, AdjointnessInFloat32) {
  for (const OperatorSpec& spec : AllKindsOfOperators()) {
    ASSERT_OK_AND_ASSIGN(auto op, LinearOperator::Create(spec));
    at::Tensor x = at::randn({10, op->input_dim()});
    at::Tensor y = at::randn({10, op->output_dim()});
    at::Tensor ax = op->Apply(x);
    at::Tensor aty = op->Adjoint(y);
    EXPECT_EQ(ax.scalar_type(), at::kFloat);
    at::Tensor lhs = (ax * y).sum(1).to(at::kDouble);
    at::Tensor rhs = (x * aty).sum(1).to(at::kDouble);
    at::Tensor scale = ax.norm(2, 1).to(at::kDouble) * y.norm(2, 1).to(at::kDouble);
    EXPECT_LE(((lhs - rhs).abs() / scale).max().item<double>(), 1e-5)
        << OperatorKindName(spec.kind);
  }
}

TEST(OperatorsTest, MatrixAgreesWithApplyAndAdjoint) {
  for (const OperatorSpec& spec : AllKindsOfOperators()) {
    ASSERT_OK_AND_ASSIGN(auto op, LinearOperator::Create(spec));
    at::Tensor a = op->Matrix();
    EXPECT_EQ(a.sizes(), (std::vector<int64_t>{op->output_dim(), op->input_dim()}));
    at::Tensor x = at::randn({3, op->input_dim()}, at::kDouble);
    at::Tensor y = at::randn({3, op->output_dim()}, at::kDouble);
    EXPECT_TRUE(at::allclose(op->Apply(x), at::matmul(x, a.t())));
    EXPECT_TRUE(at::allclose(op->Adjoint(y), at::matmul(y, a)));
    EXPECT_TRUE(at::allclose(op->Normal(x), at::matmul(x, at::matmul(a.t(), a))));
  }
}

TEST(OperatorsTest, ConvolutionFollowsItsDefinition) {
  OperatorSpec spec;
  spec.kind = OperatorKind::kConvolution;
  spec.dim = 6;
  spec.kernel = {1.0, 2.0, 3.0};  // centre tap 2.0 at offset 0
  for (Boundary boundary : {Boundary::kPeriodic, Boundary::kZero}) {
    spec.boundary = boundary;
    ASSERT_OK_AND_ASSIGN(auto op, LinearOperator::Create(spec));
    at::Tensor x = at::arange(6, at::kDouble).unsqueeze(0) + 1;  // 1..6
    at::Tensor y = op->Apply(x)[0];
    // (A x)_0 = k_0 x_{-1} + k_1 x_0 + k_2 x_1
    double left = boundary == Boundary::kPeriodic ? 6.0 : 0.0;
    EXPECT_DOUBLE_EQ(y[0].item<double>(), 1.0 * left + 2.0 * 1 + 3.0 * 2);
    EXPECT_DOUBLE_EQ(y[2].item<double>(), 1.0 * 2 + 2.0 * 3 + 3.0 * 4);
    double right = boundary == Boundary::kPeriodic ? 1.0 : 0.0;
    EXPECT_DOUBLE_EQ(y[5].item<double>(), 1.0 * 5 + 2.0 * 6 + 3.0 * right);
  }
}

TEST(OperatorsTest, NormEstimates) {
  for (const OperatorSpec& spec : AllKindsOfOperators()) {
    ASSERT_OK_AND_ASSIGN(auto op, LinearOperator::Create(spec));
    double exact = at::linalg_svdvals(op->Matrix())[0].item<double>();
    EXPECT_NEAR(op->NormEstimate(), exact, 1e-10 * exact);
  }
  // A periodic blur with a positive kernel summing to one has norm exactly one.
  OperatorSpec blur;
  blur.kind = OperatorKind::kConvolution;
  blur.dim = 64;
  blur.kernel = GaussianBlurKernel(2.0, 64);
  ASSERT_OK_AND_ASSIGN(auto op, LinearOperator::Create(blur));
  EXPECT_NEAR(op->NormEstimate(), 1.0, 1e-12);
  // Large operators fall back to power iteration.
  OperatorSpec big;
  big.kind = OperatorKind::kConvolution;
  big.dim = 4096;
  big.kernel = {0.2, 0.5, 0.3};
  ASSERT_OK_AND_ASSIGN(auto big_op, LinearOperator::Create(big));
  EXPECT_NEAR(big_op->NormEstimate(), 1.0, 1e-3);
}

TEST(OperatorsTest, BlurKernelIsNormalisedAndSymmetric) {
  std::vector<double> k = GaussianBlurKernel(2.0, 17);
  double sum = 0;
  for (double v : k) sum += v;
  EXPECT_NEAR(sum, 1.0, 1e-15);
  EXPECT_EQ(k.size(), 17u);
  for (int i = 0; i < 8; ++i) EXPECT_DOUBLE_EQ(k[i], k[16 - i]);
  EXPECT_GT(k[8], k[7]);
}

TEST(OperatorsTest, InvalidSpecsAreRejectedByField) {
  OperatorSpec dense;
  dense.kind = OperatorKind::kDense;
  EXPECT_THAT(LinearOperator::Create(dense),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("operator.matrix")));
  dense.matrix = at::ones({3, 3}, at::kDouble);
  dense.matrix[1][1] = INFINITY;
  EXPECT_THAT(LinearOperator::Create(dense),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NaN or Inf")));
  dense.matrix = at::ones({3}, at::kDouble);
  EXPECT_THAT(LinearOperator::Create(dense),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rank-2")));
  OperatorSpec conv;
  conv.kind = OperatorKind::kConvolution;
  conv.dim = 4;
  conv.kernel = {1, 1, 1, 1, 1};
  EXPECT_THAT(LinearOperator::Create(conv),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("operator.kernel")));
  conv.kernel = {};
  EXPECT_THAT(LinearOperator::Create(conv), StatusIs(absl::StatusCode::kInvalidArgument));
  conv.kernel = {NAN};
  EXPECT_THAT(LinearOperator::Create(conv),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tap 0")));
  OperatorSpec identity;
  identity.dim = -1;
  EXPECT_THAT(LinearOperator::Create(identity),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("operator.dim")));
  EXPECT_THAT(ParseOperatorKind("fft"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseBoundary("mirror"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(OperatorsTest, CheckedApplyValidatesTheBatch) {
  OperatorSpec dense;
  dense.kind = OperatorKind::kDense;
  dense.matrix = at::randn({2, 3}, at::kDouble);
  ASSERT_OK_AND_ASSIGN(auto op, LinearOperator::Create(dense));
  EXPECT_THAT(op->ApplyChecked(at::randn({4, 2}), "x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("x:")));
  EXPECT_THAT(op->AdjointChecked(at::randn({4, 3}), "y"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("y:")));
  ASSERT_OK_AND_ASSIGN(at::Tensor aty, op->AdjointChecked(at::randn({4, 2}), "y"));
  EXPECT_EQ(aty.sizes(), (std::vector<int64_t>{4, 3}));
}

}  // namespace
}  // namespace invnet
