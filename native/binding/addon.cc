// The addon's entry: registers the JS classes. Everything below binding/ is plain C++.
#include <napi.h>
#include <torch/torch.h>

#include "kernel_test.h"
#include "model_wrap.h"
#include "sequence_wrap.h"
#include "trainer_wrap.h"

namespace {

Napi::Value TorchInfo(const Napi::CallbackInfo& info) {
  auto o = Napi::Object::New(info.Env());
  o.Set("version", std::string(TORCH_VERSION));
  o.Set("threads", at::get_num_threads());
  o.Set("parallelInfo", at::get_parallel_info());
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Model", cascade::binding::ModelWrap::Init(env));
  exports.Set("Sequence", cascade::binding::SequenceWrap::Init(env));
  exports.Set("Trainer", cascade::binding::TrainerWrap::Init(env));
  exports.Set("verifyBatch", Napi::Function::New(env, cascade::binding::SequenceWrap::VerifyBatch));
  exports.Set("torchInfo", Napi::Function::New(env, TorchInfo));
  exports.Set("kernelTest", cascade::binding::KernelTestObject(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(cascade_spec, Init)
