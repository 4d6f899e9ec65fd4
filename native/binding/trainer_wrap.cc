#include "trainer_wrap.h"

#include "convert.h"
#include "model_wrap.h"

namespace cascade::binding {

Napi::Function TrainerWrap::Init(Napi::Env env) {
  return DefineClass(env, "Trainer",
                     {InstanceMethod<&TrainerWrap::Step>("step"), InstanceMethod<&TrainerWrap::EvalLoss>("evalLoss"),
                      InstanceMethod<&TrainerWrap::SaveWeights>("saveWeights"),
                      InstanceMethod<&TrainerWrap::LoadWeights>("loadWeights"),
                      InstanceMethod<&TrainerWrap::SaveState>("saveState"),
                      InstanceMethod<&TrainerWrap::LoadState>("loadState"),
                      InstanceMethod<&TrainerWrap::SetTeacher>("setTeacher"),
                      InstanceAccessor<&TrainerWrap::StepsDone>("stepsDone"),
                      InstanceAccessor<&TrainerWrap::NumParams>("numParams")});
}

// new Trainer(config, { seed, bf16, weightDecay, beta1, beta2, gradClip, threads })
TrainerWrap::TrainerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TrainerWrap>(info) {
  Napi::Env env = info.Env();
  ModelConfig cfg = config_from_object(object_arg(info, 0, "config"));
  auto o = info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env);
  TrainOptions opts;
  opts.seed = uint64_t(int_field(o, "seed", 0));
  opts.bf16_autocast = bool_field(o, "bf16", true);
  opts.weight_decay = number_field(o, "weightDecay", 0.1);
  opts.beta1 = number_field(o, "beta1", 0.9);
  opts.beta2 = number_field(o, "beta2", 0.95);
  opts.grad_clip = number_field(o, "gradClip", 1.0);
  Napi::Value t = o.Get("threads");
  threads_ = t.IsUndefined() ? 1 : threads_from_value(env, t);
  at::set_num_threads(threads_);
  trainer_ = std::make_unique<Trainer>(cfg, opts);
}

// tokens: Int32Array of B * (T + 1) ids; batch: B.
torch::Tensor TrainerWrap::batch_arg(const Napi::CallbackInfo& info) const {
  auto ids = tokens_arg(info, 0);
  if (info.Length() < 2 || !info[1].IsNumber()) throw Napi::TypeError::New(info.Env(), "batch size must be a number");
  const int64_t B = info[1].As<Napi::Number>().Int64Value();
  if (B < 1 || ids.size() % B != 0 || ids.size() / B < 2)
    throw Napi::RangeError::New(info.Env(), "tokens must hold batch * (T + 1) ids with T >= 1");
  const int64_t V = trainer_->model().config().vocab_size;
  for (int64_t id : ids)
    if (id < 0 || id >= V) throw Napi::RangeError::New(info.Env(), "token id " + std::to_string(id) + " out of range");
  return torch::tensor(ids, torch::kInt64).view({B, int64_t(ids.size()) / B});
}

// step(tokens, batch, lr, lossMask?: Uint8Array of batch * T flags, one per target).
Napi::Value TrainerWrap::Step(const Napi::CallbackInfo& info) {
  auto batch = batch_arg(info);
  if (info.Length() < 3 || !info[2].IsNumber()) throw Napi::TypeError::New(info.Env(), "learning rate must be a number");
  torch::Tensor mask;
  if (info.Length() > 3 && !info[3].IsUndefined() && !info[3].IsNull()) {
    if (!info[3].IsTypedArray() || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw Napi::TypeError::New(info.Env(), "lossMask must be a Uint8Array");
    auto m = info[3].As<Napi::Uint8Array>();
    const int64_t B = batch.size(0), T = batch.size(1) - 1;
    if (int64_t(m.ElementLength()) != B * T)
      throw Napi::RangeError::New(info.Env(), "lossMask must hold batch * T = " + std::to_string(B * T) + " flags, got " +
                                                  std::to_string(m.ElementLength()));
    mask = torch::from_blob(m.Data(), {B, T}, torch::kUInt8).clone();
  }
  if (at::get_num_threads() != threads_) at::set_num_threads(threads_);
  return Napi::Number::New(info.Env(), trainer_->step(batch, info[2].As<Napi::Number>().DoubleValue(), mask));
}

// setTeacher(model: Model | null, weight = 0.5, term: 'kl' | 'argmax' = 'kl'): distil from a loaded model.
Napi::Value TrainerWrap::SetTeacher(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || info[0].IsNull() || info[0].IsUndefined()) {
    trainer_->set_teacher(nullptr, 0);
    return env.Undefined();
  }
  auto* teacher = ModelWrap::FromValue(env, info[0]);
  double weight = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 0.5;
  auto term = Trainer::TeacherTerm::kl;
  if (info.Length() > 2 && !info[2].IsUndefined()) {
    std::string name = info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
    if (name == "argmax") term = Trainer::TeacherTerm::argmax;
    else if (name != "kl") throw Napi::TypeError::New(env, "setTeacher: term must be 'kl' or 'argmax'");
  }
  trainer_->set_teacher(teacher->model, weight, term);
  return env.Undefined();
}

Napi::Value TrainerWrap::EvalLoss(const Napi::CallbackInfo& info) {
  auto batch = batch_arg(info);
  if (at::get_num_threads() != threads_) at::set_num_threads(threads_);
  return Napi::Number::New(info.Env(), trainer_->eval_loss(batch));
}

namespace {
std::string path_arg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsString()) throw Napi::TypeError::New(info.Env(), "path must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}
}  // namespace

Napi::Value TrainerWrap::SaveWeights(const Napi::CallbackInfo& info) {
  std::string dtype = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "F32";
  trainer_->save_weights(path_arg(info, 0), dtype);
  return info.Env().Undefined();
}
// loadWeights(files: string | string[]): a Hugging Face checkpoint's safetensors file(s).
Napi::Value TrainerWrap::LoadWeights(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<std::string> files;
  if (info.Length() > 0 && info[0].IsString()) {
    files.push_back(info[0].As<Napi::String>().Utf8Value());
  } else if (info.Length() > 0 && info[0].IsArray()) {
    auto arr = info[0].As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); ++i) {
      if (!arr.Get(i).IsString()) throw Napi::TypeError::New(env, "loadWeights: file paths must be strings");
      files.push_back(arr.Get(i).As<Napi::String>().Utf8Value());
    }
  } else {
    throw Napi::TypeError::New(env, "loadWeights(files): files must be a path or an array of paths");
  }
  if (files.empty()) throw Napi::TypeError::New(env, "loadWeights: no files given");
  trainer_->load_weights(files);
  return env.Undefined();
}
Napi::Value TrainerWrap::SaveState(const Napi::CallbackInfo& info) {
  trainer_->save_state(path_arg(info, 0));
  return info.Env().Undefined();
}
Napi::Value TrainerWrap::LoadState(const Napi::CallbackInfo& info) {
  trainer_->load_state(path_arg(info, 0));
  return info.Env().Undefined();
}
Napi::Value TrainerWrap::StepsDone(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(trainer_->steps_done()));
}
Napi::Value TrainerWrap::NumParams(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(trainer_->model().num_params()));
}

}  // namespace cascade::binding
