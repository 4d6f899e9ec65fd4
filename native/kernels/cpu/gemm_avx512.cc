// AVX-512 kernels. bf16 weights: vdpbf16ps (avx512_bf16) multiplies the bf16 pairs of a packed
// weight line (16 rows x 2 columns) by a broadcast bf16 pair of x and adds both products into 16
// fp32 lanes, so each 64-byte weight load feeds MR rows of x with no conversion. f16 weights
// (avx512f): vcvtph2ps widens the line to fp32 in two halves (8 rows x 2 columns each) and FMAs
// against the broadcast fp32 pair of x; the two column parities are summed at the end.
//
// The instruction sets are enabled per function (a pragma over this file), so the addon builds
// with the default flags and runs on any x86-64: dispatch.cc calls in here only after
// __builtin_cpu_supports says the CPU has them.
#include "kernels/cpu/cpu_impl.h"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define CASCADE_HAVE_AVX512 1
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <limits>
#endif

namespace cascade::kernels::cpu {

#if CASCADE_HAVE_AVX512

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")
#endif

namespace {

// Software prefetch distance, in 64-byte lines of each weight stream. 32 lines (2 KB): an 8-row
// tile spends ~12 cycles per line step, so 16 lines ahead was less than DRAM latency (the 8-row
// block lost ~10% to stalls); the decode is indifferent.
#ifndef CASCADE_KERNELS_PF
#define CASCADE_KERNELS_PF 32
#endif
constexpr int64_t PF = CASCADE_KERNELS_PF;

// Ahead in the weight stream into L1, and (next) the matching line of the next tile into L2.
inline void prefetch(const uint16_t* q, const uint16_t* next) {
  if (next) _mm_prefetch(reinterpret_cast<const char*>(next), _MM_HINT_T1);
  _mm_prefetch(reinterpret_cast<const char*>(q + PF * 32), _MM_HINT_T0);
}

inline __mmask16 tail_mask(int n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1); }

// e^x for x <= 88.7 (larger inputs saturate there): 2^n * p(r), r = x - n ln 2 in [-ln2/2, ln2/2],
// p the degree-6 Taylor polynomial (relative error < 2e-7).
inline __m512 exp512(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.f)), _mm512_set1_ps(88.7f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
  __m512 p = _mm512_set1_ps(1.f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}

void epi_store(float* y, const float* t, const float* bias, int cnt, bool add) {
  for (int i = 0; i < cnt; i += 16) {
    const __mmask16 m = tail_mask(cnt - i);
    __m512 v = _mm512_load_ps(t + i);
    if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + i));
    if (add) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i), v);
    _mm512_mask_storeu_ps(y + i, m, v);
  }
}

void epi_glu(float* y, const float* gate, const float* up, int cnt) {
  const __m512 g = _mm512_load_ps(gate), u = _mm512_load_ps(up);
  const __m512 silu = _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.f), exp512(_mm512_sub_ps(_mm512_setzero_ps(), g))));
  _mm512_mask_storeu_ps(y, tail_mask(cnt), _mm512_mul_ps(silu, u));
}

void epi_stat(RowStat& s, const float* t, int cnt, int64_t col0, bool lse) {
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 mx = ninf;
  for (int i = 0; i < cnt; i += 16) mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(ninf, tail_mask(cnt - i), t + i));
  const float tmax = _mm512_reduce_max_ps(mx);
  const float newmax = tmax > s.max ? tmax : s.max;
  if (lse) {
    if (s.sum > 0 && newmax > s.max) s.sum *= std::exp(s.max - newmax);
    __m512 acc = _mm512_setzero_ps();
    const __m512 nm = _mm512_set1_ps(newmax);
    for (int i = 0; i < cnt; i += 16) {
      const __mmask16 m = tail_mask(cnt - i);
      acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_load_ps(t + i), nm))));
    }
    s.sum += _mm512_reduce_add_ps(acc);
  }
  if (tmax > s.max) {
    int i = 0;
    while (t[i] != tmax) ++i;
    s.arg = col0 + i;
    s.max = tmax;
  }
}

}  // namespace

