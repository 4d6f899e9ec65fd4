// Argument checks and conversions between JS values and the plain C++ types below.
#pragma once
#include <napi.h>
#include <torch/torch.h>

#include <string>
#include <vector>

namespace cascade::binding {

inline std::vector<int64_t> ids_from_value(Napi::Env env, const Napi::Value& v, const char* what) {
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_int32_array) {
    auto a = v.As<Napi::Int32Array>();
    return std::vector<int64_t>(a.Data(), a.Data() + a.ElementLength());
  }
  throw Napi::TypeError::New(env, std::string(what) + " must be an Int32Array");
}

inline Napi::Object object_arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsObject()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be an object");
  return info[i].As<Napi::Object>();
}

inline double number_field(const Napi::Object& o, const char* key, double fallback, bool required = false) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (required) throw Napi::TypeError::New(o.Env(), std::string("missing field \"") + key + "\"");
    return fallback;
  }
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("field \"") + key + "\" must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

inline int64_t int_field(const Napi::Object& o, const char* key, int64_t fallback, bool required = false) {
  double d = number_field(o, key, double(fallback), required);
  if (d != double(int64_t(d))) throw Napi::TypeError::New(o.Env(), std::string("field \"") + key + "\" must be an integer");
  return int64_t(d);
}

inline std::string string_field(const Napi::Object& o, const char* key, const std::string& fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), std::string("field \"") + key + "\" must be a string");
  return v.As<Napi::String>().Utf8Value();
}

inline bool bool_field(const Napi::Object& o, const char* key, bool fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsBoolean()) throw Napi::TypeError::New(o.Env(), std::string("field \"") + key + "\" must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

// Token ids: an Int32Array or an array of integers.
inline std::vector<int64_t> tokens_arg(const Napi::CallbackInfo& info, size_t i) {
  std::vector<int64_t> out;
  if (info.Length() > i && info[i].IsTypedArray() && info[i].As<Napi::TypedArray>().TypedArrayType() == napi_int32_array) {
    auto a = info[i].As<Napi::Int32Array>();
    out.assign(a.Data(), a.Data() + a.ElementLength());
    return out;
  }
  if (info.Length() > i && info[i].IsArray()) {
    auto a = info[i].As<Napi::Array>();
    for (uint32_t k = 0; k < a.Length(); ++k) {
      Napi::Value v = a.Get(k);
      if (!v.IsNumber()) throw Napi::TypeError::New(info.Env(), "token ids must be integers");
      double d = v.As<Napi::Number>().DoubleValue();
      if (d != double(int64_t(d))) throw Napi::TypeError::New(info.Env(), "token ids must be integers");
      out.push_back(int64_t(d));
    }
    return out;
  }
  throw Napi::TypeError::New(info.Env(), "tokens must be an Int32Array or an array of integers");
}

inline Napi::Float32Array to_float32_array(Napi::Env env, const torch::Tensor& t) {
  auto c = t.to(torch::kFloat32).contiguous();
  auto out = Napi::Float32Array::New(env, c.numel());
  std::memcpy(out.Data(), c.data_ptr<float>(), c.numel() * sizeof(float));
  return out;
}

}  // namespace cascade::binding
