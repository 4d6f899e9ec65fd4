// The core's arithmetic roof for the kernels' two inner-loop instructions, in registers only
// (no loads): 16 independent vdpbf16ps chains (bf16 weights, 32 multiply-adds each) and 12
// independent fp32 FMA chains (16 each). bench/README.md compares the verification pass's
// matrix products against the first figure, attention against the second.
//
//   gcc -O2 -mavx512f -mavx512bf16 -mavx512vl bench/peak/dpbf16-peak.c -o /tmp/dpbf16-peak && /tmp/dpbf16-peak
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

#define KEEP8(a, b, c, d, e, f, g, h) __asm__ volatile("" : "+v"(a), "+v"(b), "+v"(c), "+v"(d), "+v"(e), "+v"(f), "+v"(g), "+v"(h))

#define DP(a) a = _mm512_dpbf16_ps(a, w, x)
#define FMA(a) a = _mm512_fmadd_ps(y, z, a)

int main(void) {
  const long n = 100000000;
  const __m512bh w = (__m512bh)_mm512_set1_epi32(0x3f803f80), x = (__m512bh)_mm512_set1_epi32(0x3c003c00);
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  __m512 a8 = a0, a9 = a0, a10 = a0, a11 = a0, a12 = a0, a13 = a0, a14 = a0, a15 = a0;
  double t0 = now();
  for (long i = 0; i < n; ++i) {
    DP(a0); DP(a1); DP(a2); DP(a3); DP(a4); DP(a5); DP(a6); DP(a7);
    DP(a8); DP(a9); DP(a10); DP(a11); DP(a12); DP(a13); DP(a14); DP(a15);
    KEEP8(a0, a1, a2, a3, a4, a5, a6, a7);
    KEEP8(a8, a9, a10, a11, a12, a13, a14, a15);
  }
  double t = now() - t0;
  float r[16];
  _mm512_storeu_ps(r, _mm512_add_ps(a0, a15));
  float sink = r[0];
  printf("vdpbf16ps: %.1f GMAC/s (%.2f instructions/ns)\n", n * 16.0 * 32 / t / 1e9, n * 16.0 / t / 1e9);
  const __m512 y = _mm512_set1_ps(1.0001f), z = _mm512_set1_ps(0.5f);
  __m512 b0 = _mm512_setzero_ps(), b1 = b0, b2 = b0, b3 = b0, b4 = b0, b5 = b0, b6 = b0, b7 = b0;
  __m512 b8 = b0, b9 = b0, b10 = b0, b11 = b0;
  t0 = now();
  for (long i = 0; i < n; ++i) {
    FMA(b0); FMA(b1); FMA(b2); FMA(b3); FMA(b4); FMA(b5); FMA(b6); FMA(b7); FMA(b8); FMA(b9); FMA(b10); FMA(b11);
    KEEP8(b0, b1, b2, b3, b4, b5, b6, b7);
    __asm__ volatile("" : "+v"(b8), "+v"(b9), "+v"(b10), "+v"(b11));
  }
  t = now() - t0;
  _mm512_storeu_ps(r, _mm512_add_ps(b0, b11));
  sink += r[0];
  printf("fp32 FMA:  %.1f GMAC/s (%.2f instructions/ns)   (%g)\n", n * 12.0 * 16 / t / 1e9, n * 12.0 / t / 1e9, sink);
  return 0;
}
