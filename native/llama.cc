#include "llama.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <map>

#include "safetensors.h"
#include "sampling.h"

namespace cascade {

namespace {

std::string shape_str(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// y = x W^T (+ b) over the last dimension. A single row goes through a matrix-vector product:
// libtorch sends a 1-row mm to a GEMM that is several times slower than its GEMV.
torch::Tensor dense(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b = {}) {
  const int64_t in = x.size(-1);
  const int64_t rows = x.numel() / in;
  torch::Tensor y = rows == 1 ? torch::mv(w, x.reshape({in})) : torch::mm(x.reshape({rows, in}), w.t());
  if (b.defined()) y = y + b;
  auto shape = x.sizes().vec();
  shape.back() = w.size(0);
  return y.view(shape);
}

// As Hugging Face's LlamaRMSNorm: normalise in float32, cast back, then scale.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& w, double eps) {
  auto xf = x.to(torch::kFloat32);
  auto normed = xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return w * normed.to(x.scalar_type());
}

// Rotary embedding in the "rotate half" layout: dimension i pairs with i + hd/2.
// x: [B, T, heads, hd]; cos, sin: [T, 1, hd/2].
torch::Tensor rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  auto x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  return torch::cat({x1 * cos - x2 * sin, x2 * cos + x1 * sin}, -1);
}

torch::Tensor make_inv_freq(const ModelConfig& c) {
  auto exponents = torch::arange(0, c.head_dim, 2, torch::kInt64).to(torch::kFloat32) / double(c.head_dim);
  auto inv = 1.0 / torch::pow(torch::tensor(c.rope_theta, torch::kFloat32), exponents);
  if (c.rope_factor > 0) {
    // Llama 3.1 frequency-dependent scaling: long wavelengths are slowed by `factor`,
    // short ones kept, the band between interpolated smoothly.
    const double low_wavelen = c.rope_original_max_position / c.rope_low_freq_factor;
    const double high_wavelen = c.rope_original_max_position / c.rope_high_freq_factor;
    auto acc = inv.accessor<float, 1>();
    for (int64_t i = 0; i < inv.size(0); ++i) {
      const double f = acc[i];
      const double wavelen = 2 * M_PI / f;
      double out;
      if (wavelen < high_wavelen) out = f;
      else if (wavelen > low_wavelen) out = f / c.rope_factor;
      else {
        const double smooth = (c.rope_original_max_position / wavelen - c.rope_low_freq_factor) /
                              (c.rope_high_freq_factor - c.rope_low_freq_factor);
        out = (1 - smooth) * f / c.rope_factor + smooth * f;
      }
      acc[i] = static_cast<float>(out);
    }
  }
  return inv;
}

}  // namespace

LlamaModel::LlamaModel(const ModelConfig& cfg, torch::ScalarType dtype, torch::Device device)
    : cfg_(cfg), dtype_(dtype), device_(device) {
  cfg_.validate();
  inv_freq_ = make_inv_freq(cfg_);
}

std::pair<torch::Tensor, torch::Tensor> LlamaModel::rope_tables(int64_t positions) const {
  std::lock_guard<std::mutex> lock(rope_mutex_);
  if (!rope_cos_.defined() || rope_cos_.size(0) < positions) {
    // Grown to a multiple of 256 positions so that caches of nearby sizes share one table.
    const int64_t rows = (positions + 255) / 256 * 256;
    auto opts = torch::TensorOptions().dtype(cache_dtype()).device(device_);
    // Angles in float64 so that long positions keep their precision before the cast.
    auto pos = torch::arange(rows, torch::TensorOptions().dtype(torch::kFloat64));
    auto angles = torch::outer(pos, inv_freq_.to(torch::kFloat64));
    rope_cos_ = angles.cos().to(opts);
    rope_sin_ = angles.sin().to(opts);
  }
  return {rope_cos_, rope_sin_};
}

namespace {
// A [rows, cols] matrix held in `dtype` (bfloat16 or float16), packed for the kernels.
kernels::PackedWeight packed(const torch::Tensor& t, torch::ScalarType dtype, bool glu = false) {
  const auto wtype = dtype == torch::kFloat16 ? kernels::WeightType::F16 : kernels::WeightType::BF16;
  const auto stype = dtype == torch::kFloat16 ? kernels::SourceType::F16 : kernels::SourceType::BF16;
  auto ct = t.contiguous();
  return kernels::pack(ct.data_ptr(), stype, ct.size(0), ct.size(1), wtype, glu);
}

// A packed weight back as a [n, k] tensor of `dtype` (exact: the packed values are that type's).
torch::Tensor unpacked(const kernels::PackedWeight& w, torch::ScalarType dtype) {
  auto v = kernels::unpack(w);
  return torch::from_blob(v.data(), {w.n, w.k}, torch::kFloat32).to(dtype);
}
}  // namespace

