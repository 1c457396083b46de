/*
** loss.c: the network pieces that are compositions of differentiable
** primitives (so their first and second derivatives come for free):
** linear, log_softmax, softmax, cross_entropy, mse_loss, batch_norm.
*/
#include <math.h>
#include <string.h>

#include "batchnorm.h"
#include "elementwise.h"
#include "loss.h"
#include "matmul.h"
#include "reduce.h"
#include "shape.h"

// x (..., in), w (out, in), b (out) or NULL -> (..., out)
Tensor *t_linear(Tensor *x, Tensor *w, Tensor *b) {
  char b1[160], b2[160];
  if (w->ndim != 2) t_argerror("linear", 2, "expected 2-d weight (out, in), got %s", t_shape_str(w, b1, sizeof b1));
  if (x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[1])
    t_argerror("linear", 1, "expected input (..., %lld) for weight %s, got %s", (long long)w->shape[1],
               t_shape_str(w, b2, sizeof b2), t_shape_str(x, b1, sizeof b1));
  if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
    t_argerror("linear", 3, "expected bias of shape (%lld), got %s", (long long)w->shape[0],
               t_shape_str(b, b1, sizeof b1));
  int scope = t_scope_begin();
  Tensor *wt = t_temp(t_transpose(w, 0, 1));
  Tensor *out = b ? t_add(t_temp(t_matmul(x, wt)), b) : t_matmul(x, wt);
  t_scope_end(scope);
  return out;
}

static int check_dim(const char *fn, Tensor *x, int dim) {
  if (x->ndim == 0) t_argerror(fn, 1, "expected a tensor with at least 1 dim, got a scalar");
  if (dim < 0 || dim >= x->ndim) t_argerror(fn, 2, "dim %d out of range for a %d-d tensor", dim + 1, x->ndim);
  return dim;
}

Tensor *t_log_softmax(Tensor *x, int dim) {
  check_dim("log_softmax", x, dim);
  int scope = t_scope_begin();
  int old = ag_set_enabled(0); /* the shift is a constant: log_softmax ignores it */
  Tensor *m = t_temp(x->numel ? t_max(x, dim, 1) : t_scalar(0.0f)); /* an empty x gives an empty result */
  ag_set_enabled(old);
  Tensor *z = t_temp(t_sub(x, m)), *e = t_temp(t_exp(z)), *s = t_temp(t_sum(e, 1u << dim, 1));
  Tensor *out = t_sub(z, t_temp(t_log(s)));
  t_scope_end(scope);
  return out;
}

Tensor *t_softmax(Tensor *x, int dim) {
  check_dim("softmax", x, dim);
  int scope = t_scope_begin();
  Tensor *out = t_exp(t_temp(t_log_softmax(x, dim)));
  t_scope_end(scope);
  return out;
}

// logits (N, C), labels[N] in 1..C -> mean cross-entropy (0-d)
Tensor *t_cross_entropy(Tensor *logits, const int64_t *labels, int64_t nlabels) {
  char b1[160];
  if (logits->ndim != 2)
    t_argerror("cross_entropy", 1, "expected 2-d logits (N, C), got %s", t_shape_str(logits, b1, sizeof b1));
  int64_t n = logits->shape[0], c = logits->shape[1];
  if (nlabels != n) t_argerror("cross_entropy", 2, "expected %lld labels, got %lld", (long long)n, (long long)nlabels);
  if (n == 0) t_argerror("cross_entropy", 1, "expected at least one example");
  for (int64_t i = 0; i < n; i++)
    if (labels[i] < 1 || labels[i] > c)
      t_argerror("cross_entropy", 2, "label %lld at position %lld is outside 1..%lld", (long long)labels[i],
                 (long long)i + 1, (long long)c);
  int scope = t_scope_begin();
  Tensor *onehot = t_temp(t_zeros(2, logits->shape));
  float *o = T_DATA(onehot);
  for (int64_t i = 0; i < n; i++) o[i * c + labels[i] - 1] = -1.0f / (float)n;
  Tensor *l = t_temp(t_log_softmax(logits, 1)), *p = t_temp(t_mul(l, onehot)), *out = t_sum(p, 0, 0);
  t_scope_end(scope);
  return out;
}

Tensor *t_mse_loss(Tensor *a, Tensor *b) {
  char b1[160], b2[160];
  if (!t_same_shape(a, b))
    t_argerror("mse_loss", 2, "expected the shape of argument #1 %s, got %s", t_shape_str(a, b1, sizeof b1),
               t_shape_str(b, b2, sizeof b2));
  int scope = t_scope_begin();
  Tensor *d = t_temp(t_sub(a, b)), *d2 = t_temp(t_pow_scalar(d, 2.0)), *out = t_mean(d2, 0, 0);
  t_scope_end(scope);
  return out;
}

