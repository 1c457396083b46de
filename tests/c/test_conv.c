/*
** test_conv.c: conv2d, its backward ops and the poolings against naive
** double-precision loops, adjoint identities, determinism, argument errors.
** Prints TAP lines; exits non-zero if any test fails.
*/
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnops.h"
#include "shape.h"
#include "tap.h"
#include "tensor.h"


/* ------------------------------------------------------------ helpers */

static Generator gen;

static Tensor *randn(int64_t a, int64_t b, int64_t c, int64_t d) {
  Tensor *t = t_new(4, (int64_t[]){a, b, c, d});
  for (int64_t i = 0; i < t->numel; i++) T_DATA(t)[i] = (float)gen_normal(&gen);
  return t;
}

static Tensor *randn1(int64_t n) {
  Tensor *t = t_new(1, (int64_t[]){n});
  for (int64_t i = 0; i < n; i++) T_DATA(t)[i] = (float)gen_normal(&gen);
  return t;
}

static int irand(int lo, int hi) { return lo + (int)gen_below(&gen, (uint32_t)(hi - lo + 1)); }

static double dot(const Tensor *a, const Tensor *b) {
  double s = 0;
  for (int64_t i = 0; i < a->numel; i++) s += (double)T_DATA(a)[i] * T_DATA(b)[i];
  return s;
}

/* max over elements of |got - want| / (scale + 1e-3), scale the sum of |terms| */
static double rel_err(const float *got, const double *want, const double *scale, int64_t n) {
  double worst = 0;
  for (int64_t i = 0; i < n; i++) {
    double e = fabs(got[i] - want[i]) / (scale[i] + 1e-3);
    worst = worse(worst, e);
  }
  return worst;
}

static int bitwise_equal(const Tensor *a, const Tensor *b) {
  return a->numel == b->numel && !memcmp(T_DATA(a), T_DATA(b), (size_t)a->numel * sizeof(float));
}

/* ------------------------------------------------------------ layouts */

/* Every conv test runs twice: on the NCHW ops, then on the channels-last ones (nhwc = 1)
** through these wrappers, which take and return NCHW tensors and permute them around
** the NHWC op, so that one naive reference checks both layouts. */
static int nhwc;
static const char *layout_name(void) { return nhwc ? "NHWC" : "NCHW"; }

static Tensor *permuted(Tensor *t, int to_nhwc) { /* (N,C,H,W) <-> (N,H,W,C), a copy */
  return t_permute(t, to_nhwc ? (int[]){0, 2, 3, 1} : (int[]){0, 3, 1, 2});
}

static Tensor *conv(Tensor *x, Tensor *w, Tensor *b, int stride, int padding) {
  if (!nhwc) return t_conv2d(x, w, b, stride, padding, 0);
  Tensor *xl = permuted(x, 1), *yl = t_conv2d(xl, w, b, stride, padding, 1), *y = permuted(yl, 0);
  t_release(xl), t_release(yl);
  return y;
}

static Tensor *conv_bi(Tensor *gy, Tensor *w, int64_t h, int64_t w_, int stride, int padding) {
  if (!nhwc) return t_conv2d_backward_input(gy, w, h, w_, stride, padding, 0);
  Tensor *gyl = permuted(gy, 1), *gxl = t_conv2d_backward_input(gyl, w, h, w_, stride, padding, 1);
  Tensor *gx = permuted(gxl, 0);
  t_release(gyl), t_release(gxl);
  return gx;
}

static Tensor *conv_bw(Tensor *x, Tensor *gy, int64_t kh, int64_t kw, int stride, int padding) {
  if (!nhwc) return t_conv2d_backward_weight(x, gy, kh, kw, stride, padding, 0);
  Tensor *xl = permuted(x, 1), *gyl = permuted(gy, 1);
  Tensor *gw = t_conv2d_backward_weight(xl, gyl, kh, kw, stride, padding, 1);
  t_release(xl), t_release(gyl);
  return gw;
}

/* ------------------------------------------------------------ naive references */

/* x at (n, c, ih, iw) or 0 in the padding */
static double xat(const ConvGeom *g, const float *x, int64_t n, int64_t c, int64_t ih, int64_t iw) {
  if (ih < 0 || ih >= g->h || iw < 0 || iw >= g->w) return 0;
  return x[((n * g->c + c) * g->h + ih) * g->w + iw];
}

