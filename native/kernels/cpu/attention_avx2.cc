// kernels::attention for CPUs with AVX2 + FMA but without AVX-512, in intrinsics.
//
// rowops.cc's kernels are GCC vector types of 16 floats, cloned per instruction set. In the
// AVX2 clone each of those vectors is a pair of ymm registers, and GCC kept the tiled kernel's
// arrays of them on the stack, so that clone ran a per-row loop instead: every (token, head) row
// read its kv head's keys and values on its own, and even that loop spilled. Measured on a Zen 3
// core (default target, 8-token verification block at position 150): attention took about a third
// of the pass.
//
// Here the rows that read one kv head (the group's query heads x the block's tokens) are tiled,
// so each key or value vector loaded feeds several rows' FMAs, as in the AVX-512 kernel:
// scores for up to 4 rows x one 16-position key block, a softmax per row, then value sums for up
// to 4 rows x 16 dimensions. Each row's arithmetic depends on its own position only -- a score is
// one FMA chain over the dimensions in order, the softmax runs over the row's own positions in
// 8-lane chunks counted from its first position, a value sum is one chain per output element over
// positions in order where positions outside the row's range weigh exactly 0 (a chain that starts
// with such zeros is +0 until the row's first position, then equal to one that starts there) --
// so a row's result does not depend on T or on the rows tiled with it: a verification pass and
// a decode agree bit for bit.
#include "kernels/cpu/cpu_impl.h"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define CASCADE_HAVE_AVX2 1
#include <immintrin.h>

#include <cmath>
#include <limits>
#include <vector>
#endif

namespace cascade::kernels::cpu {

#if CASCADE_HAVE_AVX2

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

namespace {

#include "kernels/cpu/avx2_exp.inc"

constexpr int kRowTile = 4;     // rows per register tile (scores and value sums)
constexpr int kRowsPerPass = 64;  // rows per pass over a kv head's keys and values

// P[r][16 b + l] = scale * sum_d q_r[d] K_b[d][l] for RT rows over nb key blocks ([hd][16] each,
// kb the first).
template <int RT>
void score_tile(const float* const* qr, int64_t hd, const float* kb, int64_t nb, float scale, float* P,
                int64_t ldp) {
  const __m256 sv = _mm256_set1_ps(scale);
  for (int64_t b = 0; b < nb; ++b) {
    const float* k = kb + b * hd * 16;
    __m256 acc[RT][2];
    for (int r = 0; r < RT; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int64_t d = 0; d < hd; ++d) {
      const __m256 k0 = _mm256_loadu_ps(k + d * 16), k1 = _mm256_loadu_ps(k + d * 16 + 8);
      for (int r = 0; r < RT; ++r) {
        const __m256 qv = _mm256_broadcast_ss(qr[r] + d);
        acc[r][0] = _mm256_fmadd_ps(qv, k0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(qv, k1, acc[r][1]);
      }
    }
    for (int r = 0; r < RT; ++r) {
      _mm256_storeu_ps(P + r * ldp + b * 16, _mm256_mul_ps(acc[r][0], sv));
      _mm256_storeu_ps(P + r * ldp + b * 16 + 8, _mm256_mul_ps(acc[r][1], sv));
    }
  }
}

// out_r[c0 .. c0 + 8 CT) = inv_r * sum_{j = ja..jb} P[r][j] V[j][c0 ..] for RT rows, one chain per
// output element over the positions in order.
template <int RT, int CT>
void pv_tile(const float* P, int64_t ldp, const float* V, int64_t hd, int64_t c0, int64_t ja, int64_t jb,
             float* const* outr, const float* inv) {
  __m256 acc[RT][CT];
  for (int r = 0; r < RT; ++r)
    for (int c = 0; c < CT; ++c) acc[r][c] = _mm256_setzero_ps();
  for (int64_t j = ja; j <= jb; ++j) {
    const float* vr = V + j * hd + c0;
    __m256 vv[CT];
    for (int c = 0; c < CT; ++c) vv[c] = _mm256_loadu_ps(vr + 8 * c);
    for (int r = 0; r < RT; ++r) {
      const __m256 w = _mm256_broadcast_ss(P + r * ldp + j);
      for (int c = 0; c < CT; ++c) acc[r][c] = _mm256_fmadd_ps(w, vv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < RT; ++r) {
    const __m256 s = _mm256_set1_ps(inv[r]);
    for (int c = 0; c < CT; ++c) _mm256_storeu_ps(outr[r] + c0 + 8 * c, _mm256_mul_ps(acc[r][c], s));
  }
}

// Runs F<m>::run(args...) for a run-time 1 <= m <= kRowTile.
template <template <int> class F, class... A>
void with_rows(int m, A&&... a) {
  switch (m) {
    case 4: F<4>::run(a...); break;
    case 3: F<3>::run(a...); break;
    case 2: F<2>::run(a...); break;
    default: F<1>::run(a...); break;
  }
}

template <int RT>
struct Scores {
  static void run(const float* const* qr, int64_t hd, const float* kb, int64_t nb, float scale, float* P,
                  int64_t ldp) {
    score_tile<RT>(qr, hd, kb, nb, scale, P, ldp);
  }
};

// Value sums of RT rows over all 8-lane chunks of hd: two chunks per tile (RT x 2 accumulators),
// a last odd chunk alone; dimensions past the last whole chunk one scalar chain each.
template <int RT>
struct ValueSums {
  static void run(const float* P, int64_t ldp, const float* V, int64_t hd, const int64_t* ja, const int64_t* jb,
                  float* const* outr, const float* inv) {
    const int64_t lo = ja[0], hi = jb[RT - 1], chunks = hd / 8;
    int64_t c = 0;
    for (; c + 2 <= chunks; c += 2) pv_tile<RT, 2>(P, ldp, V, hd, 8 * c, lo, hi, outr, inv);
    if (c < chunks) pv_tile<RT, 1>(P, ldp, V, hd, 8 * c, lo, hi, outr, inv);
    for (int64_t d = chunks * 8; d < hd; ++d)
      for (int r = 0; r < RT; ++r) {
        float acc = 0;
        for (int64_t j = lo; j <= hi; ++j) acc = std::fma(P[r * ldp + j], V[j * hd + d], acc);
        outr[r][d] = acc * inv[r];
      }
  }
};

// Softmax of one row in place over positions [lo, hi] (relative to the row's P), zeros on [0, lo)
// and (hi, end): returns 1 / sum. Chunks of 8 are counted from lo; the last partial chunk reads
// up to 7 values past hi (inside the buffer) and drops them.
float softmax_row(float* p, int64_t lo, int64_t hi, int64_t end) {
  for (int64_t j = 0; j < lo; ++j) p[j] = 0;
  const int64_t n = hi - lo + 1, full = n / 8 * 8;
  float* s = p + lo;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n - full)), lane);
  __m256 vmax = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t j = 0; j < full; j += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(s + j));
  if (full < n)
    vmax = _mm256_max_ps(vmax, _mm256_blendv_ps(vmax, _mm256_loadu_ps(s + full), _mm256_castsi256_ps(keep)));
  alignas(32) float m8[8];
  _mm256_store_ps(m8, vmax);
  float mx = m8[0];
  for (int l = 1; l < 8; ++l) mx = m8[l] > mx ? m8[l] : mx;
  const __m256 mv = _mm256_set1_ps(mx);
  __m256 vsum = _mm256_setzero_ps();
  for (int64_t j = 0; j < full; j += 8) {
    const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv));
    _mm256_storeu_ps(s + j, e);
    vsum = _mm256_add_ps(vsum, e);
  }
  if (full < n) {
    const __m256 e = _mm256_and_ps(exp256(_mm256_sub_ps(_mm256_loadu_ps(s + full), mv)), _mm256_castsi256_ps(keep));
    _mm256_storeu_ps(s + full, e);  // lanes past hi become 0 (inside the row, below `end` + 8)
    vsum = _mm256_add_ps(vsum, e);
  }
  for (int64_t j = hi + 1; j < end; ++j) p[j] = 0;
  alignas(32) float r[8];
  _mm256_store_ps(r, vsum);
  const float sum = ((r[0] + r[4]) + (r[1] + r[5])) + ((r[2] + r[6]) + (r[3] + r[7]));
  return 1.f / sum;
}

}  // namespace

