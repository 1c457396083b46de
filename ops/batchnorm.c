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
**
** bn_affine(x, w, b) = bn_normalize(x) w[c] + b[c] is training-mode batch_norm
** in one op: one sweep over x for the statistics, one to write. Its gradients
** all come from the per-channel sums of g and g xhat (one sweep): gw = sum(g
** xhat), gb = sum(g), gx = w J g (one more sweep to write). With grad mode on
** the same values are recorded as the unfused pieces (bn_normalize,
** channel_affine, channel_dot, channel_sum), whose rules carry the higher orders.
**
** Sweeps go over memory in order (n outer, c inner) with per-channel sums in
** double, in a fixed order: results do not depend on the thread count.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "batchnorm.h"
#include "elementwise.h"
#include "reduce.h"
#include "shape.h"

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

/* n zeroed per-channel accumulators; the caller frees them */
static double *channel_scratch(int64_t n) {
  double *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
  if (!p) t_error("out of memory in 'batch_norm'");
  return p;
}

/* n float accumulators (zeroed), the caller frees them */
static float *row_scratch(int64_t n) {
  float *p = calloc((size_t)(n > 0 ? n : 1), sizeof *p);
  if (!p) t_error("out of memory in 'batch_norm'");
  return p;
}

/* Channels-last (N*H*W, C), hw = 1: the sweeps go along rows, vectorised over the
** channels. Per-channel sums are taken in float over blocks of ROWS rows (as a plane's
** hw values are above), each block's sum then added in double: the same order on
** every machine and clone. */
enum { ROWS = 32 };

/* batch_norm_relu's mask along rows, grad mode off: a value of a (its incoming gradient) counts
** where the forward's pre-activation s (b - kb) + t was positive (b - kb = x - mu), else 0. It is
** recomputed from x with the forward's float operations (ISO C: no contraction), so it is the
** output's mask, and the sums and maps below give the bits of relu_backward's masked copy. */
typedef struct {
  const float *s, *t; /* the forward's r w and its bias (t may be NULL: 0) */
} ReluMask;

static inline float masked(float a, float e, float s, float t) { return s * e + t > 0.0f ? a : 0.0f; }

/* per-channel sums over the rows of d = a - ka (ka NULL: 0), of d * (b - kb) when b is
** given, and of d * d when square: one sweep; with mask (b given), a masked by it */
T_HOT static void row_sums(const ChannelGeom *g, const float *a, const float *ka, const float *b, const float *kb,
                           int square, const ReluMask *mask, double *sum, double *sum_prod) {
  const int64_t nc = g->c;
  float *acc = row_scratch(3 * nc), *a1 = acc, *a2 = acc + nc, *zero = acc + 2 * nc;
  if (!ka) ka = zero;
  if (!kb) kb = zero;
  const float *mt = mask && mask->t ? mask->t : zero;
  for (int64_t c = 0; c < nc; c++) sum[c] = sum_prod ? (sum_prod[c] = 0) : 0;
  for (int64_t n0 = 0; n0 < g->n; n0 += ROWS) {
    int64_t n1 = n0 + ROWS < g->n ? n0 + ROWS : g->n;
    for (int64_t c = 0; c < 2 * nc; c++) acc[c] = 0;
    for (int64_t n = n0; n < n1; n++) {
      const float *pa = a + n * nc, *pb = b ? b + n * nc : NULL;
      if (square)
        for (int64_t c = 0; c < nc; c++) {
          float d = pa[c] - ka[c];
          a1[c] += d;
          a2[c] += d * d;
        }
      else if (pb && mask)
        for (int64_t c = 0; c < nc; c++) {
          float e = pb[c] - kb[c], d = masked(pa[c], e, mask->s[c], mt[c]) - ka[c];
          a1[c] += d;
          a2[c] += d * e;
        }
      else if (pb)
        for (int64_t c = 0; c < nc; c++) {
          float d = pa[c] - ka[c];
          a1[c] += d;
          a2[c] += d * (pb[c] - kb[c]);
        }
      else
        for (int64_t c = 0; c < nc; c++) a1[c] += pa[c] - ka[c];
    }
    for (int64_t c = 0; c < nc; c++) {
      sum[c] += a1[c];
      if (sum_prod) sum_prod[c] += a2[c];
    }
  }
  free(acc);
}

/* out = ka[c] (a - ma[c]) + kb[c] (b - mb[c]) + kc[c] (u - mu[c]) + k0[c] along rows; b, u
** and their coefficients may be NULL, and so may ma, mb, mu (0) and k0 (0) */
typedef struct {
  const float *a, *ka, *ma, *b, *kb, *mb, *u, *ku, *mu, *k0;
  int relu; /* then max(out, 0) */
  const ReluMask *mask; /* a masked by it (b given, u not) */
} RowMap;

