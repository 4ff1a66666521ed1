#ifndef INVNET_MODELS_TORCH_STATUS_H_
#define INVNET_MODELS_TORCH_STATUS_H_

// LibTorch reports failures by throwing c10::Error. invnet's APIs return absl::Status, so every
// public entry point of invnet::models validates its inputs first and runs the LibTorch work
// inside GuardTorch: whatever still escapes (a broken invariant, an allocation failure) becomes
// an INTERNAL status naming the operation instead of an exception crossing the API.

#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace invnet {

// Runs `body`; converts a thrown c10::Error or std::exception into INTERNAL ("<context>: <what>").
// std::bad_alloc becomes RESOURCE_EXHAUSTED.
absl::Status GuardTorch(absl::string_view context, absl::FunctionRef<absl::Status()> body);

template <typename T>
absl::StatusOr<T> GuardTorchOr(absl::string_view context,
                               absl::FunctionRef<absl::StatusOr<T>()> body) {
  absl::StatusOr<T> result = absl::InternalError("GuardTorchOr: body did not run");
  absl::Status status = GuardTorch(context, [&]() -> absl::Status {
    result = body();
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return result;
}

}  // namespace invnet

#endif  // INVNET_MODELS_TORCH_STATUS_H_
