#pragma once
#include <napi.h>

#include <memory>

#include "train.h"

namespace cascade::binding {

// JS `Trainer`: a model being trained from scratch (scripts/train.ts drives it).
class TrainerWrap : public Napi::ObjectWrap<TrainerWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit TrainerWrap(const Napi::CallbackInfo& info);

 private:
  torch::Tensor batch_arg(const Napi::CallbackInfo& info) const;
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value EvalLoss(const Napi::CallbackInfo& info);
  Napi::Value SaveWeights(const Napi::CallbackInfo& info);
  Napi::Value LoadWeights(const Napi::CallbackInfo& info);
  Napi::Value SaveState(const Napi::CallbackInfo& info);
  Napi::Value LoadState(const Napi::CallbackInfo& info);
  Napi::Value SetTeacher(const Napi::CallbackInfo& info);
  Napi::Value StepsDone(const Napi::CallbackInfo& info);
  Napi::Value NumParams(const Napi::CallbackInfo& info);

  std::unique_ptr<Trainer> trainer_;
  int threads_ = 1;
};

}  // namespace cascade::binding