/* y, gx, gw of one geometry, each with the sum of |terms| for the tolerance */
typedef struct {
  double *y, *ys, *gx, *gxs, *gw, *gws;
} Naive;

static Naive naive_conv(const ConvGeom *g, const float *x, const float *w, const float *b, const float *gy) {
  int64_t ny = g->n * g->o * g->oh * g->ow, nx = g->n * g->c * g->h * g->w, nw = g->o * g->c * g->kh * g->kw;
  Naive r = {calloc(ny, 8), calloc(ny, 8), calloc(nx, 8), calloc(nx, 8), calloc(nw, 8), calloc(nw, 8)};
  for (int64_t n = 0; n < g->n; n++)
    for (int64_t o = 0; o < g->o; o++)
      for (int64_t oh = 0; oh < g->oh; oh++)
        for (int64_t ow = 0; ow < g->ow; ow++) {
          int64_t yi = ((n * g->o + o) * g->oh + oh) * g->ow + ow;
          r.y[yi] = b ? b[o] : 0;
          r.ys[yi] = b ? fabs(b[o]) : 0;
          for (int64_t c = 0; c < g->c; c++)
            for (int64_t i = 0; i < g->kh; i++)
              for (int64_t j = 0; j < g->kw; j++) {
                int64_t ih = oh * g->stride - g->padding + i, iw = ow * g->stride - g->padding + j;
                int64_t wi = ((o * g->c + c) * g->kh + i) * g->kw + j;
                double xv = xat(g, x, n, c, ih, iw);
                r.y[yi] += xv * w[wi];
                r.ys[yi] += fabs(xv * w[wi]);
                r.gw[wi] += xv * gy[yi];
                r.gws[wi] += fabs(xv * gy[yi]);
                if (ih >= 0 && ih < g->h && iw >= 0 && iw < g->w) {
                  int64_t xi = ((n * g->c + c) * g->h + ih) * g->w + iw;
                  r.gx[xi] += (double)w[wi] * gy[yi];
                  r.gxs[xi] += fabs((double)w[wi] * gy[yi]);
                }
              }
        }
  return r;
}

static void naive_free(Naive *r) { free(r->y), free(r->ys), free(r->gx), free(r->gxs), free(r->gw), free(r->gws); }

/* ------------------------------------------------------------ conv tests */

/* all three ops of one geometry against the naive loops; returns the worst error */
static double check_conv(int64_t n, int64_t c, int64_t h, int64_t w, int64_t o, int64_t kh, int64_t kw, int stride,
                         int padding, int bias) {
  ConvGeom g = conv2d_geom(n, c, h, w, o, kh, kw, stride, padding);
  Tensor *x = randn(n, c, h, w), *wt = randn(o, c, kh, kw), *b = bias ? randn1(o) : NULL;
  Tensor *gy = randn(n, o, g.oh, g.ow);
  Naive r = naive_conv(&g, T_DATA(x), T_DATA(wt), b ? T_DATA(b) : NULL, T_DATA(gy));
  Tensor *y = conv(x, wt, b, stride, padding);
  Tensor *gx = conv_bi(gy, wt, h, w, stride, padding);
  Tensor *gw = conv_bw(x, gy, kh, kw, stride, padding);
  double e = rel_err(T_DATA(y), r.y, r.ys, y->numel);
  double e2 = rel_err(T_DATA(gx), r.gx, r.gxs, gx->numel);
  double e3 = rel_err(T_DATA(gw), r.gw, r.gws, gw->numel);
  e = worse(worse(e, e2), e3);
  if (y->shape[2] != g.oh || y->shape[3] != g.ow) e = INFINITY;
  naive_free(&r);
  t_release(x), t_release(wt), t_release(b), t_release(gy), t_release(y), t_release(gx), t_release(gw);
  return e;
}

