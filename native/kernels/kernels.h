// Our linear-layer kernels: y = x W^T with W held in half precision (bf16 or f16) and consumed
// directly, fp32 activations and fp32 accumulation. One call serves one token (a GEMV) and a
// block of 2-16 tokens (a small-M GEMM): the kernels load each weight cache line once per call
// and apply it to every row of the block, so a verification block streams the weights from
// memory once -- the whole point on a CPU, where a decode is bound by that stream.
//
// The interface is plain C++ and device-neutral: a PackedWeight says which device holds its
// data, x / y / bias are pointers on that device, and each entry point dispatches on it. Only
// the CPU implementation exists (native/kernels/cpu); a CUDA one slots in behind the same
// functions. On the CPU the instruction set is picked at run time from CPU feature detection:
// AVX-512 with avx512_bf16 (vdpbf16ps) where present, AVX2 + FMA + F16C otherwise, a portable
// C++ fallback everywhere. CASCADE_SPEC_KERNELS=avx512|avx2|portable caps the choice.
//
// Numerics: accumulation is fp32, one chain per output element over k in order, whatever the
// number of rows M, the register blocking or the thread split. So a row's result does not depend
// on the block it was computed in: a verification pass and a decode pass agree bit for bit on
// the projections. The AVX-512 bf16 path rounds x to bf16 (vdpbf16ps multiplies bf16 pairs);
// the other paths keep x in fp32.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace cascade::kernels {

enum class Device : uint8_t { CPU };
enum class WeightType : uint8_t { BF16, F16 };
// The element type of a source array handed to pack().
enum class SourceType : uint8_t { F32, BF16, F16 };

// CPU instruction-set levels, best last.
enum class Isa : uint8_t { Portable = 0, Avx2 = 1, Avx512 = 2 };
const char* isa_name(Isa isa);
// The best level this CPU and build support for `type` (bf16 needs avx512_bf16 for Avx512;
// f16 needs only avx512f).
Isa best_isa(WeightType type);
// The level in use: best_isa capped by CASCADE_SPEC_KERNELS (read once) or by set_isa_cap.
Isa active_isa(WeightType type);
// The level for the fp32 row operations that have per-level code (attention): as active_isa for
// f16 weights (AVX-512 needs avx512f, not avx512_bf16), so the cap reaches them too.
Isa active_row_isa();
// Caps the level for later calls (tests use it to reach every path on one machine). Returns the
// previous cap. Not thread-safe against concurrent kernel calls.
Isa set_isa_cap(Isa cap);

// Weights W [n, k] (row-major, as nn.Linear stores them) in the kernels' layout: rows in blocks
// of 16, each block [kp / 2][16][2] -- for every pair of columns (2p, 2p+1), the 16 rows'
// values side by side, so one 64-byte line holds 16 rows x 2 columns. k is padded to even (kp),
// n to a multiple of 16, with zeros. A "glu" weight holds [gate; up] (n = 2I rows) with gate and
// up blocks interleaved (gate block b, then up block b), so a tile holds matching columns.
struct PackedWeight {
  Device device = Device::CPU;
  WeightType type = WeightType::BF16;
  int64_t n = 0, k = 0;   // logical shape
  int64_t kp = 0;         // k rounded up to even
  int64_t blocks = 0;     // 16-row blocks stored
  bool glu = false;
  std::shared_ptr<uint16_t> data;  // 64-byte aligned, blocks * kp * 16 elements

  bool empty() const { return !data; }
  int64_t block_elems() const { return kp * 16; }
  size_t bytes() const { return size_t(blocks) * size_t(block_elems()) * 2; }
};

// Packs a row-major [n, k] array of `src` type into `type`, rounding to nearest even where the
// types differ. glu: the rows are [gate (n/2); up (n/2)] (n must be even).
PackedWeight pack(const void* src, SourceType src_type, int64_t n, int64_t k, WeightType type, bool glu = false);
// The weights back as row-major float32 [n, k] (exact: every bf16 / f16 value is an fp32 value).
std::vector<float> unpack(const PackedWeight& w);

