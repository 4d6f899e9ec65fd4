#pragma once
#include <napi.h>

#include <memory>
#include <string>

#include "llama.h"

namespace cascade::binding {

// JS `Model`: loaded weights, shared read-only by every Sequence made from it.
class ModelWrap : public Napi::ObjectWrap<ModelWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  static ModelWrap* FromValue(Napi::Env env, const Napi::Value& v);
  explicit ModelWrap(const Napi::CallbackInfo& info);

  // Null once disposed; sequences keep their own reference, so they outlive dispose().
  std::shared_ptr<LlamaModel> model;
  int threads = 1;
  // libtorch's thread count is per OS thread under OpenMP: set it on whichever thread runs.
  void apply_threads() const;

 private:
  static Napi::FunctionReference* constructor_;
  Napi::Value NumParams(const Napi::CallbackInfo& info);
  Napi::Value VocabSize(const Napi::CallbackInfo& info);
  Napi::Value DraftVocabularySize(const Napi::CallbackInfo& info);
  Napi::Value Dtype(const Napi::CallbackInfo& info);
  Napi::Value Kernels(const Napi::CallbackInfo& info);
  Napi::Value Threads(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  // Facts about the weights, kept so that they stay readable after dispose().
  int64_t num_params_ = 0, vocab_size_ = 0, draft_vocabulary_size_ = 0;
  std::string dtype_name_;
  std::string kernels_name_;  // empty: libtorch computes
  void SetThreads(const Napi::CallbackInfo& info, const Napi::Value& v);
};

ModelConfig config_from_object(const Napi::Object& o);
torch::ScalarType dtype_from_name(Napi::Env env, const std::string& name);
int threads_from_value(Napi::Env env, const Napi::Value& v);

}  // namespace cascade::binding
