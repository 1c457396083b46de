/*
** conv.c: 2-d convolution, its two backward ops, and the kernels behind them.
**
** Each kernel is im2col + one OpenBLAS sgemm over a chunk of images at once
** (the MAML maps are small: 13x13 .. 1x1, so one GEMM per image would be far
** too small), then a copy back to NCHW (forward) or col2im (backward input).
** Column buffers are thread-local scratch that only grows, so a training loop
** allocates nothing here after its first iteration.
**
** Second order: conv2d, conv2d_backward_input and conv2d_backward_weight are
** three bilinear ops; the backward of each is written with the other two, so
** a recorded backward pass is itself differentiable (any order).
*/
#include <cblas.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "nnops.h"

/* ------------------------------------------------------------ geometry */

ConvGeom conv2d_geom(int64_t n, int64_t c, int64_t h, int64_t w, int64_t o, int64_t kh, int64_t kw,
                     int stride, int padding) {
  ConvGeom g = {n, c, h, w, o, kh, kw, 0, 0, stride, padding};
  g.oh = (h + 2 * (int64_t)padding - kh) / stride + 1;
  g.ow = (w + 2 * (int64_t)padding - kw) / stride + 1;
  return g;
}

/* ------------------------------------------------------------ scratch */

/* slot 0: columns (K, nb*P); slot 1: a chunk of output or gradient (O, nb*P) */
static _Thread_local float *scratch_data[2];
static _Thread_local int64_t scratch_size[2];
static int64_t chunk_floats = (int64_t)1 << 18;

int64_t conv2d_set_chunk_floats(int64_t n) {
  int64_t old = chunk_floats;
  chunk_floats = n > 0 ? n : 1;
  return old;
}

static float *scratch(int slot, int64_t n) {
  if (n > scratch_size[slot]) {
    free(scratch_data[slot]);
    scratch_data[slot] = malloc((size_t)n * sizeof(float));
    scratch_size[slot] = scratch_data[slot] ? n : 0;
    if (!scratch_data[slot]) t_error("conv2d: out of memory (%lld floats of scratch)", (long long)n);
  }
  return scratch_data[slot];
}

/* images per chunk: the column buffer (K, nb*P) holds about chunk_floats */
static int64_t chunk_images(const ConvGeom *g) {
  int64_t per_image = g->c * g->kh * g->kw * g->oh * g->ow;
  int64_t nb = per_image > 0 ? chunk_floats / per_image : g->n;
  if (nb < 1) nb = 1;
  if (nb > g->n) nb = g->n;
  return nb;
}

/* grow the scratch before an op allocates its output, so a failure leaks nothing */
static void reserve_scratch(const ConvGeom *g) {
  int64_t nb = chunk_images(g), p = g->oh * g->ow, k = g->c * g->kh * g->kw;
  if (k * p > INT_MAX || k > INT_MAX || g->o > INT_MAX || nb * p > INT_MAX)
    t_error("conv2d: too large for one GEMM (K=%lld, OH*OW=%lld)", (long long)k, (long long)p);
  scratch(0, k * nb * p);
  if (nb > 1) scratch(1, g->o * nb * p);
}

/* ------------------------------------------------------------ im2col / col2im */

static int64_t ceil_div(int64_t a, int64_t b) { return a <= 0 ? 0 : (a + b - 1) / b; }

/* output columns [lo, hi) read input column ow*stride - padding + j inside [0, W) */
static void valid_cols(const ConvGeom *g, int64_t j, int64_t *lo, int64_t *hi) {
  *lo = ceil_div(g->padding - j, g->stride);
  *hi = ceil_div(g->w + g->padding - j, g->stride);
  if (*hi > g->ow) *hi = g->ow;
  if (*lo > *hi) *lo = *hi;
}