std::shared_ptr<LlamaModel> LlamaModel::load(const ModelConfig& cfg, const std::vector<std::string>& shards,
                                             torch::ScalarType dtype, torch::Device device, bool use_kernels) {
  if (use_kernels && (!device.is_cpu() || (dtype != torch::kBFloat16 && dtype != torch::kFloat16)))
    throw std::invalid_argument("the kernels need dtype bfloat16 or float16 on the CPU");
  std::shared_ptr<LlamaModel> m(new LlamaModel(cfg, dtype, device));
  m->kernels_ = use_kernels;
  if (shards.empty()) throw std::invalid_argument("no safetensors files given");
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  std::map<std::string, const SafetensorsFile*> where;
  for (const auto& path : shards) {
    files.push_back(std::make_unique<SafetensorsFile>(path));
    for (const auto& entry : files.back()->tensors()) {
      auto [it, fresh] = where.emplace(entry.first, files.back().get());
      if (!fresh)
        throw std::runtime_error(path + ": tensor \"" + entry.first + "\" also stored in " + it->second->path());
    }
  }
  // With the kernels, norms and biases are float32 (the activations' type) and the matrices
  // stay in `dtype` until packed.
  const torch::ScalarType small_dtype = use_kernels ? torch::kFloat32 : dtype;
  auto get = [&](const std::string& name, std::vector<int64_t> shape, torch::ScalarType as) {
    auto it = where.find(name);
    if (it == where.end())
      throw std::runtime_error(files.front()->path() + (files.size() > 1 ? " (and other shards)" : "") +
                               ": missing tensor \"" + name + "\"");
    const auto& entry = it->second->tensors().at(name);
    if (entry.shape != shape)
      throw std::runtime_error(it->second->path() + ": tensor \"" + name + "\" has shape " + shape_str(entry.shape) +
                               " but config.json implies " + shape_str(shape));
    return it->second->load(name, as).to(device);
  };
  const auto& c = m->cfg_;
  const int64_t H = c.hidden_size, I = c.intermediate_size, hd = c.head_dim;
  const int64_t q_rows = c.num_heads * hd, kv_rows = c.num_kv_heads * hd;
  m->embed = get("model.embed_tokens.weight", {c.vocab_size, H}, dtype);
  m->final_norm = get("model.norm.weight", {H}, small_dtype);
  // A tied checkpoint may still store lm_head.weight; Hugging Face uses the embedding then.
  m->lm_head = c.tie_word_embeddings ? m->embed : get("lm_head.weight", {c.vocab_size, H}, dtype);
  if (use_kernels) {
    m->khead_ = packed(m->lm_head, dtype);
    if (!c.tie_word_embeddings) m->lm_head = torch::Tensor();  // only the packed copy is used
  }
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    LayerWeights w;
    w.attn_norm = get(p + "input_layernorm.weight", {H}, small_dtype);
    w.wqkv = torch::cat({get(p + "self_attn.q_proj.weight", {q_rows, H}, dtype), get(p + "self_attn.k_proj.weight", {kv_rows, H}, dtype),
                         get(p + "self_attn.v_proj.weight", {kv_rows, H}, dtype)});
    if (c.attention_bias)
      w.bqkv = torch::cat({get(p + "self_attn.q_proj.bias", {q_rows}, small_dtype), get(p + "self_attn.k_proj.bias", {kv_rows}, small_dtype),
                           get(p + "self_attn.v_proj.bias", {kv_rows}, small_dtype)});
    w.wo = get(p + "self_attn.o_proj.weight", {H, q_rows}, dtype);
    if (c.output_bias) w.bo = get(p + "self_attn.o_proj.bias", {H}, small_dtype);
    w.mlp_norm = get(p + "post_attention_layernorm.weight", {H}, small_dtype);
    w.w_gate_up = torch::cat({get(p + "mlp.gate_proj.weight", {I, H}, dtype), get(p + "mlp.up_proj.weight", {I, H}, dtype)});
    w.w_down = get(p + "mlp.down_proj.weight", {H, I}, dtype);
    if (use_kernels) {
      // The matrices live on packed only; the layer keeps its norms and biases.
      m->klayers_.push_back({packed(w.wqkv, dtype), packed(w.wo, dtype), packed(w.w_gate_up, dtype, /*glu=*/true), packed(w.w_down, dtype)});
      w.wqkv = w.wo = w.w_gate_up = w.w_down = torch::Tensor();
    }
    m->layers_.push_back(std::move(w));
  }
  return m;
}

