/*
** batchnorm.c: batch normalisation with batch statistics, fused.
**
** bn_normalize(x) = (x - mean) / sqrt(var + eps) per channel (dim 2 of
** (N, C, ...)), the mean and biased variance taken over every other dim.
** For one channel with m values, xhat = (x - mu) r, r = (var + eps)^-1/2,
** the Jacobian J = r (I - 1 1'/m - xhat xhat'/m) is symmetric, so
**
**   backward        gx = J g = r (g - mean(g) - xhat mean(g xhat))
**   its backward    d<u, gx>/dg = J u   (the same op on u)
**                   d<u, gx>/dx = -r^2 (xhat (mean(u g) - mean(u) mean(g) - 3 c d)
**                                       + d (g - mean(g)) + c (u - mean(u)))
**                   with c = mean(g xhat), d = mean(u xhat).
**
** Each is one fused kernel. When a backward runs with grad mode on (a third
** derivative was asked for), the last rule is built from differentiable ops
** instead, so every order stays exact.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "batchnorm.h"

/* (N, C, rest...) as n outer blocks, c channels, hw inner values */
typedef struct {
  int64_t n, c, hw, m; /* m = n * hw values per channel */
} ChannelGeom;

static ChannelGeom channel_geom(const Tensor *x) {
  ChannelGeom g = {x->shape[0], x->shape[1], 1, 0};
  for (int i = 2; i < x->ndim; i++) g.hw *= x->shape[i];
  g.m = g.n * g.hw;
  return g;
}

/* per-channel mean and r = 1/sqrt(var + eps) of x, in double */
T_HOT static void channel_stats(const ChannelGeom *g, const float *x, double eps, float *mean, float *rstd) {
  for (int64_t c = 0; c < g->c; c++) {
    double s = 0;
    for (int64_t n = 0; n < g->n; n++) {
      const float *p = x + (n * g->c + c) * g->hw;
      s += t_sum8(p, g->hw);
    }
    double mu = s / (double)g->m, v = 0;
    float fm = (float)mu;
    for (int64_t n = 0; n < g->n; n++) {
      const float *p = x + (n * g->c + c) * g->hw;
      t_v8f acc = {0};
      int64_t k = 0;
      for (; k + 8 <= g->hw; k += 8) {
        t_v8f d;
        T_LOAD8(d, p + k);
        d -= fm;
        acc += d * d;
      }
      float part = T_HSUM8(acc);
      for (; k < g->hw; k++) part += (p[k] - fm) * (p[k] - fm);
      v += part;
    }
    mean[c] = (float)mu;
    rstd[c] = (float)(1.0 / sqrt(v / (double)g->m + eps));
  }
}

/* sums over channel c of a[i] and a[i] * xhat[i] (xhat = (x - mu) r) */
T_HOT static void channel_sums(const ChannelGeom *g, int64_t c, const float *a, const float *x, float mu, float r,
                         double *sum_a, double *sum_a_xhat) {
  double s1 = 0, s2 = 0;
  for (int64_t n = 0; n < g->n; n++) {
    const float *pa = a + (n * g->c + c) * g->hw, *px = x + (n * g->c + c) * g->hw;
    t_v8f acc1 = {0}, acc2 = {0}; /* 8 lanes each, see t_sum8 */
    int64_t k = 0;
    for (; k + 8 <= g->hw; k += 8) {
      t_v8f a, x;
      T_LOAD8(a, pa + k);
      T_LOAD8(x, px + k);
      acc1 += a;
      acc2 += a * (x - mu);
    }
    float p1 = T_HSUM8(acc1), p2 = T_HSUM8(acc2);
    for (; k < g->hw; k++) {
      p1 += pa[k];
      p2 += pa[k] * (px[k] - mu);
    }
    s1 += p1;
    s2 += p2;
  }
  *sum_a = s1;
  *sum_a_xhat = s2 * r;
}

/* ------------------------------------------------------------ the ops */

static Tensor *bn_backward_op(Tensor *g, Tensor *x, Tensor *mean, Tensor *rstd);
static Tensor *bn_double_backward_op(Tensor *u, Tensor *g, Tensor *x, Tensor *mean, Tensor *rstd, double eps);

