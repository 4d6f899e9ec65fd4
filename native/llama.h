// The Llama family (Llama, Mistral, Qwen2): weights and forward passes. One layer function
// serves both inference (a block of new tokens against a KV cache) and training (a batch of
// full sequences with autograd).
#pragma once
#include <torch/torch.h>

#include <mutex>

#include <memory>
#include <string>
#include <vector>

#include "config.h"
#include "kernels/kernels.h"
#include "kv_cache.h"

namespace cascade {

struct LayerWeights {
  torch::Tensor attn_norm;  // [H]
  torch::Tensor wqkv;       // [(nH + 2 nKV) * hd, H]: q, k, v projections stacked, one pass
  torch::Tensor bqkv;       // [(nH + 2 nKV) * hd] or undefined
  torch::Tensor wo;         // [H, nH * hd]
  torch::Tensor bo;         // [H] or undefined (Llama with attention_bias)
  torch::Tensor mlp_norm;   // [H]
  torch::Tensor w_gate_up;  // [2 I, H]: gate then up, one pass
  torch::Tensor w_down;     // [H, I]
};

// The linear layers' weights packed for native/kernels (bf16 or f16), in a kernels model.
struct KernelLayerWeights {
  kernels::PackedWeight wqkv;     // [(nH + 2 nKV) * hd, H]
  kernels::PackedWeight wo;       // [H, nH * hd]
  kernels::PackedWeight gate_up;  // [2 I, H], glu-packed: one kernel computes silu(gate) * up
  kernels::PackedWeight down;     // [H, I]
};

class LlamaModel {
 public:
  // Loads weights from safetensors shards (names as in Hugging Face checkpoints), checking
  // every tensor's presence and shape against the config. Throws naming the file.
  // use_kernels (CPU, dtype bfloat16 or float16): the linear layers' weights are held in `dtype`
  // packed for native/kernels and consumed directly by them; activations, norms, attention and
  // the KV cache are float32 (see forward_kernels). Otherwise libtorch computes in `dtype`.
  static std::shared_ptr<LlamaModel> load(const ModelConfig& cfg, const std::vector<std::string>& shards,
                                          torch::ScalarType dtype, torch::Device device, bool use_kernels = false);
  // Fresh weights for training, reproducible from `seed`.
  static std::shared_ptr<LlamaModel> init_random(const ModelConfig& cfg, uint64_t seed,
                                                 torch::ScalarType dtype, torch::Device device);

  const ModelConfig& config() const { return cfg_; }
  torch::ScalarType dtype() const { return dtype_; }
  torch::Device device() const { return device_; }
  const torch::Tensor& inv_freq() const { return inv_freq_; }
  // RoPE cos / sin tables [rows >= positions, head_dim / 2] in the cache dtype, computed once
  // and shared by every cache of this model (a sequence used to spend more time building its
  // own than a decode step takes). Grown on demand; earlier tables stay valid for their users.
  std::pair<torch::Tensor, torch::Tensor> rope_tables(int64_t positions) const;
  // Where this model's KV caches take their buffers from and return them to.
  const std::shared_ptr<KVBufferPool>& cache_pool() const { return cache_pool_; }
  int64_t num_params() const;
  // True when the linear layers run on native/kernels (bf16 / f16 weights, fp32 activations).
  bool uses_kernels() const { return kernels_; }
  // The KV cache's dtype: float32 with the kernels, else the compute dtype.
  torch::ScalarType cache_dtype() const { return kernels_ ? torch::kFloat32 : dtype_; }

  // Appends `tokens` (all in range, cache has room: checked by the caller) at the cache's
  // current length and returns float32 logits [T, V], or [1, V] for the last position only.
  torch::Tensor forward(const torch::Tensor& tokens, KVCache& cache, bool all_logits) const;

  // Several sequences in one pass: tokens [N] is the concatenation of each cache's new tokens
  // (lengths[s] of them for caches[s]). The projections and MLPs run once over all N rows, so
  // concurrent sequences share the pass over the weights; attention runs per sequence.
  // outputs[s] (in [1, lengths[s]]): how many of sequence s's last positions need logits.
  // Returns float32 logits [sum outputs, V], sequence by sequence. Rows that need no logits
  // still write their keys and values; the kernels skip their last layer's remaining work.
  torch::Tensor forward_packed(const torch::Tensor& tokens, const std::vector<KVCache*>& caches,
                               const std::vector<int64_t>& lengths, const std::vector<int64_t>& outputs) const;
  // The same with logits for every row (all_logits) or each sequence's last position only.
  torch::Tensor forward_packed(const torch::Tensor& tokens, const std::vector<KVCache*>& caches,
                               const std::vector<int64_t>& lengths, bool all_logits) const;
  // forward_packed's logits written into `out` (sum outputs x V floats), which the caller keeps
  // between passes: with the kernels a pass then allocates nothing for them. A fresh [rows, V]
  // tensor of 128 KB or more (8 rows of 4096 tokens) went through mmap, page faults and munmap
  // at every verification in generation.
  void forward_logits_into(const std::vector<int64_t>& tokens, const std::vector<KVCache*>& caches,
                           const std::vector<int64_t>& lengths, const std::vector<int64_t>& outputs, float* out) const;

