// KvHeadRows (cpu_impl.h): the row bookkeeping both tiled attention kernels share. Plain code,
// compiled without an instruction-set target so either kernel's file can call it.
#include "kernels/cpu/cpu_impl.h"

namespace cascade::kernels::cpu {

void KvHeadRows::fill(int64_t g, int64_t r0, int64_t n, int64_t group, const float* qs, int64_t ldq, float* outs,
                      int64_t ldo, int64_t hd, int64_t start, int64_t window) {
  if (int64_t(q.size()) < n) {
    q.resize(size_t(n));
    out.resize(size_t(n));
    lo.resize(size_t(n));
    hi.resize(size_t(n));
    inv.resize(size_t(n));
  }
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = (r0 + i) / group, h = g * group + (r0 + i) % group, qpos = start + t;
    q[size_t(i)] = qs + t * ldq + h * hd;
    out[size_t(i)] = outs + t * ldo + h * hd;
    lo[size_t(i)] = window > 0 && qpos - window + 1 > 0 ? qpos - window + 1 : 0;
    hi[size_t(i)] = qpos;
  }
}

}  // namespace cascade::kernels::cpu
