#ifndef INVNET_TESTS_CLIENT_CANNED_MESSAGES_H_
#define INVNET_TESTS_CLIENT_CANNED_MESSAGES_H_

// Server answers as the client tests script them (over the gmock connection or the fake
// server): a model as ListModels / GetModel return it, a job as the training RPCs do.

#include <cstdint>
#include <string>

#include "invnet/v1/model_service.pb.h"
#include "invnet/v1/training_service.pb.h"

namespace invnet::client::testing {

// A model of `versions` versions (measurement_dim m, dim n; identity operator, preset blur64,
// log-det loss, val_mse 0.25 / v, created 2023-11-14 22:13:20 UTC + v seconds).
v1::Model MakeModel(const std::string& name, int64_t versions, int64_t m, int64_t n);
// A job in `state` at `step` of `total` steps (loss 0.5, elapsed step / 10 s; published
// version 1 when it succeeded).
v1::TrainingJob MakeJob(const std::string& id, const std::string& model, v1::JobState state,
                        int64_t step, int64_t total);

}  // namespace invnet::client::testing

#endif  // INVNET_TESTS_CLIENT_CANNED_MESSAGES_H_
