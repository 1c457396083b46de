/*
** pool.c: max and average pooling over square windows, and global average pooling.
**
** Both poolings are linear once max pooling's argmax is fixed, so each comes
** as a pair of adjoint ops, each the other's backward:
**   max_pool2d_backward (scatter-add at the argmax)  <->  max_pool2d_select (gather)
**   avg_pool2d                                       <->  avg_pool2d_backward
** and gradients of any order are exact (the argmax is piecewise constant).
*/
#include <math.h>
#include <string.h>

#include "nnops.h"
#include "reduce.h"

/* window geometry shared by both poolings, checked like torch's
** (padding at most half the window; ceil_mode false) */
typedef struct {
  int64_t nc, h, w, oh, ow; /* planes N*C, input and output sizes */
  int k, stride, padding;
} PoolGeom;

static PoolGeom checked_pool_geom(const char *fn, const Tensor *x, int k, int stride, int padding) {
  char buf[96];
  if (x->ndim != 4)
    t_argerror(fn, 1, "expected 4-d input (N,C,H,W), got %d-d %s", x->ndim, t_shape_str(x, buf, sizeof buf));
  if (k < 1) t_argerror(fn, 2, "kernel size must be >= 1, got %d", k);
  if (stride < 1) t_argerror(fn, 3, "stride must be >= 1, got %d", stride);
  if (padding < 0 || padding > k / 2)
    t_argerror(fn, 3, "padding must be between 0 and kernel size / 2 = %d, got %d", k / 2, padding);
  PoolGeom g = {x->shape[0] * x->shape[1], x->shape[2], x->shape[3], 0, 0, k, stride, padding};
  if (k > g.h + 2 * padding || k > g.w + 2 * padding)
    t_argerror(fn, 2, "kernel %dx%d is larger than the padded input %lldx%lld", k, k, (long long)(g.h + 2 * padding),
               (long long)(g.w + 2 * padding));
  g.oh = (g.h + 2 * padding - k) / stride + 1;
  g.ow = (g.w + 2 * padding - k) / stride + 1;
  return g;
}

/* the window of output row (or column) o, clipped to [0, size) */
static void window(const PoolGeom *g, int64_t o, int64_t size, int64_t *lo, int64_t *hi) {
  int64_t start = o * g->stride - g->padding;
  *lo = start < 0 ? 0 : start;
  *hi = start + g->k < size ? start + g->k : size;
}

/* ------------------------------------------------------------ max pooling */

static void max_pool2d_backward_fn(Node *n, Tensor *gout, Tensor **gin, const int *needs);
static void max_pool2d_backward_backward(Node *n, Tensor *gout, Tensor **gin, const int *needs);
static void max_pool2d_select_backward(Node *n, Tensor *gout, Tensor **gin, const int *needs);

// x (N,C,H,W) -> y (N,C,OH,OW), indices (N,C,OH,OW): argmax h*W+w in its plane
Tensor *t_max_pool2d(Tensor *x, int k, int stride, int padding, Tensor **indices) {
  PoolGeom g = checked_pool_geom("max_pool2d", x, k, stride, padding);
  if (g.h * g.w > (int64_t)1 << 24) t_argerror("max_pool2d", 1, "planes of more than 2^24 elements are not supported");
  int64_t shape[4] = {x->shape[0], x->shape[1], g.oh, g.ow};
  /* the argmax is kept only for a caller or a backward pass */
  int keep = indices || (ag_is_enabled() && x->requires_grad);
  int scope = t_scope_begin(); /* y and idx are temporaries until nothing more can fail */
  Tensor *y = t_temp(t_new(4, shape)), *idx = keep ? t_temp(t_new(4, shape)) : NULL;
  const float *xd = T_DATA(x);
  float *yd = T_DATA(y), *id = idx ? T_DATA(idx) : NULL;
  for (int64_t pl = 0; pl < g.nc; pl++) {
    const float *xp = xd + pl * g.h * g.w;
    for (int64_t oh = 0; oh < g.oh; oh++) {
      int64_t hlo, hhi;
      window(&g, oh, g.h, &hlo, &hhi);
      for (int64_t ow = 0; ow < g.ow; ow++) {
        int64_t wlo, whi;
        window(&g, ow, g.w, &wlo, &whi);
        float best = -INFINITY;
        int64_t arg = hlo * g.w + wlo;
        for (int64_t ih = hlo; ih < hhi; ih++)
          for (int64_t iw = wlo; iw < whi; iw++) {
            float v = xp[ih * g.w + iw];
            if (v > best || isnan(v)) { /* first max wins; NaN propagates, like torch */
              best = v;
              arg = ih * g.w + iw;
            }
          }
        *yd++ = best;
        if (id) *id++ = (float)arg;
      }
    }
  }
  Node *n = idx ? ag_record(y, "max_pool2d", max_pool2d_backward_fn, 1, (Tensor *[]){x}) : NULL;
  if (n) {
    node_save(n, 0, t_retain(idx));
    n->ints[0] = g.h;
    n->ints[1] = g.w;
  }
  if (indices) *indices = t_retain(idx);
  t_retain(y);
  t_scope_end(scope);
  return y;
}

