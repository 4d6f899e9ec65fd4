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
  // loss_mask, when defined, is [B, T] (0/1): only the targets it marks count (e.g. a draft
  // trained on answers only). Returns the training objective before the step: the mean
  // next-token cross-entropy, mixed with the teacher's KL term when a teacher is set.
  double step(const torch::Tensor& tokens, double lr, const torch::Tensor& loss_mask = {});
  // Knowledge distillation: each step's objective becomes (1 - weight) * cross-entropy +
  // weight * the teacher's term at every counted position: KL(teacher || model), the teacher's
  // whole next-token distribution, or (argmax) the cross-entropy of the teacher's greedy token,
  // what a greedy draft must predict, in whatever context the data gives. The teacher must
  // have this model's vocabulary; it runs without gradients, on the kernels when it was loaded
  // for them (as the target runs at inference). nullptr clears it. eval_loss stays plain cross-entropy.
  enum class TeacherTerm { kl, argmax };
  void set_teacher(std::shared_ptr<const LlamaModel> teacher, double weight, TeacherTerm term = TeacherTerm::kl);
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
  torch::Tensor loss(const torch::Tensor& tokens, const torch::Tensor& loss_mask, bool distill);
  // forward_train under the trainer's autocast setting.
  torch::Tensor logits_of(const LlamaModel& model, const torch::Tensor& inputs) const;
  // The teacher's float32 logits [B * T, V] for inputs [B, T].
  torch::Tensor teacher_logits(const torch::Tensor& inputs) const;

  TrainOptions opts_;
  std::shared_ptr<LlamaModel> model_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::shared_ptr<const LlamaModel> teacher_;
  double teacher_weight_ = 0;
  TeacherTerm teacher_term_ = TeacherTerm::kl;
  int64_t steps_ = 0;
};

}  // namespace cascade
