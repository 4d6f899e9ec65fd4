// The kernels' entry points on the CPU: instruction-set detection, packing, activation
// preparation and the split of output blocks across threads.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_impl.h"
#include "kernels/kernels.h"

#ifndef CASCADE_KERNELS_STANDALONE
#include <ATen/Parallel.h>
#endif

namespace cascade::kernels {

// ---- scalar conversions ----------------------------------------------------------------------

uint16_t fp32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7FFFu + ((u >> 16) & 1);                                          // round to nearest even
  return uint16_t(u >> 16);
}

float bf16_to_fp32(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

uint16_t fp32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const uint32_t sign = (u >> 16) & 0x8000;
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return uint16_t(sign | 0x7E00);           // NaN
  if (a >= 0x477FF000u) return uint16_t(sign | 0x7C00);          // rounds to >= 65520: inf
  if (a < 0x38800000u) {                                          // below 2^-14: subnormal or zero
    if (a < 0x33000000u) return uint16_t(sign);                   // below half the smallest subnormal
    const uint32_t e = a >> 23, mant = (a & 0x7FFFFF) | 0x800000;
    const uint32_t shift = 126 - e;                               // 14..24
    uint32_t v = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (v & 1))) ++v;
    return uint16_t(sign | v);
  }
  uint32_t v = ((a >> 13) - (112u << 10));
  const uint32_t rem = a & 0x1FFF;
  if (rem > 0x1000 || (rem == 0x1000 && (v & 1))) ++v;
  return uint16_t(sign | v);
}

float f16_to_fp32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
  if (exp == 0x1F) bits = sign | 0x7F800000u | (mant << 13);
  else if (exp != 0) bits = sign | ((exp + 112) << 23) | (mant << 13);
  else if (mant == 0) bits = sign;
  else {
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

// ---- instruction sets ------------------------------------------------------------------------

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "portable";
  }
}

namespace {

Isa env_cap() {
  const char* e = std::getenv("CASCADE_SPEC_KERNELS");
  if (!e || !*e) return Isa::Avx512;
  const std::string s(e);
  if (s == "avx512") return Isa::Avx512;
  if (s == "avx2") return Isa::Avx2;
  if (s == "portable") return Isa::Portable;
  throw std::invalid_argument("CASCADE_SPEC_KERNELS must be avx512, avx2 or portable, got \"" + s + "\"");
}

std::atomic<int> g_cap{-1};

Isa cap() {
  int c = g_cap.load();
  if (c < 0) {
    c = int(env_cap());
    g_cap.store(c);
  }
  return Isa(c);
}

const cpu::Impl* impl_for(Isa isa, WeightType type) {
  if (type == WeightType::BF16) {
    if (isa == Isa::Avx512) return cpu::avx512_bf16_impl();
    if (isa == Isa::Avx2) return cpu::avx2_bf16_impl();
    return cpu::portable_bf16_impl();
  }
  if (isa == Isa::Avx512) return cpu::avx512_f16_impl();
  if (isa == Isa::Avx2) return cpu::avx2_f16_impl();
  return cpu::portable_f16_impl();
}

}  // namespace

namespace {
Isa detect_best_isa(WeightType type) {
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  if (avx512 && (type == WeightType::F16 || __builtin_cpu_supports("avx512bf16")) && impl_for(Isa::Avx512, type))
    return Isa::Avx512;
  if (avx2 && impl_for(Isa::Avx2, type)) return Isa::Avx2;
#endif
  return Isa::Portable;
}
}  // namespace

Isa best_isa(WeightType type) {
  static const Isa bf16 = detect_best_isa(WeightType::BF16), f16 = detect_best_isa(WeightType::F16);
  return type == WeightType::BF16 ? bf16 : f16;
}

Isa active_isa(WeightType type) { return std::min(best_isa(type), cap()); }

Isa active_row_isa() { return active_isa(WeightType::F16); }

Isa set_isa_cap(Isa c) {
  const Isa before = cap();
  g_cap.store(int(c));
  return before;
}

// ---- packing ---------------------------------------------------------------------------------

