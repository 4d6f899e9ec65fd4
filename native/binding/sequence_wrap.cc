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
  p.min_p = number_field(o, "minP", 0);
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

Napi::FunctionReference* SequenceWrap::constructor_ = nullptr;

SequenceWrap* SequenceWrap::FromValue(Napi::Env env, const Napi::Value& v) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(constructor_->Value()))
    throw Napi::TypeError::New(env, "expected a native Sequence");
  return SequenceWrap::Unwrap(v.As<Napi::Object>());
}

Napi::Function SequenceWrap::Init(Napi::Env env) {
  Napi::Function f = DefineClass(env, "Sequence",
                     {InstanceMethod<&SequenceWrap::Verify>("verify"),
                      InstanceMethod<&SequenceWrap::VerifyAsync>("verifyAsync"),
                      InstanceMethod<&SequenceWrap::Draft>("draft"),
                      InstanceMethod<&SequenceWrap::DraftAsync>("draftAsync"),
                      InstanceMethod<&SequenceWrap::Forward>("forward"),
                      InstanceMethod<&SequenceWrap::ForwardAsync>("forwardAsync"),
                      InstanceMethod<&SequenceWrap::Step>("step"),
                      InstanceMethod<&SequenceWrap::StepAsync>("stepAsync"),
                      InstanceMethod<&SequenceWrap::Truncate>("truncate"),
                      InstanceMethod<&SequenceWrap::Reseed>("reseed"),
                      InstanceMethod<&SequenceWrap::Dispose>("dispose"),
                      InstanceAccessor<&SequenceWrap::Length>("length"),
                      InstanceAccessor<&SequenceWrap::Capacity>("capacity")});
  constructor_ = new Napi::FunctionReference(Napi::Persistent(f));
  return f;
}

// new Sequence(model, contextLength, seed?)
SequenceWrap::SequenceWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SequenceWrap>(info) {
  Napi::Env env = info.Env();
  model_ = ModelWrap::FromValue(env, info.Length() > 0 ? info[0] : env.Undefined());
  if (!model_->model) throw Napi::Error::New(env, "model is disposed");
  model_ref_ = Napi::Persistent(info[0].As<Napi::Object>());
  if (info.Length() < 2 || !info[1].IsNumber()) throw Napi::TypeError::New(env, "contextLength must be a number");
  double cap = info[1].As<Napi::Number>().DoubleValue();
  if (cap != double(int64_t(cap))) throw Napi::RangeError::New(env, "contextLength must be an integer");
  uint64_t seed = seed_from_value(env, info.Length() > 2 ? info[2] : env.Undefined());
  seq_ = std::make_unique<Sequence>(model_->model, int64_t(cap), seed);
}

void SequenceWrap::check_idle(Napi::Env env) const {
  if (busy_) throw Napi::Error::New(env, "sequence is busy with another call; await it first");
  if (!seq_) throw Napi::Error::New(env, "sequence is disposed");
}

