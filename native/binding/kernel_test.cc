// addon.kernelTest: direct access to native/kernels for the tests (test/kernels.test.ts), with
// libtorch fp32 results on the same data alongside.
#include "kernel_test.h"

#include "convert.h"
#include "kernels/kernels.h"
#include "sampling.h"
#include "sequence_wrap.h"

namespace cascade::binding {

namespace {

kernels::Isa isa_from_name(Napi::Env env, const std::string& s) {
  if (s == "avx512") return kernels::Isa::Avx512;
  if (s == "avx2") return kernels::Isa::Avx2;
  if (s == "portable") return kernels::Isa::Portable;
  throw Napi::TypeError::New(env, "isa must be avx512, avx2 or portable");
}

kernels::WeightType type_from_name(Napi::Env env, const std::string& s) {
  if (s == "bf16") return kernels::WeightType::BF16;
  if (s == "f16") return kernels::WeightType::F16;
  throw Napi::TypeError::New(env, "type must be bf16 or f16");
}

Napi::Float32Array floats(const Napi::Object& o, const char* key, size_t want, bool optional = false) {
  Napi::Value v = o.Get(key);
  if (optional && (v.IsUndefined() || v.IsNull())) return Napi::Float32Array();
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(o.Env(), std::string(key) + " must be a Float32Array");
  auto a = v.As<Napi::Float32Array>();
  if (a.ElementLength() != want)
    throw Napi::RangeError::New(o.Env(), std::string(key) + " must hold " + std::to_string(want) + " values");
  return a;
}

Napi::Float32Array copy_out(Napi::Env env, const float* p, size_t n) {
  auto a = Napi::Float32Array::New(env, n);
  std::memcpy(a.Data(), p, n * sizeof(float));
  return a;
}

// { bf16: isa, f16: isa }: the best instruction set per weight type on this CPU.
Napi::Value Info(const Napi::CallbackInfo& info) {
  auto o = Napi::Object::New(info.Env());
  o.Set("bf16", kernels::isa_name(kernels::best_isa(kernels::WeightType::BF16)));
  o.Set("f16", kernels::isa_name(kernels::best_isa(kernels::WeightType::F16)));
  return o;
}

// run({ op: 'linear'|'glu'|'argmax', type: 'bf16'|'f16', isa, threads, x, M, K, w, N, bias?, y0? })
//  -> { y?, argmax?, maxLogit?, lse?, torch: libtorch fp32 on the unrounded x and w, rounded: the
//       packed weights back as fp32 [N * K] }
// glu: w holds [gate; up] (N = 2I rows), y is [M, I]. argmax: torch is the logits x w^T.
// y0 (linear only): initial y, accumulated into (the residual-add epilogue).
Napi::Value Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = object_arg(info, 0, "kernel test options");
  const std::string op = string_field(o, "op", "linear");
  const auto type = type_from_name(env, string_field(o, "type", "bf16"));
  const auto isa = isa_from_name(env, string_field(o, "isa", "avx512"));
  const int threads = int(int_field(o, "threads", 1));
  const int64_t M = int_field(o, "M", 0, true), K = int_field(o, "K", 0, true), N = int_field(o, "N", 0, true);
  if (M < 1 || K < 1 || N < 1) throw Napi::RangeError::New(env, "M, K, N must be >= 1");
  if (op == "glu" && N % 2) throw Napi::RangeError::New(env, "glu needs an even N");
  auto x = floats(o, "x", size_t(M * K));
  auto w = floats(o, "w", size_t(N * K));
  auto bias = floats(o, "bias", size_t(N), true);
  auto y0 = floats(o, "y0", size_t(M * N), true);
  if (kernels::best_isa(type) < isa) throw Napi::Error::New(env, std::string("this CPU cannot run ") + kernels::isa_name(isa));