std::shared_ptr<LlamaModel> LlamaModel::init_random(const ModelConfig& cfg, uint64_t seed, torch::ScalarType dtype,
                                                    torch::Device device) {
  std::shared_ptr<LlamaModel> m(new LlamaModel(cfg, dtype, device));
  auto gen = at::detail::createCPUGenerator(seed);
  auto opts = torch::TensorOptions().dtype(torch::kFloat32);
  // GPT-2 style: N(0, 0.02), residual output projections scaled down by depth.
  auto normal = [&](std::vector<int64_t> shape, double std) {
    return (torch::randn(shape, gen, opts) * std).to(dtype).to(device);
  };
  const auto& c = m->cfg_;
  const int64_t H = c.hidden_size, I = c.intermediate_size, hd = c.head_dim;
  const double out_std = 0.02 / std::sqrt(2.0 * c.num_layers);
  auto ones = [&](int64_t n) { return torch::ones({n}, torch::TensorOptions().dtype(dtype).device(device)); };
  m->embed = normal({c.vocab_size, H}, 0.02);
  m->final_norm = ones(H);
  m->lm_head = c.tie_word_embeddings ? m->embed : normal({c.vocab_size, H}, 0.02);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    LayerWeights w;
    w.attn_norm = ones(H);
    w.wqkv = normal({(c.num_heads + 2 * c.num_kv_heads) * hd, H}, 0.02);
    if (c.attention_bias) w.bqkv = torch::zeros({(c.num_heads + 2 * c.num_kv_heads) * hd}, w.wqkv.options());
    w.wo = normal({H, c.num_heads * hd}, out_std);
    if (c.output_bias) w.bo = torch::zeros({H}, w.wo.options());
    w.mlp_norm = ones(H);
    w.w_gate_up = normal({2 * I, H}, 0.02);
    w.w_down = normal({H, I}, out_std);
    m->layers_.push_back(std::move(w));
  }
  return m;
}

int64_t LlamaModel::num_params() const {
  int64_t n = 0;
  if (kernels_) {
    n = embed.numel() + final_norm.numel() + (cfg_.tie_word_embeddings ? 0 : khead_.n * khead_.k);
    for (size_t i = 0; i < layers_.size(); ++i) {
      for (const auto& t : {layers_[i].attn_norm, layers_[i].bqkv, layers_[i].bo, layers_[i].mlp_norm})
        if (t.defined()) n += t.numel();
      for (const auto* w : {&klayers_[i].wqkv, &klayers_[i].wo, &klayers_[i].gate_up, &klayers_[i].down}) n += w->n * w->k;
    }
    return n;
  }
  for (const auto& t : parameters()) n += t.numel();
  return n;
}


std::vector<torch::Tensor> LlamaModel::parameters() const {
  if (kernels_) {
    // Unpacked copies (for counting and saving; a kernels model is never trained).
    std::vector<torch::Tensor> out;
    for (const auto& nt : named_tensors()) out.push_back(nt.second);
    return out;
  }
  std::vector<torch::Tensor> out{embed, final_norm};
  if (!cfg_.tie_word_embeddings) out.push_back(lm_head);
  for (const auto& w : layers_) {
    for (const auto& t : {w.attn_norm, w.wqkv, w.bqkv, w.wo, w.bo, w.mlp_norm, w.w_gate_up, w.w_down})
      if (t.defined()) out.push_back(t);
  }
  return out;
}

