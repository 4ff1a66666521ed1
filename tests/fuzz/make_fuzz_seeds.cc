// Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/): a few valid inputs
// and a few of the classic bad ones for each, so a short CI run starts from inputs that reach
// deep into the code. Usage: make_fuzz_seeds OUTPUT_DIR (the corpus is committed; rerun it only
// when a format changes).

#include <ATen/ATen.h>
#include <google/protobuf/util/delimited_message_util.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "invnet/v1/dataset_service.pb.h"
#include "invnet/v1/tensor.pb.h"
#include "invnet/v1/training_service.pb.h"
#include "models/checkpoint.h"
#include "models/iresnet.h"
#include "models/presets.h"

namespace invnet {
namespace {

namespace fs = std::filesystem;

void Write(const fs::path& dir, const std::string& name, const std::string& bytes) {
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << bytes;
}

v1::Tensor MakeTensor(std::vector<int64_t> shape, std::vector<float> values) {
  v1::Tensor t;
  for (int64_t d : shape) t.add_shape(d);
  for (float v : values) t.add_values(v);
  return t;
}

// Tensor seeds: byte 0 selects rank and width (see tensor_codec_fuzz.cc).
void TensorSeeds(const fs::path& dir) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  struct Seed {
    const char* name;
    uint8_t selector;
    v1::Tensor tensor;
  };
  const std::vector<Seed> seeds = {
      {"batch_3x2", 0x23, MakeTensor({3, 2}, {1, 2, 3, 4, 5, 6})},
      {"vector", 0x00, MakeTensor({4}, {1, 2, 3, 4})},
      {"empty_batch", 0x23, MakeTensor({0, 2}, {})},
      {"negative_dim", 0x23, MakeTensor({-1, 2}, {1, 2})},
      {"overflow", 0x20, MakeTensor({int64_t{1} << 62, int64_t{1} << 62}, {1})},
      {"count_mismatch", 0x23, MakeTensor({2, 2}, {1, 2, 3})},
      {"nan_inf", 0x23, MakeTensor({1, 2}, {nan, inf})},
      {"rank3", 0x24, MakeTensor({1, 2, 2}, {1, 2, 3, 4})},
  };
  for (const Seed& s : seeds) {
    Write(dir, s.name,
          std::string(1, static_cast<char>(s.selector)) + s.tensor.SerializeAsString());
  }
}

void SpecSeeds(const fs::path& dir) {
  v1::TrainRequest preset;
  preset.set_model_name("demo");
  preset.set_preset("bimodal2d");
  preset.mutable_training()->set_loss(v1::LOSS_DIVERGENCE);
  preset.mutable_training()->set_steps(10);
  Write(dir, "preset", preset.SerializeAsString());

  v1::TrainRequest dense;
  dense.set_model_name("dense");
  v1::Problem* p = dense.mutable_problem();
  *p->mutable_operator_()->mutable_dense()->mutable_matrix() =
      MakeTensor({3, 2}, {1, 0, 0, 1, 1, 1});
  p->set_noise_level(0.1);
  p->mutable_prior()->add_weights(0.5);
  p->mutable_prior()->add_weights(0.5);
  *p->mutable_prior()->mutable_means() = MakeTensor({2, 2}, {-1, 0, 1, 0});
  *p->mutable_prior()->mutable_covariances() = MakeTensor({2, 2, 2}, {1, 0, 0, 1, 0.5, 0, 0, 0.5});
  dense.mutable_architecture()->set_num_blocks(2);
  dense.mutable_architecture()->set_hidden_width(8);
  dense.mutable_architecture()->set_activation(v1::ACTIVATION_LIPSWISH);
  dense.mutable_training()->set_loss(v1::LOSS_LOG_DET);
  dense.mutable_training()->set_batch_size(16);
  Write(dir, "dense_prior", dense.SerializeAsString());

  v1::TrainRequest blur;
  blur.set_model_name("blur");
  v1::ConvolutionOperator* conv =
      blur.mutable_problem()->mutable_operator_()->mutable_convolution();
  conv->set_dim(8);
  for (double tap : {0.25, 0.5, 0.25}) conv->add_kernel(tap);
  conv->set_boundary(v1::BOUNDARY_ZERO);
  blur.mutable_problem()->set_dataset("signals");
  blur.mutable_training()->set_loss(v1::LOSS_RECONSTRUCTION);
  blur.mutable_training()->set_target_space(v1::TARGET_SPACE_MEASUREMENT);
  Write(dir, "convolution_dataset", blur.SerializeAsString());

  v1::TrainRequest identity;
  identity.set_model_name("id");
  identity.mutable_problem()->mutable_operator_()->mutable_identity()->set_dim(2);
  identity.mutable_problem()->mutable_prior()->add_weights(1.0);
  *identity.mutable_problem()->mutable_prior()->mutable_means() = MakeTensor({1, 2}, {0, 0});
  *identity.mutable_problem()->mutable_prior()->mutable_covariances() =
      MakeTensor({1, 2, 2}, {1, 0.9f, 0.9f, 1});
  identity.mutable_training()->set_loss(v1::LOSS_APPROXIMATION);
  Write(dir, "identity_prior", identity.SerializeAsString());
}

void CheckpointSeeds(const fs::path& dir) {
  for (const auto& [name, dtype] :
       {std::pair{"small_f32", at::kFloat}, std::pair{"small_f64", at::kDouble}}) {
    IResNetConfig config;
    config.dim = 2;
    config.num_blocks = 2;
    config.hidden_width = 4;
    config.layers_per_block = 2;
    absl::StatusOr<std::unique_ptr<IResNet>> net = IResNet::Create(config, dtype);
    absl::StatusOr<Preset> preset = GetPreset("bimodal2d", LossKind::kDivergence);
    if (!net.ok() || !preset.ok()) {
      std::fprintf(stderr, "make_fuzz_seeds: cannot build the seed network\n");
      std::exit(1);
    }
    (*net)->SetTraining(false);
    Checkpoint ck = MakeCheckpoint(**net, preset->problem, preset->training, {{"val_mse", 0.1}},
                                   {{"loss", {1.0, 0.5}}});
    ck.labels["job_id"] = "job-seed";
    // Byte 0 even: the fuzz target fixes the checksum (see checkpoint_fuzz.cc).
    Write(dir, name, std::string(1, '\0') + SerializeCheckpoint(ck));
  }
}

std::string Delimited(const std::vector<v1::UploadDatasetRequest>& messages) {
  std::ostringstream out;
  for (const auto& m : messages) google::protobuf::util::SerializeDelimitedToOstream(m, &out);
  return out.str();
}

void DatasetSeeds(const fs::path& dir) {
  v1::UploadDatasetRequest header;
  header.mutable_header()->set_name("signals");
  header.mutable_header()->set_dim(2);
  header.mutable_header()->set_num_samples(4);
  v1::UploadDatasetRequest chunk;
  *chunk.mutable_chunk() = MakeTensor({2, 2}, {1, 2, 3, 4});
  v1::UploadDatasetRequest bad = chunk;
  *bad.mutable_chunk() = MakeTensor({1, 3}, {1, 2, 3});
  Write(dir, "complete", Delimited({header, chunk, chunk}));
  Write(dir, "too_few", Delimited({header, chunk}));
  Write(dir, "too_many", Delimited({header, chunk, chunk, chunk}));
  Write(dir, "bad_chunk", Delimited({header, bad}));
  Write(dir, "header_twice", Delimited({header, header}));
}

}  // namespace
}  // namespace invnet

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_fuzz_seeds OUTPUT_DIR\n");
    return 2;
  }
  const std::filesystem::path out = argv[1];
  invnet::TensorSeeds(out / "tensor_codec");
  invnet::SpecSeeds(out / "spec_codec");
  invnet::CheckpointSeeds(out / "checkpoint");
  invnet::DatasetSeeds(out / "dataset_assembly");
  return 0;
}