  const bool glu = op == "glu";
  kernels::PackedWeight pw;
  try {
    pw = kernels::pack(w.Data(), kernels::SourceType::F32, N, K, type, glu);
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
  auto out = Napi::Object::New(env);
  const kernels::Isa saved_cap = kernels::set_isa_cap(isa);
  const int saved_threads = at::get_num_threads();
  at::set_num_threads(threads);
  try {
    if (op == "linear") {
      std::vector<float> y(static_cast<size_t>(M * N), 0.f);
      if (!y0.IsEmpty()) std::memcpy(y.data(), y0.Data(), y.size() * sizeof(float));
      kernels::linear(x.Data(), M, pw, bias.IsEmpty() ? nullptr : bias.Data(), y.data(), !y0.IsEmpty());
      out.Set("y", copy_out(env, y.data(), y.size()));
    } else if (op == "glu") {
      std::vector<float> y(static_cast<size_t>(M * N / 2));
      kernels::linear_glu(x.Data(), M, pw, y.data());
      out.Set("y", copy_out(env, y.data(), y.size()));
    } else if (op == "argmax") {
      const size_t rows = static_cast<size_t>(M);
      std::vector<int64_t> am(rows);
      std::vector<float> mx(rows), lse(rows), logits(rows * static_cast<size_t>(N));
      kernels::linear_argmax(x.Data(), M, pw, am.data(), mx.data(), lse.data());
      kernels::linear(x.Data(), M, pw, nullptr, logits.data());
      auto a = Napi::Float64Array::New(env, size_t(M));
      for (int64_t m = 0; m < M; ++m) a[size_t(m)] = double(am[size_t(m)]);
      out.Set("argmax", a);
      out.Set("maxLogit", copy_out(env, mx.data(), mx.size()));
      out.Set("lse", copy_out(env, lse.data(), lse.size()));
      out.Set("y", copy_out(env, logits.data(), logits.size()));
    } else {
      throw std::invalid_argument("op must be linear, glu or argmax");
    }
  } catch (const std::exception& e) {
    kernels::set_isa_cap(saved_cap);
    at::set_num_threads(saved_threads);
    throw Napi::Error::New(env, e.what());
  }
  kernels::set_isa_cap(saved_cap);
  at::set_num_threads(saved_threads);

  // libtorch fp32 on the unrounded data.
  {
    c10::InferenceMode guard;
    auto xt = torch::from_blob(x.Data(), {M, K}, torch::kFloat32);
    auto wt = torch::from_blob(w.Data(), {N, K}, torch::kFloat32);
    torch::Tensor ref = torch::mm(xt, wt.t());
    if (op == "glu") ref = torch::silu(ref.narrow(1, 0, N / 2)) * ref.narrow(1, N / 2, N / 2);
    if (op == "linear") {
      if (!bias.IsEmpty()) ref = ref + torch::from_blob(bias.Data(), {N}, torch::kFloat32);
      if (!y0.IsEmpty()) ref = torch::from_blob(y0.Data(), {M, N}, torch::kFloat32) + ref;
    }
    out.Set("torch", to_float32_array(env, ref));
  }
  auto rounded = kernels::unpack(pw);
  out.Set("rounded", copy_out(env, rounded.data(), rounded.size()));
  out.Set("isa", kernels::isa_name(isa));
  return out;
}

// setIsaCap(isa) -> the previous cap: caps the instruction set of every later kernels call (models
// included), so a test can run each path on one machine.
Napi::Value SetIsaCap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "setIsaCap(isa) needs a string");
  return Napi::String::New(env, kernels::isa_name(kernels::set_isa_cap(isa_from_name(env, info[0].As<Napi::String>().Utf8Value()))));
}

// processedProbs(logits: Float32Array, sampling) -> Float32Array: the processed sampling
// distribution native code draws from (sampling.h), for comparison with a reference.
Napi::Value ProcessedProbs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(env, "processedProbs(logits: Float32Array, sampling) needs a Float32Array");
  auto logits = info[0].As<Napi::Float32Array>();
  const SamplingParams params = sampling_from_value(env, info[1]);  // validated there
  if (params.greedy()) throw Napi::RangeError::New(env, "processedProbs needs a temperature > 0");
  if (logits.ElementLength() == 0) throw Napi::RangeError::New(env, "processedProbs needs at least one logit");
  std::vector<float> out(logits.ElementLength());
  processed_probs(logits.Data(), int64_t(out.size()), params, out.data());
  return copy_out(env, out.data(), out.size());
}

}  // namespace

Napi::Object KernelTestObject(Napi::Env env) {
  auto o = Napi::Object::New(env);
  o.Set("info", Napi::Function::New(env, Info));
  o.Set("run", Napi::Function::New(env, Run));
  o.Set("setIsaCap", Napi::Function::New(env, SetIsaCap));
  o.Set("processedProbs", Napi::Function::New(env, ProcessedProbs));
  return o;
}

}  // namespace cascade::binding
