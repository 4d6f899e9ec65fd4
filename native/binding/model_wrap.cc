#include "model_wrap.h"

#include "convert.h"

namespace cascade::binding {

Napi::FunctionReference* ModelWrap::constructor_ = nullptr;

ModelConfig config_from_object(const Napi::Object& o) {
  ModelConfig c;
  c.architecture = string_field(o, "architecture", "");
  c.vocab_size = int_field(o, "vocabSize", 0, true);
  c.hidden_size = int_field(o, "hiddenSize", 0, true);
  c.intermediate_size = int_field(o, "intermediateSize", 0, true);
  c.num_layers = int_field(o, "numLayers", 0, true);
  c.num_heads = int_field(o, "numHeads", 0, true);
  c.num_kv_heads = int_field(o, "numKvHeads", 0, true);
  c.head_dim = int_field(o, "headDim", 0, true);
  c.max_position_embeddings = int_field(o, "maxPositionEmbeddings", 0, true);
  c.rms_norm_eps = number_field(o, "rmsNormEps", 1e-6);
  c.rope_theta = number_field(o, "ropeTheta", 10000);
  c.tie_word_embeddings = bool_field(o, "tieWordEmbeddings", false);
  c.attention_bias = bool_field(o, "attentionBias", false);
  c.output_bias = bool_field(o, "outputBias", false);
  c.sliding_window = int_field(o, "slidingWindow", 0);
  Napi::Value rs = o.Get("ropeScaling");
  if (rs.IsObject()) {
    auto r = rs.As<Napi::Object>();
    c.rope_factor = number_field(r, "factor", 0, true);
    c.rope_low_freq_factor = number_field(r, "lowFreqFactor", 1);
    c.rope_high_freq_factor = number_field(r, "highFreqFactor", 4);
    c.rope_original_max_position = int_field(r, "originalMaxPositionEmbeddings", 8192);
  }
  try {
    c.validate();
  } catch (const std::exception& e) {
    throw Napi::Error::New(o.Env(), e.what());
  }
  return c;
}

torch::ScalarType dtype_from_name(Napi::Env env, const std::string& name) {
  if (name == "float32") return torch::kFloat32;
  if (name == "bfloat16") return torch::kBFloat16;
  if (name == "float16") return torch::kFloat16;
  throw Napi::TypeError::New(env, "dtype must be \"float32\", \"bfloat16\" or \"float16\", got \"" + name + "\"");
}

int threads_from_value(Napi::Env env, const Napi::Value& v) {
  if (!v.IsNumber()) throw Napi::TypeError::New(env, "threads must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != double(int(d)) || d < 1 || d > 256) throw Napi::RangeError::New(env, "threads must be an integer in [1, 256]");
  return int(d);
}

void ModelWrap::apply_threads() const {
  if (at::get_num_threads() != threads) at::set_num_threads(threads);
}

Napi::Function ModelWrap::Init(Napi::Env env) {
  Napi::Function f = DefineClass(env, "Model",
                                 {InstanceAccessor<&ModelWrap::NumParams>("numParams"),
                                  InstanceAccessor<&ModelWrap::VocabSize>("vocabSize"),
                                  InstanceAccessor<&ModelWrap::DraftVocabularySize>("draftVocabularySize"),
                                  InstanceAccessor<&ModelWrap::Dtype>("dtype"),
                                  InstanceAccessor<&ModelWrap::Kernels>("kernels"),
                                  InstanceAccessor<&ModelWrap::Threads, &ModelWrap::SetThreads>("threads"),
                                  InstanceMethod<&ModelWrap::Dispose>("dispose")});
  constructor_ = new Napi::FunctionReference(Napi::Persistent(f));
  return f;
}

ModelWrap* ModelWrap::FromValue(Napi::Env env, const Napi::Value& v) {
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(constructor_->Value()))
    throw Napi::TypeError::New(env, "expected a native Model");
  return ModelWrap::Unwrap(v.As<Napi::Object>());
}

// new Model(config, shardPaths, { dtype, threads, kernels, draftVocabulary?: Int32Array })
ModelWrap::ModelWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelWrap>(info) {
  Napi::Env env = info.Env();
  ModelConfig cfg = config_from_object(object_arg(info, 0, "config"));
  if (info.Length() < 2 || !info[1].IsArray()) throw Napi::TypeError::New(env, "shards must be an array of paths");
  std::vector<std::string> shards;
  auto arr = info[1].As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    if (!arr.Get(i).IsString()) throw Napi::TypeError::New(env, "shards must be an array of paths");
    shards.push_back(arr.Get(i).As<Napi::String>().Utf8Value());
  }
  auto opts = info.Length() > 2 && info[2].IsObject() ? info[2].As<Napi::Object>() : Napi::Object::New(env);
  auto dtype = dtype_from_name(env, string_field(opts, "dtype", "float32"));
  // bfloat16 / float16 run on native/kernels unless { kernels: false } asks for libtorch's own
  // half-precision path (kept for comparison; bfloat16 only).
  const bool use_kernels = dtype != torch::kFloat32 && bool_field(opts, "kernels", true);
  // libtorch 1.13's CPU GEMM has no Half kernels: fail at load, not at the first forward.
  if (dtype == torch::kFloat16 && !use_kernels)
    throw Napi::Error::New(env, "dtype \"float16\" cannot compute on the CPU with libtorch alone (kernels: false); use "
                                "the kernels, \"bfloat16\" or \"float32\"");
  Napi::Value t = opts.Get("threads");
  threads = t.IsUndefined() ? 1 : threads_from_value(env, t);
  apply_threads();
  model = LlamaModel::load(cfg, shards, dtype, torch::kCPU, use_kernels);
  Napi::Value dv = opts.Get("draftVocabulary");
  if (!dv.IsUndefined() && !dv.IsNull()) {
    auto ids = ids_from_value(env, dv, "draftVocabulary");
    if (ids.empty()) throw Napi::RangeError::New(env, "draftVocabulary is empty");
    try {
      model->set_draft_vocabulary(ids);
    } catch (const std::invalid_argument& e) {
      throw Napi::RangeError::New(env, e.what());
    }
  }
  draft_vocabulary_size_ = int64_t(model->draft_vocabulary().size());
  num_params_ = model->num_params();
  vocab_size_ = model->config().vocab_size;
  dtype_name_ = dtype == torch::kFloat32 ? "float32" : dtype == torch::kBFloat16 ? "bfloat16" : "float16";
  if (model->uses_kernels()) {
    const auto type = dtype == torch::kFloat16 ? kernels::WeightType::F16 : kernels::WeightType::BF16;
    kernels_name_ = kernels::isa_name(kernels::active_isa(type));
  }
}

