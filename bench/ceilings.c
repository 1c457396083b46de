/*
** ceilings.c: the machine's ceilings, for `make bench` (bench/run_all.sh) to put beside the
** GFLOP/s of the MAML configs:
**   - OpenBLAS sgemm on 1024x1024x1024 (row-major, no transposes), median of REPS timings,
**     on each thread count given;
**   - the FMA peak (bench/fma_peak.c: independent FMA chains) on the widest vector width the
**     CPU supports (AVX-512 if it has avx512f, else AVX2+FMA; AVX2 is also printed when the
**     widest is AVX-512), one chain set per thread, median of REPS timings.
**
**   - the memory bandwidth that batch norm and the elementwise passes see: per thread, three
**     16 MB float arrays (the size of a 20-way batch's activations, larger than the L2 of the
**     machines this project ran on), "map" out = a s + b (two reads and a write, as batch
**     norm's writing pass) and "sums" of a and a b (two reads, as its summing pass), in GB/s of
**     the bytes the loop reads and writes, median of REPS timings.
**
**   build/bench/ceilings [threads...]        (default: 1 2)
**
** Prints readable lines and, for bench/report.lua, one `CEILING {json}` line per measurement:
**   CEILING {"what":"sgemm1024","threads":1,"gflops":...}
**   CEILING {"what":"fma","isa":"avx512","threads":1,"gflops":...}
**   CEILING {"what":"bandwidth","kind":"map","mbytes":16,"threads":1,"gbytes":...}
*/
#include <cblas.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

float fma_chains_avx2(int64_t rounds, double *flops);
float fma_chains_avx512(int64_t rounds, double *flops);

enum { REPS = 7 };

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ------------------------------------------------------------ sgemm 1024^3 */

static double sgemm_gflops(int threads) {
  const int n = 1024;
  float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
  if (!a || !b || !c) {
    fprintf(stderr, "ceilings: out of memory\n");
    exit(1);
  }
  for (int i = 0; i < n * n; i++) {
    a[i] = (float)((int64_t)i * 7919 % 1000 / 1000.0 - 0.5);
    b[i] = (float)((int64_t)i * 104729 % 1000 / 1000.0 - 0.5);
  }
  openblas_set_num_threads(threads);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n); /* warm-up */
  double g[REPS];
  for (int r = 0; r < REPS; r++) {
    double t0 = now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    g[r] = 2.0 * n * n * n / (now() - t0) * 1e-9;
  }
  free(a), free(b), free(c);
  return median(g, REPS);
}

/* ------------------------------------------------------------ FMA peak */

typedef float (*FmaFn)(int64_t, double *);
typedef struct {
  FmaFn fn;
  int64_t rounds;
  double flops;
  float sink;
} FmaJob;

static void *fma_thread(void *p) {
  FmaJob *j = p;
  j->sink = j->fn(j->rounds, &j->flops);
  return NULL;
}

/* GFLOP/s of `threads` threads each running fn for `rounds` rounds */
static double fma_once(FmaFn fn, int threads, int64_t rounds) {
  pthread_t tid[64];
  FmaJob jobs[64];
  if (threads > 64) threads = 64;
  double t0 = now();
  for (int i = 0; i < threads; i++) {
    jobs[i] = (FmaJob){fn, rounds, 0, 0};
    if (pthread_create(&tid[i], NULL, fma_thread, &jobs[i]) != 0) {
      fprintf(stderr, "ceilings: pthread_create failed\n");
      exit(1);
    }
  }
  double flops = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(tid[i], NULL);
    flops += jobs[i].flops;
    if (jobs[i].sink == 12345.0f) fputc(' ', stderr); /* keep the result alive */
  }
  return flops / (now() - t0) * 1e-9;
}

static double fma_gflops(FmaFn fn, int threads) {
  int64_t rounds = 1 << 20;
  while (fma_once(fn, 1, rounds) < 0) {
  } /* warm-up (the clock ramps up) */
  /* about 0.2 s a timing */
  double t0 = now();
  fma_once(fn, 1, rounds);
  double dt = now() - t0;
  if (dt > 0) rounds = (int64_t)(rounds * (0.2 / dt)) + 1;
  double g[REPS];
  for (int r = 0; r < REPS; r++) g[r] = fma_once(fn, threads, rounds);
  return median(g, REPS);
}

/* ------------------------------------------------------------ memory bandwidth */

enum { BW_FLOATS = 4 << 20 }; /* 16 MB per array */

typedef struct {
  int kind; /* 0: map, 1: sums */
  int passes;
  float *a, *b, *out;
  double sink;
} BwJob;

static void *bw_thread(void *p) {
  BwJob *j = p;
  const float *a = j->a, *b = j->b;
  for (int r = 0; r < j->passes; r++) {
    if (j->kind == 0) {
      float s = 1.0f + 1e-7f * (float)r, *out = j->out;
      for (int64_t i = 0; i < BW_FLOATS; i++) out[i] = a[i] * s + b[i];
      j->sink += out[r % BW_FLOATS];
    } else {
      typedef float v4 __attribute__((vector_size(16)));
      v4 s1[4] = {{0}}, s2[4] = {{0}}; /* 16 lanes of partial sums, as batch norm's sweeps keep */
      for (int64_t i = 0; i < BW_FLOATS; i += 16)
        for (int k = 0; k < 4; k++) {
          v4 va, vb;
          memcpy(&va, a + i + 4 * k, sizeof va);
          memcpy(&vb, b + i + 4 * k, sizeof vb);
          s1[k] += va;
          s2[k] += va * vb;
        }
      for (int k = 0; k < 4; k++)
        for (int l = 0; l < 4; l++) j->sink += s1[k][l] + s2[k][l];
    }
  }
  return NULL;
}

