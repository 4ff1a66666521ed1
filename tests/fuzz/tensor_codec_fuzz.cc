// libFuzzer target: server/tensor_codec.h on any invnet.v1.Tensor a client can send.
//
// Input: byte 0 picks the expected rank and batch width, the rest is a binary Tensor message
// (any shape: negative, -1, huge, overflowing products; any values: NaN, Inf, too few or too
// many). Decoding must return a status, never crash; a decoded tensor must re-encode to exactly
// the message's shape and values.

#include <ATen/ATen.h>
#include <google/protobuf/stubs/logging.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "invnet/v1/tensor.pb.h"
#include "server/tensor_codec.h"

namespace invnet::server {
namespace {

void CheckRoundTrip(const v1::Tensor& proto, const at::Tensor& decoded) {
  v1::Tensor encoded;
  EncodeTensor(decoded, &encoded);
  if (encoded.shape_size() != proto.shape_size() || encoded.values_size() != proto.values_size() ||
      !std::equal(encoded.shape().begin(), encoded.shape().end(), proto.shape().begin()) ||
      (proto.values_size() > 0 && std::memcmp(encoded.values().data(), proto.values().data(),
                                              sizeof(float) * proto.values_size()) != 0)) {
    std::abort();  // decoding changed the data
  }
}

void CheckStatus(const absl::Status& status) {
  // The only codes the contract allows for a malformed tensor.
  if (status.code() != absl::StatusCode::kInvalidArgument &&
      status.code() != absl::StatusCode::kResourceExhausted) {
    std::abort();
  }
}

}  // namespace
}  // namespace invnet::server

// Protobuf logs every string field with invalid UTF-8 it parses; a fuzzer makes millions.
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace invnet::server;  // NOLINT(build/namespaces): a fuzz entry point
  if (size < 1) return 0;
  invnet::v1::Tensor proto;
  if (!proto.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
  const int rank = static_cast<int>(data[0] & 0x7) - 1;  // -1 (any rank) .. 6
  const int64_t dim = data[0] >> 4;                      // 0 .. 15
  // The server's limit and a small one, so both sides of the limit check are reached.
  const TensorLimits limits = (data[0] & 0x8) ? TensorLimits{int64_t{1} << 10} : TensorLimits();

  absl::StatusOr<at::Tensor> tensor = DecodeTensor(proto, rank, "fuzz", limits);
  if (tensor.ok()) {
    CheckRoundTrip(proto, *tensor);
  } else {
    CheckStatus(tensor.status());
  }
  absl::StatusOr<at::Tensor> batch = DecodeBatch(proto, dim, "fuzz", limits);
  if (batch.ok()) {
    if (batch->dim() != 2 || batch->size(0) < 1 || batch->size(1) != dim) std::abort();
    CheckRoundTrip(proto, *batch);
  } else {
    CheckStatus(batch.status());
  }
  return 0;
}