namespace {

uint16_t convert(const void* src, SourceType st, size_t i, WeightType to) {
  switch (st) {
    case SourceType::F32: {
      const float f = static_cast<const float*>(src)[i];
      return to == WeightType::BF16 ? fp32_to_bf16(f) : fp32_to_f16(f);
    }
    case SourceType::BF16: {
      const uint16_t h = static_cast<const uint16_t*>(src)[i];
      return to == WeightType::BF16 ? h : fp32_to_f16(bf16_to_fp32(h));
    }
    default: {
      const uint16_t h = static_cast<const uint16_t*>(src)[i];
      return to == WeightType::F16 ? h : fp32_to_bf16(f16_to_fp32(h));
    }
  }
}

// Packed block index and row within it of logical row r.
inline void place(const PackedWeight& w, int64_t r, int64_t* block, int64_t* lane) {
  if (!w.glu) {
    *block = r / 16;
    *lane = r % 16;
    return;
  }
  const int64_t half = w.n / 2;
  const int64_t up = r >= half, rr = up ? r - half : r;
  *block = 2 * (rr / 16) + up;
  *lane = rr % 16;
}

}  // namespace

PackedWeight pack(const void* src, SourceType src_type, int64_t n, int64_t k, WeightType type, bool glu) {
  if (n < 1 || k < 1) throw std::invalid_argument("kernels::pack: empty weight");
  if (glu && n % 2) throw std::invalid_argument("kernels::pack: a glu weight needs an even number of rows");
  PackedWeight w;
  w.type = type;
  w.n = n;
  w.k = k;
  w.kp = (k + 1) / 2 * 2;
  w.glu = glu;
  w.blocks = glu ? 2 * ((n / 2 + 15) / 16) : (n + 15) / 16;
  const size_t bytes = w.bytes();
  void* mem = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!mem) throw std::bad_alloc();
  std::memset(mem, 0, bytes);
  w.data = std::shared_ptr<uint16_t>(static_cast<uint16_t*>(mem), [](uint16_t* p) { std::free(p); });
  uint16_t* d = w.data.get();
  for (int64_t r = 0; r < n; ++r) {
    int64_t b, lane;
    place(w, r, &b, &lane);
    uint16_t* blk = d + b * w.block_elems();
    for (int64_t c = 0; c < k; ++c) blk[(c / 2) * 32 + lane * 2 + (c % 2)] = convert(src, src_type, size_t(r * k + c), type);
  }
  return w;
}

std::vector<float> unpack(const PackedWeight& w) {
  std::vector<float> out(size_t(w.n * w.k));
  const uint16_t* d = w.data.get();
  for (int64_t r = 0; r < w.n; ++r) {
    int64_t b, lane;
    place(w, r, &b, &lane);
    const uint16_t* blk = d + b * w.block_elems();
    for (int64_t c = 0; c < w.k; ++c) {
      const uint16_t h = blk[(c / 2) * 32 + lane * 2 + (c % 2)];
      out[size_t(r * w.k + c)] = w.type == WeightType::BF16 ? bf16_to_fp32(h) : f16_to_fp32(h);
    }
  }
  return out;
}

// ---- calls -----------------------------------------------------------------------------------

namespace {

int threads() {
#ifdef CASCADE_KERNELS_STANDALONE
  return 1;
#else
  return at::in_parallel_region() ? 1 : std::max(1, at::get_num_threads());
#endif
}

// Runs f(part) for part in [0, parts) across the intra-op threads.
template <class F>
void for_parts(int64_t parts, const F& f) {
#ifdef CASCADE_KERNELS_STANDALONE
  for (int64_t p = 0; p < parts; ++p) f(p);
#else
  if (parts == 1) return f(0);
  at::parallel_for(0, parts, 1, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) f(p);
  });
#endif
}

struct Scratch {
  void* p = nullptr;
  size_t size = 0;
  ~Scratch() { std::free(p); }
  void* get(size_t n) {
    if (n > size) {
      std::free(p);
      size = (n + 4095) / 4096 * 4096;
      p = std::aligned_alloc(64, size);
      if (!p) throw std::bad_alloc();
    }
    return p;
  }
};