T_HOT static void row_map(const ChannelGeom *g, const RowMap *m, float *out) {
  const int64_t nc = g->c;
  float *zero = row_scratch(nc);
  const float *ma = m->ma ? m->ma : zero, *mb = m->mb ? m->mb : zero, *mu = m->mu ? m->mu : zero;
  const float *k0 = m->k0 ? m->k0 : zero;
  for (int64_t n = 0; n < g->n; n++) {
    const float *pa = m->a + n * nc;
    float *po = out + n * nc;
    if (m->u) {
      const float *pb = m->b + n * nc, *pu = m->u + n * nc;
      for (int64_t c = 0; c < nc; c++)
        po[c] = m->ka[c] * (pa[c] - ma[c]) + m->kb[c] * (pb[c] - mb[c]) + m->ku[c] * (pu[c] - mu[c]) + k0[c];
    } else if (m->b && m->mask) {
      const float *pb = m->b + n * nc, *mt = m->mask->t ? m->mask->t : zero;
      for (int64_t c = 0; c < nc; c++) {
        float e = pb[c] - mb[c];
        po[c] = m->ka[c] * (masked(pa[c], e, m->mask->s[c], mt[c]) - ma[c]) + m->kb[c] * e + k0[c];
      }
    } else if (m->b) {
      const float *pb = m->b + n * nc;
      for (int64_t c = 0; c < nc; c++) po[c] = m->ka[c] * (pa[c] - ma[c]) + m->kb[c] * (pb[c] - mb[c]) + k0[c];
    } else {
      for (int64_t c = 0; c < nc; c++) po[c] = m->ka[c] * (pa[c] - ma[c]) + k0[c];
    }
    if (m->relu)
      for (int64_t c = 0; c < nc; c++) po[c] = po[c] > 0.0f ? po[c] : 0.0f;
  }
  free(zero);
}

/* per-channel mean and r = 1/sqrt(var + eps) of x in one sweep over memory: sums of
** d = x - k and d^2 in double, k the mean of the channel's first plane, near the mean,
** so that var = mean(d^2) - mean(d)^2 loses little to cancellation */
T_HOT static void channel_stats(const ChannelGeom *g, const float *x, double eps, float *mean, float *rstd) {
  double *acc = channel_scratch(2 * g->c), *s1 = acc, *s2 = acc + g->c;
  for (int64_t c = 0; c < g->c; c++) /* the shifts, kept in mean until the end */
    mean[c] = g->n && g->hw ? t_sum8(x + c * g->hw, g->hw) / (float)g->hw : 0.0f;
  if (g->hw == 1) row_sums(g, x, mean, NULL, NULL, 1, NULL, s1, s2);
  else
    for (int64_t n = 0; n < g->n; n++)
      for (int64_t c = 0; c < g->c; c++) {
        const float *p = x + (n * g->c + c) * g->hw;
        float shift = mean[c];
        t_v8f acc1 = {0}, acc2 = {0}; /* 8 lanes, see t_sum8 */
        int64_t k = 0;
        for (; k + 8 <= g->hw; k += 8) {
          t_v8f d;
          T_LOAD8(d, p + k);
          d -= shift;
          acc1 += d;
          acc2 += d * d;
        }
        float p1 = T_HSUM8(acc1), p2 = T_HSUM8(acc2);
        for (; k < g->hw; k++) {
          p1 += p[k] - shift;
          p2 += (p[k] - shift) * (p[k] - shift);
        }
        s1[c] += p1;
        s2[c] += p2;
      }
  for (int64_t c = 0; c < g->c; c++) {
    double dm = s1[c] / (double)g->m, var = s2[c] / (double)g->m - dm * dm;
    mean[c] = (float)(mean[c] + dm);
    rstd[c] = (float)(1.0 / sqrt((var < 0 ? 0 : var) + eps)); /* (NaN for an empty x stays) */
  }
  free(acc);
}

/* per-channel sums of a and of a * xhat (xhat = (x - mu) r), all channels in one sweep */
T_HOT static void channel_sums(const ChannelGeom *g, const float *a, const float *x, const float *mu, const float *r,
                               const ReluMask *mask, double *sum_a, double *sum_a_xhat) {
  for (int64_t c = 0; c < g->c; c++) sum_a[c] = sum_a_xhat[c] = 0;
  if (g->hw == 1) row_sums(g, a, NULL, x, mu, 0, mask, sum_a, sum_a_xhat);
  else
    for (int64_t n = 0; n < g->n; n++)
      for (int64_t c = 0; c < g->c; c++) {
        const float *pa = a + (n * g->c + c) * g->hw, *px = x + (n * g->c + c) * g->hw;
        float m = mu[c];
        t_v8f acc1 = {0}, acc2 = {0};
        int64_t k = 0;
        for (; k + 8 <= g->hw; k += 8) {
          t_v8f va, vx;
          T_LOAD8(va, pa + k);
          T_LOAD8(vx, px + k);
          acc1 += va;
          acc2 += va * (vx - m);
        }
        float p1 = T_HSUM8(acc1), p2 = T_HSUM8(acc2);
        for (; k < g->hw; k++) {
          p1 += pa[k];
          p2 += pa[k] * (px[k] - m);
        }
        sum_a[c] += p1;
        sum_a_xhat[c] += p2;
      }
  for (int64_t c = 0; c < g->c; c++) sum_a_xhat[c] *= r[c];
}