std::vector<std::pair<std::string, torch::Tensor>> LlamaModel::named_tensors() const {
  const auto& c = cfg_;
  const int64_t q_rows = c.num_heads * c.head_dim, kv_rows = c.num_kv_heads * c.head_dim, I = c.intermediate_size;
  std::vector<std::pair<std::string, torch::Tensor>> out{{"model.embed_tokens.weight", embed}};
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    LayerWeights w = layers_[i];
    if (kernels_) {
      const auto& k = klayers_[i];
      w.wqkv = unpacked(k.wqkv, dtype_);
      w.wo = unpacked(k.wo, dtype_);
      w.w_gate_up = unpacked(k.gate_up, dtype_);
      w.w_down = unpacked(k.down, dtype_);
    }
    out.emplace_back(p + "input_layernorm.weight", w.attn_norm);
    out.emplace_back(p + "self_attn.q_proj.weight", w.wqkv.narrow(0, 0, q_rows));
    out.emplace_back(p + "self_attn.k_proj.weight", w.wqkv.narrow(0, q_rows, kv_rows));
    out.emplace_back(p + "self_attn.v_proj.weight", w.wqkv.narrow(0, q_rows + kv_rows, kv_rows));
    if (w.bqkv.defined()) {
      out.emplace_back(p + "self_attn.q_proj.bias", w.bqkv.narrow(0, 0, q_rows));
      out.emplace_back(p + "self_attn.k_proj.bias", w.bqkv.narrow(0, q_rows, kv_rows));
      out.emplace_back(p + "self_attn.v_proj.bias", w.bqkv.narrow(0, q_rows + kv_rows, kv_rows));
    }
    out.emplace_back(p + "self_attn.o_proj.weight", w.wo);
    if (w.bo.defined()) out.emplace_back(p + "self_attn.o_proj.bias", w.bo);
    out.emplace_back(p + "post_attention_layernorm.weight", w.mlp_norm);
    out.emplace_back(p + "mlp.gate_proj.weight", w.w_gate_up.narrow(0, 0, I));
    out.emplace_back(p + "mlp.up_proj.weight", w.w_gate_up.narrow(0, I, I));
    out.emplace_back(p + "mlp.down_proj.weight", w.w_down);
  }
  out.emplace_back("model.norm.weight", final_norm);
  if (!c.tie_word_embeddings) out.emplace_back("lm_head.weight", kernels_ ? unpacked(khead_, dtype_) : lm_head);
  return out;
}

// Attention of one sequence's T new queries q [T, nH, hd] at positions start.. over keys and
// values [nKV, S, hd] holding positions 0..S-1. Returns [T, nH * hd].
torch::Tensor LlamaModel::attend(const torch::Tensor& q, const torch::Tensor& keys, const torch::Tensor& values,
                                 int64_t start) const {
  const auto& c = cfg_;
  const int64_t T = q.size(0), S = keys.size(1), hd = c.head_dim, nH = c.num_heads, nKV = c.num_kv_heads;
  const int64_t group = nH / nKV;
  // Grouped-query attention: query head h reads kv head h / group, so the query heads of a
  // group are laid side by side as extra rows of one batched product per kv head.
  auto qg = q.permute({1, 0, 2}).reshape({nKV, group * T, hd});
  auto scores = torch::matmul(qg, keys.transpose(1, 2)).to(torch::kFloat32) * (1.0 / std::sqrt(double(hd)));
  if (T > 1 || c.sliding_window > 0) {
    auto qpos = torch::arange(start, start + T, torch::kInt64).unsqueeze(1);
    auto kpos = torch::arange(0, S, torch::kInt64).unsqueeze(0);
    auto hidden = kpos > qpos;
    if (c.sliding_window > 0) hidden = hidden.logical_or(qpos - kpos >= c.sliding_window);
    auto mask = torch::zeros({T, S}, torch::kFloat32).masked_fill(hidden, -INFINITY).to(scores.device());
    scores = (scores.view({nKV, group, T, S}) + mask).view({nKV, group * T, S});
  }
  auto probs = torch::softmax(scores, -1).to(q.scalar_type());
  return torch::matmul(probs, values).view({nH, T, hd}).permute({1, 0, 2}).reshape({T, nH * hd});
}