// x (N,C,H,W) images n0..n0+nb-1 -> col (C*KH*KW, nb*OH*OW), zeros where the window is in padding
static void im2col(const ConvGeom *g, const float *x, int64_t n0, int64_t nb, float *col) {
  const int64_t p = g->oh * g->ow, ld = nb * p, s = g->stride;
  for (int64_t c = 0; c < g->c; c++)
    for (int64_t i = 0; i < g->kh; i++)
      for (int64_t j = 0; j < g->kw; j++) {
        float *row = col + ((c * g->kh + i) * g->kw + j) * ld;
        int64_t lo, hi;
        valid_cols(g, j, &lo, &hi);
        for (int64_t n = 0; n < nb; n++) {
          const float *plane = x + ((n0 + n) * g->c + c) * g->h * g->w;
          for (int64_t oh = 0; oh < g->oh; oh++) {
            float *dst = row + n * p + oh * g->ow;
            int64_t ih = oh * s - g->padding + i;
            if (ih < 0 || ih >= g->h) {
              memset(dst, 0, (size_t)g->ow * sizeof(float));
              continue;
            }
            const float *src = plane + ih * g->w + lo * s - g->padding + j;
            for (int64_t ow = 0; ow < lo; ow++) dst[ow] = 0;
            if (s == 1)
              memcpy(dst + lo, src, (size_t)(hi - lo) * sizeof(float));
            else
              for (int64_t t = 0; t < hi - lo; t++) dst[lo + t] = src[t * s];
            for (int64_t ow = hi; ow < g->ow; ow++) dst[ow] = 0;
          }
        }
      }
}

// col (C*KH*KW, nb*OH*OW) -> gx (N,C,H,W) images n0..n0+nb-1, added; the adjoint of im2col
static void col2im(const ConvGeom *g, const float *col, int64_t n0, int64_t nb, float *gx) {
  const int64_t p = g->oh * g->ow, ld = nb * p, s = g->stride;
  for (int64_t c = 0; c < g->c; c++)
    for (int64_t i = 0; i < g->kh; i++)
      for (int64_t j = 0; j < g->kw; j++) {
        const float *row = col + ((c * g->kh + i) * g->kw + j) * ld;
        int64_t lo, hi;
        valid_cols(g, j, &lo, &hi);
        for (int64_t n = 0; n < nb; n++) {
          float *plane = gx + ((n0 + n) * g->c + c) * g->h * g->w;
          for (int64_t oh = 0; oh < g->oh; oh++) {
            int64_t ih = oh * s - g->padding + i;
            if (ih < 0 || ih >= g->h) continue;
            const float *src = row + n * p + oh * g->ow + lo;
            float *dst = plane + ih * g->w + lo * s - g->padding + j;
            for (int64_t t = 0; t < hi - lo; t++) dst[t * s] += src[t];
          }
        }
      }
}

// y (N,O,P) images n0..n0+nb-1 -> ychunk (O, nb*P)
static void gather_chunk(const ConvGeom *g, const float *y, int64_t n0, int64_t nb, float *ychunk) {
  const int64_t p = g->oh * g->ow;
  for (int64_t n = 0; n < nb; n++)
    for (int64_t o = 0; o < g->o; o++)
      memcpy(ychunk + o * nb * p + n * p, y + ((n0 + n) * g->o + o) * p, (size_t)p * sizeof(float));
}

/* ------------------------------------------------------------ kernels */

// out (N,O,OH,OW) = w (O,K) @ im2col(x) (K, N*P) + b (O), K = C*KH*KW, P = OH*OW
void conv2d_forward_kernel(const ConvGeom *g, float *out, const float *x, const float *w,
                           const float *b) {
  const int64_t p = g->oh * g->ow, k = g->c * g->kh * g->kw, nbmax = chunk_images(g);
  if (g->n * g->o * p == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < g->n * g->o; i++)
      for (int64_t q = 0; q < p; q++) out[i * p + q] = b ? b[i % g->o] : 0.0f;
    return;
  }
  float *col = scratch(0, k * nbmax * p);
  float *ychunk = nbmax > 1 ? scratch(1, g->o * nbmax * p) : NULL;
  for (int64_t n0 = 0; n0 < g->n; n0 += nbmax) {
    int64_t nb = g->n - n0 < nbmax ? g->n - n0 : nbmax;
    im2col(g, x, n0, nb, col);
    // one image: straight into out; several: into (O, nb*P), then out (nb, O, P)
    float *y = nb == 1 ? out + n0 * g->o * p : ychunk;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->o, (int)(nb * p), (int)k, 1.0f,
                w, (int)k, col, (int)(nb * p), 0.0f, y, (int)(nb * p));
    for (int64_t n = 0; n < nb; n++)
      for (int64_t o = 0; o < g->o; o++) {
        float *dst = out + ((n0 + n) * g->o + o) * p;
        const float *src = y + o * nb * p + n * p;
        float bias = b ? b[o] : 0.0f;
        if (nb == 1) {
          if (b)
            for (int64_t q = 0; q < p; q++) dst[q] += bias;
        } else {
          for (int64_t q = 0; q < p; q++) dst[q] = src[q] + bias;
        }
      }
  }
}

