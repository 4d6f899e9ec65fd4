// Portable C++ kernels: the fallback on every CPU (and the reading of the packed layout at its
// plainest). Same blocking and accumulation order as the vector kernels -- per output, per
// column pair, the even column's product then the odd one's -- with fp32 x.
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/cpu/cpu_impl.h"

namespace cascade::kernels::cpu {
namespace {

inline float bf16_value(uint16_t h) {
  const uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline float f16_value(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
  if (exp == 0x1F) bits = sign | 0x7F800000u | (mant << 13);  // inf / nan
  else if (exp != 0) bits = sign | ((exp + 112) << 23) | (mant << 13);
  else if (mant == 0) bits = sign;
  else {  // subnormal: normalise
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while (!(mant & 0x400));
    bits = sign | (uint32_t(112 - e) << 23) | ((mant & 0x3FF) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

void epi_store(float* y, const float* t, const float* bias, int cnt, bool add) {
  for (int i = 0; i < cnt; ++i) {
    float v = t[i];
    if (bias) v += bias[i];
    y[i] = add ? y[i] + v : v;
  }
}

void epi_glu(float* y, const float* gate, const float* up, int cnt) {
  for (int i = 0; i < cnt; ++i) y[i] = gate[i] / (1.f + std::exp(-gate[i])) * up[i];
}

void epi_stat(RowStat& s, const float* t, int cnt, int64_t col0, bool lse) {
  float tmax = -std::numeric_limits<float>::infinity();
  int at = 0;
  for (int i = 0; i < cnt; ++i)
    if (t[i] > tmax) tmax = t[i], at = i;
  const float newmax = tmax > s.max ? tmax : s.max;
  if (lse) {
    if (s.sum > 0 && newmax > s.max) s.sum *= std::exp(s.max - newmax);
    float sum = 0;
    for (int i = 0; i < cnt; ++i) sum += std::exp(t[i] - newmax);
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

template <float (*Cvt)(uint16_t), int MR, int NB>
void micro_generic(const float* x, int64_t ldx, const uint16_t* w, int64_t bstride, int64_t np, float* tile) {
  float acc[MR][NB * 16] = {};
  for (int64_t p = 0; p < np; ++p)
    for (int j = 0; j < NB; ++j) {
      const uint16_t* q = w + j * bstride + p * 32;
      float w0[16], w1[16];
      for (int r = 0; r < 16; ++r) w0[r] = Cvt(q[2 * r]), w1[r] = Cvt(q[2 * r + 1]);
      for (int m = 0; m < MR; ++m) {
        const float x0 = x[m * ldx + 2 * p], x1 = x[m * ldx + 2 * p + 1];
        for (int r = 0; r < 16; ++r) {
          float a = acc[m][16 * j + r];
          a += w0[r] * x0;
          a += w1[r] * x1;
          acc[m][16 * j + r] = a;
        }
      }
    }
  for (int m = 0; m < MR; ++m) std::memcpy(tile + m * TILE_LD, acc[m], sizeof acc[m]);
}

namespace bf16 {
using XT = float;
constexpr int NBMAX = 1, MRMAX = 4, GLU_NB = 2, GLU_MR = 2, GLU_NB_WIDE = 2, GLU_MR_WIDE = 2;
constexpr bool NEXT_SPREAD = false;
constexpr int ROW1_NB = NBMAX, ROW1_GLU_NB = GLU_NB_WIDE;
constexpr bool ROW1_ANY_SIZE = false;
template <int MR, int NB>
void micro(const float* x, int64_t ldx, const uint16_t* w, int64_t bstride, int64_t np, float* tile,
           const uint16_t*, int) {
  micro_generic<&bf16_value, MR, NB>(x, ldx, w, bstride, np, tile);
}
#include "kernels/cpu/driver.inc"
}  // namespace bf16

namespace f16 {
using XT = float;
constexpr int NBMAX = 1, MRMAX = 4, GLU_NB = 2, GLU_MR = 2, GLU_NB_WIDE = 2, GLU_MR_WIDE = 2;
constexpr bool NEXT_SPREAD = false;
constexpr int ROW1_NB = NBMAX, ROW1_GLU_NB = GLU_NB_WIDE;
constexpr bool ROW1_ANY_SIZE = false;
template <int MR, int NB>
void micro(const float* x, int64_t ldx, const uint16_t* w, int64_t bstride, int64_t np, float* tile,
           const uint16_t*, int) {
  micro_generic<&f16_value, MR, NB>(x, ldx, w, bstride, np, tile);
}
#include "kernels/cpu/driver.inc"
}  // namespace f16

}  // namespace

const Impl* portable_bf16_impl() {
  static const Impl impl{"portable-bf16", 4, &prepare, &bf16::run_blocks};
  return &impl;
}
const Impl* portable_f16_impl() {
  static const Impl impl{"portable-f16", 4, &prepare, &f16::run_blocks};
  return &impl;
}

}  // namespace cascade::kernels::cpu