// Frees the KV cache now (its buffers go back to the model for the next sequence) instead of
// whenever the garbage collector gets to this object. Disposing twice is a no-op.
Napi::Value SequenceWrap::Dispose(const Napi::CallbackInfo& info) {
  if (busy_) throw Napi::Error::New(info.Env(), "sequence is busy with another call; await it first");
  seq_.reset();
  return info.Env().Undefined();
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

namespace {

Napi::Object result_to_object(Napi::Env env, const VerifyResult& r) {
  auto o = Napi::Object::New(env);
  o.Set("accepted", double(r.accepted));
  o.Set("next", double(r.next));
  if (r.probs.defined()) o.Set("probs", to_float32_array(env, r.probs));
  return o;
}

}  // namespace

// options: { sampling?, draftProbs?: Float32Array [k * V], lenience?: number, returnProbs?: boolean, fixed?: number,
//            blockVerification?: boolean (default true: the drafts tested jointly when sampling strictly) }
VerifyRequest SequenceWrap::request_from(Napi::Env env, const Napi::Value& block, const Napi::Value& options, bool copy_q) {
  VerifyRequest r;
  r.seq = seq_.get();
  r.block = ids_from_value(env, block, "block");
  if (r.block.empty()) throw Napi::RangeError::New(env, "block must hold at least the pending token");
  if (options.IsUndefined() || options.IsNull()) return r;
  if (!options.IsObject()) throw Napi::TypeError::New(env, "verify options must be an object");
  auto o = options.As<Napi::Object>();
  r.params = sampling_from_value(env, o.Get("sampling"));
  r.lenience = number_field(o, "lenience", 1);
  if (!(r.lenience >= 1)) throw Napi::RangeError::New(env, "lenience must be >= 1");
  r.return_probs = bool_field(o, "returnProbs", false);
  r.joint = bool_field(o, "blockVerification", true);
  r.fixed = int_field(o, "fixed", 1);
  if (r.fixed < 1 || r.fixed > int64_t(r.block.size()))
    throw Napi::RangeError::New(env, "fixed must be in [1, block length " + std::to_string(r.block.size()) + "]");
  Napi::Value q = o.Get("draftProbs");
  if (!q.IsUndefined() && !q.IsNull()) {
    if (!q.IsTypedArray() || q.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throw Napi::TypeError::New(env, "draftProbs must be a Float32Array");
    auto a = q.As<Napi::Float32Array>();
    const int64_t k = int64_t(r.block.size()) - r.fixed, V = seq_->model().config().vocab_size;
    if (int64_t(a.ElementLength()) != k * V)
      throw Napi::RangeError::New(env, "draftProbs must hold k * vocab = " + std::to_string(k * V) + " values");
    r.draft_probs = torch::from_blob(a.Data(), {k, V}, torch::kFloat32);
    if (copy_q) r.draft_probs = r.draft_probs.clone();
  }
  return r;
}

Napi::Value SequenceWrap::Verify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  check_idle(env);
  std::vector<VerifyRequest> reqs{request_from(env, info.Length() > 0 ? info[0] : env.Undefined(),
                                               info.Length() > 1 ? info[1] : env.Undefined(), /*copy_q=*/false)};
  model_->apply_threads();
  return result_to_object(env, verify(reqs)[0]);
}

Napi::Value SequenceWrap::VerifyAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  check_idle(env);
  auto reqs = std::make_shared<std::vector<VerifyRequest>>();
  reqs->push_back(request_from(env, info.Length() > 0 ? info[0] : env.Undefined(), info.Length() > 1 ? info[1] : env.Undefined()));
  auto out = std::make_shared<std::vector<VerifyResult>>();
  busy_ = true;
  return PromiseWorker::run(
      env,
      [this, reqs, out] {
        model_->apply_threads();
        *out = verify(*reqs);
      },
      [out](Napi::Env e) -> Napi::Value { return result_to_object(e, (*out)[0]); }, [this] { busy_ = false; }, {Value()});
}

Napi::Value SequenceWrap::VerifyBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) throw Napi::TypeError::New(env, "verifyBatch needs an array of requests");
  auto arr = info[0].As<Napi::Array>();
  auto reqs = std::make_shared<std::vector<VerifyRequest>>();
  std::vector<SequenceWrap*> wraps;
  std::vector<Napi::Object> keep;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    if (!arr.Get(i).IsObject()) throw Napi::TypeError::New(env, "each verifyBatch request must be an object");
    auto o = arr.Get(i).As<Napi::Object>();
    SequenceWrap* w = FromValue(env, o.Get("sequence"));
    w->check_idle(env);
    for (auto* other : wraps)
      if (other == w) throw Napi::Error::New(env, "verifyBatch: a sequence appears twice");
    if (!wraps.empty() && w->seq_->model().config().vocab_size >= 0 && &w->seq_->model() != &wraps[0]->seq_->model())
      throw Napi::Error::New(env, "verifyBatch: all sequences must belong to the same model");
    reqs->push_back(w->request_from(env, o.Get("block"), o));
    wraps.push_back(w);
    keep.push_back(o.Get("sequence").As<Napi::Object>());
  }
  auto out = std::make_shared<std::vector<VerifyResult>>();
  for (auto* w : wraps) w->busy_ = true;
  ModelWrap* model = wraps.empty() ? nullptr : wraps[0]->model_;
  return PromiseWorker::run(
      env,
      [reqs, out, model] {
        if (model) model->apply_threads();
        *out = verify(*reqs);
      },
      [out](Napi::Env e) -> Napi::Value {
        auto a = Napi::Array::New(e, out->size());
        for (size_t i = 0; i < out->size(); ++i) a.Set(uint32_t(i), result_to_object(e, (*out)[i]));
        return a;
      },
      [wraps] {
        for (auto* w : wraps) w->busy_ = false;
      },
      keep);
}