// gx (N,C,H,W) = col2im(w^T (K,O) @ gy (O, N*P))
void conv2d_backward_input_kernel(const ConvGeom *g, float *gx, const float *gy, const float *w) {
  const int64_t p = g->oh * g->ow, k = g->c * g->kh * g->kw, nbmax = chunk_images(g);
  memset(gx, 0, (size_t)(g->n * g->c * g->h * g->w) * sizeof(float));
  if (g->n * p * k == 0 || g->o == 0) return;
  float *col = scratch(0, k * nbmax * p);
  float *gychunk = nbmax > 1 ? scratch(1, g->o * nbmax * p) : NULL;
  for (int64_t n0 = 0; n0 < g->n; n0 += nbmax) {
    int64_t nb = g->n - n0 < nbmax ? g->n - n0 : nbmax;
    const float *gyc = gy + n0 * g->o * p;
    if (nb > 1) {
      gather_chunk(g, gy, n0, nb, gychunk);
      gyc = gychunk;
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)k, (int)(nb * p), (int)g->o, 1.0f,
                w, (int)k, gyc, (int)(nb * p), 0.0f, col, (int)(nb * p));
    col2im(g, col, n0, nb, gx);
  }
}

// gw (O,K) = sum over chunks of gy (O, nb*P) @ im2col(x)^T (nb*P, K)
void conv2d_backward_weight_kernel(const ConvGeom *g, float *gw, const float *x, const float *gy) {
  const int64_t p = g->oh * g->ow, k = g->c * g->kh * g->kw, nbmax = chunk_images(g);
  memset(gw, 0, (size_t)(g->o * k) * sizeof(float));
  if (g->n * p * k == 0 || g->o == 0) return;
  float *col = scratch(0, k * nbmax * p);
  float *gychunk = nbmax > 1 ? scratch(1, g->o * nbmax * p) : NULL;
  for (int64_t n0 = 0; n0 < g->n; n0 += nbmax) {
    int64_t nb = g->n - n0 < nbmax ? g->n - n0 : nbmax;
    const float *gyc = gy + n0 * g->o * p;
    if (nb > 1) {
      gather_chunk(g, gy, n0, nb, gychunk);
      gyc = gychunk;
    }
    im2col(g, x, n0, nb, col);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g->o, (int)k, (int)(nb * p), 1.0f,
                gyc, (int)(nb * p), col, (int)(nb * p), n0 == 0 ? 0.0f : 1.0f, gw, (int)k);
  }
}

/* ------------------------------------------------------------ argument checks */

/* stride, padding (argument opt_arg) and the kernel (argument kernel_arg) against the input */
static ConvGeom checked_geom(const char *fn, int kernel_arg, int opt_arg, int64_t n, int64_t c,
                             int64_t h, int64_t w, int64_t o, int64_t kh, int64_t kw, int stride,
                             int padding) {
  if (stride < 1) t_argerror(fn, opt_arg, "stride must be >= 1, got %d", stride);
  if (padding < 0) t_argerror(fn, opt_arg, "padding must be >= 0, got %d", padding);
  if (kh < 1 || kw < 1)
    t_argerror(fn, kernel_arg, "kernel must be at least 1x1, got %lldx%lld", (long long)kh,
               (long long)kw);
  if (kh > h + 2 * (int64_t)padding || kw > w + 2 * (int64_t)padding)
    t_argerror(fn, kernel_arg, "kernel %lldx%lld is larger than the padded input %lldx%lld",
               (long long)kh, (long long)kw, (long long)(h + 2 * (int64_t)padding),
               (long long)(w + 2 * (int64_t)padding));
  return conv2d_geom(n, c, h, w, o, kh, kw, stride, padding);
}

