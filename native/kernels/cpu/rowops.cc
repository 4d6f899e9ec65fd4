// fp32 row operations around the linear kernels: RMSNorm, rotary embedding and causal
// (grouped-query, optionally sliding-window) attention of a block of queries over a KV cache.
// They are small next to the weight stream, but as libtorch ops each costs microseconds of
// dispatch and allocation, which at the sizes measured here adds up to a large share of a
// decode. Plain loops, cloned per instruction set (GCC target_clones picks one at load time);
// sums are kept in 16 independent partial sums so they vectorize without -ffast-math.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/kernels.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CASCADE_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CASCADE_CLONES
#endif

namespace cascade::kernels {

namespace {

inline float dot(const float* a, const float* b, int64_t n) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b[i + j];
  float s = 0;
  for (; i < n; ++i) s += a[i] * b[i];
  for (int j = 0; j < 16; ++j) s += acc[j];
  return s;
}

// e^x, x <= 0 expected (softmax after subtracting the max): 2^n p(r) as in the linear kernels,
// written so that loops over it vectorize (rounding by the 1.5 * 2^23 trick).
inline float exp_approx(float x) {
  x = x < -87.f ? -87.f : x;
  x = x > 88.f ? 88.f : x;
  const float n = (x * 1.44269504088896341f + 12582912.f) - 12582912.f;
  float r = x - n * 0.693145751953125f;
  r = r - n * 1.428606765330187045e-06f;
  float p = 1.f / 720;
  p = p * r + 1.f / 120;
  p = p * r + 1.f / 24;
  p = p * r + 1.f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  const int32_t bits = (int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

}  // namespace

CASCADE_CLONES
void rms_norm(const float* x, int64_t M, int64_t H, const float* w, float eps, float* y) {
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = x + m * H;
    float* yr = y + m * H;
    const float inv = 1.f / std::sqrt(dot(xr, xr, H) / float(H) + eps);
    for (int64_t i = 0; i < H; ++i) yr[i] = w[i] * (xr[i] * inv);
  }
}

CASCADE_CLONES
void rope(float* x, int64_t heads, int64_t hd, const float* cos, const float* sin) {
  const int64_t half = hd / 2;
  for (int64_t h = 0; h < heads; ++h) {
    float* a = x + h * hd;
    float* b = a + half;
    for (int64_t i = 0; i < half; ++i) {
      const float x1 = a[i], x2 = b[i];
      a[i] = x1 * cos[i] - x2 * sin[i];
      b[i] = x2 * cos[i] + x1 * sin[i];
    }
  }
}

CASCADE_CLONES
void attention(const float* q, int64_t ldq, int64_t T, int64_t nH, int64_t nKV, int64_t hd, const float* keys,
               const float* values, int64_t head_stride, int64_t start, int64_t window, float* out, int64_t ldo) {
  const int64_t group = nH / nKV;
  const float scale = 1.f / std::sqrt(float(hd));
  thread_local std::vector<float> buf;
  if (int64_t(buf.size()) < start + T) buf.resize(size_t(start + T));
  float* p = buf.data();
  for (int64_t t = 0; t < T; ++t) {
    const int64_t qpos = start + t;
    const int64_t lo = window > 0 && qpos - window + 1 > 0 ? qpos - window + 1 : 0;
    const int64_t S = qpos + 1 - lo;
    for (int64_t h = 0; h < nH; ++h) {
      const float* qr = q + t * ldq + h * hd;
      const float* K = keys + (h / group) * head_stride + lo * hd;
      const float* V = values + (h / group) * head_stride + lo * hd;
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t s = 0; s < S; ++s) {
        p[s] = dot(qr, K + s * hd, hd) * scale;
        mx = p[s] > mx ? p[s] : mx;
      }
      for (int64_t s = 0; s < S; ++s) p[s] = exp_approx(p[s] - mx);
      float acc[16] = {};
      int64_t s = 0;
      for (; s + 16 <= S; s += 16)
        for (int j = 0; j < 16; ++j) acc[j] += p[s + j];
      float sum = 0;
      for (; s < S; ++s) sum += p[s];
      for (int j = 0; j < 16; ++j) sum += acc[j];
      const float inv = 1.f / sum;
      float* o = out + t * ldo + h * hd;
      for (int64_t d = 0; d < hd; ++d) o[d] = 0;
      for (int64_t s2 = 0; s2 < S; ++s2) {
        const float ws = p[s2] * inv;
        const float* vr = V + s2 * hd;
        for (int64_t d = 0; d < hd; ++d) o[d] += ws * vr[d];
      }
    }
  }
}

}  // namespace cascade::kernels