static void test_conv_random(void) {
  double worst = 0;
  int count = 0;
  for (int trial = 0; trial < 400; trial++) {
    int stride = irand(1, 3), padding = irand(0, 2);
    int64_t kh = irand(1, 4), kw = trial % 3 ? kh : irand(1, 4);
    int64_t h = irand(1, 9), w = irand(1, 9);
    if (kh > h + 2 * padding || kw > w + 2 * padding) continue;
    int64_t n = trial % 4 ? irand(1, 5) : 1, c = trial % 5 ? irand(1, 4) : 1, o = irand(1, 5);
    double e = check_conv(n, c, h, w, o, kh, kw, stride, padding, trial % 2);
    worst = worse(worst, e);
    if (!(e <= 1e-5))
      printf("# conv n=%lld c=%lld h=%lld w=%lld o=%lld k=%lldx%lld s=%d p=%d: error %g\n", (long long)n, (long long)c,
             (long long)h, (long long)w, (long long)o, (long long)kh, (long long)kw, stride, padding, e);
    count++;
  }
  ok(worst <= 1e-5 && count > 200,
     "%s: conv2d and both backward ops match naive loops on %d random shapes (worst %.2g)", layout_name(), count,
     worst);
}

static void test_conv_maml_shapes(void) {
  /* the conv4 network of the peer (padding 0) and the 'SAME'-like variant (padding 1) */
  struct {
    int64_t c, h, k;
    int s, p;
  } l[] = {{1, 28, 3, 2, 0}, {64, 13, 3, 2, 0}, {64, 6, 3, 2, 0}, {64, 2, 2, 1, 0},
           {1, 28, 3, 2, 1}, {64, 14, 3, 2, 1}, {64, 7, 3, 2, 1}, {64, 4, 3, 2, 1}};
  for (int i = 0; i < 8; i++) {
    double e = check_conv(5, l[i].c, l[i].h, l[i].h, 64, l[i].k, l[i].k, l[i].s, l[i].p, 1);
    ok(e <= 1e-5, "%s: conv4 layer c=%lld %lldx%lld k=%lld s=%d p=%d, batch 5 (error %.2g)", layout_name(),
       (long long)l[i].c, (long long)l[i].h, (long long)l[i].h, (long long)l[i].k, l[i].s, l[i].p, e);
  }
}

/* kernels as large as the input (one output pixel: plain GEMMs) and one input channel
** (direct loops in the forward) have paths of their own */
static void test_conv_special_paths(void) {
  double e = 0;
  e = worse(e, check_conv(3, 5, 3, 2, 4, 3, 2, 1, 0, 1));
  e = worse(e, check_conv(1, 2, 4, 4, 3, 4, 4, 3, 0, 0));
  e = worse(e, check_conv(7, 64, 2, 2, 64, 2, 2, 1, 0, 1));
  ok(e <= 1e-5, "%s: whole-image kernels (one output pixel) match naive loops (error %.2g)", layout_name(), e);
  e = 0;
  for (int s = 1; s <= 3; s++)
    for (int pad = 0; pad <= 2; pad++) {
      e = worse(e, check_conv(3, 1, 11, 9, 6, 3, 3, s, pad, 1));
      e = worse(e, check_conv(2, 1, 7, 8, 5, 2, 4, s, pad, 0));
    }
  ok(e <= 1e-5, "%s: one input channel matches naive loops at strides 1-3, paddings 0-2 (error %.2g)", layout_name(),
     e);
}

/* <conv(x, w), y> = <x, BI(y, w)> = <w, BW(x, y)> */
static void test_conv_adjoint(void) {
  double worst = 0;
  for (int trial = 0; trial < 100; trial++) {
    int stride = irand(1, 3), padding = irand(0, 2);
    int64_t kh = irand(1, 3), kw = irand(1, 3), h = irand(2, 12), w = irand(2, 12);
    if (kh > h + 2 * padding || kw > w + 2 * padding) continue;
    int64_t n = irand(1, 4), c = irand(1, 6), o = irand(1, 6);
    Tensor *x = randn(n, c, h, w), *wt = randn(o, c, kh, kw);
    Tensor *y = conv(x, wt, NULL, stride, padding);
    Tensor *r = randn(y->shape[0], y->shape[1], y->shape[2], y->shape[3]);
    Tensor *gx = conv_bi(r, wt, h, w, stride, padding);
    Tensor *gw = conv_bw(x, r, kh, kw, stride, padding);
    double a = dot(y, r), b = dot(x, gx), c2 = dot(wt, gw);
    double scale = sqrt(dot(y, y) * dot(r, r)) + 1e-6;
    double e = worse(fabs(a - b), fabs(a - c2)) / scale;
    worst = worse(worst, e);
    t_release(x), t_release(wt), t_release(y), t_release(r), t_release(gx), t_release(gw);
  }
  ok(worst < 1e-5, "%s: <conv2d(x,w),y> = <x,backward_input(y,w)> = <w,backward_weight(x,y)> (worst %.2g)",
     layout_name(), worst);
}