/* out = (x - mu) r w + b per channel (w, b may be NULL: 1 and 0), then max(out, 0) with relu */
T_HOT static void bn_affine_kernel(const ChannelGeom *g, const float *x, const float *mu, const float *r,
                                   const float *w, const float *b, int relu, float *out) {
  if (g->hw == 1) {
    float *s = row_scratch(g->c);
    for (int64_t c = 0; c < g->c; c++) s[c] = r[c] * (w ? w[c] : 1.0f);
    row_map(g, &(RowMap){.a = x, .ka = s, .ma = mu, .k0 = b, .relu = relu}, out);
    free(s);
    return;
  }
  for (int64_t n = 0; n < g->n; n++)
    for (int64_t c = 0; c < g->c; c++) {
      int64_t off = (n * g->c + c) * g->hw;
      float m = mu[c], s = r[c] * (w ? w[c] : 1.0f), t = b ? b[c] : 0.0f;
      for (int64_t k = 0; k < g->hw; k++) out[off + k] = (x[off + k] - m) * s + t;
      if (relu)
        for (int64_t k = 0; k < g->hw; k++) out[off + k] = out[off + k] > 0.0f ? out[off + k] : 0.0f;
    }
}

/* out = w J g = w r (g - mean(g) - xhat mean(g xhat)) per channel (w may be NULL: 1),
** from the sums of g and g xhat; g masked by mask (along rows only, else NULL) */
T_HOT static void bn_backward_kernel(const ChannelGeom *g, const float *pg, const float *x, const float *mu,
                                     const float *r, const float *w, const double *sum_g, const double *sum_g_xhat,
                                     const ReluMask *mask, float *out) {
  if (g->hw == 1) { /* out = s (g - gbar) - k1 (x - m) */
    float *k = row_scratch(3 * g->c), *s = k, *gbar = k + g->c, *nk1 = k + 2 * g->c;
    for (int64_t c = 0; c < g->c; c++) {
      s[c] = r[c] * (w ? w[c] : 1.0f);
      gbar[c] = (float)(sum_g[c] / (double)g->m);
      nk1[c] = -(s[c] * r[c] * (float)(sum_g_xhat[c] / (double)g->m));
    }
    row_map(g, &(RowMap){.a = pg, .ka = s, .ma = gbar, .b = x, .kb = nk1, .mb = mu, .mask = mask}, out);
    free(k);
    return;
  }
  for (int64_t n = 0; n < g->n; n++)
    for (int64_t c = 0; c < g->c; c++) {
      int64_t off = (n * g->c + c) * g->hw;
      float m = mu[c], s = r[c] * (w ? w[c] : 1.0f), gbar = (float)(sum_g[c] / (double)g->m);
      float k1 = s * r[c] * (float)(sum_g_xhat[c] / (double)g->m); /* s xhat mean(g xhat) = (x - m) k1 */
      for (int64_t k = 0; k < g->hw; k++) out[off + k] = s * (pg[off + k] - gbar) - (x[off + k] - m) * k1;
    }
}

/* ------------------------------------------------------------ the ops */

static Tensor *bn_backward_op(Tensor *g, Tensor *x, Tensor *mean, Tensor *rstd, double eps, const double *sum_g,
                              const double *sum_g_xhat);
static Tensor *bn_double_backward_op(Tensor *u, Tensor *g, Tensor *x, Tensor *mean, Tensor *rstd, double eps);
static void channel_dot_backward(Node *n, Tensor *g, Tensor **gin, const int *needs);
static void channel_sum_backward(Node *n, Tensor *g, Tensor **gin, const int *needs);

/* a training-mode input: (N, C, ...) with at least 2 values per channel */
static ChannelGeom bn_check_input(Tensor *x) {
  char b[160];
  if (x->ndim < 2) t_argerror("batch_norm", 1, "expected input (N, C, ...), got %s", t_shape_str(x, b, sizeof b));
  ChannelGeom g = channel_geom(x);
  if (g.m < 2 && x->numel > 0)
    t_argerror("batch_norm", 1, "training mode needs more than 1 value per channel, got input %s",
               t_shape_str(x, b, sizeof b));
  return g;
}

