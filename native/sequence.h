// A sequence: one model's view of one token stream, owning its KV cache and its sampler.
#pragma once
#include <memory>
#include <vector>

#include "kv_cache.h"
#include "llama.h"
#include "sampling.h"

namespace cascade {

class Sequence {
 public:
  // capacity: the context length in tokens, at most the model's max_position_embeddings.
  Sequence(std::shared_ptr<const LlamaModel> model, int64_t capacity, uint64_t seed);

  const LlamaModel& model() const { return *model_; }
  int64_t length() const { return cache_.length(); }
  int64_t capacity() const { return cache_.capacity(); }

  // Appends tokens; float32 logits [T, V] (all_logits) or [1, V].
  torch::Tensor forward(const std::vector<int64_t>& tokens, bool all_logits);
  // Appends tokens and returns the next token drawn from the last position's logits.
  int64_t step(const std::vector<int64_t>& tokens, const SamplingParams& params);
  // Rolls the cache back to its first n tokens.
  void truncate(int64_t n);
  void reseed(uint64_t seed) { rng_.reseed(seed); }
  Rng& rng() { return rng_; }
  KVCache& cache() { return cache_; }
  // Throws unless `tokens` are valid ids that fit in the remaining context.
  void check_append(const std::vector<int64_t>& tokens) const { check_tokens(tokens); }

  // A drafter's proposal in one call: appends `feed` (tokens emitted since its last call), then
  // proposes k tokens autoregressively under `params`. The last proposal is not appended (the
  // caller appends it with the next feed if it is accepted). When sampling, `probs` receives
  // the processed distribution of each proposal, [k, V]. min_confidence > 0 stops the draft
  // at a position (other than the first) where the draft's most likely token has a probability
  // below it (greedy: the argmax's softmax probability; sampling: the largest probability of
  // the processed distribution, decided before the draw so that the stop does not depend on
  // the drawn token): fewer than k tokens come back then, and the cache again holds all
  // proposals but the last.
  // The rows live in a buffer this sequence keeps (`probs` is a view of it, valid until its next
  // draft): a fresh [k, V] tensor per call cost an allocation and a memset of over 100 KB.
  std::vector<int64_t> draft(const std::vector<int64_t>& feed, int64_t k, const SamplingParams& params,
                             torch::Tensor* probs, float min_confidence = 0.f);

 private:
  std::vector<float> draft_q_;  // Sequence::draft's rows, reused between calls
  void check_tokens(const std::vector<int64_t>& tokens) const;
  // Appends tokens and returns the argmax of the last position's logits (and, if confidence
  // != null, its softmax probability).
  // draft_vocabulary: the argmax over the model's draft vocabulary (LlamaModel).
  int64_t greedy_next(const std::vector<int64_t>& tokens, float* confidence = nullptr, bool draft_vocabulary = false);

  std::shared_ptr<const LlamaModel> model_;
  KVCache cache_;
  Rng rng_;
};

}  // namespace cascade
