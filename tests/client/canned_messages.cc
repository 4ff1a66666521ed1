#include "tests/client/canned_messages.h"

namespace invnet::client::testing {

v1::Model MakeModel(const std::string& name, int64_t versions, int64_t m, int64_t n) {
  v1::Model model;
  model.set_name(name);
  for (int64_t v = 1; v <= versions; ++v) {
    v1::ModelVersion* version = model.add_versions();
    version->set_name(name);
    version->set_version(v);
    version->mutable_created()->set_seconds(1700000000 + v);  // 2023-11-14 22:13:20 UTC + v
    version->set_preset("blur64");
    version->mutable_problem()->mutable_operator_()->mutable_identity()->set_dim(n);
    version->mutable_problem()->set_noise_level(0.1);
    version->mutable_architecture()->set_dim(n);
    version->mutable_architecture()->set_num_blocks(4);
    version->mutable_architecture()->set_hidden_width(64);
    version->mutable_architecture()->set_layers_per_block(3);
    version->mutable_architecture()->set_activation(v1::ACTIVATION_ELU);
    version->mutable_architecture()->set_lipschitz_coeff(0.9);
    version->mutable_architecture()->set_seed(0);
    version->mutable_training()->set_loss(v1::LOSS_LOG_DET);
    version->set_measurement_dim(m);
    (*version->mutable_metrics())["val_mse"] = 0.25 / static_cast<double>(v);
    version->set_size_bytes(2048);
  }
  return model;
}

v1::TrainingJob MakeJob(const std::string& id, const std::string& model, v1::JobState state,
                        int64_t step, int64_t total) {
  v1::TrainingJob job;
  job.set_job_id(id);
  job.set_model_name(model);
  job.set_state(state);
  job.set_step(step);
  job.set_total_steps(total);
  job.set_loss(0.5);
  job.set_learning_rate(1e-3);
  job.set_elapsed_seconds(static_cast<double>(step) / 10.0);
  if (state == v1::JOB_STATE_SUCCEEDED) job.set_published_version(1);
  return job;
}

}  // namespace invnet::client::testing
