/*
** fma_peak.c: the FMA peak of one core, by independent chains of fused multiply-adds
** held in registers. Compiled twice by the Makefile (only for `make bench`):
**   -mavx2 -mfma -DFMA_WIDTH=8     -> fma_chains_avx2    (256-bit)
**   -mavx512f -mfma -DFMA_WIDTH=16 -> fma_chains_avx512  (512-bit)
** bench/ceilings.c calls one only when __builtin_cpu_supports says the CPU has it, so the
** rest of the build stays -march=x86-64-v2.
*/
#include <immintrin.h>
#include <stdint.h>

/* CHAINS accumulators, each updated once per round: enough independent chains to cover
** the FMA latency (4-5 cycles) times the FMA ports (2), with registers to spare */
#if FMA_WIDTH == 16
#define CHAINS 24
typedef __m512 vec;
#define SET1 _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#define ADD _mm512_add_ps
#define NAME fma_chains_avx512
static float hsum(vec v) { return _mm512_reduce_add_ps(v); }
#elif FMA_WIDTH == 8
#define CHAINS 12
typedef __m256 vec;
#define SET1 _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#define ADD _mm256_add_ps
#define NAME fma_chains_avx2
static float hsum(vec v) {
  float f[8];
  _mm256_storeu_ps(f, v);
  return f[0] + f[1] + f[2] + f[3] + f[4] + f[5] + f[6] + f[7];
}
#else
#error "FMA_WIDTH must be 8 or 16"
#endif

/* rounds x CHAINS x FMA_WIDTH FMAs (2 FLOPs each); *flops receives that count, the
** result keeps the compiler from dropping the loop */
float NAME(int64_t rounds, double *flops);

float NAME(int64_t rounds, double *flops) {
  vec acc[CHAINS];
  const vec a = SET1(0.999999f), b = SET1(1e-6f);
  for (int j = 0; j < CHAINS; j++) acc[j] = SET1(1.0f + 0.01f * (float)j);
  for (int64_t r = 0; r < rounds; r++) {
    /* fully unrolled, so that the accumulators live in registers */
#pragma GCC unroll 32
    for (int j = 0; j < CHAINS; j++) acc[j] = FMA(acc[j], a, b);
  }
  vec s = acc[0];
  for (int j = 1; j < CHAINS; j++) s = ADD(s, acc[j]);
  *flops = 2.0 * (double)rounds * CHAINS * FMA_WIDTH;
  return hsum(s);
}