static void check_4d(const char *fn, int arg, const Tensor *t, const char *what) {
  char buf[96];
  if (t->ndim != 4)
    t_argerror(fn, arg, "expected 4-d %s, got %d-d %s", what, t->ndim,
               t_shape_str(t, buf, sizeof buf));
}

/* ------------------------------------------------------------ ops */

static void conv2d_backward(Node *n, Tensor *gout, Tensor **gin, const int *needs);
static void conv2d_backward_input_backward(Node *n, Tensor *gout, Tensor **gin, const int *needs);
static void conv2d_backward_weight_backward(Node *n, Tensor *gout, Tensor **gin, const int *needs);

// x (N,C,H,W), w (O,C,KH,KW), b (O) or NULL -> y (N,O,OH,OW)
Tensor *t_conv2d(Tensor *x, Tensor *w, Tensor *b, int stride, int padding) {
  char b1[96], b2[96];
  check_4d("conv2d", 1, x, "input (N,C,H,W)");
  check_4d("conv2d", 2, w, "weight (O,C,KH,KW)");
  if (w->shape[1] != x->shape[1])
    t_argerror("conv2d", 2, "weight %s has %lld input channels, input %s has %lld",
               t_shape_str(w, b1, sizeof b1), (long long)w->shape[1],
               t_shape_str(x, b2, sizeof b2), (long long)x->shape[1]);
  if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
    t_argerror("conv2d", 3, "expected bias of shape (%lld), got %s", (long long)w->shape[0],
               t_shape_str(b, b1, sizeof b1));
  ConvGeom g = checked_geom("conv2d", 2, 4, x->shape[0], x->shape[1], x->shape[2], x->shape[3],
                            w->shape[0], w->shape[2], w->shape[3], stride, padding);
  reserve_scratch(&g);
  Tensor *y = t_new(4, (int64_t[]){g.n, g.o, g.oh, g.ow});
  conv2d_forward_kernel(&g, T_DATA(y), T_DATA(x), T_DATA(w), b ? T_DATA(b) : NULL);
  Node *n = ag_record(y, "conv2d", conv2d_backward, b ? 3 : 2, (Tensor *[]){x, w, b});
  if (n) {
    n->ints[0] = stride;
    n->ints[1] = padding;
  }
  return y;
}

static void conv2d_backward(Node *n, Tensor *gout, Tensor **gin, const int *needs) {
  Tensor *x = n->inputs[0], *w = n->inputs[1];
  int stride = (int)n->ints[0], padding = (int)n->ints[1];
  if (needs[0])
    gin[0] = t_conv2d_backward_input(gout, w, x->shape[2], x->shape[3], stride, padding);
  if (needs[1])
    gin[1] = t_conv2d_backward_weight(x, gout, w->shape[2], w->shape[3], stride, padding);
  if (n->ninputs > 2 && needs[2]) gin[2] = t_sum(gout, 1u << 0 | 1u << 2 | 1u << 3, 0);
}

