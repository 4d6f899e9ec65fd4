// AVX2 + FMA + F16C kernels, for x86-64 CPUs without avx512_bf16. x stays fp32.
// bf16 weights: a 32-byte half line holds 8 rows x 2 columns as bf16 pairs; shifting each
// 32-bit lane left by 16 gives the even column in fp32, masking the low half gives the odd one,
// and two FMAs against the broadcast x[2p], x[2p+1] accumulate 8 rows.
// f16 weights: vcvtph2ps widens 4 rows x 2 columns to fp32, FMAs against the broadcast pair
// (x[2p], x[2p+1]); the parities are summed at the end.
#include "kernels/cpu/cpu_impl.h"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define CASCADE_HAVE_AVX2 1
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <limits>
#endif

namespace cascade::kernels::cpu {

#if CASCADE_HAVE_AVX2

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

namespace {

constexpr int64_t PF = 32;

#include "kernels/cpu/avx2_exp.inc"

void epi_store(float* y, const float* t, const float* bias, int cnt, bool add) {
  int i = 0;
  for (; i + 8 <= cnt; i += 8) {
    __m256 v = _mm256_load_ps(t + i);
    if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + i));
    if (add) v = _mm256_add_ps(_mm256_loadu_ps(y + i), v);
    _mm256_storeu_ps(y + i, v);
  }
  for (; i < cnt; ++i) {
    float v = t[i];
    if (bias) v += bias[i];
    y[i] = add ? y[i] + v : v;
  }
}

void epi_glu(float* y, const float* gate, const float* up, int cnt) {
  alignas(32) float out[16];
  for (int i = 0; i < 16; i += 8) {
    const __m256 g = _mm256_load_ps(gate + i), u = _mm256_load_ps(up + i);
    const __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), g));
    _mm256_store_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.f), e)), u));
  }
  std::memcpy(y, out, size_t(cnt) * sizeof(float));
}

void epi_stat(RowStat& s, const float* t, int cnt, int64_t col0, bool lse) {
  float tmax = -std::numeric_limits<float>::infinity();
  int at = 0;
  for (int i = 0; i < cnt; ++i)
    if (t[i] > tmax) tmax = t[i], at = i;
  const float newmax = tmax > s.max ? tmax : s.max;
  if (lse) {
    if (s.sum > 0 && newmax > s.max) s.sum *= std::exp(s.max - newmax);
    alignas(32) float buf[TILE_LD];
    const __m256 nm = _mm256_set1_ps(newmax);
    for (int i = 0; i < cnt; i += 8) _mm256_store_ps(buf + i, exp256(_mm256_sub_ps(_mm256_load_ps(t + i), nm)));
    float sum = 0;
    for (int i = 0; i < cnt; ++i) sum += buf[i];
    s.sum += sum;
  }
  if (tmax > s.max) {
    s.arg = col0 + at;
    s.max = tmax;
  }
}

void prepare(const float* x, int64_t M, int64_t k, int64_t kp, void* out) {
  float* o = static_cast<float*>(out);
  for (int64_t m = 0; m < M; ++m) {
    std::memcpy(o + m * kp, x + m * k, size_t(k) * sizeof(float));
    for (int64_t i = k; i < kp; ++i) o[m * kp + i] = 0;
  }
}

}  // namespace