// One decoder layer over the packed rows x [N, H]. With a cache, a segment's new keys and
// values are written into it and attention spans the whole cached prefix; without one
// (training) attention spans the segment itself.
torch::Tensor LlamaModel::layer(int64_t i, const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                const std::vector<Segment>& segments) const {
  const auto& c = cfg_;
  const auto& w = layers_[i];
  const int64_t N = x.size(0), hd = c.head_dim, nH = c.num_heads, nKV = c.num_kv_heads;

  auto qkv = dense(rms_norm(x, w.attn_norm, c.rms_norm_eps), w.wqkv, w.bqkv);
  auto q = rope(qkv.narrow(-1, 0, nH * hd).view({N, nH, hd}), cos, sin);
  auto k = rope(qkv.narrow(-1, nH * hd, nKV * hd).view({N, nKV, hd}), cos, sin);
  auto v = qkv.narrow(-1, (nH + nKV) * hd, nKV * hd).view({N, nKV, hd});

  std::vector<torch::Tensor> outs;
  int64_t row = 0;
  for (const auto& seg : segments) {
    auto qs = q.narrow(0, row, seg.length);
    auto ks = k.narrow(0, row, seg.length).transpose(0, 1);  // [nKV, T, hd]
    auto vs = v.narrow(0, row, seg.length).transpose(0, 1);
    if (seg.cache) {
      auto& cache = *seg.cache;
      cache.keys[i].narrow(1, seg.start, seg.length).copy_(ks);
      cache.values[i].narrow(1, seg.start, seg.length).copy_(vs);
      const int64_t S = seg.start + seg.length;
      outs.push_back(attend(qs, cache.keys[i].narrow(1, 0, S), cache.values[i].narrow(1, 0, S), seg.start));
    } else {
      outs.push_back(attend(qs, ks, vs, 0));
    }
    row += seg.length;
  }
  auto attn = outs.size() == 1 ? outs[0] : torch::cat(outs, 0);
  auto h = x + dense(attn, w.wo, w.bo);

  auto gate_up = dense(rms_norm(h, w.mlp_norm, c.rms_norm_eps), w.w_gate_up);
  const int64_t I = c.intermediate_size;
  auto mlp = torch::silu(gate_up.narrow(-1, 0, I)) * gate_up.narrow(-1, I, I);
  return h + dense(mlp, w.w_down);
}

torch::Tensor LlamaModel::logits(const torch::Tensor& hidden) const {
  return dense(rms_norm(hidden, final_norm, cfg_.rms_norm_eps), lm_head).to(torch::kFloat32);
}

torch::Tensor LlamaModel::forward(const torch::Tensor& tokens, KVCache& cache, bool all_logits) const {
  return forward_packed(tokens, {&cache}, {tokens.size(0)}, all_logits);
}

// outputs[s] must lie in [1, lengths[s]] (callers inside native pass lengths or ones).
static void check_outputs(const std::vector<int64_t>& lengths, const std::vector<int64_t>& outputs) {
  if (outputs.size() != lengths.size()) throw std::logic_error("forward: one output count per sequence");
  for (size_t s = 0; s < lengths.size(); ++s)
    if (outputs[s] < 1 || outputs[s] > lengths[s]) throw std::logic_error("forward: output rows outside [1, length]");
}

torch::Tensor LlamaModel::forward_packed(const torch::Tensor& tokens, const std::vector<KVCache*>& caches,
                                         const std::vector<int64_t>& lengths, bool all_logits) const {
  return forward_packed(tokens, caches, lengths, output_counts(lengths, all_logits));
}