/* largest |a - b| / largest |a| */
static double max_diff(const Tensor *a, const Tensor *b) {
  double e = 0, m = 1e-30;
  for (int64_t i = 0; i < a->numel; i++) {
    e = worse(e, fabs(T_DATA(a)[i] - T_DATA(b)[i]));
    m = fmax(m, fabs(T_DATA(a)[i]));
  }
  return e / m;
}

/* Chunking images into GEMMs and OpenBLAS's threads change the summation
** order only (OpenBLAS's kernels round differently at block edges), so
** results agree to float rounding; a repeated call is bitwise the same. */
static void test_conv_determinism(void) {
  Tensor *x = randn(80, 64, 13, 13), *w = randn(64, 64, 3, 3), *b = randn1(64);
  Tensor *gy = randn(80, 64, 6, 6);
  Tensor *ref[3], *got[3];
  int threads = openblas_get_num_threads(), same = 1;
  openblas_set_num_threads(1);
  ref[0] = conv(x, w, b, 2, 0);
  ref[1] = conv_bi(gy, w, 13, 13, 2, 0);
  ref[2] = conv_bw(x, gy, 3, 3, 2, 0);
  double e = 0;
  /* 0: the same again, 1: one image per GEMM, 2: all 80 in one GEMM, 3: 2 threads */
  for (int variant = 0; variant < 4; variant++) {
    int64_t old = conv2d_set_chunk_floats(1);
    conv2d_set_chunk_floats(variant == 1 ? 1 : variant == 2 ? (int64_t)1 << 26 : old);
    openblas_set_num_threads(variant == 3 ? 2 : 1);
    got[0] = conv(x, w, b, 2, 0);
    got[1] = conv_bi(gy, w, 13, 13, 2, 0);
    got[2] = conv_bw(x, gy, 3, 3, 2, 0);
    conv2d_set_chunk_floats(old);
    openblas_set_num_threads(threads);
    for (int i = 0; i < 3; i++) {
      if (variant == 0) same &= bitwise_equal(ref[i], got[i]);
      e = worse(e, max_diff(ref[i], got[i]));
      t_release(got[i]);
    }
  }
  ok(same, "%s: conv ops give bitwise the same result when repeated", layout_name());
  ok(e < 1e-5, "%s: conv ops agree across image chunking and 1 or 2 OpenBLAS threads (worst %.2g)", layout_name(), e);
  for (int i = 0; i < 3; i++) t_release(ref[i]);
  t_release(x), t_release(w), t_release(b), t_release(gy);
}

/* worker threads have their own scratch: two at once give the main thread's results */
typedef struct {
  Tensor *x, *w, *gy, *out[3][3]; /* [repeat][op]; released by the main thread */
} ConvJob;

static void *conv_job(void *arg) {
  ConvJob *j = arg;
  for (int rep = 0; rep < 3; rep++) {
    j->out[rep][0] = conv(j->x, j->w, NULL, 2, 1);
    j->out[rep][1] = conv_bi(j->gy, j->w, 14, 14, 2, 1);
    j->out[rep][2] = conv_bw(j->x, j->gy, 3, 3, 2, 1);
  }
  return NULL;
}