static void bn_normalize_backward_rule(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  if (needs[0]) gin[0] = bn_backward_op(g, n->inputs[0], n->saved[0], n->saved[1]);
}

// x (N, C, ...) -> xhat, normalised per channel with batch statistics
T_HOT Tensor *t_bn_normalize(Tensor *x, double eps, Tensor **mean_out, Tensor **var_out) {
  char b[160];
  if (x->ndim < 2) t_argerror("batch_norm", 1, "expected input (N, C, ...), got %s", t_shape_str(x, b, sizeof b));
  ChannelGeom g = channel_geom(x);
  if (g.m < 2 && x->numel > 0)
    t_argerror("batch_norm", 1, "training mode needs more than 1 value per channel, got input %s",
               t_shape_str(x, b, sizeof b));
  Tensor *mean = t_new(1, &g.c), *rstd = t_new(1, &g.c), *out = t_new(x->ndim, x->shape);
  float *mu = T_DATA(mean), *r = T_DATA(rstd);
  const float *px = T_DATA(x);
  float *po = T_DATA(out);
  channel_stats(&g, px, eps, mu, r);
  for (int64_t n = 0; n < g.n; n++)
    for (int64_t c = 0; c < g.c; c++) {
      const float *p = px + (n * g.c + c) * g.hw;
      float *q = po + (n * g.c + c) * g.hw, m = mu[c], s = r[c];
      for (int64_t k = 0; k < g.hw; k++) q[k] = (p[k] - m) * s;
    }
  if (mean_out) *mean_out = t_retain(mean);
  if (var_out) { /* biased variance, from r */
    *var_out = t_new(1, &g.c);
    float *v = T_DATA(*var_out);
    for (int64_t c = 0; c < g.c; c++) v[c] = (float)(1.0 / ((double)r[c] * r[c]) - eps);
  }
  Node *node = ag_record(out, "batch_norm", bn_normalize_backward_rule, 1, &x);
  if (node) {
    node->saved[0] = t_retain(mean);
    node->saved[1] = t_retain(rstd);
    node->scalars[0] = eps;
  }
  t_release(mean);
  t_release(rstd);
  return out;
}

static void bn_backward_rule(Node *n, Tensor *u, Tensor **gin, const int *needs) {
  Tensor *g = n->inputs[0], *x = n->inputs[1], *mean = n->saved[0], *rstd = n->saved[1];
  if (needs[0]) gin[0] = bn_backward_op(u, x, mean, rstd); /* J is symmetric */
  if (needs[1]) gin[1] = bn_double_backward_op(u, g, x, mean, rstd, n->scalars[0]);
}

// g, x (N, C, ...) -> J g, the gradient of bn_normalize at x
T_HOT static Tensor *bn_backward_op(Tensor *g, Tensor *x, Tensor *mean, Tensor *rstd) {
  ChannelGeom geom = channel_geom(x);
  Tensor *out = t_new(x->ndim, x->shape);
  const float *pg = T_DATA(g), *px = T_DATA(x), *mu = T_DATA(mean), *r = T_DATA(rstd);
  float *po = T_DATA(out);
  for (int64_t c = 0; c < geom.c; c++) {
    double sg, sgx;
    channel_sums(&geom, c, pg, px, mu[c], r[c], &sg, &sgx);
    float gbar = (float)(sg / (double)geom.m), cc = (float)(sgx / (double)geom.m), m = mu[c], s = r[c];
    for (int64_t n = 0; n < geom.n; n++) {
      int64_t off = (n * geom.c + c) * geom.hw;
      for (int64_t k = 0; k < geom.hw; k++) {
        float xhat = (px[off + k] - m) * s;
        po[off + k] = s * (pg[off + k] - gbar - xhat * cc);
      }
    }
  }
  Node *node = ag_record(out, "batch_norm_backward", bn_backward_rule, 2, (Tensor *[]){g, x});
  if (node) {
    node->saved[0] = t_retain(mean);
    node->saved[1] = t_retain(rstd);
  }
  return out;
}