torch::Tensor LlamaModel::forward_packed(const torch::Tensor& tokens, const std::vector<KVCache*>& caches,
                                         const std::vector<int64_t>& lengths, const std::vector<int64_t>& outputs) const {
  check_outputs(lengths, outputs);
  if (kernels_) {
    auto t = tokens.to(torch::kCPU).to(torch::kInt64).contiguous();
    std::vector<int64_t> ids(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
    return forward_kernels(ids, caches, lengths, outputs, nullptr);
  }
  std::vector<Segment> segments;
  std::vector<torch::Tensor> cos_parts, sin_parts;
  std::vector<int64_t> out_rows;
  int64_t row = 0;
  for (size_t s = 0; s < caches.size(); ++s) {
    segments.push_back({caches[s], caches[s]->length(), lengths[s]});
    cos_parts.push_back(caches[s]->cos.narrow(0, caches[s]->length(), lengths[s]));
    sin_parts.push_back(caches[s]->sin.narrow(0, caches[s]->length(), lengths[s]));
    row += lengths[s];
    for (int64_t r = row - outputs[s]; r < row; ++r) out_rows.push_back(r);
  }
  auto cos = (cos_parts.size() == 1 ? cos_parts[0] : torch::cat(cos_parts)).unsqueeze(1);
  auto sin = (sin_parts.size() == 1 ? sin_parts[0] : torch::cat(sin_parts)).unsqueeze(1);
  auto x = embed.index_select(0, tokens.to(device_));  // [N, H]
  for (int64_t i = 0; i < cfg_.num_layers; ++i) x = layer(i, x, cos, sin, segments);
  for (size_t s = 0; s < caches.size(); ++s) caches[s]->set_length(segments[s].start + lengths[s]);
  if (int64_t(out_rows.size()) < row) x = x.index_select(0, torch::tensor(out_rows, torch::kInt64).to(device_));
  return logits(x);
}

void LlamaModel::set_draft_vocabulary(const std::vector<int64_t>& ids) {
  const int64_t V = cfg_.vocab_size;
  if (ids.empty()) {
    draft_ids_.clear();
    kdraft_head_ = kernels::PackedWeight();
    draft_index_ = torch::Tensor();
    return;
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= V)
      throw std::invalid_argument("draft vocabulary: token id " + std::to_string(ids[i]) + " is outside [0, " +
                                  std::to_string(V) + ")");
    if (i > 0 && ids[i] <= ids[i - 1])
      throw std::invalid_argument("draft vocabulary: token ids must be sorted and unique (" + std::to_string(ids[i - 1]) +
                                  " then " + std::to_string(ids[i]) + ")");
  }
  c10::InferenceMode guard;
  auto index = torch::tensor(ids, torch::kInt64);
  if (kernels_) {
    // The rows in the weight dtype (lm_head is kept only when tied; else from the packed copy).
    kdraft_head_ = packed((lm_head.defined() ? lm_head : unpacked(khead_, dtype_)).to(torch::kCPU).index_select(0, index), dtype_);
  }
  draft_index_ = index;
  draft_ids_ = ids;
}

std::vector<int64_t> LlamaModel::forward_packed_argmax(const std::vector<int64_t>& tokens, const std::vector<KVCache*>& caches,
                                                       const std::vector<int64_t>& lengths,
                                                       const std::vector<int64_t>& outputs,
                                                       std::vector<float>* confidence, bool draft_vocabulary) const {
  std::vector<int64_t> out;
  const bool restricted = draft_vocabulary && !draft_ids_.empty();
  if (kernels_) {
    check_outputs(lengths, outputs);
    forward_kernels(tokens, caches, lengths, outputs, &out, confidence, restricted);
    return out;
  }
  auto logits = forward_packed(torch::tensor(tokens, torch::kInt64), caches, lengths, outputs).to(torch::kCPU).to(torch::kFloat32);
  // Over the draft vocabulary: its columns only; the argmax is an index into draft_ids_.
  if (restricted) logits = logits.index_select(1, draft_index_);
  logits = logits.contiguous();
  const int64_t V = logits.size(1);
  const float* p = logits.data_ptr<float>();
  if (confidence) confidence->clear();
  for (int64_t r = 0; r < logits.size(0); ++r) {
    const float* row = p + r * V;
    const int64_t best = argmax_index(row, V);
    out.push_back(restricted ? draft_ids_[size_t(best)] : best);
    if (confidence) {
      double sum = 0;
      for (int64_t i = 0; i < V; ++i) sum += std::exp(double(row[i]) - double(row[best]));
      confidence->push_back(float(1.0 / sum));
    }
  }
  return out;
}