/* the batch statistics of x as (C) tensors, temporaries of the caller's scope: mean and
** rstd for the kernels, and, when var is given, the biased variance (for running
** statistics). The caller hands out references only once nothing more can fail, so an
** error raised in between (the memory limit) leaks none of them. */
static void bn_stats(Tensor *x, const ChannelGeom *g, double eps, Tensor **mean, Tensor **rstd, Tensor **var) {
  *mean = t_temp(t_new(1, &g->c));
  *rstd = t_temp(t_new(1, &g->c));
  const float *r = T_DATA(*rstd);
  channel_stats(g, T_DATA(x), eps, T_DATA(*mean), T_DATA(*rstd));
  if (var) { /* biased variance, from r */
    *var = t_temp(t_new(1, &g->c));
    float *v = T_DATA(*var);
    for (int64_t c = 0; c < g->c; c++) v[c] = (float)(1.0 / ((double)r[c] * r[c]) - eps);
  }
}

/* new references to the statistics a caller asked for */
static void bn_hand_out(Tensor *mean, Tensor *var, Tensor **mean_out, Tensor **var_out) {
  if (mean_out) *mean_out = t_retain(mean);
  if (var_out) *var_out = t_retain(var);
}

static void bn_normalize_backward_rule(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  if (needs[0]) gin[0] = bn_backward_op(g, n->inputs[0], n->saved[0], n->saved[1], n->scalars[0], NULL, NULL);
}

/* xhat of x whose statistics are mean and rstd, recorded as bn_normalize */
static Tensor *bn_normalize_with(Tensor *x, Tensor *mean, Tensor *rstd, double eps) {
  ChannelGeom g = channel_geom(x);
  Tensor *out = t_new(x->ndim, x->shape);
  bn_affine_kernel(&g, T_DATA(x), T_DATA(mean), T_DATA(rstd), NULL, NULL, 0, T_DATA(out));
  Node *node = ag_record(out, "bn_normalize", bn_normalize_backward_rule, 1, &x);
  if (node) {
    node_save(node, 0, t_retain(mean));
    node_save(node, 1, t_retain(rstd));
    node->scalars[0] = eps;
  }
  return out;
}

// x (N, C, ...) -> xhat, normalised per channel with batch statistics
Tensor *t_bn_normalize(Tensor *x, double eps, Tensor **mean_out, Tensor **var_out) {
  ChannelGeom g = bn_check_input(x);
  Tensor *mean, *rstd, *var = NULL;
  int scope = t_scope_begin();
  bn_stats(x, &g, eps, &mean, &rstd, var_out ? &var : NULL);
  Tensor *out = bn_normalize_with(x, mean, rstd, eps);
  bn_hand_out(mean, var, mean_out, var_out);
  t_scope_end(scope);
  return out;
}

/* a per-channel result (C) from double sums */
static Tensor *channel_values(const double *v, int64_t c) {
  Tensor *t = t_new(1, &c);
  float *p = T_DATA(t);
  for (int64_t k = 0; k < c; k++) p[k] = (float)v[k];
  return t;
}

static void bn_affine_backward_rule(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  Tensor *x = n->inputs[0], *w = n->inputs[1], *mean = n->saved[0], *rstd = n->saved[1];
  ChannelGeom geom = channel_geom(x);
  int scope = t_scope_begin();
  /* with grad mode on, the gradients get the graph of the unfused ops (the fused ReLU's mask as
  ** relu_backward; out is detached, so the masked g needs grad when g does) */
  int record = ag_is_enabled() && (g->requires_grad || x->requires_grad || (w && w->requires_grad));
  const float *mu = T_DATA(mean), *r = T_DATA(rstd);
  double *sums = channel_scratch(2 * geom.c), *sum_g = sums, *sum_g_xhat = sums + geom.c;
  /* the fused ReLU's mask: channels-last with grad mode off, inside the sweeps below (ReluMask, on
  ** the forward's scale); else relu_backward's masked copy of g */
  float *scale = NULL;
  ReluMask relu_mask = {NULL, NULL}, *mask = NULL;
  if (n->saved[2] && geom.hw == 1 && !record) {
    scale = row_scratch(geom.c);
    for (int64_t c = 0; c < geom.c; c++) scale[c] = r[c] * (w ? T_DATA(w)[c] : 1.0f); /* (as bn_affine_kernel) */
    relu_mask = (ReluMask){scale, n->inputs[2] ? T_DATA(n->inputs[2]) : NULL};
    mask = &relu_mask;
  } else if (n->saved[2]) {
    g = t_temp(t_relu_backward(g, n->saved[2]));
  }
  channel_sums(&geom, T_DATA(g), T_DATA(x), mu, r, mask, sum_g, sum_g_xhat);
  if (needs[1]) { /* sum(g xhat) is channel_dot(g, xhat) */
    gin[1] = channel_values(sum_g_xhat, geom.c);
    if (record && (g->requires_grad || x->requires_grad)) {
      Tensor *xhat = bn_normalize_with(x, mean, rstd, n->scalars[0]);
      ag_record(gin[1], "channel_dot", channel_dot_backward, 2, (Tensor *[]){g, xhat});
      t_release(xhat);
    }
  }
  if (needs[2]) { /* sum(g) is channel_sum(g) */
    gin[2] = channel_values(sum_g, geom.c);
    if (record) ag_record(gin[2], "channel_sum", channel_sum_backward, 1, &g);
  }
  if (needs[0] && !record) {
    gin[0] = t_new(x->ndim, x->shape);
    bn_backward_kernel(&geom, T_DATA(g), T_DATA(x), mu, r, w ? T_DATA(w) : NULL, sum_g, sum_g_xhat, mask,
                       T_DATA(gin[0]));
  } else if (needs[0]) { /* bn_backward(channel_affine(g, w)), given the sums of g w */
    Tensor *gw = w ? t_channel_affine(g, w, NULL) : t_retain(g);
    const float *pw = w ? T_DATA(w) : NULL;
    for (int64_t c = 0; pw && c < geom.c; c++) {
      sum_g[c] *= pw[c];
      sum_g_xhat[c] *= pw[c];
    }
    gin[0] = bn_backward_op(gw, x, mean, rstd, n->scalars[0], sum_g, sum_g_xhat);
    t_release(gw);
  }
  free(sums);
  free(scale);
  t_scope_end(scope);
}