  // forward_packed for greedy decisions: the argmax of each row's logits (all rows, or each
  // sequence's last), the first maximal index. With the kernels the logits are never
  // materialised (kernels::linear_argmax); otherwise argmax over forward_packed's logits.
  // confidence (optional): each row's softmax probability of its argmax.
  // draft_vocabulary: the argmax (and confidence) over the draft vocabulary only.
  // outputs: as for forward_packed (per sequence, how many last rows; all rows or the last).
  // Token ids come as a vector: with the kernels a pass then creates no tensor at all (a draft
  // model's one-token passes are short enough for that to show).
  std::vector<int64_t> forward_packed_argmax(const std::vector<int64_t>& tokens, const std::vector<KVCache*>& caches,
                                             const std::vector<int64_t>& lengths, const std::vector<int64_t>& outputs,
                                             std::vector<float>* confidence = nullptr,
                                             bool draft_vocabulary = false) const;
  std::vector<int64_t> forward_packed_argmax(const std::vector<int64_t>& tokens, const std::vector<KVCache*>& caches,
                                             const std::vector<int64_t>& lengths, bool all_rows,
                                             std::vector<float>* confidence = nullptr,
                                             bool draft_vocabulary = false) const {
    return forward_packed_argmax(tokens, caches, lengths, output_counts(lengths, all_rows), confidence, draft_vocabulary);
  }
  // The outputs argument for every row (all) or each sequence's last row.
  static std::vector<int64_t> output_counts(const std::vector<int64_t>& lengths, bool all) {
    return all ? lengths : std::vector<int64_t>(lengths.size(), 1);
  }

  // The draft vocabulary: the token ids (sorted, unique, each in [0, V)) this model proposes
  // from when it drafts (Sequence::draft); empty (the default) = every token. A draft model
  // streams its whole output matrix for each proposed token, a large share of a small model's
  // pass; restricted to the tokens its target actually writes, the draft reads only those rows.
  // The proposals form a different, equally valid draft distribution (zero outside the set):
  // verification stays exact. Other passes (verify, step, forward) always use every token.
  // Throws std::invalid_argument on a bad list.
  void set_draft_vocabulary(const std::vector<int64_t>& ids);
  const std::vector<int64_t>& draft_vocabulary() const { return draft_ids_; }
  // A drafting pass: appends tokens to the cache and writes the last row's float32 logits over
  // the draft vocabulary to out, [draft_vocabulary().size()] in its order (with the kernels only
  // those rows of the output matrix are read), or over every token, [V], without one. Into the
  // caller's buffer: a sampled draft makes one pass per token, and a tensor per pass cost
  // several us of allocation and bookkeeping each.
  void forward_draft_logits(const std::vector<int64_t>& tokens, KVCache& cache, float* out) const;

  // Training forward over a batch of sequences from position 0: tokens [B, T] -> logits [B, T, V].
  torch::Tensor forward_train(const torch::Tensor& tokens) const;

  // Hugging Face names -> tensors (views into the fused weights), for saving and training.
  std::vector<std::pair<std::string, torch::Tensor>> named_tensors() const;
  std::vector<torch::Tensor> parameters() const;

 private:
  LlamaModel(const ModelConfig& cfg, torch::ScalarType dtype, torch::Device device);
  // A run of rows of the packed batch: one sequence's new tokens at positions start.. of
  // `cache` (inference), or a whole training sequence from position 0 (cache == nullptr).
  struct Segment {
    KVCache* cache;
    int64_t start;
    int64_t length;
  };
  torch::Tensor layer(int64_t i, const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                      const std::vector<Segment>& segments) const;
  torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& keys, const torch::Tensor& values, int64_t start) const;
  torch::Tensor logits(const torch::Tensor& hidden) const;
  // The kernels' forward over packed segments: logits [rows, V] float32 ([rows, draft vocabulary
  // size] with draft_vocabulary), or (argmax != null) the rows' argmaxes into *argmax (and, if
  // confidence != null, their probabilities) and an undefined tensor. logits_out != null: the
  // logits go there instead, and the tensor returned is undefined.
  torch::Tensor forward_kernels(const std::vector<int64_t>& tokens, const std::vector<KVCache*>& caches,
                                const std::vector<int64_t>& lengths, const std::vector<int64_t>& outputs,
                                std::vector<int64_t>* argmax, std::vector<float>* confidence = nullptr,
                                bool draft_vocabulary = false, float* logits_out = nullptr) const;

  ModelConfig cfg_;
  torch::ScalarType dtype_;
  torch::Device device_;
  torch::Tensor inv_freq_;  // [hd / 2], float32
  mutable std::mutex rope_mutex_;
  std::shared_ptr<KVBufferPool> cache_pool_ = std::make_shared<KVBufferPool>();
  mutable torch::Tensor rope_cos_, rope_sin_;
  torch::Tensor embed;      // [V, H]
  torch::Tensor final_norm; // [H]
  torch::Tensor lm_head;    // [V, H]; the same tensor as `embed` when tied
  std::vector<LayerWeights> layers_;  // with the kernels: norms and biases only (float32)
  bool kernels_ = false;
  std::vector<KernelLayerWeights> klayers_;
  kernels::PackedWeight khead_;  // lm_head (the embedding's values when tied)
  std::vector<int64_t> draft_ids_;      // the draft vocabulary, or empty
  kernels::PackedWeight kdraft_head_;   // with the kernels: lm_head's rows draft_ids_
  torch::Tensor draft_index_;           // draft_ids_ as an int64 tensor (libtorch passes select them)
};

}  // namespace cascade