/* the double-backward rule from differentiable ops (for third order) */
static Tensor *bn_double_backward_composite(Tensor *u, Tensor *g, Tensor *x, double eps) {
  uint32_t dims = 0;
  for (int i = 0; i < x->ndim; i++)
    if (i != 1) dims |= 1u << i;
  Tensor *xhat = t_bn_normalize(x, eps, NULL, NULL);
  Tensor *var = t_var(x, dims, 1, 0), *ve = t_add_scalar(var, eps), *r2 = t_pow_scalar(ve, -1.0);
  Tensor *ug = t_mul(u, g), *A = t_mean(ug, dims, 1), *ubar = t_mean(u, dims, 1), *gbar = t_mean(g, dims, 1);
  Tensor *gx = t_mul(g, xhat), *c = t_mean(gx, dims, 1), *ux = t_mul(u, xhat), *d = t_mean(ux, dims, 1);
  Tensor *ug_bar = t_mul(ubar, gbar), *cd = t_mul(c, d), *cd3 = t_mul_scalar(cd, 3.0);
  Tensor *k1a = t_sub(A, ug_bar), *k1 = t_sub(k1a, cd3), *term1 = t_mul(xhat, k1);
  Tensor *gc = t_sub(g, gbar), *term2 = t_mul(d, gc), *uc = t_sub(u, ubar), *term3 = t_mul(c, uc);
  Tensor *s12 = t_add(term1, term2), *s = t_add(s12, term3), *neg_r2 = t_neg(r2), *out = t_mul(s, neg_r2);
  Tensor *tmp[] = {xhat, var, ve, r2, ug, A, ubar, gbar, gx, c, ux, d, ug_bar, cd, cd3, k1a, k1, term1, gc, term2,
                   uc, term3, s12, s, neg_r2};
  for (size_t i = 0; i < sizeof tmp / sizeof *tmp; i++) t_release(tmp[i]);
  return out;
}

// u, g, x -> d<u, J(x) g>/dx
T_HOT static Tensor *bn_double_backward_op(Tensor *u, Tensor *g, Tensor *x, Tensor *mean, Tensor *rstd, double eps) {
  if (ag_is_enabled() && (u->requires_grad || g->requires_grad || x->requires_grad))
    return bn_double_backward_composite(u, g, x, eps);
  ChannelGeom geom = channel_geom(x);
  Tensor *out = t_new(x->ndim, x->shape);
  const float *pu = T_DATA(u), *pg = T_DATA(g), *px = T_DATA(x), *mu = T_DATA(mean), *r = T_DATA(rstd);
  float *po = T_DATA(out);
  double m = (double)geom.m;
  for (int64_t c = 0; c < geom.c; c++) {
    double sg, sgx, su, sux, sug = 0;
    channel_sums(&geom, c, pg, px, mu[c], r[c], &sg, &sgx);
    channel_sums(&geom, c, pu, px, mu[c], r[c], &su, &sux);
    for (int64_t n = 0; n < geom.n; n++) {
      int64_t off = (n * geom.c + c) * geom.hw;
      float part = 0;
      for (int64_t k = 0; k < geom.hw; k++) part += pu[off + k] * pg[off + k];
      sug += part;
    }
    double gbar = sg / m, cc = sgx / m, ubar = su / m, dd = sux / m, A = sug / m;
    float k1 = (float)(A - ubar * gbar - 3 * cc * dd), fd = (float)dd, fc = (float)cc;
    float fg = (float)gbar, fu = (float)ubar, mm = mu[c], s = r[c], nr2 = -s * s;
    for (int64_t n = 0; n < geom.n; n++) {
      int64_t off = (n * geom.c + c) * geom.hw;
      for (int64_t k = 0; k < geom.hw; k++) {
        float xhat = (px[off + k] - mm) * s;
        po[off + k] = nr2 * (xhat * k1 + fd * (pg[off + k] - fg) + fc * (pu[off + k] - fu));
      }
    }
  }
  return out;
}

/* ------------------------------------------------------------ per-channel affine */
/* channel_affine(x, w, b) = x * w[c] + b[c]   backward: channel_affine(g, w), channel_dot(g, x), channel_sum(g)
** channel_dot(a, b)[c] = sum of a * b over channel c   backward: channel_affine(b, g), channel_affine(a, g)
** channel_sum(a)[c] = sum of a over channel c         backward: g[c] broadcast (expand) */