// x (N, C, ...), w (C) or NULL, b (C) or NULL -> bn_normalize(x) * w + b per channel, then
// max(., 0) with relu (whose backward masks by the output, saved as a detached view)
Tensor *t_bn_affine(Tensor *x, Tensor *w, Tensor *b, double eps, int relu, Tensor **mean_out, Tensor **var_out) {
  ChannelGeom g = bn_check_input(x);
  bn_check_channels("weight", 2, w, g.c);
  bn_check_channels("bias", 3, b, g.c);
  Tensor *mean, *rstd, *var = NULL;
  int scope = t_scope_begin();
  bn_stats(x, &g, eps, &mean, &rstd, var_out ? &var : NULL);
  Tensor *out = t_new(x->ndim, x->shape);
  bn_affine_kernel(&g, T_DATA(x), T_DATA(mean), T_DATA(rstd), w ? T_DATA(w) : NULL, b ? T_DATA(b) : NULL, relu,
                   T_DATA(out));
  Node *node =
      ag_record(out, relu ? "batch_norm_relu" : "batch_norm", bn_affine_backward_rule, 3, (Tensor *[]){x, w, b});
  if (node) {
    node_save(node, 0, t_retain(mean));
    node_save(node, 1, t_retain(rstd));
    node->scalars[0] = eps;
    if (relu) node_save(node, 2, t_detach(out));
  }
  bn_hand_out(mean, var, mean_out, var_out);
  t_scope_end(scope);
  return out;
}

static void bn_backward_rule(Node *n, Tensor *u, Tensor **gin, const int *needs) {
  Tensor *g = n->inputs[0], *x = n->inputs[1], *mean = n->saved[0], *rstd = n->saved[1];
  if (needs[0]) gin[0] = bn_backward_op(u, x, mean, rstd, n->scalars[0], NULL, NULL); /* J is symmetric */
  if (needs[1]) gin[1] = bn_double_backward_op(u, g, x, mean, rstd, n->scalars[0]);
}

// g, x (N, C, ...) -> J g, the gradient of bn_normalize at x (the sums of g and g xhat may be given)
static Tensor *bn_backward_op(Tensor *g, Tensor *x, Tensor *mean, Tensor *rstd, double eps, const double *sum_g,
                              const double *sum_g_xhat) {
  ChannelGeom geom = channel_geom(x);
  const float *mu = T_DATA(mean), *r = T_DATA(rstd);
  double *sums = NULL;
  if (!sum_g) {
    sums = channel_scratch(2 * geom.c);
    channel_sums(&geom, T_DATA(g), T_DATA(x), mu, r, NULL, sums, sums + geom.c);
    sum_g = sums;
    sum_g_xhat = sums + geom.c;
  }
  Tensor *out = t_new(x->ndim, x->shape);
  bn_backward_kernel(&geom, T_DATA(g), T_DATA(x), mu, r, NULL, sum_g, sum_g_xhat, NULL, T_DATA(out));
  free(sums);
  Node *node = ag_record(out, "batch_norm_backward", bn_backward_rule, 2, (Tensor *[]){g, x});
  if (node) {
    node_save(node, 0, t_retain(mean));
    node_save(node, 1, t_retain(rstd));
    node->scalars[0] = eps; /* for the double backward's composite form */
  }
  return out;
}

