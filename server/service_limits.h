#ifndef INVNET_SERVER_SERVICE_LIMITS_H_
#define INVNET_SERVER_SERVICE_LIMITS_H_

// The request limits the RPC adapters enforce (ServerOptions fills them from the flags).

#include <cstdint>

#include "server/tensor_codec.h"

namespace invnet::server {

// Limits every adapter enforces.
struct ServiceLimits {
  TensorLimits tensors;
  int64_t max_dataset_bytes = int64_t{1} << 30;
};

}  // namespace invnet::server

#endif  // INVNET_SERVER_SERVICE_LIMITS_H_