// ---- f16 weights (avx512f) -------------------------------------------------------------------
namespace f16 {
namespace {
using XT = float;
constexpr int NBMAX = 2, MRMAX = 6, GLU_NB = 2, GLU_MR = 6, GLU_NB_WIDE = 2, GLU_MR_WIDE = 6;
constexpr bool NEXT_SPREAD = false;
constexpr int ROW1_NB = NBMAX, ROW1_GLU_NB = GLU_NB_WIDE;
constexpr bool ROW1_ANY_SIZE = false;

template <int MR, int NB>
void micro(const float* x, int64_t ldx, const uint16_t* w, int64_t bstride, int64_t np, float* tile,
           const uint16_t* next, int /*next_every: 1, no NEXT_SPREAD*/) {
  __m512 acc[MR][NB][2];
  for (int m = 0; m < MR; ++m)
    for (int j = 0; j < NB; ++j) acc[m][j][0] = acc[m][j][1] = _mm512_setzero_ps();
  for (int64_t p = 0; p < np; ++p) {
    __m512 lo[NB], hi[NB];
    for (int j = 0; j < NB; ++j) {
      const uint16_t* q = w + j * bstride + p * 32;
      const __m512i h = _mm512_load_si512(q);
      lo[j] = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
      hi[j] = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
      prefetch(q, next ? next + j * bstride + p * 32 : nullptr);
    }
    for (int m = 0; m < MR; ++m) {
      double pair;
      std::memcpy(&pair, x + m * ldx + 2 * p, sizeof pair);
      const __m512 xv = _mm512_castpd_ps(_mm512_set1_pd(pair));
      for (int j = 0; j < NB; ++j) {
        acc[m][j][0] = _mm512_fmadd_ps(lo[j], xv, acc[m][j][0]);
        acc[m][j][1] = _mm512_fmadd_ps(hi[j], xv, acc[m][j][1]);
      }
    }
  }
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  for (int m = 0; m < MR; ++m)
    for (int j = 0; j < NB; ++j) {
      const __m512 e = _mm512_permutex2var_ps(acc[m][j][0], even, acc[m][j][1]);
      const __m512 o = _mm512_permutex2var_ps(acc[m][j][0], odd, acc[m][j][1]);
      _mm512_store_ps(tile + m * TILE_LD + 16 * j, _mm512_add_ps(e, o));
    }
}

void prepare(const float* x, int64_t M, int64_t k, int64_t kp, void* out) {
  float* o = static_cast<float*>(out);
  for (int64_t m = 0; m < M; ++m) {
    std::memcpy(o + m * kp, x + m * k, size_t(k) * sizeof(float));
    for (int64_t i = k; i < kp; ++i) o[m * kp + i] = 0;
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

// ---- bf16 weights (avx512_bf16) --------------------------------------------------------------
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma,f16c")
#endif

namespace bf16 {
namespace {
using XT = uint16_t;
constexpr int NBMAX = 3, MRMAX = 8, GLU_NB = 2, GLU_MR = 12, GLU_NB_WIDE = 4, GLU_MR_WIDE = 4;
constexpr bool NEXT_SPREAD = false;
// One row from cache: 8 vdpbf16ps chains (their latency is several cycles, two issue per cycle).
constexpr int ROW1_NB = 8, ROW1_GLU_NB = 8;
constexpr bool ROW1_ANY_SIZE = false;

template <int MR, int NB>
void micro(const uint16_t* x, int64_t ldx, const uint16_t* w, int64_t bstride, int64_t np, float* tile,
           const uint16_t* next, int /*next_every: 1, no NEXT_SPREAD*/) {
  __m512 acc[MR][NB];
  for (int m = 0; m < MR; ++m)
    for (int j = 0; j < NB; ++j) acc[m][j] = _mm512_setzero_ps();
#pragma GCC unroll 2
  for (int64_t p = 0; p < np; ++p) {
    __m512bh wv[NB];
    for (int j = 0; j < NB; ++j) {
      const uint16_t* q = w + j * bstride + p * 32;
      wv[j] = (__m512bh)_mm512_load_si512(q);
      prefetch(q, next ? next + j * bstride + p * 32 : nullptr);
    }
    for (int m = 0; m < MR; ++m) {
      int32_t pair;
      std::memcpy(&pair, x + m * ldx + 2 * p, sizeof pair);
      const __m512bh xv = (__m512bh)_mm512_set1_epi32(pair);
      for (int j = 0; j < NB; ++j) acc[m][j] = _mm512_dpbf16_ps(acc[m][j], wv[j], xv);
    }
  }
  for (int m = 0; m < MR; ++m)
    for (int j = 0; j < NB; ++j) _mm512_store_ps(tile + m * TILE_LD + 16 * j, acc[m][j]);
}

// fp32 rows -> bf16 rows (round to nearest even), zero padded to kp.
void prepare(const float* x, int64_t M, int64_t k, int64_t kp, void* out) {
  uint16_t* o = static_cast<uint16_t*>(out);
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = x + m * k;
    uint16_t* orow = o + m * kp;
    for (int64_t i = 0; i < kp; i += 32) {
      const int64_t left = k - i;
      const __m512 a = _mm512_maskz_loadu_ps(tail_mask(int(left > 16 ? 16 : left < 0 ? 0 : left)), xr + i);
      const __m512 b = _mm512_maskz_loadu_ps(tail_mask(int(left > 32 ? 16 : left < 16 ? 0 : left - 16)), xr + i + 16);
      const __m512i v = (__m512i)_mm512_cvtne2ps_pbh(b, a);
      const int64_t room = kp - i;
      const __mmask32 sm = room >= 32 ? __mmask32(0xFFFFFFFFu) : __mmask32((1u << room) - 1);
      _mm512_mask_storeu_epi16(orow + i, sm, v);
    }
  }
}

#include "kernels/cpu/driver.inc"
}  // namespace
}  // namespace bf16

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

const Impl* avx512_bf16_impl() {
  static const Impl impl{"avx512-bf16", 2, &bf16::prepare, &bf16::run_blocks};
  return &impl;
}
const Impl* avx512_f16_impl() {
  static const Impl impl{"avx512-f16", 4, &f16::prepare, &f16::run_blocks};
  return &impl;
}

#else
const Impl* avx512_bf16_impl() { return nullptr; }
const Impl* avx512_f16_impl() { return nullptr; }
#endif

}  // namespace cascade::kernels::cpu