// The kernels' forward. Activations are float32 rows in plain buffers; every matrix product is
// a kernels call (the q/k/v projection one fused weight, gate/up with SiLU one glu kernel, the
// residual adds fused into the o and down projections' stores), and the norms, rotary
// embedding and attention are kernels' row operations on the same buffers, so a pass makes no
// libtorch calls between the embedding lookup and the output.
torch::Tensor LlamaModel::forward_kernels(const std::vector<int64_t>& tokens, const std::vector<KVCache*>& caches,
                                          const std::vector<int64_t>& lengths, const std::vector<int64_t>& outputs,
                                          std::vector<int64_t>* argmax, std::vector<float>* confidence,
                                          bool draft_vocabulary, float* logits_out) const {
  const auto& c = cfg_;
  const int64_t N = static_cast<int64_t>(tokens.size()), H = c.hidden_size, hd = c.head_dim, nH = c.num_heads,
                nKV = c.num_kv_heads, I = c.intermediate_size, V = c.vocab_size;
  const int64_t A = nH * hd, QKV = (nH + 2 * nKV) * hd;
  const float eps = static_cast<float>(c.rms_norm_eps);
  thread_local std::vector<float> x_buf, xn_buf, qkv_buf, attn_buf, g_buf;
  x_buf.resize(size_t(N * H));
  xn_buf.resize(size_t(N * H));
  qkv_buf.resize(size_t(N * QKV));
  attn_buf.resize(size_t(N * A));
  g_buf.resize(size_t(N * I));
  float *x = x_buf.data(), *xn = xn_buf.data(), *qkv = qkv_buf.data(), *attn = attn_buf.data(), *g = g_buf.data();

  const auto* E = static_cast<const uint16_t*>(embed.data_ptr());
  const bool f16 = dtype_ == torch::kFloat16;
  for (int64_t r = 0; r < N; ++r) {
    const uint16_t* e = E + tokens[size_t(r)] * H;
    float* xr = x + r * H;
    if (f16)
      for (int64_t i = 0; i < H; ++i) xr[i] = kernels::f16_to_fp32(e[i]);
    else
      for (int64_t i = 0; i < H; ++i) xr[i] = kernels::bf16_to_fp32(e[i]);
  }
  auto fptr = [](const torch::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; };

  // Only each sequence's last outputs[s] rows reach the output. The last layer still writes
  // every row's keys and values to the cache, but its attention, output projection and MLP run
  // for the R output rows only: nothing else reads the other rows' results (a prompt pass skips
  // about a seventh of its arithmetic on the target). A row's arithmetic depends on its
  // position only, so the rows kept are bit for bit what the full pass computes.
  int64_t R = 0;
  for (const int64_t o : outputs) R += o;
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const auto& w = layers_[size_t(i)];
    const auto& k = klayers_[size_t(i)];
    const bool prune = i == c.num_layers - 1 && R < N;
    kernels::rms_norm(x, N, H, fptr(w.attn_norm), eps, xn);
    kernels::linear(xn, N, k.wqkv, fptr(w.bqkv), qkv);
    int64_t row = 0, out_row = 0;
    for (size_t s = 0; s < caches.size(); ++s) {
      KVCache& cache = *caches[s];
      // Per kv head: keys in 16-position blocks [hd][16], values as rows (kernels::attention).
      const int64_t start = cache.length(), len = lengths[s], slots = cache.keys.size(2);
      float* K = cache.keys.data_ptr<float>() + i * nKV * slots * hd;
      float* Vc = cache.values.data_ptr<float>() + i * nKV * slots * hd;
      const float* cos = cache.cos.data_ptr<float>();
      const float* sin = cache.sin.data_ptr<float>();
      for (int64_t t = 0; t < len; ++t) {
        const int64_t pos = start + t;
        float* q = qkv + (row + t) * QKV;
        kernels::rope(q, nH, hd, cos + pos * (hd / 2), sin + pos * (hd / 2));
        kernels::rope(q + A, nKV, hd, cos + pos * (hd / 2), sin + pos * (hd / 2));
        for (int64_t h = 0; h < nKV; ++h) {
          const float* kr = q + A + h * hd;
          float* kb = K + h * slots * hd + (pos / 16) * hd * 16 + pos % 16;
          for (int64_t d = 0; d < hd; ++d) kb[d * 16] = kr[d];
          std::memcpy(Vc + (h * slots + pos) * hd, q + A + (nKV + h) * hd, size_t(hd) * sizeof(float));
        }
      }
      if (prune) {
        // The sequence's last o queries only, into output rows out_row..; their residual rows
        // move there too (out_row <= row + len - o: a forward move, safe for memmove).
        const int64_t o = outputs[s], first = row + len - o;
        kernels::attention(qkv + first * QKV, QKV, o, nH, nKV, hd, K, Vc, slots * hd, start + len - o,
                           c.sliding_window, attn + out_row * A, A);
        if (first != out_row) std::memmove(x + out_row * H, x + first * H, size_t(o * H) * sizeof(float));
        out_row += o;
      } else {
        kernels::attention(qkv + row * QKV, QKV, len, nH, nKV, hd, K, Vc, slots * hd, start, c.sliding_window,
                           attn + row * A, A);
      }
      row += len;
    }
    const int64_t M = prune ? R : N;
    kernels::linear(attn, M, k.wo, fptr(w.bo), x, /*accumulate=*/true);
    kernels::rms_norm(x, M, H, fptr(w.mlp_norm), eps, xn);
    kernels::linear_glu(xn, M, k.gate_up, g);
    kernels::linear(g, M, k.down, nullptr, x, /*accumulate=*/true);
  }
  for (size_t s = 0; s < caches.size(); ++s) caches[s]->set_length(caches[s]->length() + lengths[s]);

  // The rows wanted: all, or each sequence's last outputs[s] (moved to the front of x above).
  kernels::rms_norm(x, R, H, final_norm.data_ptr<float>(), eps, xn);
  if (argmax) {
    argmax->resize(size_t(R));
    // Over the draft vocabulary: its rows only; the argmax is an index into draft_ids_.
    const auto& head = draft_vocabulary ? kdraft_head_ : khead_;
    if (!confidence) {
      kernels::linear_argmax(xn, R, head, argmax->data(), nullptr, nullptr);
    } else {
      // p(argmax) = exp(max - logsumexp), from the same pass (no logits materialised).
      std::vector<float> max_logit(static_cast<size_t>(R)), lse(static_cast<size_t>(R));
      kernels::linear_argmax(xn, R, head, argmax->data(), max_logit.data(), lse.data());
      confidence->resize(size_t(R));
      for (int64_t r = 0; r < R; ++r) (*confidence)[size_t(r)] = std::exp(max_logit[size_t(r)] - lse[size_t(r)]);
    }
    if (draft_vocabulary)
      for (auto& a : *argmax) a = draft_ids_[size_t(a)];
    return torch::Tensor();
  }
  const bool restricted = draft_vocabulary && !draft_ids_.empty();
  const auto& head = restricted ? kdraft_head_ : khead_;
  if (logits_out) {
    kernels::linear(xn, R, head, nullptr, logits_out);
    return torch::Tensor();
  }
  auto out = torch::empty({R, restricted ? int64_t(draft_ids_.size()) : V}, torch::kFloat32);
  kernels::linear(xn, R, head, nullptr, out.data_ptr<float>());
  return out;
}

