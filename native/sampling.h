// Turning logits into tokens: the processed distribution (temperature, top-k, top-p, min-p, in
// the order Hugging Face applies them) and a seeded generator whose stream is the same on every
// platform, so a seed reproduces a generation exactly.
#pragma once
#include <torch/torch.h>

#include <cstdint>

namespace cascade {

struct SamplingParams {
  double temperature = 0;  // 0: greedy (argmax)
  int64_t top_k = 0;       // 0: off
  double top_p = 1.0;      // 1: off
  double min_p = 0;        // 0: off
  bool greedy() const { return temperature <= 0; }
  void validate() const;
};

// xoshiro256** seeded through splitmix64.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0) { reseed(seed); }
  void reseed(uint64_t seed);
  uint64_t next();
  double uniform();  // [0, 1) with 53 random bits
 private:
  uint64_t s_[4];
};

// logits [V] -> probabilities [V] of the processed distribution: softmax(logits / T); top-k
// keeps the tokens whose scaled logit is >= the k-th largest; top-p (on the top-k
// distribution) keeps a token iff the mass of the tokens strictly more probable than it is
// < top_p (tied tokens stay or go together); min-p (on the top-p distribution) keeps a token iff
// its probability is >= min_p times the largest one; renormalised; zeros elsewhere. Not for greedy
// parameters. Plain loops over the row: as libtorch ops (topk, sort, cumsum, scatter) the
// processing cost a sampled decode 10-40% and a sampled draft token several times its pass.
void processed_probs(const float* logits, int64_t V, const SamplingParams& params, float* out);
// Inverse-CDF draw from unnormalised non-negative weights [V] (accumulated in double, in index
// order, one uniform per draw). total: sum_double(weights, V) when the caller has it already.
int64_t sample_from(const float* weights, int64_t V, Rng& rng, double total = -1);
// The sum of n floats, accumulated in double in four chains (a single chain waits on the
// latency of each add).
double sum_double(const float* x, int64_t n);
// First maximal index.
int64_t argmax_index(const float* logits, int64_t V);
// The next token from logits [V] under `params`.
int64_t pick_token(const torch::Tensor& logits, const SamplingParams& params, Rng& rng);

}  // namespace cascade
