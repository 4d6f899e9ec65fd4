#include "train.h"

#include <ATen/autocast_mode.h>

#include "kv_cache.h"
#include "safetensors.h"

#include <map>
#include <set>

#ifdef __GLIBC__
#include <malloc.h>
#endif

namespace cascade {

Trainer::Trainer(const ModelConfig& cfg, const TrainOptions& opts) : opts_(opts) {
#ifdef __GLIBC__
  // A training step allocates and frees tens of MB of activations and logits. glibc serves
  // blocks that large with fresh mmaps and unmaps them on free, so every step page-faulted all
  // of its memory in again: measured, the faults took 26% of a distillation step and training
  // ran 3-5x slower than with this (small draft: 3.6k -> 17k tokens/s). Keep them in the heap.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
#endif
  model_ = LlamaModel::init_random(cfg, opts.seed, torch::kFloat32, torch::kCPU);
  std::vector<torch::Tensor> decay, no_decay;
  for (auto& p : model_->parameters()) {
    p.requires_grad_(true);
    // Norm gains and biases are not decayed (1-D tensors), as is usual for transformers.
    (p.dim() >= 2 ? decay : no_decay).push_back(p);
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  auto with_decay = std::make_unique<torch::optim::AdamWOptions>(1e-3);
  with_decay->betas({opts.beta1, opts.beta2}).weight_decay(opts.weight_decay);
  auto without_decay = std::make_unique<torch::optim::AdamWOptions>(1e-3);
  without_decay->betas({opts.beta1, opts.beta2}).weight_decay(0);
  groups.emplace_back(decay, std::move(with_decay));
  groups.emplace_back(no_decay, std::move(without_decay));
  optimizer_ = std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(1e-3));
}

torch::Tensor Trainer::logits_of(const LlamaModel& model, const torch::Tensor& inputs) const {
  if (!opts_.bf16_autocast) return model.forward_train(inputs);
  at::autocast::set_cpu_enabled(true);
  at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  torch::Tensor logits;
  try {
    logits = model.forward_train(inputs);
  } catch (...) {
    at::autocast::set_cpu_enabled(false);
    throw;
  }
  at::autocast::set_cpu_enabled(false);
  at::autocast::clear_cache();
  return logits;
}

torch::Tensor Trainer::loss(const torch::Tensor& tokens, const torch::Tensor& loss_mask, bool distill) {
  const int64_t T = tokens.size(1) - 1;
  auto inputs = tokens.narrow(1, 0, T), targets = tokens.narrow(1, 1, T);
  auto logits = logits_of(*model_, inputs);
  const int64_t V = logits.size(-1);
  auto log_probs = torch::log_softmax(logits.reshape({-1, V}).to(torch::kFloat32), -1);
  auto per_position = -log_probs.gather(1, targets.reshape({-1, 1})).squeeze(1);  // [B*T]
  if (distill && teacher_) {
    torch::Tensor teacher_log_probs;
    {
      torch::NoGradGuard no_grad;
      teacher_log_probs = torch::log_softmax(teacher_logits(inputs).reshape({-1, V}), -1);
    }
    torch::Tensor term;
    if (teacher_term_ == TeacherTerm::kl) {
      term = (teacher_log_probs.exp() * (teacher_log_probs - log_probs)).sum(-1);
    } else {
      // The first maximal index, as greedy decoding picks (ties are vanishingly rare in fp32).
      term = -log_probs.gather(1, teacher_log_probs.argmax(-1, true)).squeeze(1);
    }
    per_position = (1 - teacher_weight_) * per_position + teacher_weight_ * term;
  }
  if (!loss_mask.defined()) return per_position.mean();
  auto mask = loss_mask.reshape({-1}).to(torch::kFloat32);
  return (per_position * mask).sum() / mask.sum().clamp_min(1);
}

torch::Tensor Trainer::teacher_logits(const torch::Tensor& inputs) const {
  if (!teacher_->uses_kernels()) return logits_of(*teacher_, inputs).to(torch::kFloat32);
  // On the kernels: every row a sequence of its own, all in one packed pass, as inference
  // computes the target's logits (bf16 weights, fp32 activations).
  const int64_t B = inputs.size(0), T = inputs.size(1);
  if (T > teacher_->config().max_position_embeddings)
    throw std::invalid_argument("teacher: " + std::to_string(T) + " positions exceed its max_position_embeddings");
  auto [cos, sin] = teacher_->rope_tables(T);
  std::vector<std::unique_ptr<KVCache>> caches;
  std::vector<KVCache*> ptrs;
  for (int64_t b = 0; b < B; ++b) {
    caches.push_back(std::make_unique<KVCache>(teacher_->config(), cos, sin, T, teacher_->cache_dtype(),
                                               teacher_->device(), teacher_->cache_pool()));
    ptrs.push_back(caches.back().get());
  }
  return teacher_->forward_packed(inputs.reshape({-1}), ptrs, std::vector<int64_t>(B, T), true);
}

void Trainer::set_teacher(std::shared_ptr<const LlamaModel> teacher, double weight, TeacherTerm term) {
  if (teacher) {
    if (teacher->config().vocab_size != model_->config().vocab_size)
      throw std::invalid_argument("setTeacher: the teacher's vocabulary (" + std::to_string(teacher->config().vocab_size) +
                                  " tokens) differs from this model's (" + std::to_string(model_->config().vocab_size) + ")");
    if (!(weight >= 0 && weight <= 1)) throw std::invalid_argument("setTeacher: weight must be in [0, 1]");
  }
  teacher_ = std::move(teacher);
  teacher_weight_ = teacher_ ? weight : 0;
  teacher_term_ = term;
}

double Trainer::step(const torch::Tensor& tokens, double lr, const torch::Tensor& loss_mask) {
  for (auto& group : optimizer_->param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
  optimizer_->zero_grad();
  auto l = loss(tokens, loss_mask, true);
  l.backward();
  if (opts_.grad_clip > 0) torch::nn::utils::clip_grad_norm_(model_->parameters(), opts_.grad_clip);
  optimizer_->step();
  ++steps_;
  return l.item<double>();
}

double Trainer::eval_loss(const torch::Tensor& tokens) {
  torch::NoGradGuard no_grad;
  return loss(tokens, {}, false).item<double>();
}

void Trainer::save_weights(const std::string& path, const std::string& dtype) const {
  write_safetensors(path, model_->named_tensors(), dtype);
}

namespace {
std::string shape_string(at::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}
}  // namespace

void Trainer::load_weights(const std::vector<std::string>& paths) {
  if (paths.empty()) throw std::invalid_argument("loadWeights: no safetensors files given");
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  std::map<std::string, const SafetensorsFile*> where;
  for (const auto& path : paths) {
    files.push_back(std::make_unique<SafetensorsFile>(path));  // throws naming the file
    for (const auto& entry : files.back()->tensors()) {
      auto [it, fresh] = where.emplace(entry.first, files.back().get());
      if (!fresh) throw std::runtime_error(path + ": tensor \"" + entry.first + "\" also stored in " + it->second->path());
    }
  }
  const std::string all = files.size() > 1 ? files.front()->path() + " (and " + std::to_string(files.size() - 1) + " other file(s))"
                                           : files.front()->path();
  auto named = model_->named_tensors();
  std::set<std::string> expected;
  std::vector<torch::Tensor> loaded;
  for (const auto& [name, param] : named) {
    expected.insert(name);
    auto it = where.find(name);
    if (it == where.end()) throw std::runtime_error(all + ": missing tensor \"" + name + "\"");
    const auto& entry = it->second->tensors().at(name);
    if (!param.sizes().equals(entry.shape))
      throw std::runtime_error(it->second->path() + ": tensor \"" + name + "\" has shape " + shape_string(entry.shape) +
                               " but this model configuration needs " + shape_string(param.sizes()));
    loaded.push_back(it->second->load(name, torch::kFloat32));  // errors name the file and tensor
  }
  for (const auto& [name, file] : where) {
    // A tied checkpoint may still store lm_head.weight (Hugging Face then uses the embedding).
    if (expected.count(name) || (name == "lm_head.weight" && model_->config().tie_word_embeddings)) continue;
    throw std::runtime_error(file->path() + ": unexpected tensor \"" + name + "\" (not in this model configuration)");
  }
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < named.size(); ++i) named[i].second.copy_(loaded[i]);
}

void Trainer::save_state(const std::string& path) const {
  torch::serialize::OutputArchive archive;
  auto params = model_->parameters();
  for (size_t i = 0; i < params.size(); ++i) archive.write("param." + std::to_string(i), params[i].detach());
  archive.write("steps", torch::tensor(steps_));
  torch::serialize::OutputArchive opt;
  optimizer_->save(opt);
  archive.write("optimizer", opt);
  archive.save_to(path);
}

void Trainer::load_state(const std::string& path) {
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path);
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": cannot read training state: " + e.what());
  }
  auto params = model_->parameters();
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i) {
    torch::Tensor t;
    archive.read("param." + std::to_string(i), t);
    if (!t.sizes().equals(params[i].sizes()))
      throw std::runtime_error(path + ": training state does not match this model configuration");
    params[i].copy_(t);
  }
  torch::Tensor steps;
  archive.read("steps", steps);
  steps_ = steps.item<int64_t>();
  torch::serialize::InputArchive opt;
  archive.read("optimizer", opt);
  optimizer_->load(opt);
}

}  // namespace cascade