static void test_conv_threads(void) {
  int threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
  ConvJob ref = {randn(20, 16, 14, 14), randn(32, 16, 3, 3), randn(20, 32, 7, 7), {{NULL}}};
  conv_job(&ref);
  ConvJob jobs[2];
  pthread_t tid[2];
  for (int t = 0; t < 2; t++) {
    jobs[t] = (ConvJob){ref.x, ref.w, ref.gy, {{NULL}}};
    pthread_create(&tid[t], NULL, conv_job, &jobs[t]);
  }
  int same = 1;
  for (int t = 0; t < 2; t++) {
    pthread_join(tid[t], NULL);
    for (int rep = 0; rep < 3; rep++)
      for (int i = 0; i < 3; i++) {
        same &= bitwise_equal(ref.out[0][i], jobs[t].out[rep][i]);
        t_release(jobs[t].out[rep][i]);
      }
  }
  openblas_set_num_threads(threads);
  ok(same, "%s: two threads at once give bitwise the results of the main thread", layout_name());
  for (int rep = 0; rep < 3; rep++)
    for (int i = 0; i < 3; i++) t_release(ref.out[rep][i]);
  t_release(ref.x), t_release(ref.w), t_release(ref.gy);
}

/* ------------------------------------------------------------ pooling tests */

/* the layout change around the GEMMs, both kernels, on every remainder of 4 and 8 in
** rows and columns and the MAML planes (64 x 196, 196 x 64, 64 x 49, 64 x 9), against
** its definition; a kernel that loses a row or a column of a block fails here */
static void test_transpose_plane(void) {
  static const int64_t dims[] = {1, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 23, 49, 64, 196};
  const int nd = (int)(sizeof dims / sizeof dims[0]);
  float *a = malloc(196 * 196 * sizeof(float)), *at = malloc(196 * 196 * sizeof(float));
  for (int64_t i = 0; i < 196 * 196; i++) a[i] = (float)i;
  for (int kernel = 0; kernel <= 2; kernel++) {
    int64_t bad = 0, cases = 0;
    for (int i = 0; i < nd; i++)
      for (int j = 0; j < nd; j++) {
        int64_t rows = dims[i], cols = dims[j];
        for (int64_t q = 0; q < rows * cols; q++) at[q] = -1.0f;
        conv2d_transpose_plane(a, rows, cols, at, kernel);
        for (int64_t r = 0; r < rows; r++)
          for (int64_t c = 0; c < cols; c++) bad += at[c * rows + r] != a[r * cols + c];
        cases++;
      }
    ok(bad == 0, "conv2d_transpose_plane (kernel %d: %s): %lld shapes, %lld elements wrong", kernel,
       kernel == 0   ? "SSE 4x4"
       : kernel == 1 ? "AVX 8x8 along a's rows"
                     : "AVX 8x8 along at's rows",
       (long long)cases, (long long)bad);
  }
  free(a);
  free(at);
}

static void test_max_pool(void) {
  int bad = 0, count = 0;
  double adj = 0;
  for (int trial = 0; trial < 200; trial++) {
    int k = irand(1, 4), stride = irand(1, 3), padding = irand(0, k / 2);
    int64_t n = irand(1, 3), c = irand(1, 3), h = irand(1, 8), w = irand(1, 8);
    if (k > h + 2 * padding || k > w + 2 * padding) continue;
    count++;
    Tensor *x = randn(n, c, h, w), *idx = NULL;
    if (trial % 7 == 0) /* ties: the first maximum wins */
      for (int64_t i = 0; i < x->numel; i++) T_DATA(x)[i] = (float)(i % 3 == 0);
    Tensor *y = t_max_pool2d(x, k, stride, padding, &idx);
    int64_t oh = (h + 2 * padding - k) / stride + 1, ow = (w + 2 * padding - k) / stride + 1;
    if (y->shape[2] != oh || y->shape[3] != ow) bad++;
    for (int64_t pl = 0; pl < n * c; pl++)
      for (int64_t i = 0; i < oh; i++)
        for (int64_t j = 0; j < ow; j++) {
          float best = -INFINITY;
          int64_t arg = -1;
          for (int64_t a = 0; a < k; a++)
            for (int64_t b = 0; b < k; b++) {
              int64_t ih = i * stride - padding + a, iw = j * stride - padding + b;
              if (ih < 0 || ih >= h || iw < 0 || iw >= w) continue;
              float v = T_DATA(x)[pl * h * w + ih * w + iw];
              if (arg < 0 || v > best) best = v, arg = ih * w + iw;
            }
          int64_t q = (pl * oh + i) * ow + j;
          if (T_DATA(y)[q] != best || T_DATA(idx)[q] != (float)arg) bad++;
        }
    /* <select(x, idx), r> = <x, backward(r, idx)> */
    Tensor *r = randn(n, c, oh, ow);
    Tensor *gx = t_max_pool2d_backward(r, idx, h, w), *sel = t_max_pool2d_select(x, idx);
    if (!bitwise_equal(sel, y)) bad++;
    double a = dot(sel, r), b = dot(x, gx);
    adj = worse(adj, fabs(a - b) / (fabs(a) + 1));
    t_release(x), t_release(idx), t_release(y), t_release(r), t_release(gx), t_release(sel);
  }
  ok(bad == 0 && count > 100, "max_pool2d values and indices match naive loops on %d shapes", count);
  ok(adj < 1e-5, "max_pool2d_backward and max_pool2d_select are adjoint (worst %.2g)", adj);
}

