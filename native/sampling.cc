#include "sampling.h"

#include <stdexcept>

namespace cascade {

void SamplingParams::validate() const {
  if (!(temperature >= 0) || !std::isfinite(temperature)) throw std::invalid_argument("temperature must be a finite number >= 0");
  if (top_k < 0) throw std::invalid_argument("topK must be >= 0");
  if (!(top_p > 0 && top_p <= 1)) throw std::invalid_argument("topP must be in (0, 1]");
}

namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

void Rng::reseed(uint64_t seed) {
  for (auto& s : s_) s = splitmix64(seed);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }

torch::Tensor processed_probs(const torch::Tensor& logits, const SamplingParams& params) {
  auto scaled = logits.to(torch::kFloat32) / params.temperature;
  const int64_t V = scaled.size(0);
  if (params.top_k > 0 && params.top_k < V) {
    auto kth = std::get<0>(torch::topk(scaled, params.top_k)).min();
    scaled = scaled.masked_fill(scaled < kth, -INFINITY);
  }
  auto probs = torch::softmax(scaled, 0);
  if (params.top_p < 1.0) {
    // Keep the smallest set of most likely tokens whose mass reaches top_p (the token that
    // crosses the threshold stays in), then renormalise.
    auto sorted = torch::sort(probs, /*dim=*/0, /*descending=*/true);
    auto sorted_probs = std::get<0>(sorted), order = std::get<1>(sorted);
    auto mass_before = torch::cumsum(sorted_probs, 0) - sorted_probs;
    auto drop_sorted = mass_before >= params.top_p;
    auto drop = torch::zeros_like(drop_sorted).scatter(0, order, drop_sorted);
    probs = probs.masked_fill(drop, 0);
    probs = probs / probs.sum();
  }
  return probs;
}

int64_t sample_from(const torch::Tensor& weights, Rng& rng) {
  auto w = weights.to(torch::kFloat64).contiguous();
  const double* p = w.data_ptr<double>();
  const int64_t V = w.size(0);
  double total = 0;
  for (int64_t i = 0; i < V; ++i) total += p[i];
  if (!(total > 0)) throw std::runtime_error("cannot sample: the distribution has no mass");
  const double target = rng.uniform() * total;
  double acc = 0;
  int64_t last_nonzero = 0;
  for (int64_t i = 0; i < V; ++i) {
    if (p[i] <= 0) continue;
    acc += p[i];
    last_nonzero = i;
    if (target < acc) return i;
  }
  return last_nonzero;  // rounding left `target` a hair past the last bucket
}

int64_t argmax_index(const torch::Tensor& logits) {
  // First maximal index, so ties resolve the same way in every implementation.
  auto l = logits.to(torch::kFloat32).contiguous();
  const float* p = l.data_ptr<float>();
  int64_t best = 0;
  for (int64_t i = 1; i < l.size(0); ++i)
    if (p[i] > p[best]) best = i;
  return best;
}

int64_t pick_token(const torch::Tensor& logits, const SamplingParams& params, Rng& rng) {
  if (params.greedy()) return argmax_index(logits);
  return sample_from(processed_probs(logits, params), rng);
}

}  // namespace cascade