void LlamaModel::forward_logits_into(const std::vector<int64_t>& tokens, const std::vector<KVCache*>& caches,
                                     const std::vector<int64_t>& lengths, const std::vector<int64_t>& outputs,
                                     float* out) const {
  check_outputs(lengths, outputs);
  if (kernels_) {
    forward_kernels(tokens, caches, lengths, outputs, nullptr, nullptr, false, out);
    return;
  }
  auto logits = forward_packed(torch::tensor(tokens, torch::kInt64), caches, lengths, outputs)
                    .to(torch::kCPU)
                    .to(torch::kFloat32)
                    .contiguous();
  std::memcpy(out, logits.data_ptr<float>(), size_t(logits.numel()) * sizeof(float));
}

void LlamaModel::forward_draft_logits(const std::vector<int64_t>& tokens, KVCache& cache, float* out) const {
  c10::InferenceMode guard;
  const std::vector<int64_t> lengths{int64_t(tokens.size())}, last{1};
  if (kernels_) {
    forward_kernels(tokens, {&cache}, lengths, last, nullptr, nullptr, /*draft_vocabulary=*/true, out);
    return;
  }
  auto logits = forward_packed(torch::tensor(tokens, torch::kInt64), {&cache}, lengths, last)[0].to(torch::kCPU).to(torch::kFloat32);
  if (!draft_ids_.empty()) logits = logits.index_select(0, draft_index_);
  logits = logits.contiguous();
  std::memcpy(out, logits.data_ptr<float>(), size_t(logits.numel()) * sizeof(float));
}

torch::Tensor LlamaModel::forward_train(const torch::Tensor& tokens) const {
  if (kernels_) throw std::logic_error("forward_train: a kernels model is for inference only");
  const int64_t B = tokens.size(0), T = tokens.size(1);
  auto x = torch::embedding(embed, tokens.reshape({B * T}).to(device_));  // [B*T, H]
  auto angles = torch::outer(torch::arange(T, torch::kFloat32), inv_freq_).to(device_);
  auto cos = angles.cos().to(dtype_).repeat({B, 1}).unsqueeze(1), sin = angles.sin().to(dtype_).repeat({B, 1}).unsqueeze(1);
  std::vector<Segment> segments(B, Segment{nullptr, 0, T});
  for (int64_t i = 0; i < cfg_.num_layers; ++i) x = layer(i, x, cos, sin, segments);
  return logits(x).view({B, T, -1});
}

}  // namespace cascade
