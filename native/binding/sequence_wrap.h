#pragma once
#include <napi.h>

#include <memory>

#include "model_wrap.h"
#include "sequence.h"
#include "verify.h"

namespace cascade::binding {

// JS `Sequence`: a KV cache over one Model. One operation at a time: an async call marks the
// sequence busy until it settles, and any other call meanwhile is refused.
class SequenceWrap : public Napi::ObjectWrap<SequenceWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  static SequenceWrap* FromValue(Napi::Env env, const Napi::Value& v);
  explicit SequenceWrap(const Napi::CallbackInfo& info);
  // verifyBatch([{ sequence, block, draftProbs?, sampling?, lenience?, returnProbs? }]) -> Promise
  static Napi::Value VerifyBatch(const Napi::CallbackInfo& info);

 private:
  void check_idle(Napi::Env env) const;
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value ForwardAsync(const Napi::CallbackInfo& info);
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value StepAsync(const Napi::CallbackInfo& info);
  Napi::Value Verify(const Napi::CallbackInfo& info);
  Napi::Value VerifyAsync(const Napi::CallbackInfo& info);
  Napi::Value Draft(const Napi::CallbackInfo& info);
  Napi::Value DraftAsync(const Napi::CallbackInfo& info);
  Napi::Value Truncate(const Napi::CallbackInfo& info);
  Napi::Value Reseed(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Length(const Napi::CallbackInfo& info);
  Napi::Value Capacity(const Napi::CallbackInfo& info);

  static Napi::FunctionReference* constructor_;
  // copy_q false: the request reads draftProbs from the JS array itself, for a call that ends
  // before control returns to JS (the synchronous verify); async calls get a copy.
  VerifyRequest request_from(Napi::Env env, const Napi::Value& block, const Napi::Value& options, bool copy_q = true);
  std::unique_ptr<Sequence> seq_;
  ModelWrap* model_ = nullptr;
  Napi::ObjectReference model_ref_;  // the Model outlives its sequences
  bool busy_ = false;
};

SamplingParams sampling_from_value(Napi::Env env, const Napi::Value& v);

}  // namespace cascade::binding