// y[M, n] = x[M, k] W^T (+ bias[n]); with accumulate, y += x W^T (+ bias) (a fused residual add).
// Rows of x and y are contiguous with strides k and n.
void linear(const float* x, int64_t M, const PackedWeight& w, const float* bias, float* y, bool accumulate = false);

// For a glu weight [gate; up] of 2I rows: y[M, I] = silu(x gate^T) * (x up^T), without writing
// the 2I-wide intermediate.
void linear_glu(const float* x, int64_t M, const PackedWeight& w, float* y);

// The language-model head for verification: per row of x, the argmax over the n logits x W^T
// (the first maximal index, as a scan would find it) and, when `lse` is given, the log-sum-exp
// of the logits (softmax's normaliser, for sampling), without materialising the [M, n] logits.
// `max_logit` (optional) receives the maximal logit. The logits are the values linear() would
// write, so argmax here equals argmax over linear()'s output.
void linear_argmax(const float* x, int64_t M, const PackedWeight& w, int64_t* argmax, float* max_logit, float* lse);

// ---- fp32 row operations around the linear layers (CPU) ----
// y[m] = w * (x[m] / sqrt(mean(x[m]^2) + eps)), rows of H.
void rms_norm(const float* x, int64_t M, int64_t H, const float* w, float eps, float* y);
// Rotary embedding in place on one row of `heads` heads of hd values ("rotate half" layout:
// dimension i pairs with i + hd/2), at the position whose tables cos, sin [hd/2] are given.
void rope(float* x, int64_t heads, int64_t hd, const float* cos, const float* sin);
// Causal attention of T queries at positions start..start+T-1 over keys and values at positions
// 0..start+T-1 (window > 0: only the last `window` positions up to each query, Mistral's sliding
// window). q: T rows of stride ldq, nH heads of hd; head h of q reads kv head h / (nH / nKV).
// Keys are stored in blocks of 16 positions, each block [hd][16] (position p at block p / 16,
// lane p % 16), so scores vectorize over positions with contiguous reads; a kv head holds
// ceil(positions / 16) whole blocks. Values are rows [positions, hd]. Keys and values of kv head
// g start at g * head_stride. out: T rows of stride ldo.
void attention(const float* q, int64_t ldq, int64_t T, int64_t nH, int64_t nKV, int64_t hd, const float* keys,
               const float* values, int64_t head_stride, int64_t start, int64_t window, float* out, int64_t ldo);

// out[i] = softmax(x / temperature)[i] over n values (float32, the exponential to within about
// 2e-7 relative); -inf entries get exactly 0. At least one entry must be finite.
void softmax(const float* x, int64_t n, float temperature, float* out);

// Block verification's residual: sum_i max(0, w p[i] - q[i]) over n values (q null: 0), and
// the terms themselves in out when it is not null. Summed 16 lanes at a time in float, each
// 256-value chunk added in double.
double residual_mass(const float* p, float w, const float* q, int64_t n, float* out);

// Top-p's two passes over a whole row. compact_above: the values > threshold, in order, into
// out (room for n); returns their count. keep_above_scaled: x[i] = x[i] > cut ? x[i] * scale
// : 0, in place.
int64_t compact_above(const float* x, int64_t n, float threshold, float* out);
void keep_above_scaled(float* x, int64_t n, float cut, float scale);

// Threads: the output blocks are split across the intra-op pool of ATen (at::get_num_threads(),
// which the model sets from its `threads` option; 1 by default). Results do not depend on it.

// bf16 / f16 <-> fp32 scalar conversions (round to nearest even), shared with tests.
uint16_t fp32_to_bf16(float f);
float bf16_to_fp32(uint16_t h);
uint16_t fp32_to_f16(float f);
float f16_to_fp32(uint16_t h);

}  // namespace cascade::kernels
