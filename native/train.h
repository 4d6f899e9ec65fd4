// Training our own small models on the same LlamaModel code that serves inference: AdamW,
// optional bf16 autocast, save as a Hugging Face safetensors file, resumable state.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>

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