/* the double-backward rule from differentiable ops (for third order) */
static Tensor *bn_double_backward_composite(Tensor *u, Tensor *g, Tensor *x, double eps) {
  uint32_t dims = 0;
  for (int i = 0; i < x->ndim; i++)
    if (i != 1) dims |= 1u << i;
  int scope = t_scope_begin();
  Tensor *xhat = t_temp(t_bn_normalize(x, eps, NULL, NULL));
  Tensor *r2 = t_temp(t_pow_scalar(t_temp(t_add_scalar(t_temp(t_var(x, dims, 1, 0)), eps)), -1.0));
  Tensor *A = t_temp(t_mean(t_temp(t_mul(u, g)), dims, 1));
  Tensor *ubar = t_temp(t_mean(u, dims, 1)), *gbar = t_temp(t_mean(g, dims, 1));
  Tensor *c = t_temp(t_mean(t_temp(t_mul(g, xhat)), dims, 1)), *d = t_temp(t_mean(t_temp(t_mul(u, xhat)), dims, 1));
  Tensor *ug_bar = t_temp(t_mul(ubar, gbar)), *cd3 = t_temp(t_mul_scalar(t_temp(t_mul(c, d)), 3.0));
  Tensor *k1 = t_temp(t_sub(t_temp(t_sub(A, ug_bar)), cd3)), *term1 = t_temp(t_mul(xhat, k1));
  Tensor *term2 = t_temp(t_mul(d, t_temp(t_sub(g, gbar)))), *term3 = t_temp(t_mul(c, t_temp(t_sub(u, ubar))));
  Tensor *s = t_temp(t_add(t_temp(t_add(term1, term2)), term3));
  Tensor *out = t_mul(s, t_temp(t_neg(r2)));
  t_scope_end(scope);
  return out;
}

/* the five per-channel sums of the double backward along rows, in one sweep over g, u and x:
** acc = [sum g, sum g (x - mu), sum u, sum u (x - mu), sum u g], each C long */
T_HOT static void row_sums5(const ChannelGeom *g, const float *pg, const float *pu, const float *px, const float *mu,
                            double *acc) {
  const int64_t nc = g->c;
  float *a = row_scratch(5 * nc);
  for (int64_t c = 0; c < 5 * nc; c++) acc[c] = 0;
  for (int64_t n0 = 0; n0 < g->n; n0 += ROWS) {
    int64_t n1 = n0 + ROWS < g->n ? n0 + ROWS : g->n;
    for (int64_t c = 0; c < 5 * nc; c++) a[c] = 0;
    for (int64_t n = n0; n < n1; n++) {
      const float *rg = pg + n * nc, *ru = pu + n * nc, *rx = px + n * nc;
      for (int64_t c = 0; c < nc; c++) {
        float d = rx[c] - mu[c];
        a[c] += rg[c];
        a[nc + c] += rg[c] * d;
        a[2 * nc + c] += ru[c];
        a[3 * nc + c] += ru[c] * d;
        a[4 * nc + c] += ru[c] * rg[c];
      }
    }
    for (int64_t c = 0; c < 5 * nc; c++) acc[c] += a[c];
  }
  free(a);
}

/* the double backward along rows (hw = 1): the five sums in one sweep, then one map;
** frees acc (5 C doubles) */
static Tensor *bn_double_backward_rows(const ChannelGeom *geom, const float *pu, const float *pg, const float *px,
                                       const float *mu, const float *r, double *acc, Tensor *x) {
  const int64_t nc = geom->c;
  double *sg = acc, *sgx = acc + nc, *su = acc + 2 * nc, *sux = acc + 3 * nc, *sug = acc + 4 * nc, m = (double)geom->m;
  row_sums5(geom, pg, pu, px, mu, acc);
  float *k = row_scratch(6 * nc), *kx = k, *kg = k + nc, *gbar = k + 2 * nc, *ku = k + 3 * nc, *ubar = k + 4 * nc;
  for (int64_t c = 0; c < nc; c++) {
    double gb = sg[c] / m, cc = r[c] * sgx[c] / m, ub = su[c] / m, dd = r[c] * sux[c] / m, A = sug[c] / m;
    float k1 = (float)(A - ub * gb - 3 * cc * dd), s = r[c], nr2 = -s * s;
    kx[c] = nr2 * s * k1; /* -r^2 (xhat k1 + d (g - gbar) + c (u - ubar)), xhat = (x - mu) r */
    kg[c] = nr2 * (float)dd;
    ku[c] = nr2 * (float)cc;
    gbar[c] = (float)gb;
    ubar[c] = (float)ub;
  }
  Tensor *out = t_new(x->ndim, x->shape);
  row_map(geom, &(RowMap){.a = px, .ka = kx, .ma = mu, .b = pg, .kb = kg, .mb = gbar, .u = pu, .ku = ku, .mu = ubar},
          T_DATA(out));
  free(k);
  free(acc);
  return out;
}

