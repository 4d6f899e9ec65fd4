#include "sampling.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <vector>

#include "kernels/kernels.h"

namespace cascade {

void SamplingParams::validate() const {
  if (!(temperature >= 0) || !std::isfinite(temperature)) throw std::invalid_argument("temperature must be a finite number >= 0");
  if (top_k < 0) throw std::invalid_argument("topK must be >= 0");
  if (!(top_p > 0 && top_p <= 1)) throw std::invalid_argument("topP must be in (0, 1]");
  if (!(min_p >= 0 && min_p <= 1)) throw std::invalid_argument("minP must be in [0, 1]");
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

double sum_double(const float* x, int64_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += x[i];
    s1 += x[i + 1];
    s2 += x[i + 2];
    s3 += x[i + 3];
  }
  for (; i < n; ++i) s0 += x[i];
  return (s0 + s1) + (s2 + s3);
}

namespace {
// The largest float <= x (x >= 0): for a float v, v > x exactly when v > float_at_most(x).
inline float float_at_most(double x) {
  float f = static_cast<float>(x);
  if (double(f) > x) f = std::nextafter(f, 0.f);
  return f;
}

// A positive float's bits order like its value; >> 20 keeps the exponent and 3 mantissa bits,
// so each bucket spans an eighth of an octave.
inline uint32_t bucket_of(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  return u >> 20;
}

// The k-th largest of logits[i] / t, duplicates counted. Division by t > 0 (correctly
// rounded) never reverses an order, so that is the k-th largest logit divided by t, and the
// selection runs on the logits themselves. For the usual small k a min-heap of the k largest
// sees most logits in one comparison; nth_element over a copy of the row cost more than the
// rest of the processing.
float kth_largest_scaled(const float* logits, int64_t V, float t, int64_t k) {
  thread_local std::vector<float> buf;
  buf.assign(logits, logits + (k * 8 > V ? V : k));
  if (k * 8 > V) {
    std::nth_element(buf.begin(), buf.begin() + (k - 1), buf.end(), std::greater<float>());
    return buf[size_t(k - 1)] / t;
  }
  std::make_heap(buf.begin(), buf.end(), std::greater<float>());
  for (int64_t i = k; i < V; ++i) {
    if (logits[i] > buf.front()) {
      std::pop_heap(buf.begin(), buf.end(), std::greater<float>());
      buf.back() = logits[i];
      std::push_heap(buf.begin(), buf.end(), std::greater<float>());
    }
  }
  return buf.front() / t;
}
}  // namespace

namespace {
// Min-p (Nguyen et al., 2024) on probabilities p [V] that sum to 1: a token stays iff p >=
// min_p * max(p); the kept ones are renormalised in place. The ratio to the largest does not
// change with renormalisation, so this is the rule on any earlier filter's output too.
void keep_min_p(float* p, int64_t V, double min_p) {
  float top = 0;
  for (int64_t i = 0; i < V; ++i) top = p[i] > top ? p[i] : top;
  // p >= threshold for a float p exactly when p > the largest float below the smallest float
  // >= threshold.
  const double threshold = min_p * double(top);
  float at_least = static_cast<float>(threshold);
  if (double(at_least) < threshold) at_least = std::nextafter(at_least, INFINITY);
  const float cut = std::nextafter(at_least, 0.f);
  double kept = 0;
  for (int64_t i = 0; i < V; ++i) kept += p[i] > cut ? double(p[i]) : 0.0;
  kernels::keep_above_scaled(p, V, cut, static_cast<float>(1.0 / kept));
}

// Top-p on probabilities p [V] that sum to 1, in place (see processed_probs).
void keep_top_p(float* out, int64_t V, double top_p) {
  // A token stays iff the mass of the tokens strictly more probable than it is < top_p. That
  // mass only grows as the probability falls, so the kept tokens are those above a cut: the
  // largest probability whose mass above reaches top_p (when none does, every token stays).
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
  double low = std::max(0.0, (1.0 - top_p - SLACK) / double(V));
  // Kept values are compacted (kernels::compact_above: runs of values all at or below the
  // threshold are skipped, the others compacted without branches, since whether a token is
  // kept is a coin toss in a flat distribution).
  vals.resize(size_t(V));
  int64_t n = kernels::compact_above(out, V, float_at_most(low), vals.data());
  double mass = sum_double(vals.data(), n);
  for (int pass = 0; pass < 8 && n > 0; ++pass) {
    const double t2 = (mass - top_p - SLACK) / double(n);
    if (!(t2 > low)) break;
    const int64_t before = n;
    const float t2f = float_at_most(t2);
    n = 0;
    for (int64_t i = 0; i < before; ++i) {
      const float v = vals[size_t(i)];
      vals[size_t(n)] = v;
      n += v > t2f;
    }
    mass = sum_double(vals.data(), n);
    low = t2;
    if (n * 10 > before * 9) break;  // little left to gain
  }
  vals.resize(size_t(n));
  // Every token at or below `low` leaves. Among the candidates the cut is found by their mass
  // per bucket (an eighth of an octave each), from the most probable bucket down: the first
  // bucket that brings the mass above to top_p holds the cut, and only its few values are
  // sorted. Sorting or selecting over all candidates cost several times the softmax.
  double cut = low, kept = 0;
  if (!vals.empty()) {
    const uint32_t base = bucket_of(*std::min_element(vals.begin(), vals.end()));
    const uint32_t top = bucket_of(*std::max_element(vals.begin(), vals.end()));
    thread_local std::vector<double> bucket_mass;
    bucket_mass.assign(size_t(top - base + 1), 0.0);
    for (const float v : vals) bucket_mass[bucket_of(v) - base] += v;
    double above = 0;  // mass of the buckets above the current one
    int64_t b = int64_t(top - base);
    for (; b >= 0 && above + bucket_mass[size_t(b)] < top_p; --b) above += bucket_mass[size_t(b)];
    if (b < 0) {
      kept = above;  // the candidates hold less than top_p: all of them stay
    } else {
      thread_local std::vector<float> in;
      in.clear();
      for (const float v : vals)
        if (int64_t(bucket_of(v) - base) == b) in.push_back(v);
      std::sort(in.begin(), in.end(), std::greater<float>());
      // Walk the bucket's values down, a group of equal values at a time.
      double run = above;
      bool found = false;
      for (size_t j = 0; j < in.size();) {
        const float v = in[j];
        if (run >= top_p) {
          cut = v;  // v's tokens and everything below leave
          found = true;
          break;
        }
        for (; j < in.size() && in[j] == v; ++j) run += in[j];
      }
      // The whole bucket stays: the cut is just below its smallest value.
      if (!found) cut = std::nextafter(in.back(), 0.f);
      kept = run;
    }
  }
  // One vectorized pass: a float compare against the largest float <= cut is the same test as
  // against cut itself.
  kernels::keep_above_scaled(out, V, float_at_most(cut), static_cast<float>(1.0 / kept));
}
}  // namespace

void processed_probs(const float* logits, int64_t V, const SamplingParams& params, float* out) {
  const float t = static_cast<float>(params.temperature);
  const float* x = logits;
  thread_local std::vector<float> masked;
  if (params.top_k > 0 && params.top_k < V) {
    // Every token whose scaled logit is below the k-th largest leaves (ties with it stay).
    const float kth = kth_largest_scaled(logits, V, t, params.top_k);
    masked.resize(size_t(V));
    for (int64_t i = 0; i < V; ++i) masked[size_t(i)] = logits[i] / t < kth ? -INFINITY : logits[i];
    x = masked.data();
  }
  kernels::softmax(x, V, t, out);
  if (params.top_p < 1.0) keep_top_p(out, V, params.top_p);
  if (params.min_p > 0) keep_min_p(out, V, params.min_p);
}

int64_t sample_from(const float* p, int64_t V, Rng& rng, double total) {
  if (total < 0) total = sum_double(p, V);
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