void bn_check_channels(const char *what, int arg, Tensor *v, int64_t c) {
  char b[160];
  if (v && (v->ndim != 1 || v->shape[0] != c))
    t_argerror("batch_norm", arg, "expected %s of shape (%lld), got %s", what, (long long)c, t_shape_str(v, b, sizeof b));
}

static void channel_affine_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  Tensor *x = n->inputs[0], *w = n->inputs[1];
  if (needs[0]) gin[0] = w ? t_channel_affine(g, w, NULL) : t_retain(g);
  if (n->ninputs > 1 && needs[1]) gin[1] = t_channel_dot(g, x);
  if (n->ninputs > 2 && needs[2]) gin[2] = t_channel_sum(g);
}

// x (N, C, ...), w (C) or NULL, b (C) or NULL -> x * w + b per channel
T_HOT Tensor *t_channel_affine(Tensor *x, Tensor *w, Tensor *b) {
  ChannelGeom g = channel_geom(x);
  bn_check_channels("weight", 2, w, g.c);
  bn_check_channels("bias", 3, b, g.c);
  Tensor *out = t_new(x->ndim, x->shape);
  const float *px = T_DATA(x), *pw = w ? T_DATA(w) : NULL, *pb = b ? T_DATA(b) : NULL;
  float *po = T_DATA(out);
  for (int64_t n = 0; n < g.n; n++)
    for (int64_t c = 0; c < g.c; c++) {
      int64_t off = (n * g.c + c) * g.hw;
      float s = pw ? pw[c] : 1.0f, t = pb ? pb[c] : 0.0f;
      for (int64_t k = 0; k < g.hw; k++) po[off + k] = px[off + k] * s + t;
    }
  /* inputs: x, then w (may be NULL), then b only when given */
  Node *node = ag_record(out, "channel_affine", channel_affine_backward, b ? 3 : (w ? 2 : 1), (Tensor *[]){x, w, b});
  (void)node;
  return out;
}

static void channel_dot_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  if (needs[0]) gin[0] = t_channel_affine(n->inputs[1], g, NULL);
  if (needs[1]) gin[1] = t_channel_affine(n->inputs[0], g, NULL);
}

// a, b (N, C, ...) -> (C): sum of a * b over each channel
T_HOT Tensor *t_channel_dot(Tensor *a, Tensor *b) {
  ChannelGeom g = channel_geom(a);
  Tensor *out = t_new(1, &g.c);
  const float *pa = T_DATA(a), *pb = T_DATA(b);
  float *po = T_DATA(out);
  for (int64_t c = 0; c < g.c; c++) {
    double s = 0;
    for (int64_t n = 0; n < g.n; n++) {
      int64_t off = (n * g.c + c) * g.hw;
      s += t_dot8(pa + off, pb + off, g.hw);
    }
    po[c] = (float)s;
  }
  ag_record(out, "channel_dot", channel_dot_backward, 2, (Tensor *[]){a, b});
  return out;
}

static void channel_sum_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  if (!needs[0]) return;
  Tensor *a = n->inputs[0];
  int64_t shape[T_MAXDIM];
  for (int i = 0; i < a->ndim; i++) shape[i] = i == 1 ? a->shape[1] : 1;
  Tensor *gc = t_reshape(g, a->ndim, shape);
  gin[0] = t_expand(gc, a->ndim, a->shape);
  t_release(gc);
}

// a (N, C, ...) -> (C): sum over each channel
T_HOT Tensor *t_channel_sum(Tensor *a) {
  ChannelGeom g = channel_geom(a);
  Tensor *out = t_new(1, &g.c);
  const float *pa = T_DATA(a);
  float *po = T_DATA(out);
  for (int64_t c = 0; c < g.c; c++) {
    double s = 0;
    for (int64_t n = 0; n < g.n; n++) {
      int64_t off = (n * g.c + c) * g.hw;
      s += t_sum8(pa + off, g.hw);
    }
    po[c] = (float)s;
  }
  ag_record(out, "channel_sum", channel_sum_backward, 1, &a);
  return out;
}