void check(const PackedWeight& w, int64_t M) {
  if (w.empty()) throw std::invalid_argument("kernels: empty weight");
  if (w.device != Device::CPU) throw std::invalid_argument("kernels: weight is not on the CPU");
  if (M < 1) throw std::invalid_argument("kernels: M must be >= 1");
}

// Splits `units` work units (blocks, or block pairs for glu) into parts for the threads: at
// least 4 units a part, so small layers stay on one thread.
int64_t parts_for(int64_t units) {
  const int64_t t = threads();
  return std::max<int64_t>(1, std::min<int64_t>(t, units / 4));
}

void run(const float* x, int64_t M, const PackedWeight& w, cpu::Epi epi, const float* bias, float* y, int64_t ldy,
         cpu::RowStat* stats, int64_t stats_ld, bool lse, int64_t parts) {
  const cpu::Impl* impl = impl_for(active_isa(w.type), w.type);
  thread_local Scratch scratch;
  void* xp = scratch.get(size_t(M * w.kp) * impl->x_elem);
  impl->prepare(x, M, w.k, w.kp, xp);
  cpu::Call c{xp, w.kp, M, w.data.get(), w.kp / 2, epi == cpu::Epi::Glu ? w.n / 2 : w.n, epi, bias, y, ldy, lse};
  const int64_t unit = epi == cpu::Epi::Glu ? 2 : 1;
  const int64_t units = w.blocks / unit;
  for_parts(parts, [&](int64_t p) {
    const int64_t b0 = units * p / parts * unit, b1 = units * (p + 1) / parts * unit;
    c.epi == cpu::Epi::Argmax ? impl->run(c, b0, b1, stats + p * stats_ld) : impl->run(c, b0, b1, nullptr);
  });
}

}  // namespace

void linear(const float* x, int64_t M, const PackedWeight& w, const float* bias, float* y, bool accumulate) {
  check(w, M);
  if (w.glu) throw std::invalid_argument("kernels::linear: glu weight (use linear_glu)");
  run(x, M, w, accumulate ? cpu::Epi::Add : cpu::Epi::Store, bias, y, w.n, nullptr, 0, false, parts_for(w.blocks));
}

void linear_glu(const float* x, int64_t M, const PackedWeight& w, float* y) {
  check(w, M);
  if (!w.glu) throw std::invalid_argument("kernels::linear_glu: weight not packed as glu");
  run(x, M, w, cpu::Epi::Glu, nullptr, y, w.n / 2, nullptr, 0, false, parts_for(w.blocks / 2));
}

void linear_argmax(const float* x, int64_t M, const PackedWeight& w, int64_t* argmax, float* max_logit, float* lse) {
  check(w, M);
  if (w.glu) throw std::invalid_argument("kernels::linear_argmax: glu weight");
  const int64_t parts = parts_for(w.blocks);
  const float ninf = -std::numeric_limits<float>::infinity();
  std::vector<cpu::RowStat> stats(size_t(parts * M), cpu::RowStat{ninf, 0, 0.f});
  run(x, M, w, cpu::Epi::Argmax, nullptr, nullptr, 0, stats.data(), M, lse != nullptr, parts);
  for (int64_t m = 0; m < M; ++m) {
    cpu::RowStat s = stats[size_t(m)];
    for (int64_t p = 1; p < parts; ++p) {
      const cpu::RowStat& o = stats[size_t(p * M + m)];
      if (o.max > s.max) {  // strictly: on a tie the earlier columns' argmax stands
        if (s.sum > 0) s.sum *= std::exp(s.max - o.max);
        s.sum += o.sum;
        s.max = o.max;
        s.arg = o.arg;
      } else if (o.sum > 0) {
        s.sum += o.sum * std::exp(o.max - s.max);
      }
    }
    argmax[m] = s.arg;
    if (max_logit) max_logit[m] = s.max;
    if (lse) lse[m] = s.max + std::log(s.sum);
  }
}

}  // namespace cascade::kernels
