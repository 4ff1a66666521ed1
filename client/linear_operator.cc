#include "client/linear_operator.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "proto/base/status_macros.h"

namespace invnet::client {
namespace {

constexpr int64_t kMaxDim = 65536;

absl::Status CheckDim(int64_t dim, const char* field) {
  if (dim < 1 || dim > kMaxDim) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", dim, " is outside [1, ", kMaxDim, "]"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ClientOperator> ClientOperator::Create(const v1::Operator& proto) {
  ClientOperator op;
  switch (proto.kind_case()) {
    case v1::Operator::kIdentity:
      INVNET_RETURN_IF_ERROR(CheckDim(proto.identity().dim(), "operator.identity.dim"));
      op.kind_ = Kind::kIdentity;
      op.m_ = op.n_ = proto.identity().dim();
      return op;
    case v1::Operator::kDense: {
      INVNET_ASSIGN_OR_RETURN(DenseTensor matrix, DenseTensor::FromProto(proto.dense().matrix(),
                                                                         "operator.dense.matrix"));
      if (!matrix.is_matrix() || matrix.rows() < 1 || matrix.cols() < 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("operator.dense.matrix: expected [m >= 1, n >= 1], got shape ",
                         ShapeToString(matrix.shape)));
      }
      op.kind_ = Kind::kDense;
      op.m_ = matrix.rows();
      op.n_ = matrix.cols();
      op.matrix_.assign(matrix.values.begin(), matrix.values.end());
      return op;
    }
    case v1::Operator::kConvolution: {
      const v1::ConvolutionOperator& conv = proto.convolution();
      INVNET_RETURN_IF_ERROR(CheckDim(conv.dim(), "operator.convolution.dim"));
      if (conv.kernel().empty() || conv.kernel_size() > conv.dim()) {
        return absl::InvalidArgumentError(
            absl::StrCat("operator.convolution.kernel: length ", conv.kernel_size(),
                         " must lie in [1, operator.convolution.dim = ", conv.dim(), "]"));
      }
      for (int i = 0; i < conv.kernel_size(); ++i) {
        if (!std::isfinite(conv.kernel(i))) {
          return absl::InvalidArgumentError(
              absl::StrCat("operator.convolution.kernel: tap ", i, " is NaN or Inf"));
        }
      }
      op.kind_ = Kind::kConvolution;
      op.m_ = op.n_ = conv.dim();
      op.kernel_.assign(conv.kernel().begin(), conv.kernel().end());
      op.periodic_ = conv.boundary() != v1::BOUNDARY_ZERO;
      return op;
    }
    case v1::Operator::KIND_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("operator: no kind (identity, dense or convolution) is set");
}

void ClientOperator::ApplyRow(const float* in, bool adjoint, float* out) const {
  const int64_t out_dim = adjoint ? n_ : m_;
  switch (kind_) {
    case Kind::kIdentity:
      for (int64_t i = 0; i < out_dim; ++i) out[i] = in[i];
      return;
    case Kind::kDense:
      for (int64_t i = 0; i < out_dim; ++i) {
        double sum = 0;
        if (adjoint) {
          for (int64_t k = 0; k < m_; ++k) sum += matrix_[k * n_ + i] * in[k];
        } else {
          for (int64_t k = 0; k < n_; ++k) sum += matrix_[i * n_ + k] * in[k];
        }
        out[i] = static_cast<float>(sum);
      }
      return;
    case Kind::kConvolution: {
      const int64_t len = static_cast<int64_t>(kernel_.size());
      const int64_t c = (len - 1) / 2;
      for (int64_t i = 0; i < n_; ++i) {
        double sum = 0;
        for (int64_t j = 0; j < len; ++j) {
          // A: x_{i + j - c}; A^T: y_{i - j + c}.
          int64_t k = adjoint ? i - j + c : i + j - c;
          if (k < 0 || k >= n_) {
            if (!periodic_) continue;
            k = ((k % n_) + n_) % n_;
          }
          sum += kernel_[j] * in[k];
        }
        out[i] = static_cast<float>(sum);
      }
      return;
    }
  }
}

absl::StatusOr<DenseTensor> ClientOperator::Apply(const DenseTensor& x) const {
  INVNET_RETURN_IF_ERROR(x.ValidateMatrix("x"));
  if (x.cols() != n_) {
    return absl::InvalidArgumentError(
        absl::StrCat("x: expected [batch, ", n_, "], got shape ", ShapeToString(x.shape)));
  }
  DenseTensor out = DenseTensor::Matrix(x.rows(), m_);
  for (int64_t r = 0; r < x.rows(); ++r) {
    ApplyRow(x.values.data() + r * n_, /*adjoint=*/false, out.values.data() + r * m_);
  }
  return out;
}

absl::StatusOr<DenseTensor> ClientOperator::Adjoint(const DenseTensor& y) const {
  INVNET_RETURN_IF_ERROR(y.ValidateMatrix("y"));
  if (y.cols() != m_) {
    return absl::InvalidArgumentError(
        absl::StrCat("y: expected [batch, ", m_, "], got shape ", ShapeToString(y.shape)));
  }
  DenseTensor out = DenseTensor::Matrix(y.rows(), n_);
  for (int64_t r = 0; r < y.rows(); ++r) {
    ApplyRow(y.values.data() + r * m_, /*adjoint=*/true, out.values.data() + r * n_);
  }
  return out;
}

absl::StatusOr<DenseTensor> ClientOperator::Normal(const DenseTensor& x) const {
  INVNET_ASSIGN_OR_RETURN(DenseTensor ax, Apply(x));
  return Adjoint(ax);
}

}  // namespace invnet::client
