/*
** conv_bench.c: GFLOP/s of conv2d, conv2d_backward_input and conv2d_backward_weight
** on the layers of the MAML conv4 network (28x28 input, 64 channels), both the
** peer's padding-0 variant and the padding-1 one, at batch 5 and 80.
**
**   build/bench/conv_bench [threads=1]      (bench/conv_bench.sh runs it next to torch)
**
** One line per layer and op: the best of 5 timings, each repeated for >= 20 ms (of the
** thread's CPU time with 1 thread, else wall time).
** FLOPs are 2 * N * O * OH * OW * C * KH * KW for each of the three ops.
*/
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "nnops.h"

typedef struct {
  int64_t c, h, o, k;
  int stride, padding;
} Layer;

static const Layer layers[] = {
    {1, 28, 64, 3, 2, 0}, {64, 13, 64, 3, 2, 0}, {64, 6, 64, 3, 2, 0}, {64, 2, 64, 2, 1, 0},
    {1, 28, 64, 3, 2, 1}, {64, 14, 64, 3, 2, 1}, {64, 7, 64, 3, 2, 1}, {64, 4, 64, 3, 2, 1},
};

/* with one thread, the calling thread's CPU time: steadier than wall time on a shared machine */
static clockid_t clock_id = CLOCK_MONOTONIC;

static double now(void) {
  struct timespec ts;
  clock_gettime(clock_id, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static Tensor *filled(int64_t a, int64_t b, int64_t c, int64_t d) {
  Tensor *t = t_new(4, (int64_t[]){a, b, c, d});
  for (int64_t i = 0; i < t->numel; i++) T_DATA(t)[i] = (float)((i * 7919 % 1000) / 1000.0 - 0.5);
  return t;
}

enum { FORWARD, BACKWARD_INPUT, BACKWARD_WEIGHT };
static const char *op_names[] = {"forward", "backward_input", "backward_weight"};

static Tensor *run(int op, Tensor *x, Tensor *w, Tensor *gy, const Layer *l) {
  switch (op) {
    case FORWARD: return t_conv2d(x, w, NULL, l->stride, l->padding, 0);
    case BACKWARD_INPUT: return t_conv2d_backward_input(gy, w, l->h, l->h, l->stride, l->padding, 0);
    default: return t_conv2d_backward_weight(x, gy, l->k, l->k, l->stride, l->padding, 0);
  }
}

/* seconds per call: best of 5, each averaged over >= 20 ms */
static double time_op(int op, Tensor *x, Tensor *w, Tensor *gy, const Layer *l) {
  double best = 1e30;
  t_release(run(op, x, w, gy, l)); /* warm the scratch */
  for (int rep = 0; rep < 5; rep++) {
    int iters = 0;
    double t0 = now(), dt;
    do {
      t_release(run(op, x, w, gy, l));
      iters++;
    } while ((dt = now() - t0) < 0.02);
    if (dt / iters < best) best = dt / iters;
  }
  return best;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  openblas_set_num_threads(threads);
  if (threads == 1) clock_id = CLOCK_THREAD_CPUTIME_ID;
  printf("# mamlrun conv2d, OpenBLAS threads %d, %s time\n", threads, threads == 1 ? "thread CPU" : "wall");
  printf("%-8s %5s %-26s %-16s %9s %8s\n", "impl", "batch", "layer", "op", "us", "GFLOP/s");
  int64_t batches[] = {5, 80};
  for (int bi = 0; bi < 2; bi++)
    for (size_t li = 0; li < sizeof layers / sizeof layers[0]; li++) {
      const Layer *l = &layers[li];
      int64_t n = batches[bi];
      ConvGeom g = conv2d_geom(n, l->c, l->h, l->h, l->o, l->k, l->k, l->stride, l->padding);
      Tensor *x = filled(n, l->c, l->h, l->h), *w = filled(l->o, l->c, l->k, l->k);
      Tensor *gy = filled(n, l->o, g.oh, g.ow);
      double flops = 2.0 * n * l->o * g.oh * g.ow * l->c * l->k * l->k;
      char name[64];
      snprintf(name, sizeof name, "%lldx%lldx%lld k%lld s%d p%d", (long long)l->c, (long long)l->h, (long long)l->h,
               (long long)l->k, l->stride, l->padding);
      for (int op = 0; op < 3; op++) {
        double t = time_op(op, x, w, gy, l);
        printf("%-8s %5lld %-26s %-16s %9.1f %8.2f\n", "mamlrun", (long long)n, name, op_names[op], t * 1e6,
               flops / t * 1e-9);
      }
      t_release(x), t_release(w), t_release(gy);
    }
  return 0;
}