// u, g, x -> d<u, J(x) g>/dx
T_HOT static Tensor *bn_double_backward_op(Tensor *u, Tensor *g, Tensor *x, Tensor *mean, Tensor *rstd, double eps) {
  if (ag_is_enabled() && (u->requires_grad || g->requires_grad || x->requires_grad))
    return bn_double_backward_composite(u, g, x, eps);
  ChannelGeom geom = channel_geom(x);
  const float *pu = T_DATA(u), *pg = T_DATA(g), *px = T_DATA(x), *mu = T_DATA(mean), *r = T_DATA(rstd);
  /* one sweep for the five per-channel sums: g, g (x - mu), u, u (x - mu), u g */
  double *acc = channel_scratch(5 * geom.c), *sg = acc, *sgx = acc + geom.c, *su = acc + 2 * geom.c,
         *sux = acc + 3 * geom.c, *sug = acc + 4 * geom.c;
  if (geom.hw == 1) return bn_double_backward_rows(&geom, pu, pg, px, mu, r, acc, x);
  for (int64_t n = 0; n < geom.n; n++)
    for (int64_t c = 0; c < geom.c; c++) {
      int64_t off = (n * geom.c + c) * geom.hw, k = 0;
      float m = mu[c];
      t_v8f a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0};
      for (; k + 8 <= geom.hw; k += 8) {
        t_v8f vg, vu, vx;
        T_LOAD8(vg, pg + off + k);
        T_LOAD8(vu, pu + off + k);
        T_LOAD8(vx, px + off + k);
        vx -= m;
        a1 += vg;
        a2 += vg * vx;
        a3 += vu;
        a4 += vu * vx;
        a5 += vu * vg;
      }
      float p1 = T_HSUM8(a1), p2 = T_HSUM8(a2), p3 = T_HSUM8(a3), p4 = T_HSUM8(a4), p5 = T_HSUM8(a5);
      for (; k < geom.hw; k++) {
        float vg = pg[off + k], vu = pu[off + k], vx = px[off + k] - m;
        p1 += vg;
        p2 += vg * vx;
        p3 += vu;
        p4 += vu * vx;
        p5 += vu * vg;
      }
      sg[c] += p1;
      sgx[c] += p2;
      su[c] += p3;
      sux[c] += p4;
      sug[c] += p5;
    }
  Tensor *out = t_new(x->ndim, x->shape);
  float *po = T_DATA(out);
  double m = (double)geom.m;
  for (int64_t n = 0; n < geom.n; n++)
    for (int64_t c = 0; c < geom.c; c++) {
      int64_t off = (n * geom.c + c) * geom.hw;
      double gbar = sg[c] / m, cc = r[c] * sgx[c] / m, ubar = su[c] / m, dd = r[c] * sux[c] / m, A = sug[c] / m;
      float k1 = (float)(A - ubar * gbar - 3 * cc * dd), fd = (float)dd, fc = (float)cc;
      float fg = (float)gbar, fu = (float)ubar, mm = mu[c], s = r[c], nr2 = -s * s;
      for (int64_t k = 0; k < geom.hw; k++) {
        float xhat = (px[off + k] - mm) * s;
        po[off + k] = nr2 * (xhat * k1 + fd * (pg[off + k] - fg) + fc * (pu[off + k] - fu));
      }
    }
  free(acc);
  return out;
}

/* ------------------------------------------------------------ per-channel affine */
/* channel_affine(x, w, b) = x * w[c] + b[c]   backward: channel_affine(g, w), channel_dot(g, x), channel_sum(g)
** channel_dot(a, b)[c] = sum of a * b over channel c   backward: channel_affine(b, g), channel_affine(a, g)
** channel_sum(a)[c] = sum of a over channel c         backward: g[c] broadcast (expand) */

void bn_check_channels(const char *what, int arg, Tensor *v, int64_t c) {
  char b[160];
  if (v && (v->ndim != 1 || v->shape[0] != c))
    t_argerror("batch_norm", arg, "expected %s of shape (%lld), got %s", what, (long long)c,
               t_shape_str(v, b, sizeof b));
}