namespace {
// probs_out: a Float32Array the caller keeps for the rows (a view of its first rows comes back
// when it is large enough); otherwise, or when absent, a new array. Reusing one spares an
// allocation of over 100 KB per draft, which the allocator served with fresh pages.
Napi::Object draft_to_object(Napi::Env env, const std::vector<int64_t>& tokens, const torch::Tensor& probs,
                             Napi::Float32Array probs_out = Napi::Float32Array()) {
  auto o = Napi::Object::New(env);
  auto t = Napi::Int32Array::New(env, tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) t[i] = int32_t(tokens[i]);
  o.Set("tokens", t);
  if (!probs.defined()) return o;
  const size_t n = size_t(probs.numel());
  if (!probs_out.IsEmpty() && probs_out.ElementLength() >= n) {
    std::memcpy(probs_out.Data(), probs.data_ptr<float>(), n * sizeof(float));
    o.Set("probs", Napi::Float32Array::New(env, n, probs_out.ArrayBuffer(), probs_out.ByteOffset()));
  } else {
    o.Set("probs", to_float32_array(env, probs));
  }
  return o;
}
int64_t k_arg(const Napi::CallbackInfo& info) {
  if (info.Length() < 2 || !info[1].IsNumber()) throw Napi::TypeError::New(info.Env(), "draft(feed, k): k must be a number");
  double k = info[1].As<Napi::Number>().DoubleValue();
  if (k != double(int64_t(k)) || k < 1 || k > 1024) throw Napi::RangeError::New(info.Env(), "draft: k must be an integer in [1, 1024]");
  return int64_t(k);
}
float min_confidence_arg(const Napi::CallbackInfo& info) {
  if (info.Length() < 4 || info[3].IsUndefined()) return 0.f;
  if (!info[3].IsNumber()) throw Napi::TypeError::New(info.Env(), "draft: minConfidence must be a number");
  const double c = info[3].As<Napi::Number>().DoubleValue();
  if (!(c >= 0 && c < 1)) throw Napi::RangeError::New(info.Env(), "draft: minConfidence must be in [0, 1)");
  return float(c);
}
}  // namespace

// draft(feed: Int32Array, k, sampling?, minConfidence?, probsOut?: Float32Array) -> { tokens: Int32Array, probs?: Float32Array [tokens * V] }
Napi::Value SequenceWrap::Draft(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  check_idle(env);
  auto feed = ids_from_value(env, info.Length() > 0 ? info[0] : env.Undefined(), "feed");
  const int64_t k = k_arg(info);
  auto params = sampling_from_value(env, info.Length() > 2 ? info[2] : env.Undefined());
  const float min_confidence = min_confidence_arg(info);
  model_->apply_threads();
  Napi::Float32Array probs_out;
  if (info.Length() > 4 && !info[4].IsUndefined()) {
    if (!(info[4].IsTypedArray() && info[4].As<Napi::TypedArray>().TypedArrayType() == napi_float32_array))
      throw Napi::TypeError::New(env, "draft: probsOut must be a Float32Array");
    probs_out = info[4].As<Napi::Float32Array>();
  }
  torch::Tensor probs;
  auto tokens = seq_->draft(feed, k, params, &probs, min_confidence);
  return draft_to_object(env, tokens, probs, probs_out);
}

Napi::Value SequenceWrap::DraftAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  check_idle(env);
  auto feed = ids_from_value(env, info.Length() > 0 ? info[0] : env.Undefined(), "feed");
  const int64_t k = k_arg(info);
  auto params = sampling_from_value(env, info.Length() > 2 ? info[2] : env.Undefined());
  const float min_confidence = min_confidence_arg(info);
  auto tokens = std::make_shared<std::vector<int64_t>>();
  auto probs = std::make_shared<torch::Tensor>();
  busy_ = true;
  return PromiseWorker::run(
      env,
      [this, feed, k, params, tokens, probs, min_confidence] {
        model_->apply_threads();
        *tokens = seq_->draft(feed, k, params, probs.get(), min_confidence);
      },
      [tokens, probs](Napi::Env e) -> Napi::Value { return draft_to_object(e, *tokens, *probs); }, [this] { busy_ = false; },
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

Napi::Value SequenceWrap::Length(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), seq_ ? double(seq_->length()) : 0.0);
}
Napi::Value SequenceWrap::Capacity(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), seq_ ? double(seq_->capacity()) : 0.0);
}

}  // namespace cascade::binding
