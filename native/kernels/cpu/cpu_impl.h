// The CPU kernels' internal interface: one Impl per (instruction set, weight type). Each runs a
// Call over a range of 16-row weight blocks; the dispatcher (dispatch.cc) prepares the
// activations once per call and splits the blocks across threads.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace cascade::kernels::cpu {

// Leading dimension of a tile buffer: up to 4 blocks of 16 columns.
constexpr int TILE_LD = 64;

enum class Epi : int {
  Store,     // y = acc (+ bias)
  Add,       // y += acc (+ bias)
  Glu,       // y[:, c] = silu(gate acc) * up acc, tiles hold gate/up block pairs
  Argmax,    // per row: running max, first argmax, sum of exp(v - max)
};

// Running statistics of one row's logits over a range of columns.
struct RowStat {
  float max;
  int64_t arg;
  float sum;  // sum of exp(v - max) over the columns seen (when lse is wanted)
};

struct Call {
  const void* x;   // prepared activations, M rows of stride ldx elements (bf16 or fp32, per Impl)
  int64_t ldx;
  int64_t M;
  const uint16_t* w;  // packed weight
  int64_t np;         // column pairs (kp / 2)
  int64_t n;          // valid output columns (glu: I)
  Epi epi;
  const float* bias;  // [n] or null (Store / Add)
  float* y;           // [M, ldy]
  int64_t ldy;
  bool lse;           // Argmax: also accumulate sums of exponentials
};

struct Impl {
  const char* name;
  size_t x_elem;  // bytes per prepared activation element: 2 (bf16) or 4 (fp32)
  // x [M, k] fp32 -> out [M, kp] in the Impl's activation type, zero padded.
  void (*prepare)(const float* x, int64_t M, int64_t k, int64_t kp, void* out);
  // Blocks [b0, b1) of the weight (for Glu: b0, b1 even). stats: [M] for Argmax, initialised by
  // the caller to {-inf, 0, 0}.
  void (*run)(const Call& c, int64_t b0, int64_t b1, RowStat* stats);
};

// nullptr where the build cannot produce them (not x86-64, or a compiler without the targets).
const Impl* avx512_bf16_impl();  // bf16 weights: avx512f/bw/vl + avx512_bf16
const Impl* avx512_f16_impl();   // f16 weights: avx512f (vcvtph2ps)
const Impl* avx2_bf16_impl();    // avx2 + fma
const Impl* avx2_f16_impl();     // avx2 + fma + f16c
const Impl* portable_bf16_impl();
const Impl* portable_f16_impl();

// The query rows of one kv head that the tiled attention kernels (rowops.cc's AVX-512 one,
// attention_avx2.cc) process together: row r of kv head g is token r / group, query head
// g * group + r % group. Rows are ordered by token, so a row's key range [lo, hi] never starts or
// ends before the previous row's. Each kernel keeps one per thread; fill() grows it as needed.
struct KvHeadRows {
  std::vector<const float*> q;  // the row's query
  std::vector<float*> out;      // where its output goes
  std::vector<int64_t> lo, hi;  // its key range (positions; the kernels may rebase them)
  std::vector<float> inv;       // room for 1 / its softmax sum
  // Rows r0 .. r0 + n - 1 of kv head g, for queries at positions start.. (window > 0: only the
  // last `window` positions up to each query).
  void fill(int64_t g, int64_t r0, int64_t n, int64_t group, const float* q, int64_t ldq, float* out, int64_t ldo,
            int64_t hd, int64_t start, int64_t window);
};

// kernels::attention (same contract) with AVX2 + FMA (attention_avx2.cc). Returns false, doing
// nothing, where the CPU or the build lacks them.
bool attention_avx2(const float* q, int64_t ldq, int64_t T, int64_t nH, int64_t nKV, int64_t hd, const float* keys,
                    const float* values, int64_t head_stride, int64_t start, int64_t window, float* out,
                    int64_t ldo);

}  // namespace cascade::kernels::cpu