static void test_avg_pool(void) {
  double worst = 0, adj = 0;
  int count = 0;
  for (int trial = 0; trial < 200; trial++) {
    int k = irand(1, 4), stride = irand(1, 3), padding = irand(0, k / 2);
    int64_t n = irand(1, 3), c = irand(1, 3), h = irand(1, 8), w = irand(1, 8);
    if (k > h + 2 * padding || k > w + 2 * padding) continue;
    count++;
    Tensor *x = randn(n, c, h, w);
    Tensor *y = t_avg_pool2d(x, k, stride, padding);
    int64_t oh = (h + 2 * padding - k) / stride + 1, ow = (w + 2 * padding - k) / stride + 1;
    if (y->shape[2] != oh || y->shape[3] != ow) worst = INFINITY;
    for (int64_t pl = 0; pl < n * c; pl++)
      for (int64_t i = 0; i < oh; i++)
        for (int64_t j = 0; j < ow; j++) {
          double s = 0;
          for (int64_t a = 0; a < k; a++)
            for (int64_t b = 0; b < k; b++) {
              int64_t ih = i * stride - padding + a, iw = j * stride - padding + b;
              if (ih >= 0 && ih < h && iw >= 0 && iw < w) s += T_DATA(x)[pl * h * w + ih * w + iw];
            }
          worst = worse(worst, fabs(T_DATA(y)[(pl * oh + i) * ow + j] - s / (k * k)));
        }
    Tensor *r = randn(n, c, oh, ow);
    Tensor *gx = t_avg_pool2d_backward(r, h, w, k, stride, padding);
    double a = dot(y, r), b = dot(x, gx);
    adj = worse(adj, fabs(a - b) / (fabs(a) + 1));
    t_release(x), t_release(y), t_release(r), t_release(gx);
  }
  ok(worst < 1e-5 && count > 100, "avg_pool2d matches naive loops on %d shapes (worst %.2g)", count, worst);
  ok(adj < 1e-5, "avg_pool2d and avg_pool2d_backward are adjoint (worst %.2g)", adj);
}

/* ------------------------------------------------------------ errors */

static jmp_buf on_error;
static char last_error[512];

static void catch_error(const char *msg) {
  snprintf(last_error, sizeof last_error, "%s", msg);
  longjmp(on_error, 1);
}