double t_accuracy(Tensor *logits, const int64_t *labels, int64_t nlabels) {
  char b1[160];
  if (logits->ndim != 2)
    t_argerror("accuracy", 1, "expected 2-d logits (N, C), got %s", t_shape_str(logits, b1, sizeof b1));
  int64_t n = logits->shape[0], c = logits->shape[1];
  if (nlabels != n) t_argerror("accuracy", 2, "expected %lld labels, got %lld", (long long)n, (long long)nlabels);
  if (n == 0 || c == 0) t_argerror("accuracy", 1, "expected a non-empty (N, C) tensor");
  for (int64_t i = 0; i < n; i++) /* (as cross_entropy: a label of no class is refused, not counted wrong) */
    if (labels[i] < 1 || labels[i] > c)
      t_argerror("accuracy", 2, "label %lld at position %lld is outside 1..%lld", (long long)labels[i],
                 (long long)i + 1, (long long)c);
  const float *x = T_DATA(logits);
  int64_t correct = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t best = 0;
    int finite = 1; /* a row with a NaN predicts nothing: not correct (argmax would say class 1) */
    for (int64_t j = 0; j < c; j++) finite &= x[i * c + j] == x[i * c + j];
    for (int64_t j = 1; j < c; j++)
      if (x[i * c + j] > x[i * c + best]) best = j;
    correct += finite && best + 1 == labels[i];
  }
  return (double)correct / (double)n;
}

/* ------------------------------------------------------------ batch norm */

/* v (C) -> (1, C, 1, ..., 1) to broadcast against an nd-d input */
static Tensor *per_channel(Tensor *v, int nd) {
  int64_t shape[T_MAXDIM];
  for (int i = 0; i < nd; i++) shape[i] = i == 1 ? v->numel : 1;
  return t_reshape(v, nd, shape);
}

static Tensor *batch_norm_channels_first(Tensor *x, Tensor *weight, Tensor *bias, const BatchNormOpts *o);

// x (N, C, ...) normalised per channel, then * weight + bias (each optional); with o->nhwc
// x (N, ..., C) is seen as (N*..., C) (a view), whose batch-norm kernels run along rows
Tensor *t_batch_norm(Tensor *x, Tensor *weight, Tensor *bias, const BatchNormOpts *o) {
  char b1[160];
  if (x->ndim < 2)
    t_argerror("batch_norm", 1, "expected input %s, got %s", o->nhwc ? "(N, ..., C)" : "(N, C, ...)",
               t_shape_str(x, b1, sizeof b1));
  if (!o->nhwc || x->ndim == 2) return batch_norm_channels_first(x, weight, bias, o);
  int64_t c = x->shape[x->ndim - 1];
  int scope = t_scope_begin();
  Tensor *rows = t_temp(t_reshape(x, 2, (int64_t[]){c ? x->numel / c : 0, c}));
  Tensor *y = t_reshape(t_temp(batch_norm_channels_first(rows, weight, bias, o)), x->ndim, x->shape);
  t_scope_end(scope);
  return y;
}

static Tensor *batch_norm_channels_first(Tensor *x, Tensor *weight, Tensor *bias, const BatchNormOpts *o) {
  char b1[160];
  int64_t c = x->shape[1], count = x->numel / (c ? c : 1);
  bn_check_channels("weight", 2, weight, c);
  bn_check_channels("bias", 3, bias, c);
  bn_check_channels("running_mean", 4, o->running_mean, c);
  bn_check_channels("running_var", 4, o->running_var, c);
  if (o->running_mean && o->running_mean->grad_fn)
    t_argerror("batch_norm", 4, "running_mean must be a buffer, not a result of differentiable ops");
  if (o->running_var && o->running_var->grad_fn)
    t_argerror("batch_norm", 4, "running_var must be a buffer, not a result of differentiable ops");
  if (!o->training && (!o->running_mean || !o->running_var))
    t_argerror("batch_norm", 4, "eval mode (training=false) needs running_mean and running_var");
  if (o->training && count < 2 && x->numel > 0)
    t_argerror("batch_norm", 1, "training mode needs more than 1 value per channel, got input %s",
               t_shape_str(x, b1, sizeof b1));
  if (o->training) { /* fused with the affine map, batch statistics */
    Tensor *mean = NULL, *var = NULL;
    Tensor *y =
        t_bn_affine(x, weight, bias, o->eps, o->relu, o->running_mean ? &mean : NULL, o->running_var ? &var : NULL);
    if (o->running_mean) { /* r = (1 - m) r + m * batch value; unbiased var like torch */
      const float *pm = T_DATA(mean), *pv = T_DATA(var);
      float *rm = T_DATA(o->running_mean), *rv = T_DATA(o->running_var);
      float m = (float)o->momentum, unbias = (float)count / (float)(count - 1);
      for (int64_t k = 0; k < c; k++) {
        rm[k] = (1 - m) * rm[k] + m * pm[k];
        rv[k] = (1 - m) * rv[k] + m * pv[k] * unbias;
      }
      t_written(o->running_mean);
      t_written(o->running_var);
    }
    t_release(mean);
    t_release(var);
    return y;
  }
  /* eval mode, running statistics: an affine map with constants */
  int scope = t_scope_begin();
  Tensor *mean = t_temp(per_channel(o->running_mean, x->ndim)), *var = t_temp(per_channel(o->running_var, x->ndim));
  Tensor *centered = t_temp(t_sub(x, mean)), *sd = t_temp(t_sqrt(t_temp(t_add_scalar(var, o->eps))));
  Tensor *y = t_div(centered, sd);
  if (weight || bias) y = t_channel_affine(t_temp(y), weight, bias);
  if (o->relu) y = t_relu(t_temp(y));
  t_scope_end(scope);
  return y;
}