namespace bf16 {
namespace {
using XT = float;
// Glu tiles of 4 rows run their gate and up blocks one after the other (micro): with 2-row
// tiles each weight was widened 4 times for an 8-token block, and the block's MLP cost ~15% more.
constexpr int NBMAX = 1, MRMAX = 4, GLU_NB = 2, GLU_MR = 4, GLU_NB_WIDE = 2, GLU_MR_WIDE = 2;
constexpr bool NEXT_SPREAD = true;
// One row runs 4 blocks at once (8 accumulator chains) over any matrix: the decode of a
// matrix that streams from memory was bound by its 2 chains too (Zen 3: 8 cycles a line).
constexpr int ROW1_NB = 4, ROW1_GLU_NB = 4;
constexpr bool ROW1_ANY_SIZE = true;

// The accumulators are one flat array and every loop is unrolled: with [MR][NB][2] arrays GCC 12
// also stored each accumulator to the stack on every step (8 dead stores per 16 FMAs), and an
// 8-token block's MLP and projections ran 15-25% slower. The prefetch of the next tile is a
// template flag so that the loop carries no branch for it; with it, one line of each next block
// goes every next_every lines (a countdown, so the loop needs no division).
template <int MR, int NB, bool NEXT>
void micro_pass_impl(const float* x, int64_t ldx, const uint16_t* w, int64_t bstride, int64_t np, float* tile,
                     const uint16_t* next, int next_every) {
  int countdown = 1;
  const auto prefetch_next = [&]() {
    if (--countdown) return;
    countdown = next_every;
#pragma GCC unroll 8
    for (int j = 0; j < NB; ++j) _mm_prefetch(reinterpret_cast<const char*>(next + j * bstride), _MM_HINT_T1);
    next += 32;
  };
  constexpr int A = MR * NB * 2;
  __m256 acc[A];
#pragma GCC unroll 32
  for (int a = 0; a < A; ++a) acc[a] = _mm256_setzero_ps();
  const __m256i hi = _mm256_set1_epi32(int32_t(0xFFFF0000u));
#pragma GCC unroll 2
  for (int64_t p = 0; p < np; ++p) {
    if constexpr (NB == 1) {
      // One block: widen its line first, then each row's two broadcasts feed 4 FMAs.
      __m256 we[2], wo[2];
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + p * 32 + 16 * h));
        we[h] = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
        wo[h] = _mm256_castsi256_ps(_mm256_and_si256(v, hi));
      }
      if constexpr (NEXT) prefetch_next();
      _mm_prefetch(reinterpret_cast<const char*>(w + p * 32 + PF * 32), _MM_HINT_T0);
#pragma GCC unroll 8
      for (int m = 0; m < MR; ++m) {
        const __m256 x0 = _mm256_broadcast_ss(x + m * ldx + 2 * p), x1 = _mm256_broadcast_ss(x + m * ldx + 2 * p + 1);
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
          acc[m * 2 + h] = _mm256_fmadd_ps(we[h], x0, acc[m * 2 + h]);
          acc[m * 2 + h] = _mm256_fmadd_ps(wo[h], x1, acc[m * 2 + h]);
        }
      }
    } else {
      // Several blocks (one or two rows): the rows' broadcasts stay in registers and each half
      // line is widened just before its FMAs, so 8 accumulators, 2*MR broadcasts and one
      // widened pair fit the 16 registers.
      __m256 x0[MR], x1[MR];
#pragma GCC unroll 8
      for (int m = 0; m < MR; ++m) x0[m] = _mm256_broadcast_ss(x + m * ldx + 2 * p), x1[m] = _mm256_broadcast_ss(x + m * ldx + 2 * p + 1);
#pragma GCC unroll 8
      for (int j = 0; j < NB; ++j) {
        const uint16_t* q = w + j * bstride + p * 32;
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
          const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(q + 16 * h));
          const __m256 we = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)), wo = _mm256_castsi256_ps(_mm256_and_si256(v, hi));
#pragma GCC unroll 8
          for (int m = 0; m < MR; ++m) {
            const int a = m * NB * 2 + 2 * j + h;
            acc[a] = _mm256_fmadd_ps(we, x0[m], acc[a]);
            acc[a] = _mm256_fmadd_ps(wo, x1[m], acc[a]);
          }
        }
        _mm_prefetch(reinterpret_cast<const char*>(q + PF * 32), _MM_HINT_T0);
      }
      if constexpr (NEXT) prefetch_next();
    }
  }
#pragma GCC unroll 32
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 16
    for (int i = 0; i < NB * 2; ++i) _mm256_store_ps(tile + m * TILE_LD + 8 * i, acc[m * NB * 2 + i]);
}

template <int MR, int NB>
void micro_pass(const float* x, int64_t ldx, const uint16_t* w, int64_t bstride, int64_t np, float* tile,
                const uint16_t* next, int next_every) {
  if (next) micro_pass_impl<MR, NB, true>(x, ldx, w, bstride, np, tile, next, next_every);
  else micro_pass_impl<MR, NB, false>(x, ldx, w, bstride, np, tile, nullptr, next_every);
}