/* GB/s of `threads` threads each running its own arrays through `kind`, median of REPS */
static double bandwidth_gbytes(int kind, int threads) {
  pthread_t tid[64];
  BwJob jobs[64];
  if (threads > 64) threads = 64;
  for (int i = 0; i < threads; i++) {
    jobs[i] = (BwJob){kind, 1, malloc(sizeof(float) * BW_FLOATS), malloc(sizeof(float) * BW_FLOATS),
                      malloc(sizeof(float) * BW_FLOATS), 0};
    if (!jobs[i].a || !jobs[i].b || !jobs[i].out) {
      fprintf(stderr, "ceilings: out of memory\n");
      exit(1);
    }
    for (int64_t k = 0; k < BW_FLOATS; k++) jobs[i].a[k] = 1.0f, jobs[i].b[k] = 0.5f, jobs[i].out[k] = 0.0f;
  }
  double bytes_per_pass = (kind == 0 ? 3.0 : 2.0) * sizeof(float) * BW_FLOATS, g[REPS];
  for (int r = -1; r < REPS; r++) { /* (r = -1: a warm-up) */
    double t0 = now();
    for (int i = 0; i < threads; i++) {
      jobs[i].passes = 4;
      if (pthread_create(&tid[i], NULL, bw_thread, &jobs[i]) != 0) {
        fprintf(stderr, "ceilings: pthread_create failed\n");
        exit(1);
      }
    }
    for (int i = 0; i < threads; i++) pthread_join(tid[i], NULL);
    if (r >= 0) g[r] = bytes_per_pass * 4 * threads / (now() - t0) * 1e-9;
  }
  for (int i = 0; i < threads; i++) {
    if (jobs[i].sink == 12345.0) fputc(' ', stderr); /* keep the results alive */
    free(jobs[i].a), free(jobs[i].b), free(jobs[i].out);
  }
  return median(g, REPS);
}

int main(int argc, char **argv) {
  int threads[16], nthreads = 0;
  for (int i = 1; i < argc && nthreads < 16; i++) threads[nthreads++] = atoi(argv[i]) > 0 ? atoi(argv[i]) : 1;
  if (nthreads == 0) threads[nthreads++] = 1, threads[nthreads++] = 2;

  __builtin_cpu_init();
  int has_avx512 = __builtin_cpu_supports("avx512f");
  int has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");

  for (int i = 0; i < nthreads; i++) {
    double g = sgemm_gflops(threads[i]);
    printf("ceiling: OpenBLAS sgemm 1024^3 (median of %d), %d thread%s: %.1f GFLOP/s\n", REPS, threads[i],
           threads[i] == 1 ? "" : "s", g);
    printf("CEILING {\"what\":\"sgemm1024\",\"threads\":%d,\"gflops\":%.3f}\n", threads[i], g);
  }
  struct {
    const char *isa;
    int ok, widest;
    FmaFn fn;
  } isas[] = {{"avx512", has_avx512, 1, fma_chains_avx512}, {"avx2", has_avx2, !has_avx512, fma_chains_avx2}};
  for (int k = 0; k < 2; k++) {
    if (!isas[k].ok) continue;
    for (int i = 0; i < nthreads; i++) {
      double g = fma_gflops(isas[k].fn, threads[i]);
      printf("ceiling: FMA peak, %s (independent chains, median of %d), %d thread%s: %.1f GFLOP/s%s\n", isas[k].isa,
             REPS, threads[i], threads[i] == 1 ? "" : "s", g, isas[k].widest ? "" : " (not the widest)");
      printf("CEILING {\"what\":\"fma\",\"isa\":\"%s\",\"widest\":%s,\"threads\":%d,\"gflops\":%.3f}\n", isas[k].isa,
             isas[k].widest ? "true" : "false", threads[i], g);
    }
  }
  if (!has_avx512 && !has_avx2) printf("ceiling: no FMA peak (the CPU has neither avx512f nor avx2+fma)\n");
  static const char *kinds[] = {"map", "sums"}, *what[] = {"out = a s + b: 2 reads, 1 write", "sums of a, a b: 2 reads"};
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < nthreads; i++) {
      double g = bandwidth_gbytes(k, threads[i]);
      printf("ceiling: memory bandwidth, %s (%s, 16 MB arrays per thread, median of %d), %d thread%s: %.1f GB/s\n",
             kinds[k], what[k], REPS, threads[i], threads[i] == 1 ? "" : "s", g);
      printf("CEILING {\"what\":\"bandwidth\",\"kind\":\"%s\",\"mbytes\":16,\"threads\":%d,\"gbytes\":%.3f}\n",
             kinds[k], threads[i], g);
    }
  return 0;
}
