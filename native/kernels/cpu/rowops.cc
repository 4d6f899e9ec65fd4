// fp32 row operations around the linear kernels: RMSNorm, rotary embedding and causal
// (grouped-query, optionally sliding-window) attention of a block of queries over a KV cache.
// They are small next to the weight stream, but as libtorch ops each costs microseconds of
// dispatch and allocation, which at the sizes measured here adds up to a large share of a
// decode. Plain loops, cloned per instruction set (GCC target_clones picks one at load time);
// vectors are GCC vector types, so each clone gets its own width without intrinsics.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/kernels.h"

// v16 values never cross a call boundary (the helpers are always inlined): no ABI concern.
#pragma GCC diagnostic ignored "-Wpsabi"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CASCADE_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CASCADE_CLONES
#endif

namespace cascade::kernels {

namespace {

// 16 floats as one vector (one zmm in the AVX-512 clone, two ymm / four xmm in the others).
typedef float v16 __attribute__((vector_size(64)));
__attribute__((always_inline)) inline v16 load16(const float* p) {
  v16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
__attribute__((always_inline)) inline void store16(float* p, v16 v) { std::memcpy(p, &v, sizeof v); }

__attribute__((always_inline)) inline float dot(const float* a, const float* b, int64_t n) {
  v16 acc = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) acc += load16(a + i) * load16(b + i);
  float s = 0;
  for (; i < n; ++i) s += a[i] * b[i];
  float r[16];
  store16(r, acc);
  for (int w = 8; w >= 1; w >>= 1)
    for (int j = 0; j < w; ++j) r[j] += r[j + w];
  return r[0] + s;
}

// e^x, x <= 0 expected (softmax after subtracting the max): 2^n p(r) as in the linear kernels,
// written so that loops over it vectorize (rounding by the 1.5 * 2^23 trick).
__attribute__((always_inline)) inline float exp_approx(float x) {
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
  if (int64_t(buf.size()) < start + T + 32) buf.resize(size_t(start + T + 32));
  for (int64_t t = 0; t < T; ++t) {
    const int64_t qpos = start + t;
    const int64_t lo = window > 0 && qpos - window + 1 > 0 ? qpos - window + 1 : 0;
    const int64_t S = qpos + 1 - lo;
    float* p = buf.data() + (lo & 15);  // p[s] <-> position lo + s; p - (lo & 15) is 16-aligned in positions
    for (int64_t h = 0; h < nH; ++h) {
      const float* qr = q + t * ldq + h * hd;
      const float* K = keys + (h / group) * head_stride;
      const float* V = values + (h / group) * head_stride + lo * hd;
      // Scores for the 16 positions of each key block at once ([hd][16] contiguous): no
      // horizontal sums, four accumulators over the dimensions for four FMA chains. Positions
      // of the first and last block outside [lo, qpos] are computed and not used.
      for (int64_t b = lo >> 4; b <= qpos >> 4; ++b) {
        const float* k = K + b * hd * 16;
        v16 a0 = {}, a1 = {}, a2 = {}, a3 = {};
        int64_t d = 0;
        for (; d + 4 <= hd; d += 4) {
          a0 += qr[d] * load16(k + d * 16);
          a1 += qr[d + 1] * load16(k + (d + 1) * 16);
          a2 += qr[d + 2] * load16(k + (d + 2) * 16);
          a3 += qr[d + 3] * load16(k + (d + 3) * 16);
        }
        for (; d < hd; ++d) a0 += qr[d] * load16(k + d * 16);
        store16(p - (lo & 15) + (b - (lo >> 4)) * 16, ((a0 + a1) + (a2 + a3)) * scale);
      }
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t s = 0; s < S; ++s) mx = p[s] > mx ? p[s] : mx;
      for (int64_t s = 0; s < S; ++s) p[s] = exp_approx(p[s] - mx);
      v16 vsum = {};
      int64_t s = 0;
      for (; s + 16 <= S; s += 16) vsum += load16(p + s);
      float sum = 0;
      for (; s < S; ++s) sum += p[s];
      float r[16];
      store16(r, vsum);
      for (int w = 8; w >= 1; w >>= 1)
        for (int j = 0; j < w; ++j) r[j] += r[j + w];
      const float inv = 1.f / (r[0] + sum);
      // out = sum_s p_s V[s] / sum: 64 output values (four vectors) per pass over the positions,
      // then 16 at a time with four positions per step (four chains either way).
      float* o = out + t * ldo + h * hd;
      int64_t d0 = 0;
      for (; d0 + 64 <= hd; d0 += 64) {
        v16 a0 = {}, a1 = {}, a2 = {}, a3 = {};
        for (int64_t j = 0; j < S; ++j) {
          const float* vr = V + j * hd + d0;
          const float w = p[j];
          a0 += w * load16(vr);
          a1 += w * load16(vr + 16);
          a2 += w * load16(vr + 32);
          a3 += w * load16(vr + 48);
        }
        store16(o + d0, a0 * inv);
        store16(o + d0 + 16, a1 * inv);
        store16(o + d0 + 32, a2 * inv);
        store16(o + d0 + 48, a3 * inv);
      }
      for (; d0 + 16 <= hd; d0 += 16) {
        v16 a0 = {}, a1 = {}, a2 = {}, a3 = {};
        const float* vr = V + d0;
        int64_t j = 0;
        for (; j + 4 <= S; j += 4) {
          a0 += p[j] * load16(vr + j * hd);
          a1 += p[j + 1] * load16(vr + (j + 1) * hd);
          a2 += p[j + 2] * load16(vr + (j + 2) * hd);
          a3 += p[j + 3] * load16(vr + (j + 3) * hd);
        }
        for (; j < S; ++j) a0 += p[j] * load16(vr + j * hd);
        store16(o + d0, ((a0 + a1) + (a2 + a3)) * inv);
      }
      if (d0 < hd) {
        for (int64_t d = d0; d < hd; ++d) o[d] = 0;
        for (int64_t j = 0; j < S; ++j)
          for (int64_t d = d0; d < hd; ++d) o[d] += p[j] * V[j * hd + d];
        for (int64_t d = d0; d < hd; ++d) o[d] *= inv;
      }
    }
  }
}

}  // namespace cascade::kernels