static void max_pool2d_backward_fn(Node *n, Tensor *gout, Tensor **gin, const int *needs) {
  if (needs[0]) gin[0] = t_max_pool2d_backward(gout, n->saved[0], n->ints[0], n->ints[1]);
}

/* indices must have gy's shape and hold whole numbers in [0, h*w) */
static void check_indices(const char *fn, const Tensor *t, const Tensor *indices, int64_t plane) {
  char b1[96], b2[96];
  if (!t_same_shape(t, indices))
    t_argerror(fn, 2, "indices %s do not match the tensor %s", t_shape_str(indices, b1, sizeof b1),
               t_shape_str(t, b2, sizeof b2));
  const float *id = T_DATA(indices);
  for (int64_t i = 0; i < indices->numel; i++)
    if (!(id[i] >= 0 && id[i] < (float)plane && id[i] == (float)(int64_t)id[i]))
      t_argerror(fn, 2, "index %g out of range [0, %lld)", (double)id[i], (long long)plane);
}

// gy (N,C,OH,OW), indices (N,C,OH,OW) -> gx (N,C,H,W): gx[plane][indices] += gy
Tensor *t_max_pool2d_backward(Tensor *gy, Tensor *indices, int64_t h, int64_t w) {
  const char *fn = "max_pool2d_backward";
  char buf[96];
  if (gy->ndim != 4) t_argerror(fn, 1, "expected 4-d gradient, got %s", t_shape_str(gy, buf, sizeof buf));
  if (h < 0 || w < 0) t_argerror(fn, 3, "input size must be >= 0, got %lldx%lld", (long long)h, (long long)w);
  check_indices(fn, gy, indices, h * w);
  Tensor *gx = t_zeros(4, (int64_t[]){gy->shape[0], gy->shape[1], h, w});
  const int64_t nc = gy->shape[0] * gy->shape[1], p = gy->shape[2] * gy->shape[3];
  const float *gyd = T_DATA(gy), *id = T_DATA(indices);
  float *gxd = T_DATA(gx);
  for (int64_t pl = 0; pl < nc; pl++)
    for (int64_t q = 0; q < p; q++) gxd[pl * h * w + (int64_t)id[pl * p + q]] += gyd[pl * p + q];
  Node *n = ag_record(gx, fn, max_pool2d_backward_backward, 1, (Tensor *[]){gy});
  if (n) node_save(n, 0, t_retain(indices));
  return gx;
}

static void max_pool2d_backward_backward(Node *n, Tensor *gout, Tensor **gin, const int *needs) {
  if (needs[0]) gin[0] = t_max_pool2d_select(gout, n->saved[0]);
}

// x (N,C,H,W), indices (N,C,OH,OW) -> y (N,C,OH,OW): y = x[plane][indices]
Tensor *t_max_pool2d_select(Tensor *x, Tensor *indices) {
  const char *fn = "max_pool2d_select";
  char b1[96], b2[96];
  if (x->ndim != 4 || indices->ndim != 4 || x->shape[0] != indices->shape[0] || x->shape[1] != indices->shape[1])
    t_argerror(fn, 2, "indices %s do not fit the input %s", t_shape_str(indices, b1, sizeof b1),
               t_shape_str(x, b2, sizeof b2));
  const int64_t hw = x->shape[2] * x->shape[3];
  check_indices(fn, indices, indices, hw);
  Tensor *y = t_new(4, indices->shape);
  const int64_t nc = x->shape[0] * x->shape[1], p = indices->shape[2] * indices->shape[3];
  const float *xd = T_DATA(x), *id = T_DATA(indices);
  float *yd = T_DATA(y);
  for (int64_t pl = 0; pl < nc; pl++)
    for (int64_t q = 0; q < p; q++) yd[pl * p + q] = xd[pl * hw + (int64_t)id[pl * p + q]];
  Node *n = ag_record(y, fn, max_pool2d_select_backward, 1, (Tensor *[]){x});
  if (n) {
    node_save(n, 0, t_retain(indices));
    n->ints[0] = x->shape[2];
    n->ints[1] = x->shape[3];
  }
  return y;
}

static void max_pool2d_select_backward(Node *n, Tensor *gout, Tensor **gin, const int *needs) {
  if (needs[0]) gin[0] = t_max_pool2d_backward(gout, n->saved[0], n->ints[0], n->ints[1]);
}

/* ------------------------------------------------------------ average pooling */

static void avg_pool2d_backward_fn(Node *n, Tensor *gout, Tensor **gin, const int *needs);
static void avg_pool2d_backward_backward(Node *n, Tensor *gout, Tensor **gin, const int *needs);

