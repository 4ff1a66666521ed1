// libFuzzer target: server/dataset_assembly.h, the UploadDataset stream without gRPC.
//
// Input: a sequence of length-delimited UploadDatasetRequest messages (varint size, message),
// as the stream delivers them: the first must be the header, the rest chunks of any shape and
// values. The assembler must return a status, never crash, and a finished dataset must hold
// exactly num_samples x dim finite values.

#include <ATen/ATen.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/util/delimited_message_util.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "invnet/v1/dataset_service.pb.h"
#include "server/dataset_assembly.h"

namespace {

// Small limits keep every execution cheap; the server's checks are the same code.
constexpr int64_t kMaxDatasetBytes = int64_t{1} << 16;
const invnet::server::TensorLimits kTensorLimits{int64_t{1} << 12};

}  // namespace

// Protobuf logs every string field with invalid UTF-8 it parses; a fuzzer makes millions.
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  google::protobuf::io::ArrayInputStream input(data, static_cast<int>(size));
  invnet::v1::UploadDatasetRequest message;
  bool clean_eof = false;
  if (!google::protobuf::util::ParseDelimitedFromZeroCopyStream(&message, &input, &clean_eof) ||
      !message.has_header()) {
    return 0;
  }
  const invnet::v1::DatasetHeader header = message.header();
  absl::StatusOr<invnet::server::DatasetAssembler> assembler =
      invnet::server::DatasetAssembler::Create(header, kMaxDatasetBytes, kTensorLimits);
  if (!assembler.ok()) {
    if (assembler.status().code() != absl::StatusCode::kInvalidArgument &&
        assembler.status().code() != absl::StatusCode::kResourceExhausted) {
      std::abort();
    }
    return 0;
  }
  while (google::protobuf::util::ParseDelimitedFromZeroCopyStream(&message, &input, &clean_eof)) {
    absl::Status status = assembler->Add(message);
    if (!status.ok()) {
      if (status.code() != absl::StatusCode::kInvalidArgument &&
          status.code() != absl::StatusCode::kResourceExhausted) {
        std::abort();
      }
      return 0;  // the handler ends the upload at the first error
    }
  }
  absl::StatusOr<at::Tensor> samples = assembler->Finish();
  if (samples.ok()) {
    if (samples->dim() != 2 || samples->size(0) != header.num_samples() ||
        samples->size(1) != header.dim() || !at::isfinite(*samples).all().item<bool>()) {
      std::abort();
    }
  } else if (samples.status().code() != absl::StatusCode::kInvalidArgument) {
    std::abort();
  }
  return 0;
}