// More than 8 accumulators (a Glu tile's gate and up blocks for 3-4 rows) would not fit the 16
// registers with the widened weights: the blocks then run one after the other over all k.
template <int MR, int NB>
void micro(const float* x, int64_t ldx, const uint16_t* w, int64_t bstride, int64_t np, float* tile,
           const uint16_t* next, int next_every) {
  if constexpr (MR * NB * 2 <= 8 || NB == 1) {
    micro_pass<MR, NB>(x, ldx, w, bstride, np, tile, next, next_every);
  } else {
    for (int j = 0; j < NB; ++j)
      micro_pass<MR, 1>(x, ldx, w + j * bstride, bstride, np, tile + 16 * j, next ? next + j * bstride : nullptr, next_every);
  }
}

#include "kernels/cpu/driver.inc"
}  // namespace
}  // namespace bf16

namespace f16 {
namespace {
using XT = float;
constexpr int NBMAX = 1, MRMAX = 2, GLU_NB = 2, GLU_MR = 1, GLU_NB_WIDE = 2, GLU_MR_WIDE = 1;
constexpr bool NEXT_SPREAD = false;
constexpr int ROW1_NB = NBMAX, ROW1_GLU_NB = GLU_NB_WIDE;
constexpr bool ROW1_ANY_SIZE = false;

template <int MR, int NB>
void micro(const float* x, int64_t ldx, const uint16_t* w, int64_t bstride, int64_t np, float* tile,
           const uint16_t* next, int /*next_every: 1, no NEXT_SPREAD*/) {
  // Flat accumulators, each widened weight used by every row at once: with [MR][NB][4] arrays
  // GCC kept the accumulators on the stack too, a store each per step (as in bf16 above).
  constexpr int A = MR * NB * 4;
  __m256 acc[A];
#pragma GCC unroll 32
  for (int a = 0; a < A; ++a) acc[a] = _mm256_setzero_ps();
  for (int64_t p = 0; p < np; ++p) {
    __m256 xv[MR];
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      double pair;
      std::memcpy(&pair, x + m * ldx + 2 * p, sizeof pair);
      xv[m] = _mm256_castpd_ps(_mm256_set1_pd(pair));
    }
#pragma GCC unroll 8
    for (int j = 0; j < NB; ++j) {
      const uint16_t* q = w + j * bstride + p * 32;
#pragma GCC unroll 4
      for (int h = 0; h < 4; ++h) {
        const __m256 wv = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(q + 8 * h)));
#pragma GCC unroll 8
        for (int m = 0; m < MR; ++m) acc[m * NB * 4 + 4 * j + h] = _mm256_fmadd_ps(wv, xv[m], acc[m * NB * 4 + 4 * j + h]);
      }
      if (next) _mm_prefetch(reinterpret_cast<const char*>(next + j * bstride + p * 32), _MM_HINT_T1);
      _mm_prefetch(reinterpret_cast<const char*>(q + PF * 32), _MM_HINT_T0);
    }
  }
  for (int m = 0; m < MR; ++m)
    for (int j = 0; j < NB; ++j)
      for (int h = 0; h < 4; ++h) {
        alignas(32) float v[8];
        _mm256_store_ps(v, acc[m * NB * 4 + 4 * j + h]);
        for (int r = 0; r < 4; ++r) tile[m * TILE_LD + 16 * j + 4 * h + r] = v[2 * r] + v[2 * r + 1];
      }
}

#include "kernels/cpu/driver.inc"
}  // namespace
}  // namespace f16

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

const Impl* avx2_bf16_impl() {
  static const Impl impl{"avx2-bf16", 4, &prepare, &bf16::run_blocks};
  return &impl;
}
const Impl* avx2_f16_impl() {
  static const Impl impl{"avx2-f16", 4, &prepare, &f16::run_blocks};
  return &impl;
}

#else
const Impl* avx2_bf16_impl() { return nullptr; }
const Impl* avx2_f16_impl() { return nullptr; }
#endif

}  // namespace cascade::kernels::cpu
