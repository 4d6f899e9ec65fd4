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

#include "kernels/cpu/cpu_impl.h"
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

// ---- attention ----
// All query rows that read one kv head (the group's heads x the block's T tokens) are processed
// together, so that each key / value vector loaded feeds several rows' FMAs: scores for a tile of
// rows x 16-position key blocks, softmax per row, then the weighted value sum for a tile of rows x
// 16-dimension chunks. Each row's arithmetic is fixed by its position alone -- a score is one
// FMA chain over the dimensions in order, the softmax sums over the row's own key blocks, the
// value sum one chain per output element over the positions in order, where positions outside
// the row's range weigh exactly 0 -- so a row's result does not depend on T, on the rows tiled
// with it, or on the thread count (attention is not split across threads). Scores of lanes past
// the last query position (unwritten cache slots) are computed and replaced by -inf with a
// select, so whatever they hold never reaches a result; values are read only up to that position.
namespace {

typedef int32_t vi16 __attribute__((vector_size(64)));

__attribute__((always_inline)) inline v16 splat(float x) { return v16{} + x; }

// e^x = 2^n p(r) for a clamped x, as in the linear kernels: n = x / ln 2 rounded by the
// 1.5 * 2^23 trick, r = x - n ln 2 in two parts, p the degree-6 Taylor polynomial. One body for
// 16 lanes (F = v16) and for one float, so both attention paths share constants and order.
template <class F>
__attribute__((always_inline)) inline F exp_poly(F x, F* n_out) {
  const F n = (x * 1.44269504088896341f + 12582912.f) - 12582912.f;
  F r = x - n * 0.693145751953125f;
  r = r - n * 1.428606765330187045e-06f;
  F p = F{} + 1.f / 720;
  p = p * r + 1.f / 120;
  p = p * r + 1.f / 24;
  p = p * r + 1.f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  *n_out = n;
  return p;
}

// e^x on 16 lanes, x <= 0 expected (softmax after subtracting the max).
__attribute__((always_inline)) inline v16 exp16(v16 x) {
  const v16 lo = splat(-87.f), hi = splat(88.f);
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  v16 n;
  const v16 p = exp_poly(x, &n);
  const vi16 bits = (__builtin_convertvector(n, vi16) + 127) << 23;
  v16 scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

__attribute__((always_inline)) inline float hsum(v16 v) {
  float r[16];
  store16(r, v);
  for (int w = 8; w >= 1; w >>= 1)
    for (int j = 0; j < w; ++j) r[j] += r[j + w];
  return r[0];
}

// Scores of RT rows for BT consecutive key blocks ([hd][16] each, kb the first): P[r][16 b + l] =
// scale * sum_d q_r[d] k[d][l], one chain per score over d in order.
template <int RT, int BT>
__attribute__((always_inline)) inline void score_tile(const float* const* qr, int64_t hd, const float* kb, float scale,
                                                      float* P, int64_t ldp) {
  v16 acc[RT][BT];
#pragma GCC unroll 16
  for (int r = 0; r < RT; ++r)
#pragma GCC unroll 16
    for (int b = 0; b < BT; ++b) acc[r][b] = v16{};
  for (int64_t d = 0; d < hd; ++d) {
    v16 kv[BT];
#pragma GCC unroll 16
    for (int b = 0; b < BT; ++b) kv[b] = load16(kb + b * hd * 16 + d * 16);
#pragma GCC unroll 16
    for (int r = 0; r < RT; ++r) {
      const float qv = qr[r][d];
#pragma GCC unroll 16
      for (int b = 0; b < BT; ++b) acc[r][b] += qv * kv[b];
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < RT; ++r)
#pragma GCC unroll 16
    for (int b = 0; b < BT; ++b) store16(P + r * ldp + b * 16, acc[r][b] * scale);
}

// out_r[c0 + 16 c + i] = inv_r * sum_{j in [ja, jb]} P[r][j] V[j][c0 + 16 c + i] for RT rows and CT
// 16-dimension chunks at c0 (P and V indexed by position relative to the same base), one chain
// per output element over the positions in order.
template <int RT, int CT>
__attribute__((always_inline)) inline void pv_tile(const float* P, int64_t ldp, const float* V, int64_t hd, int64_t c0,
                                                   int64_t ja, int64_t jb, float* const* outr, const float* inv) {
  v16 acc[RT][CT];
#pragma GCC unroll 16
  for (int r = 0; r < RT; ++r)
#pragma GCC unroll 16
    for (int c = 0; c < CT; ++c) acc[r][c] = v16{};
  for (int64_t j = ja; j <= jb; ++j) {
    const float* vr = V + j * hd + c0;
    v16 vv[CT];
#pragma GCC unroll 16
    for (int c = 0; c < CT; ++c) vv[c] = load16(vr + c * 16);
#pragma GCC unroll 16
    for (int r = 0; r < RT; ++r) {
      const float w = P[r * ldp + j];
#pragma GCC unroll 16
      for (int c = 0; c < CT; ++c) acc[r][c] += w * vv[c];
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < RT; ++r)
#pragma GCC unroll 16
    for (int c = 0; c < CT; ++c) store16(outr[r] + c0 + c * 16, acc[r][c] * inv[r]);
}

// Register tilings: Tiles::SR rows x SB key blocks for the scores, up to Tiles::ACC accumulators
// (rows x 16-dimension chunks) for the value sums, sized for 32 vector registers of 16 floats
// (AVX-512). Tilings do not change any result (see above).
template <int SR_, int SB_, int ACC_>
struct Tiles {
  static constexpr int SR = SR_, SB = SB_, ACC = ACC_;
};
using WideTiles = Tiles<4, 4, 24>;
constexpr int kRowTile = 64;  // rows per pass over a kv head's keys and values

// score_tile<RT, BT> with BT = nb (1 <= nb <= B), by recursion on B.
template <int RT, int B>
__attribute__((always_inline)) inline void score_blocks_rem(const float* const* qr, int64_t hd, const float* kb,
                                                            int64_t nb, float scale, float* P, int64_t ldp) {
  if (nb == B)
    score_tile<RT, B>(qr, hd, kb, scale, P, ldp);
  else if constexpr (B > 1)
    score_blocks_rem<RT, B - 1>(qr, hd, kb, nb, scale, P, ldp);
}

template <class TL, int RT>
__attribute__((always_inline)) inline void score_rows(const float* const* qr, int64_t hd, const float* kb, int64_t nb,
                                                      float scale, float* P, int64_t ldp) {
  int64_t b = 0;
  for (; b + TL::SB <= nb; b += TL::SB) score_tile<RT, TL::SB>(qr, hd, kb + b * hd * 16, scale, P + b * 16, ldp);
  if (nb > b) score_blocks_rem<RT, TL::SB - 1 >= 1 ? TL::SB - 1 : 1>(qr, hd, kb + b * hd * 16, nb - b, scale, P + b * 16, ldp);
}

// score_rows<RT = m> (1 <= m <= R), by recursion on R.
template <class TL, int R>
__attribute__((always_inline)) inline void score_rows_rem(int64_t m, const float* const* qr, int64_t hd, const float* kb,
                                                          int64_t nb, float scale, float* P, int64_t ldp) {
  if (m == R)
    score_rows<TL, R>(qr, hd, kb, nb, scale, P, ldp);
  else if constexpr (R > 1)
    score_rows_rem<TL, R - 1>(m, qr, hd, kb, nb, scale, P, ldp);
}

// pv_tile<RT = m, CT> (1 <= m <= R) over the positions the m rows need, by recursion on R.
template <int R, int CT>
__attribute__((always_inline)) inline void pv_rows_rem(int64_t m, const float* P, int64_t ldp, const float* V,
                                                       int64_t hd, int64_t c0, const int64_t* ja, const int64_t* jb,
                                                       float* const* outr, const float* inv) {
  if (m == R)
    pv_tile<R, CT>(P, ldp, V, hd, c0, ja[0], jb[R - 1], outr, inv);
  else if constexpr (R > 1)
    pv_rows_rem<R - 1, CT>(m, P, ldp, V, hd, c0, ja, jb, outr, inv);
}

// The n rows of a tile, CT chunks at c0: tiles of up to TL::ACC accumulators.
template <class TL, int CT>
__attribute__((always_inline)) inline void pv_rows(const float* P, int64_t ldp, const float* V, int64_t hd, int64_t c0,
                                                   const int64_t* ja, const int64_t* jb, float* const* outr,
                                                   const float* inv, int64_t n) {
  constexpr int RMAX = TL::ACC / CT < 1 ? 1 : TL::ACC / CT > 8 ? 8 : TL::ACC / CT;
  int64_t r = 0;
  for (; r + RMAX <= n; r += RMAX)
    pv_tile<RMAX, CT>(P + r * ldp, ldp, V, hd, c0, ja[r], jb[r + RMAX - 1], outr + r, inv + r);
  if (n > r) pv_rows_rem<RMAX, CT>(n - r, P + r * ldp, ldp, V, hd, c0, ja + r, jb + r, outr + r, inv + r);
}

template <class TL>
__attribute__((always_inline)) inline void attention_impl(const float* q, int64_t ldq, int64_t T, int64_t nH,
                                                          int64_t nKV, int64_t hd, const float* keys,
                                                          const float* values, int64_t head_stride, int64_t start,
                                                          int64_t window, float* out, int64_t ldo) {
  const int64_t group = nH / nKV, R = group * T;
  const float scale = 1.f / std::sqrt(float(hd));
  const float ninf = -std::numeric_limits<float>::infinity();
  const int64_t tile = R < kRowTile ? R : kRowTile;
  const int64_t maxb = ((start + T - 1) >> 4) + 1;
  thread_local std::vector<float> pbuf;
  thread_local cpu::KvHeadRows rows;  // the rows of a kv head (see cpu_impl.h)
  auto& qptr = rows.q;
  auto& optr = rows.out;
  auto &jab = rows.lo, &jbb = rows.hi;
  auto& invb = rows.inv;
  if (int64_t(pbuf.size()) < tile * maxb * 16) pbuf.resize(size_t(tile * maxb * 16));
  const v16 lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  const int64_t C = hd / 16, tail = hd - C * 16;

  for (int64_t g = 0; g < nKV; ++g) {
    const float* K = keys + g * head_stride;
    const float* V = values + g * head_stride;
    for (int64_t r0 = 0; r0 < R; r0 += tile) {
      const int64_t n = R - r0 < tile ? R - r0 : tile;
      rows.fill(g, r0, n, group, q, ldq, out, ldo, hd, start, window);
      // Key blocks b0..b1 cover every row of the tile; P[i][16 (b - b0) + l] <-> position 16 b + l.
      const int64_t b0 = jab[0] >> 4, b1 = jbb[size_t(n - 1)] >> 4, nb = b1 - b0 + 1, ldp = nb * 16;
      const int64_t base = b0 * 16;
      float* P = pbuf.data();
      const float* kb = K + b0 * hd * 16;
      {
        int64_t i = 0;
        for (; i + TL::SR <= n; i += TL::SR) score_rows<TL, TL::SR>(qptr.data() + i, hd, kb, nb, scale, P + i * ldp, ldp);
        if (n > i) score_rows_rem<TL, TL::SR>(n - i, qptr.data() + i, hd, kb, nb, scale, P + i * ldp, ldp);
      }
      // Softmax per row over its own blocks; every other block of the tile weighs 0.
      for (int64_t i = 0; i < n; ++i) {
        float* p = P + i * ldp;
        const int64_t lo = jab[size_t(i)], hi = jbb[size_t(i)];
        const int64_t rb0 = (lo >> 4) - b0, rb1 = (hi >> 4) - b0;
        for (int64_t b = 0; b < rb0; ++b) store16(p + b * 16, v16{});
        for (int64_t b = rb1 + 1; b < nb; ++b) store16(p + b * 16, v16{});
        // Lanes before lo (first block) and after hi (last block) are set to -inf. Float lane
        // indices: compares on float vectors stay vector operations in every clone.
        {
          const float flo = float(lo - (base + rb0 * 16)), fhi = float(hi - (base + rb1 * 16));
          v16 s = load16(p + rb0 * 16);
          s = lane < flo ? splat(ninf) : s;
          store16(p + rb0 * 16, s);
          s = load16(p + rb1 * 16);
          s = lane > fhi ? splat(ninf) : s;
          store16(p + rb1 * 16, s);
        }
        v16 vmax = splat(ninf);
        for (int64_t b = rb0; b <= rb1; ++b) {
          const v16 s = load16(p + b * 16);
          vmax = s > vmax ? s : vmax;
        }
        float mr[16];
        store16(mr, vmax);
        float mx = mr[0];
        for (int l = 1; l < 16; ++l) mx = mr[l] > mx ? mr[l] : mx;
        v16 vsum = {};
        for (int64_t b = rb0; b <= rb1; ++b) {
          const v16 s = load16(p + b * 16);
          const v16 e = s == splat(ninf) ? v16{} : exp16(s - mx);
          store16(p + b * 16, e);
          vsum += e;
        }
        invb[size_t(i)] = 1.f / hsum(vsum);
        jab[size_t(i)] -= base;  // positions relative to the tile's first block from here on
        jbb[size_t(i)] -= base;
      }
      const float* Vb = V + base * hd;
      int64_t c0 = 0;
      for (; c0 + 4 <= C; c0 += 4)
        pv_rows<TL, 4>(P, ldp, Vb, hd, c0 * 16, jab.data(), jbb.data(), optr.data(), invb.data(), n);
      switch (C - c0) {
        case 3: pv_rows<TL, 3>(P, ldp, Vb, hd, c0 * 16, jab.data(), jbb.data(), optr.data(), invb.data(), n); break;
        case 2: pv_rows<TL, 2>(P, ldp, Vb, hd, c0 * 16, jab.data(), jbb.data(), optr.data(), invb.data(), n); break;
        case 1: pv_rows<TL, 1>(P, ldp, Vb, hd, c0 * 16, jab.data(), jbb.data(), optr.data(), invb.data(), n); break;
        default: break;
      }
      if (tail > 0) {
        // The last hd % 16 dimensions: per row, one chain per element over its positions.
        for (int64_t i = 0; i < n; ++i) {
          const float* p = P + i * ldp;
          float acc[16] = {};
          for (int64_t j = jab[size_t(i)]; j <= jbb[size_t(i)]; ++j) {
            const float w = p[j];
            const float* vr = Vb + j * hd + C * 16;
            for (int64_t d = 0; d < tail; ++d) acc[d] += w * vr[d];
          }
          for (int64_t d = 0; d < tail; ++d) optr[size_t(i)][C * 16 + d] = acc[d] * invb[size_t(i)];
        }
      }
    }
  }
}

// e^x, x <= 0 expected (softmax after subtracting the max), written so that loops over it
// vectorize.
__attribute__((always_inline)) inline float exp_approx(float x) {
  x = x < -87.f ? -87.f : x;
  x = x > 88.f ? 88.f : x;
  float n;
  const float p = exp_poly(x, &n);
  const int32_t bits = (int32_t(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// The per-row loop: each (query token, head) on its own, one broadcast per FMA. Used where the
// CPU lacks AVX-512: there GCC keeps the 64-byte vector arrays of the tiled kernel above on the
// stack (each v16 is two ymm of 16), which made it about 2x slower than this loop with
// -march=x86-64-v3. Each row is computed the same way whatever T, like the tiled kernel.
__attribute__((always_inline)) inline void attention_rows(const float* q, int64_t ldq, int64_t T, int64_t nH,
                                                          int64_t nKV, int64_t hd, const float* keys,
                                                          const float* values, int64_t head_stride, int64_t start,
                                                          int64_t window, float* out, int64_t ldo) {
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

}  // namespace

CASCADE_CLONES
void softmax(const float* x, int64_t n, float temperature, float* out) {
  const float ninf = -std::numeric_limits<float>::infinity();
  // The scaled values and their maximum 16 lanes at a time: the compiler leaves a float max
  // reduction scalar, and a scalar division per logit was most of a 4096-token row's time
  // (about 3 us). Each lane divides exactly as the scalar code did, so the values are the same.
  const v16 t = splat(temperature);
  v16 vmx = splat(ninf);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const v16 s = load16(x + i) / t;
    store16(out + i, s);
    vmx = s > vmx ? s : vmx;
  }
  float lanes[16];
  store16(lanes, vmx);
  float mx = ninf;
  for (const float v : lanes) mx = v > mx ? v : mx;
  for (; i < n; ++i) {
    const float s = x[i] / temperature;
    out[i] = s;
    mx = s > mx ? s : mx;
  }
  v16 acc = {};
  i = 0;
  for (; i + 16 <= n; i += 16) {
    const v16 s = load16(out + i);
    const v16 e = s == splat(ninf) ? v16{} : exp16(s - mx);
    store16(out + i, e);
    acc += e;
  }
  float tail = 0;
  for (; i < n; ++i) tail += (out[i] = out[i] == ninf ? 0.f : exp_approx(out[i] - mx));
  const float inv = 1.f / (hsum(acc) + tail);
  for (int64_t j = 0; j < n; ++j) out[j] *= inv;
}

CASCADE_CLONES
int64_t compact_above(const float* x, int64_t n, float threshold, float* out) {
  // A sampling row's tokens above the threshold are a few hundred of thousands: 64 values whose
  // maximum is not above it are skipped at once, the others compacted branch-free one by one.
  const v16 t = splat(threshold);
  int64_t m = 0, i = 0;
  for (; i + 64 <= n; i += 64) {
    v16 mx = load16(x + i);
    for (int c = 16; c < 64; c += 16) {
      const v16 v = load16(x + i + c);
      mx = v > mx ? v : mx;
    }
    const vi16 above = mx > t;
    int32_t lanes[16];
    std::memcpy(lanes, &above, sizeof lanes);
    int32_t any = 0;
    for (const int32_t l : lanes) any |= l;
    if (!any) continue;
    for (int64_t j = i; j < i + 64; ++j) {
      out[m] = x[j];
      m += x[j] > threshold;
    }
  }
  for (; i < n; ++i) {
    out[m] = x[i];
    m += x[i] > threshold;
  }
  return m;
}

CASCADE_CLONES
void keep_above_scaled(float* x, int64_t n, float cut, float scale) {
  const v16 c = splat(cut), s = splat(scale), zero = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const v16 v = load16(x + i);
    store16(x + i, v * (v > c ? s : zero));
  }
  for (; i < n; ++i) x[i] = x[i] * (x[i] > cut ? scale : 0.f);
}

CASCADE_CLONES
double residual_mass(const float* p, float w, const float* q, int64_t n, float* out) {
  const v16 wv = splat(w), zero = {};
  double total = 0;
  int64_t i = 0;
  while (i + 16 <= n) {
    v16 acc = {};
    for (const int64_t end = std::min(n, i + 256); i + 16 <= end; i += 16) {
      v16 d = wv * load16(p + i);
      if (q) d -= load16(q + i);
      d = d > zero ? d : zero;
      if (out) store16(out + i, d);
      acc += d;
    }
    total += hsum(acc);
  }
  for (; i < n; ++i) {
    float d = w * p[i] - (q ? q[i] : 0.f);
    d = d > 0.f ? d : 0.f;
    if (out) out[i] = d;
    total += d;
  }
  return total;
}

CASCADE_CLONES
void attention(const float* q, int64_t ldq, int64_t T, int64_t nH, int64_t nKV, int64_t hd, const float* keys,
               const float* values, int64_t head_stride, int64_t start, int64_t window, float* out, int64_t ldo) {
  // The tiled kernel where the CPU has AVX-512 (the x86-64-v4 clone), its AVX2 counterpart in
  // intrinsics where it has AVX2 + FMA, the per-row loop otherwise; capped as the linear kernels
  // are (CASCADE_SPEC_KERNELS, set_isa_cap), so tests reach every path on one machine.
  const Isa level = active_row_isa();
  if (level == Isa::Avx512)
    attention_impl<WideTiles>(q, ldq, T, nH, nKV, hd, keys, values, head_stride, start, window, out, ldo);
  else if (level != Isa::Avx2 ||
           !cpu::attention_avx2(q, ldq, T, nH, nKV, hd, keys, values, head_stride, start, window, out, ldo))
    attention_rows(q, ldq, T, nH, nKV, hd, keys, values, head_stride, start, window, out, ldo);
}

}  // namespace cascade::kernels