// Drops this object's reference to the weights: they are freed once the sequences made from
// them are gone too. New sequences are refused. Disposing twice is a no-op.
Napi::Value ModelWrap::Dispose(const Napi::CallbackInfo& info) {
  model.reset();
  return info.Env().Undefined();
}

Napi::Value ModelWrap::NumParams(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(num_params_)); }
Napi::Value ModelWrap::VocabSize(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(vocab_size_)); }
// Tokens a draft of this model proposes from: the draft vocabulary's size, else vocabSize.
Napi::Value ModelWrap::DraftVocabularySize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(draft_vocabulary_size_ ? draft_vocabulary_size_ : vocab_size_));
}
Napi::Value ModelWrap::Dtype(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), dtype_name_); }
// The kernels' instruction set in use ("avx512", "avx2", "portable"), or null for libtorch.
Napi::Value ModelWrap::Kernels(const Napi::CallbackInfo& info) {
  if (kernels_name_.empty()) return info.Env().Null();
  return Napi::String::New(info.Env(), kernels_name_);
}
Napi::Value ModelWrap::Threads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), threads); }
void ModelWrap::SetThreads(const Napi::CallbackInfo& info, const Napi::Value& v) { threads = threads_from_value(info.Env(), v); }

}  // namespace cascade::binding
