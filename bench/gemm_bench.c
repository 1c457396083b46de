/*
** gemm_bench.c: GFLOP/s of one GEMM library on a list of row-major sgemm shapes, one thread.
** Built by the Makefile (only for `make bench`) once per library found, each binary linking
** that library alone (their BLAS symbols would clash in one binary):
**   GEMM_LIB_OPENBLAS  cblas_sgemm                              build/bench/gemm_bench_openblas
**   GEMM_LIB_LIBXSMM   libxsmm_smmdispatch (JIT), column-major  build/bench/gemm_bench_libxsmm
**   GEMM_LIB_DNNL      dnnl_sgemm (oneDNN)                      build/bench/gemm_bench_dnnl
**   GEMM_LIB_BLIS      bli_sgemm (BLIS typed API)               build/bench/gemm_bench_blis
**
**   build/bench/gemm_bench_openblas < SHAPES      (bench/gemm_bench.sh runs them all)
**
** SHAPES: lines "ta tb M N K beta" (C (MxN) = op(A) op(B) + beta C, A MxK after op, beta 0 or 1),
** as in the MAMLRUN_GEMM_LOG files; '#' lines are skipped. Output, one line per shape:
**   GEMM lib ta tb M N K beta us gflops checksum
** us: the median of 5 timings, each the average of as many calls as take >= 20 ms of the thread's CPU time;
** checksum: the sum of C after one call on fixed inputs (bench/gemm_bench.sh compares the
** libraries with it). A library without a kernel for a shape prints "- -" (libxsmm's JIT
** refuses some transposes).
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined GEMM_LIB_OPENBLAS
#include <cblas.h>
#define LIB "openblas"
#elif defined GEMM_LIB_LIBXSMM
#include <libxsmm.h>
#define LIB "libxsmm"
#elif defined GEMM_LIB_DNNL
#include <oneapi/dnnl/dnnl.h>
#define LIB "onednn"
#elif defined GEMM_LIB_BLIS
#include <blis.h>
#define LIB "blis"
#else
#error "define one of GEMM_LIB_OPENBLAS, GEMM_LIB_LIBXSMM, GEMM_LIB_DNNL, GEMM_LIB_BLIS"
#endif

typedef struct {
  int ta, tb, m, n, k;
  float beta;
  const float *a, *b;
  float *c;
  int lda, ldb, ldc;
#ifdef GEMM_LIB_LIBXSMM
  libxsmm_smmfunction kernel;
#endif
} Gemm;

/* prepares g for repeated calls; 0 if the library has no kernel for the shape */
static int gemm_prepare(Gemm *g) {
#ifdef GEMM_LIB_LIBXSMM
  /* row-major C = op(A) op(B) is column-major C' = op(B)' op(A)': swap the operands */
  int flags = (g->tb ? LIBXSMM_GEMM_FLAG_TRANS_A : 0) | (g->ta ? LIBXSMM_GEMM_FLAG_TRANS_B : 0);
  libxsmm_blasint lda = g->ldb, ldb = g->lda, ldc = g->ldc;
  float alpha = 1.0f, beta = g->beta;
  g->kernel = libxsmm_smmdispatch(g->n, g->m, g->k, &lda, &ldb, &ldc, &alpha, &beta, &flags, NULL);
  return g->kernel != NULL;
#else
  (void)g;
  return 1;
#endif
}

static void gemm_run(const Gemm *g) {
#if defined GEMM_LIB_OPENBLAS
  cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans, g->m, g->n, g->k,
              1.0f, g->a, g->lda, g->b, g->ldb, g->beta, g->c, g->ldc);
#elif defined GEMM_LIB_LIBXSMM
  g->kernel(g->b, g->a, g->c);
#elif defined GEMM_LIB_DNNL
  dnnl_sgemm(g->ta ? 'T' : 'N', g->tb ? 'T' : 'N', g->m, g->n, g->k, 1.0f, g->a, g->lda, g->b, g->ldb, g->beta, g->c,
             g->ldc);
#elif defined GEMM_LIB_BLIS
  float alpha = 1.0f, beta = g->beta;
  bli_sgemm(g->ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, g->tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, g->m, g->n, g->k,
            &alpha, (float *)g->a, g->lda, 1, (float *)g->b, g->ldb, 1, &beta, g->c, g->ldc, 1);
#endif
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* steadier than wall time on a shared machine */
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static float *filled(int64_t n, int seed) {
  float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
  if (!p) {
    fprintf(stderr, "gemm_bench: out of memory\n");
    exit(1);
  }
  for (int64_t i = 0; i < n; i++) p[i] = (float)((i * 7919 + seed) % 1000 / 1000.0 - 0.5);
  return p;
}

int main(void) {
#ifdef GEMM_LIB_OPENBLAS
  openblas_set_num_threads(1);
#elif defined GEMM_LIB_LIBXSMM
  libxsmm_init();
#elif defined GEMM_LIB_BLIS
  bli_thread_set_num_threads(1);
#endif
  char line[256];
  while (fgets(line, sizeof line, stdin)) {
    int ta, tb, m, n, k, beta;
    if (line[0] == '#' || sscanf(line, "%d %d %d %d %d %d", &ta, &tb, &m, &n, &k, &beta) != 6) continue;
    if (m <= 0 || n <= 0 || k <= 0) continue;
    Gemm g = {.ta = ta,
              .tb = tb,
              .m = m,
              .n = n,
              .k = k,
              .beta = (float)beta,
              .lda = ta ? m : k,
              .ldb = tb ? k : n,
              .ldc = n};
    float *a = filled((int64_t)m * k, 1), *b = filled((int64_t)k * n, 2), *c = filled((int64_t)m * n, 3);
    g.a = a, g.b = b, g.c = c;
    if (!gemm_prepare(&g)) {
      printf("GEMM %s %d %d %d %d %d %d - - -\n", LIB, ta, tb, m, n, k, beta);
      free(a), free(b), free(c);
      continue;
    }
    /* checksum: one call with beta 0 semantics kept (C is refilled first) */
    gemm_run(&g);
    double sum = 0;
    for (int64_t i = 0; i < (int64_t)m * n; i++) sum += c[i];
    /* calls per timing: doubled until they take 20 ms (the clock is read outside the calls: reading
    ** a thread's CPU time is a system call, longer than the smallest GEMMs) */
    int64_t calls = 1;
    for (;;) {
      double t0 = now();
      for (int64_t i = 0; i < calls; i++) gemm_run(&g);
      if (now() - t0 >= 0.02 || calls >= ((int64_t)1 << 40)) break;
      calls *= 2;
    }
    double times[5];
    for (int r = 0; r < 5; r++) {
      double t0 = now();
      for (int64_t i = 0; i < calls; i++) gemm_run(&g);
      times[r] = (now() - t0) / (double)calls;
    }
    qsort(times, 5, sizeof times[0], cmp_double);
    double t = times[2], flops = 2.0 * m * n * k;
    printf("GEMM %s %d %d %d %d %d %d %.3f %.2f %.6e\n", LIB, ta, tb, m, n, k, beta, t * 1e6, flops / t * 1e-9, sum);
    fflush(stdout);
    free(a), free(b), free(c);
  }
  return 0;
}