/* run the op (a statement) and check it raised an error containing want */
#define EXPECT_ERROR(stmt, want)                                     \
  do {                                                               \
    last_error[0] = 0;                                               \
    if (!setjmp(on_error)) {                                         \
      stmt;                                                          \
      ok(0, "error for %s (none raised)", #stmt);                    \
    } else {                                                         \
      ok(strstr(last_error, want) != NULL, "error: %s", last_error); \
    }                                                                \
  } while (0)

static void test_errors(void) {
  Tensor *x = randn(2, 3, 5, 5), *x3 = t_new(3, (int64_t[]){3, 5, 5}), *w = randn(4, 3, 3, 3);
  Tensor *w2 = randn(4, 2, 3, 3), *wbig = randn(4, 3, 8, 8), *b = randn1(5), *gy = randn(2, 4, 3, 3);
  Tensor *volatile out = NULL;
  int64_t live = t_live_bytes();
  t_set_error_handler(catch_error);
  EXPECT_ERROR(out = t_conv2d(x3, w, NULL, 1, 0, 0), "bad argument #1 to 'conv2d' (expected 4-d input");
  EXPECT_ERROR(out = t_conv2d(x, x3, NULL, 1, 0, 0), "bad argument #2 to 'conv2d' (expected 4-d weight");
  EXPECT_ERROR(out = t_conv2d(x, w2, NULL, 1, 0, 0),
               "weight (4, 2, 3, 3) has 2 input channels, input (2, 3, 5, 5) has 3");
  EXPECT_ERROR(out = t_conv2d(x, w, b, 1, 0, 0), "bad argument #3 to 'conv2d' (expected bias of shape (4), got (5))");
  EXPECT_ERROR(out = t_conv2d(x, wbig, NULL, 1, 1, 0),
               "bad argument #2 to 'conv2d' (kernel 8x8 is larger than the padded input 7x7)");
  EXPECT_ERROR(out = t_conv2d(x, w, NULL, 0, 0, 0), "bad argument #4 to 'conv2d' (stride must be >= 1, got 0)");
  EXPECT_ERROR(out = t_conv2d(x, w, NULL, 1, -1, 0), "bad argument #4 to 'conv2d' (padding must be >= 0, got -1)");
  EXPECT_ERROR(out = t_conv2d_backward_input(gy, w, 6, 6, 2, 0, 0), "input size 6x6 gives a 2x2 output");
  EXPECT_ERROR(out = t_conv2d_backward_weight(x, gy, 3, 3, 2, 0, 0), "expected a gradient of size 2x2");
  /* channels-last: x (2, 3, 5, 5) is 2 images of 3x5 with 5 channels */
  EXPECT_ERROR(out = t_conv2d(x3, w, NULL, 1, 0, 1), "bad argument #1 to 'conv2d' (expected 4-d input (N,H,W,C)");
  EXPECT_ERROR(out = t_conv2d(x, w, NULL, 1, 0, 1),
               "weight (4, 3, 3, 3) has 3 input channels, input (2, 3, 5, 5) has 5");
  EXPECT_ERROR(out = t_conv2d_backward_input(gy, w, 5, 5, 1, 0, 1),
               "weight (4, 3, 3, 3) has 4 output channels, "
               "gradient (2, 4, 3, 3) has 3");
  EXPECT_ERROR(out = t_conv2d_backward_weight(x, gy, 3, 3, 1, 0, 1),
               "expected a gradient of size 1x3, got (2, 4, 3, 3)");
  EXPECT_ERROR(out = t_max_pool2d(x, 2, 2, 2, NULL),
               "bad argument #3 to 'max_pool2d' (padding must be between 0 and kernel size / 2 = 1, got 2)");
  EXPECT_ERROR(out = t_max_pool2d(x3, 2, 2, 0, NULL), "bad argument #1 to 'max_pool2d' (expected 4-d input");
  EXPECT_ERROR(out = t_avg_pool2d(x, 6, 1, 0),
               "bad argument #2 to 'avg_pool2d' (kernel 6x6 is larger than the padded input 5x5)");
  EXPECT_ERROR(out = t_avg_pool2d(x, 0, 1, 0), "kernel size must be >= 1");
  t_set_error_handler(NULL);
  ok(out == NULL && t_live_bytes() == live, "failed ops allocate nothing");
  t_release(x), t_release(x3), t_release(w), t_release(w2), t_release(wbig), t_release(b), t_release(gy);
}

/* the checkers themselves: a kernel that returns NaN must fail them, not slip past a maximum */
static void test_checkers_fail_on_nan(void) {
  const float got[3] = {1, NAN, 2};
  const double want[3] = {1, 0, 2}, scale[3] = {1, 1, 1};
  double e = rel_err(got, want, scale, 3);
  ok(!(e <= 1e-5), "rel_err reports a NaN output as a failure (got %g)", e);
  ok(isnan(worse(worse(0, NAN), 1)) && isnan(worse(1, NAN)), "worse() keeps a NaN whatever comes after it");
}

int main(void) {
  gen_seed(&gen, 42);
  test_checkers_fail_on_nan();
  for (nhwc = 0; nhwc <= 1; nhwc++) {
    test_conv_random();
    test_conv_maml_shapes();
    test_conv_special_paths();
    test_conv_adjoint();
    test_conv_determinism();
    test_conv_threads();
  }
  nhwc = 0;
  test_transpose_plane();
  test_max_pool();
  test_avg_pool();
  test_errors();
  return tap_done();
}
