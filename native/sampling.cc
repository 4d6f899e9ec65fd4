#include "sampling.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <stdexcept>
#include <vector>

#include "kernels/kernels.h"

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

void processed_probs(const float* logits, int64_t V, const SamplingParams& params, float* out) {
  const float t = static_cast<float>(params.temperature);
  const float* x = logits;
  thread_local std::vector<float> masked;
  if (params.top_k > 0 && params.top_k < V) {
    // The k-th largest scaled logit; every token below it leaves (ties with it stay).
    masked.resize(size_t(V));
    for (int64_t i = 0; i < V; ++i) masked[size_t(i)] = logits[i] / t;
    std::nth_element(masked.begin(), masked.begin() + (params.top_k - 1), masked.end(), std::greater<float>());
    const float kth = masked[size_t(params.top_k - 1)];
    for (int64_t i = 0; i < V; ++i) masked[size_t(i)] = logits[i] / t < kth ? -INFINITY : logits[i];
    x = masked.data();
  }
  kernels::softmax(x, V, t, out);
  if (params.top_p >= 1.0) return;
  // A token stays iff the mass of the tokens strictly more probable than it is < top_p. That
  // mass only grows as the probability falls, so the kept tokens are those above a cut: the
  // largest probability whose mass above reaches top_p (when none does, every token stays).
  // Found by quickselect over the values, O(V) expected; sorting 4096 probabilities cost more
  // than the whole processing should.
  //
  // First the tokens that surely leave: if the n tokens above a threshold hold mass M, a
  // token at or below t = (M - top_p) / n has at least M - n t = top_p above it. Starting
  // from (1 - top_p) / V, a few such passes leave the candidates of a peaked distribution
  // at a few dozen, before any selection.
  thread_local std::vector<float> vals;
  vals.clear();
  // The mass is a sum of float probabilities: SLACK keeps rounding from dropping a token the
  // exact rule would keep.
  constexpr double SLACK = 1e-5;
  double low = std::max(0.0, (1.0 - params.top_p - SLACK) / double(V)), mass = 0;
  for (int64_t i = 0; i < V; ++i)
    if (out[i] > low) {
      vals.push_back(out[i]);
      mass += out[i];
    }
  for (int pass = 0; pass < 8 && !vals.empty(); ++pass) {
    const double t2 = (mass - params.top_p - SLACK) / double(vals.size());
    if (!(t2 > low)) break;
    const size_t before = vals.size();
    mass = 0;
    vals.erase(std::remove_if(vals.begin(), vals.end(), [t2](float v) { return v <= t2; }), vals.end());
    for (const float v : vals) mass += v;
    low = t2;
    if (vals.size() * 10 > before * 9) break;  // little left to gain
  }
  // Every token at or below `low` leaves; among the candidates the exact cut is found below.
  double cut = low;
  double need = params.top_p;  // mass still needed above the candidates in [lo, hi)
  size_t lo = 0, hi = vals.size();
  while (lo < hi) {
    const auto first = vals.begin() + lo, last = vals.begin() + hi, mid = first + (hi - lo) / 2;
    std::nth_element(first, mid, last, std::greater<float>());
    const float x = *mid;
    const auto above = std::partition(first, last, [x](float v) { return v > x; });
    const auto equal = std::partition(above, last, [x](float v) { return v == x; });
    double m_above = 0, m_equal = 0;
    for (auto it = first; it != above; ++it) m_above += *it;
    for (auto it = above; it != equal; ++it) m_equal += *it;
    if (m_above >= need) {
      cut = x;  // x's tokens leave; a larger value may qualify too
      hi = size_t(above - vals.begin());
    } else {
      need -= m_above + m_equal;  // x's tokens and everything above stay
      lo = size_t(equal - vals.begin());
      if (need <= 0) {
        if (lo < hi) cut = *std::max_element(vals.begin() + lo, vals.begin() + hi);
        break;
      }
    }
  }
  double kept = 0;
  for (int64_t i = 0; i < V; ++i) {
    if (out[i] <= cut) out[i] = 0;
    kept += out[i];
  }
  const double inv = 1.0 / kept;
  for (int64_t i = 0; i < V; ++i) out[i] = static_cast<float>(out[i] * inv);
}

int64_t sample_from(const float* p, int64_t V, Rng& rng) {
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

int64_t argmax_index(const float* p, int64_t V) {
  // First maximal index, so ties resolve the same way in every implementation.
  int64_t best = 0;
  for (int64_t i = 1; i < V; ++i)
    if (p[i] > p[best]) best = i;
  return best;
}

int64_t pick_token(const torch::Tensor& logits, const SamplingParams& params, Rng& rng) {
  auto l = logits.to(torch::kCPU).to(torch::kFloat32).contiguous();
  const int64_t V = l.size(0);
  if (params.greedy()) return argmax_index(l.data_ptr<float>(), V);
  thread_local std::vector<float> p;
  p.resize(size_t(V));
  processed_probs(l.data_ptr<float>(), V, params, p.data());
  return sample_from(p.data(), V, rng);
}

}  // namespace cascade