/* one sweep over g (and x): g * w[c] (gx), sum of g * x (gdot) and sum of g (gsum) per channel, each
** only when its output is given */
T_HOT static void channel_affine_grads(const ChannelGeom *geom, const float *g, const float *x, const float *w,
                                       float *gx, float *gdot, float *gsum) {
  double *acc = channel_scratch(2 * geom->c), *sdot = acc, *ssum = acc + geom->c;
  if (geom->hw == 1) {
    if (gx) row_map(geom, &(RowMap){.a = g, .ka = w}, gx);
    if (gdot || gsum) row_sums(geom, g, NULL, gdot ? x : NULL, NULL, 0, NULL, ssum, gdot ? sdot : NULL);
  } else
    for (int64_t n = 0; n < geom->n; n++)
      for (int64_t c = 0; c < geom->c; c++) {
        int64_t off = (n * geom->c + c) * geom->hw;
        if (gx)
          for (int64_t k = 0; k < geom->hw; k++) gx[off + k] = g[off + k] * w[c];
        if (gdot) sdot[c] += t_dot8(g + off, x + off, geom->hw);
        if (gsum) ssum[c] += t_sum8(g + off, geom->hw);
      }
  for (int64_t c = 0; c < geom->c; c++) {
    if (gdot) gdot[c] = (float)sdot[c];
    if (gsum) gsum[c] = (float)ssum[c];
  }
  free(acc);
}

static void channel_affine_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  Tensor *x = n->inputs[0], *w = n->inputs[1];
  int want_gx = needs[0] && w, want_dot = n->ninputs > 1 && needs[1], want_sum = n->ninputs > 2 && needs[2];
  if (needs[0] && !w) gin[0] = t_retain(g);
  if (!want_gx && !want_dot && !want_sum) return;
  ChannelGeom geom = channel_geom(g);
  Tensor *gx = want_gx ? t_new(g->ndim, g->shape) : NULL, *gdot = want_dot ? t_new(1, &geom.c) : NULL,
         *gsum = want_sum ? t_new(1, &geom.c) : NULL;
  channel_affine_grads(&geom, T_DATA(g), want_dot ? T_DATA(x) : NULL, want_gx ? T_DATA(w) : NULL,
                       gx ? T_DATA(gx) : NULL, gdot ? T_DATA(gdot) : NULL, gsum ? T_DATA(gsum) : NULL);
  /* each recorded as the op whose value it is, so its own rule carries the higher orders */
  if (gx) ag_record(gx, "channel_affine", channel_affine_backward, 2, (Tensor *[]){g, w});
  if (gdot) ag_record(gdot, "channel_dot", channel_dot_backward, 2, (Tensor *[]){g, x});
  if (gsum) ag_record(gsum, "channel_sum", channel_sum_backward, 1, &g);
  if (want_gx) gin[0] = gx;
  if (want_dot) gin[1] = gdot;
  if (want_sum) gin[2] = gsum;
}

// x (N, C, ...), w (C) or NULL, b (C) or NULL -> x * w + b per channel
T_HOT Tensor *t_channel_affine(Tensor *x, Tensor *w, Tensor *b) {
  ChannelGeom g = channel_geom(x);
  bn_check_channels("weight", 2, w, g.c);
  bn_check_channels("bias", 3, b, g.c);
  Tensor *out = t_new(x->ndim, x->shape);
  const float *px = T_DATA(x), *pw = w ? T_DATA(w) : NULL, *pb = b ? T_DATA(b) : NULL;
  float *po = T_DATA(out);
  if (g.hw == 1) {
    float *ones = pw ? NULL : row_scratch(g.c);
    for (int64_t c = 0; ones && c < g.c; c++) ones[c] = 1.0f;
    row_map(&g, &(RowMap){.a = px, .ka = pw ? pw : ones, .k0 = pb}, po);
    free(ones);
  } else
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
Tensor *t_channel_dot(Tensor *a, Tensor *b) {
  ChannelGeom g = channel_geom(a);
  Tensor *out = t_new(1, &g.c);
  channel_affine_grads(&g, T_DATA(a), T_DATA(b), NULL, NULL, T_DATA(out), NULL);
  ag_record(out, "channel_dot", channel_dot_backward, 2, (Tensor *[]){a, b});
  return out;
}

static void channel_sum_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  if (!needs[0]) return;
  Tensor *a = n->inputs[0];
  int64_t shape[T_MAXDIM];
  for (int i = 0; i < a->ndim; i++) shape[i] = i == 1 ? a->shape[1] : 1;
  int scope = t_scope_begin();
  gin[0] = t_expand(t_temp(t_reshape(g, a->ndim, shape)), a->ndim, a->shape);
  t_scope_end(scope);
}

// a (N, C, ...) -> (C): sum over each channel
Tensor *t_channel_sum(Tensor *a) {
  ChannelGeom g = channel_geom(a);
  Tensor *out = t_new(1, &g.c);
  channel_affine_grads(&g, T_DATA(a), NULL, NULL, NULL, NULL, T_DATA(out));
  ag_record(out, "channel_sum", channel_sum_backward, 1, &a);
  return out;
}
