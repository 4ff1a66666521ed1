#ifndef INVNET_TESTS_TESTING_TRAIN_REQUESTS_H_
#define INVNET_TESTS_TESTING_TRAIN_REQUESTS_H_

// Training requests for tests that need a model quickly (header-only: the tests that use it
// already link the protos through invnet::service or invnet::client).

#include <cstdint>
#include <string>

#include "invnet/v1/training_service.pb.h"

namespace invnet::testing {

// bimodal2d with a small network (2 blocks of `hidden_width`), batch 64, no validation while
// training: a few hundred steps take well under a second.
inline v1::TrainRequest SmallTrainRequest(const std::string& name,
                                          v1::Loss loss = v1::LOSS_DIVERGENCE, int64_t steps = 20,
                                          int64_t hidden_width = 16) {
  v1::TrainRequest request;
  request.set_model_name(name);
  request.set_preset("bimodal2d");
  request.mutable_training()->set_loss(loss);
  request.mutable_training()->set_steps(steps);
  request.mutable_training()->set_batch_size(64);
  request.mutable_training()->set_validation_every(0);
  request.mutable_training()->set_validation_size(100);
  request.mutable_architecture()->set_num_blocks(2);
  request.mutable_architecture()->set_hidden_width(hidden_width);
  return request;
}

}  // namespace invnet::testing

#endif  // INVNET_TESTS_TESTING_TRAIN_REQUESTS_H_