// gy (N,O,OH,OW), w (O,C,KH,KW) -> gx (N,C,H,W)
Tensor *t_conv2d_backward_input(Tensor *gy, Tensor *w, int64_t h, int64_t w_, int stride,
                                int padding) {
  const char *fn = "conv2d_backward_input";
  char b1[96], b2[96];
  check_4d(fn, 1, gy, "gradient (N,O,OH,OW)");
  check_4d(fn, 2, w, "weight (O,C,KH,KW)");
  if (gy->shape[1] != w->shape[0])
    t_argerror(fn, 2, "weight %s has %lld output channels, gradient %s has %lld",
               t_shape_str(w, b1, sizeof b1), (long long)w->shape[0],
               t_shape_str(gy, b2, sizeof b2), (long long)gy->shape[1]);
  if (h < 1 || w_ < 1)
    t_argerror(fn, 3, "input size must be positive, got %lldx%lld", (long long)h, (long long)w_);
  ConvGeom g = checked_geom(fn, 2, 4, gy->shape[0], w->shape[1], h, w_, w->shape[0], w->shape[2],
                            w->shape[3], stride, padding);
  if (g.oh != gy->shape[2] || g.ow != gy->shape[3])
    t_argerror(fn, 3, "input size %lldx%lld gives a %lldx%lld output, gradient %s is not that",
               (long long)h, (long long)w_, (long long)g.oh, (long long)g.ow,
               t_shape_str(gy, b1, sizeof b1));
  reserve_scratch(&g);
  Tensor *gx = t_new(4, (int64_t[]){g.n, g.c, g.h, g.w});
  conv2d_backward_input_kernel(&g, T_DATA(gx), T_DATA(gy), T_DATA(w));
  Node *n = ag_record(gx, fn, conv2d_backward_input_backward, 2, (Tensor *[]){gy, w});
  if (n) {
    n->ints[0] = stride;
    n->ints[1] = padding;
  }
  return gx;
}

// gx = BI(gy, w) is bilinear: <g, BI(gy, w)> = <conv2d(g, w), gy> = <BW(g, gy), w>
static void conv2d_backward_input_backward(Node *n, Tensor *gout, Tensor **gin, const int *needs) {
  Tensor *gy = n->inputs[0], *w = n->inputs[1];
  int stride = (int)n->ints[0], padding = (int)n->ints[1];
  if (needs[0]) gin[0] = t_conv2d(gout, w, NULL, stride, padding);
  if (needs[1])
    gin[1] = t_conv2d_backward_weight(gout, gy, w->shape[2], w->shape[3], stride, padding);
}

// x (N,C,H,W), gy (N,O,OH,OW) -> gw (O,C,KH,KW)
Tensor *t_conv2d_backward_weight(Tensor *x, Tensor *gy, int64_t kh, int64_t kw, int stride,
                                 int padding) {
  const char *fn = "conv2d_backward_weight";
  char b1[96], b2[96];
  check_4d(fn, 1, x, "input (N,C,H,W)");
  check_4d(fn, 2, gy, "gradient (N,O,OH,OW)");
  if (gy->shape[0] != x->shape[0])
    t_argerror(fn, 2, "gradient %s has batch %lld, input %s has %lld",
               t_shape_str(gy, b1, sizeof b1), (long long)gy->shape[0],
               t_shape_str(x, b2, sizeof b2), (long long)x->shape[0]);
  ConvGeom g = checked_geom(fn, 3, 4, x->shape[0], x->shape[1], x->shape[2], x->shape[3],
                            gy->shape[1], kh, kw, stride, padding);
  if (g.oh != gy->shape[2] || g.ow != gy->shape[3])
    t_argerror(fn, 2, "expected a gradient of size %lldx%lld, got %s", (long long)g.oh,
               (long long)g.ow, t_shape_str(gy, b1, sizeof b1));
  reserve_scratch(&g);
  Tensor *gw = t_new(4, (int64_t[]){g.o, g.c, g.kh, g.kw});
  conv2d_backward_weight_kernel(&g, T_DATA(gw), T_DATA(x), T_DATA(gy));
  Node *n = ag_record(gw, fn, conv2d_backward_weight_backward, 2, (Tensor *[]){x, gy});
  if (n) {
    n->ints[0] = stride;
    n->ints[1] = padding;
  }
  return gw;
}

// gw = BW(x, gy) is bilinear: <g, BW(x, gy)> = <x, BI(gy, g)> = <conv2d(x, g), gy>
static void conv2d_backward_weight_backward(Node *n, Tensor *gout, Tensor **gin,
                                            const int *needs) {
  Tensor *x = n->inputs[0], *gy = n->inputs[1];
  int stride = (int)n->ints[0], padding = (int)n->ints[1];
  if (needs[0])
    gin[0] = t_conv2d_backward_input(gy, gout, x->shape[2], x->shape[3], stride, padding);
  if (needs[1]) gin[1] = t_conv2d(x, gout, NULL, stride, padding);
}
