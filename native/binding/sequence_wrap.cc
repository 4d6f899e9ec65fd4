#include "sequence_wrap.h"

#include "async.h"
#include "convert.h"

namespace cascade::binding {

SamplingParams sampling_from_value(Napi::Env env, const Napi::Value& v) {
  SamplingParams p;
  if (v.IsUndefined() || v.IsNull()) return p;
  if (!v.IsObject()) throw Napi::TypeError::New(env, "sampling options must be an object");
  auto o = v.As<Napi::Object>();
  p.temperature = number_field(o, "temperature", 0);
  p.top_k = int_field(o, "topK", 0);
  p.top_p = number_field(o, "topP", 1);
  try {
    p.validate();
  } catch (const std::exception& e) {
    throw Napi::RangeError::New(env, e.what());
  }
  return p;
}

namespace {
uint64_t seed_from_value(Napi::Env env, const Napi::Value& v) {
  if (v.IsUndefined()) return 0;
  if (!v.IsNumber()) throw Napi::TypeError::New(env, "seed must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d < 0 || d != double(uint64_t(d)) || d > 9007199254740991.0)
    throw Napi::RangeError::New(env, "seed must be a non-negative safe integer");
  return uint64_t(d);
}
}  // namespace

Napi::Function SequenceWrap::Init(Napi::Env env) {
  return DefineClass(env, "Sequence",
                     {InstanceMethod<&SequenceWrap::Forward>("forward"),
                      InstanceMethod<&SequenceWrap::ForwardAsync>("forwardAsync"),
                      InstanceMethod<&SequenceWrap::Step>("step"),
                      InstanceMethod<&SequenceWrap::StepAsync>("stepAsync"),
                      InstanceMethod<&SequenceWrap::Truncate>("truncate"),
                      InstanceMethod<&SequenceWrap::Reseed>("reseed"),
                      InstanceAccessor<&SequenceWrap::Length>("length"),
                      InstanceAccessor<&SequenceWrap::Capacity>("capacity")});
}

// new Sequence(model, contextLength, seed?)
SequenceWrap::SequenceWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SequenceWrap>(info) {
  Napi::Env env = info.Env();
  model_ = ModelWrap::FromValue(env, info.Length() > 0 ? info[0] : env.Undefined());
  model_ref_ = Napi::Persistent(info[0].As<Napi::Object>());
  if (info.Length() < 2 || !info[1].IsNumber()) throw Napi::TypeError::New(env, "contextLength must be a number");
  double cap = info[1].As<Napi::Number>().DoubleValue();
  if (cap != double(int64_t(cap))) throw Napi::RangeError::New(env, "contextLength must be an integer");
  uint64_t seed = seed_from_value(env, info.Length() > 2 ? info[2] : env.Undefined());
  seq_ = std::make_unique<Sequence>(model_->model, int64_t(cap), seed);
}

void SequenceWrap::check_idle(Napi::Env env) const {
  if (busy_) throw Napi::Error::New(env, "sequence is busy with another call; await it first");
}

Napi::Value SequenceWrap::Forward(const Napi::CallbackInfo& info) {
  check_idle(info.Env());
  auto tokens = tokens_arg(info, 0);
  bool all = info.Length() > 1 && info[1].ToBoolean().Value();
  model_->apply_threads();
  return to_float32_array(info.Env(), seq_->forward(tokens, all));
}

Napi::Value SequenceWrap::ForwardAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  check_idle(env);
  auto tokens = tokens_arg(info, 0);
  bool all = info.Length() > 1 && info[1].ToBoolean().Value();
  auto out = std::make_shared<torch::Tensor>();
  busy_ = true;
  return PromiseWorker::run(
      env,
      [this, tokens, all, out] {
        model_->apply_threads();
        *out = seq_->forward(tokens, all);
      },
      [out](Napi::Env e) -> Napi::Value { return to_float32_array(e, *out); }, [this] { busy_ = false; },
      {Value()});
}

Napi::Value SequenceWrap::Step(const Napi::CallbackInfo& info) {
  check_idle(info.Env());
  auto tokens = tokens_arg(info, 0);
  auto params = sampling_from_value(info.Env(), info.Length() > 1 ? info[1] : info.Env().Undefined());
  model_->apply_threads();
  return Napi::Number::New(info.Env(), double(seq_->step(tokens, params)));
}

Napi::Value SequenceWrap::StepAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  check_idle(env);
  auto tokens = tokens_arg(info, 0);
  auto params = sampling_from_value(env, info.Length() > 1 ? info[1] : env.Undefined());
  auto out = std::make_shared<int64_t>(0);
  busy_ = true;
  return PromiseWorker::run(
      env,
      [this, tokens, params, out] {
        model_->apply_threads();
        *out = seq_->step(tokens, params);
      },
      [out](Napi::Env e) -> Napi::Value { return Napi::Number::New(e, double(*out)); }, [this] { busy_ = false; },
      {Value()});
}

Napi::Value SequenceWrap::Truncate(const Napi::CallbackInfo& info) {
  check_idle(info.Env());
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "truncate(n) needs a number");
  double n = info[0].As<Napi::Number>().DoubleValue();
  if (n != double(int64_t(n))) throw Napi::RangeError::New(info.Env(), "truncate(n) needs an integer");
  seq_->truncate(int64_t(n));
  return info.Env().Undefined();
}

Napi::Value SequenceWrap::Reseed(const Napi::CallbackInfo& info) {
  check_idle(info.Env());
  seq_->reseed(seed_from_value(info.Env(), info.Length() > 0 ? info[0] : info.Env().Undefined()));
  return info.Env().Undefined();
}

Napi::Value SequenceWrap::Length(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(seq_->length())); }
Napi::Value SequenceWrap::Capacity(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(seq_->capacity()));
}

}  // namespace cascade::binding
