// Training our own small models on the same LlamaModel code that serves inference: AdamW,
// optional bf16 autocast, save as a Hugging Face safetensors file, resumable state.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "llama.h"

namespace cascade {

struct TrainOptions {
  uint64_t seed = 0;
  bool bf16_autocast = true;  // matmuls in bf16, master weights and optimizer state in fp32
  double weight_decay = 0.1;
  double beta1 = 0.9, beta2 = 0.95;
  double grad_clip = 1.0;
};

class Trainer {
 public:
  Trainer(const ModelConfig& cfg, const TrainOptions& opts);

  // One optimizer step on tokens [B, T + 1] (inputs are the first T, targets the last T).
  // Returns the mean next-token cross-entropy before the step.
  double step(const torch::Tensor& tokens, double lr);
  // Mean cross-entropy over tokens [B, T + 1] without updating.
  double eval_loss(const torch::Tensor& tokens);
  int64_t steps_done() const { return steps_; }
  const LlamaModel& model() const { return *model_; }

  void save_weights(const std::string& path, const std::string& dtype) const;
  // Replaces the weights by those of a Hugging Face checkpoint's safetensors files (any stored
  // float dtype, converted to the fp32 masters). Every file is read and every tensor checked
  // (present, one shape as this configuration's, no tensor the configuration lacks) before any
  // weight changes; a mismatch throws std::runtime_error naming the file and the tensor. The
  // optimizer state and step count are left as they are (a fresh trainer: zero moments, step 0).
  void load_weights(const std::vector<std::string>& files);
  void save_state(const std::string& path) const;
  void load_state(const std::string& path);

 private:
  torch::Tensor loss(const torch::Tensor& tokens);

  TrainOptions opts_;
  std::shared_ptr<LlamaModel> model_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  int64_t steps_ = 0;
};

}  // namespace cascade