bool attention_avx2(const float* q, int64_t ldq, int64_t T, int64_t nH, int64_t nKV, int64_t hd, const float* keys,
                    const float* values, int64_t head_stride, int64_t start, int64_t window, float* out,
                    int64_t ldo) {
  static const bool supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (!supported) return false;
  const int64_t group = nH / nKV, R = group * T;
  const float scale = 1.f / std::sqrt(float(hd));
  const int64_t pass = R < kRowsPerPass ? R : kRowsPerPass;
  const int64_t maxb = ((start + T - 1) >> 4) + 1;
  // Each row holds its tile's key blocks plus 8 floats of slack for softmax_row's last chunk.
  thread_local std::vector<float> pbuf;
  thread_local KvHeadRows rows;  // the rows of a kv head, ordered by token (cpu_impl.h)
  auto& qptr = rows.q;
  auto& optr = rows.out;
  auto &jab = rows.lo, &jbb = rows.hi;
  auto& invb = rows.inv;
  const int64_t ldp = maxb * 16 + 8;
  if (int64_t(pbuf.size()) < pass * ldp) pbuf.resize(size_t(pass * ldp));
  for (int64_t g = 0; g < nKV; ++g) {
    const float* K = keys + g * head_stride;
    const float* V = values + g * head_stride;
    for (int64_t r0 = 0; r0 < R; r0 += pass) {
      const int64_t n = R - r0 < pass ? R - r0 : pass;
      rows.fill(g, r0, n, group, q, ldq, out, ldo, hd, start, window);
      const int64_t b0 = jab[0] >> 4, b1 = jbb[size_t(n - 1)] >> 4, nb = b1 - b0 + 1, base = b0 * 16;
      float* P = pbuf.data();
      for (int64_t i = 0; i < n; i += kRowTile) {
        const int m = int(n - i < kRowTile ? n - i : kRowTile);
        // Only the key blocks these rows read.
        const int64_t tb0 = (jab[size_t(i)] >> 4) - b0, tb1 = (jbb[size_t(i + m - 1)] >> 4) - b0;
        with_rows<Scores>(m, qptr.data() + i, hd, K + (b0 + tb0) * hd * 16, tb1 - tb0 + 1, scale,
                          P + i * ldp + tb0 * 16, ldp);
      }
      for (int64_t i = 0; i < n; ++i) {
        jab[size_t(i)] -= base;
        jbb[size_t(i)] -= base;
        invb[size_t(i)] = softmax_row(P + i * ldp, jab[size_t(i)], jbb[size_t(i)], nb * 16);
      }
      const float* Vb = V + base * hd;
      for (int64_t i = 0; i < n; i += kRowTile) {
        const int m = int(n - i < kRowTile ? n - i : kRowTile);
        with_rows<ValueSums>(m, P + i * ldp, ldp, Vb, hd, jab.data() + i, jbb.data() + i, optr.data() + i,
                             invb.data() + i);
      }
    }
  }
  return true;
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else
bool attention_avx2(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, const float*, const float*, int64_t,
                    int64_t, int64_t, float*, int64_t) {
  return false;
}
#endif

}  // namespace cascade::kernels::cpu
