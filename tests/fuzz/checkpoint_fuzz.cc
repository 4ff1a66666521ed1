// libFuzzer target: models/checkpoint.h on a damaged or hostile checkpoint file's bytes.
//
// The last four bytes of a checkpoint are a CRC-32 of the rest, so nearly every mutation would
// stop at the checksum. Unless the input's first byte is odd, the target rewrites the trailer to
// the correct checksum first: mutations then reach the archive parser's length fields, the
// tensors' shapes and the checkpoint's validation. Parsing must return a status, never crash; a
// parsed checkpoint is restored (rebuilt, re-certified) and must survive a serialisation round
// trip.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "models/archive.h"
#include "models/checkpoint.h"

namespace {

void Expect(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "broken: %s\n", what);
  std::abort();
}

// The architectures a fuzzed checkpoint may ask RestoreNetwork to build. A valid config may
// describe a network of gigabytes (4096-wide, 64 blocks); the checkpoint then fails only after
// the allocation, which in this harness would be an out-of-memory report, not a bug.
bool SmallEnough(const invnet::IResNetConfig& a) {
  return a.dim <= 64 && a.hidden_width <= 256 && a.num_blocks <= 16;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  if ((data[0] & 1) == 0 && bytes.size() >= 4) {
    const uint32_t crc = invnet::Crc32(absl::string_view(bytes).substr(0, bytes.size() - 4));
    for (int i = 0; i < 4; ++i) bytes[bytes.size() - 4 + i] = static_cast<char>(crc >> (8 * i));
  }
  absl::StatusOr<invnet::Checkpoint> checkpoint = invnet::ParseCheckpoint(bytes);
  if (!checkpoint.ok()) {
    const absl::StatusCode code = checkpoint.status().code();
    Expect(code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kDataLoss,
           "ParseCheckpoint: only INVALID_ARGUMENT or DATA_LOSS for bad bytes");
    return 0;
  }
  // What was parsed serialises and parses again.
  Expect(invnet::ParseCheckpoint(invnet::SerializeCheckpoint(*checkpoint)).ok(),
         "a parsed checkpoint re-serialises");
  if (SmallEnough(checkpoint->architecture)) {
    absl::StatusOr<std::unique_ptr<invnet::IResNet>> network = invnet::RestoreNetwork(*checkpoint);
    if (!network.ok()) {
      const absl::StatusCode code = network.status().code();
      Expect(code == absl::StatusCode::kInvalidArgument ||
                 code == absl::StatusCode::kFailedPrecondition,
             "RestoreNetwork: only INVALID_ARGUMENT or FAILED_PRECONDITION");
    }
  }
  return 0;
}