// x (N,C,H,W) -> y (N,C,OH,OW) = window sums / k^2 (padding counts as zeros)
Tensor *t_avg_pool2d(Tensor *x, int k, int stride, int padding) {
  PoolGeom g = checked_pool_geom("avg_pool2d", x, k, stride, padding);
  Tensor *y = t_new(4, (int64_t[]){x->shape[0], x->shape[1], g.oh, g.ow});
  const float *xd = T_DATA(x);
  float *yd = T_DATA(y);
  const float area = (float)k * (float)k;
  for (int64_t pl = 0; pl < g.nc; pl++) {
    const float *xp = xd + pl * g.h * g.w;
    for (int64_t oh = 0; oh < g.oh; oh++) {
      int64_t hlo, hhi;
      window(&g, oh, g.h, &hlo, &hhi);
      for (int64_t ow = 0; ow < g.ow; ow++) {
        int64_t wlo, whi;
        window(&g, ow, g.w, &wlo, &whi);
        float sum = 0;
        for (int64_t ih = hlo; ih < hhi; ih++)
          for (int64_t iw = wlo; iw < whi; iw++) sum += xp[ih * g.w + iw];
        *yd++ = sum / area;
      }
    }
  }
  Node *n = ag_record(y, "avg_pool2d", avg_pool2d_backward_fn, 1, (Tensor *[]){x});
  if (n) {
    n->ints[0] = k;
    n->ints[1] = stride;
    n->ints[2] = padding;
  }
  return y;
}

static void avg_pool2d_backward_fn(Node *n, Tensor *gout, Tensor **gin, const int *needs) {
  Tensor *x = n->inputs[0];
  if (needs[0])
    gin[0] = t_avg_pool2d_backward(gout, x->shape[2], x->shape[3], (int)n->ints[0], (int)n->ints[1], (int)n->ints[2]);
}

// gy (N,C,OH,OW) -> gx (N,C,H,W): each gy / k^2 added over its window
Tensor *t_avg_pool2d_backward(Tensor *gy, int64_t h, int64_t w, int k, int stride, int padding) {
  const char *fn = "avg_pool2d_backward";
  char buf[96];
  if (gy->ndim != 4) t_argerror(fn, 1, "expected 4-d gradient, got %s", t_shape_str(gy, buf, sizeof buf));
  Tensor shape_of_x = {.ndim = 4, .shape = {gy->shape[0], gy->shape[1], h, w}};
  PoolGeom g = checked_pool_geom(fn, &shape_of_x, k, stride, padding);
  if (g.oh != gy->shape[2] || g.ow != gy->shape[3])
    t_argerror(fn, 1, "expected a gradient of size %lldx%lld, got %s", (long long)g.oh, (long long)g.ow,
               t_shape_str(gy, buf, sizeof buf));
  Tensor *gx = t_zeros(4, shape_of_x.shape);
  const float *gyd = T_DATA(gy);
  float *gxd = T_DATA(gx);
  const float area = (float)k * (float)k;
  for (int64_t pl = 0; pl < g.nc; pl++) {
    float *gp = gxd + pl * g.h * g.w;
    for (int64_t oh = 0; oh < g.oh; oh++) {
      int64_t hlo, hhi;
      window(&g, oh, g.h, &hlo, &hhi);
      for (int64_t ow = 0; ow < g.ow; ow++) {
        int64_t wlo, whi;
        window(&g, ow, g.w, &wlo, &whi);
        float v = *gyd++ / area;
        for (int64_t ih = hlo; ih < hhi; ih++)
          for (int64_t iw = wlo; iw < whi; iw++) gp[ih * g.w + iw] += v;
      }
    }
  }
  Node *n = ag_record(gx, fn, avg_pool2d_backward_backward, 1, (Tensor *[]){gy});
  if (n) {
    n->ints[0] = k;
    n->ints[1] = stride;
    n->ints[2] = padding;
  }
  return gx;
}

static void avg_pool2d_backward_backward(Node *n, Tensor *gout, Tensor **gin, const int *needs) {
  if (needs[0]) gin[0] = t_avg_pool2d(gout, (int)n->ints[0], (int)n->ints[1], (int)n->ints[2]);
}

/* ------------------------------------------------------------ global average pooling */

// x (N,C,H,W) or (N,H,W,C) -> (N,C): the mean over H and W (differentiable through t_mean)
Tensor *t_global_avg_pool2d(Tensor *x, int nhwc) {
  char buf[96];
  if (x->ndim != 4)
    t_argerror("global_avg_pool2d", 1, "expected 4-d input %s, got %d-d %s", nhwc ? "(N,H,W,C)" : "(N,C,H,W)", x->ndim,
               t_shape_str(x, buf, sizeof buf));
  return t_mean(x, nhwc ? 1u << 1 | 1u << 2 : 1u << 2 | 1u << 3, 0);
}
