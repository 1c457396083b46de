/*
** reduce.c: sum, mean, var over any set of dims; max and argmax over one.
** sum is sum_to a keepdim shape (whose backward is expand), so every
** reduction here is a composition of differentiable ops except max, whose
** backward multiplies by a constant one-hot mask.
*/
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "elementwise.h"
#include "reduce.h"
#include "shape.h"
#include "tensor.h"

static int keep_shape(Tensor *a, uint32_t dims, int64_t *keep, int64_t *dropped, int64_t *count) {
  int nd = 0;
  if (dims == 0) dims = ~0u; /* no dims named: all of them */
  *count = 1;
  for (int i = 0; i < a->ndim; i++) {
    if (dims & (1u << i)) {
      keep[i] = 1;
      *count *= a->shape[i];
    } else {
      keep[i] = a->shape[i];
      dropped[nd++] = a->shape[i];
    }
  }
  return nd;
}

static void check_dims(const char *fn, Tensor *a, uint32_t dims) {
  if (a->ndim < 32 && (dims >> a->ndim)) t_argerror(fn, 2, "dim out of range for a %d-d tensor", a->ndim);
}

// a -> a summed over the dims in the mask (all when dims == 0 and a->ndim > 0)
Tensor *t_sum(Tensor *a, uint32_t dims, int keepdim) {
  check_dims("sum", a, dims);
  int64_t keep[T_MAXDIM], dropped[T_MAXDIM], count;
  int nd = keep_shape(a, dims, keep, dropped, &count);
  Tensor *s = t_sum_to(a, a->ndim, keep);
  if (keepdim) return s;
  int scope = t_scope_begin();
  Tensor *r = t_reshape(t_temp(s), nd, dropped);
  t_scope_end(scope);
  return r;
}

Tensor *t_mean(Tensor *a, uint32_t dims, int keepdim) {
  check_dims("mean", a, dims);
  int64_t keep[T_MAXDIM], dropped[T_MAXDIM], count;
  keep_shape(a, dims, keep, dropped, &count);
  int scope = t_scope_begin();
  Tensor *m = t_mul_scalar(t_temp(t_sum(a, dims, keepdim)), count ? 1.0 / (double)count : NAN);
  t_scope_end(scope);
  return m;
}

Tensor *t_var(Tensor *a, uint32_t dims, int keepdim, int unbiased) {
  check_dims("var", a, dims);
  int64_t keep[T_MAXDIM], dropped[T_MAXDIM], count;
  keep_shape(a, dims, keep, dropped, &count);
  int scope = t_scope_begin();
  Tensor *m = t_temp(t_mean(a, dims, 1)), *d = t_temp(t_sub(a, m)), *d2 = t_temp(t_pow_scalar(d, 2.0));
  Tensor *s = t_temp(t_sum(d2, dims, keepdim));
  double denom = (double)count - (unbiased ? 1.0 : 0.0);
  Tensor *v = t_mul_scalar(s, denom > 0 ? 1.0 / denom : NAN);
  t_scope_end(scope);
  return v;
}

/* ------------------------------------------------------------ max / argmax */

/* view a as (outer, R, inner) around dim */
static void split_at(Tensor *a, int dim, int64_t *outer, int64_t *r, int64_t *inner) {
  *outer = 1;
  *inner = 1;
  for (int i = 0; i < dim; i++) *outer *= a->shape[i];
  for (int i = dim + 1; i < a->ndim; i++) *inner *= a->shape[i];
  *r = a->shape[dim];
}

/* values (outer*inner) and 0-based indices of the max along dim; NaN wins */
static void max_kernel(Tensor *a, int dim, float *values, int64_t *indices) {
  int64_t outer, r, inner;
  split_at(a, dim, &outer, &r, &inner);
  const float *x = T_DATA(a);
  for (int64_t o = 0; o < outer; o++)
    for (int64_t i = 0; i < inner; i++) {
      const float *p = x + o * r * inner + i;
      float best = p[0];
      int64_t bi = 0;
      for (int64_t k = 1; k < r && best == best; k++) {
        float v = p[k * inner];
        if (v > best || v != v) {
          best = v;
          bi = k;
        }
      }
      values[o * inner + i] = best;
      indices[o * inner + i] = bi;
    }
}

static void reduced_shape(Tensor *a, int dim, int keepdim, int64_t *shape, int *nd) {
  *nd = 0;
  for (int i = 0; i < a->ndim; i++) {
    if (i == dim) {
      if (keepdim) shape[(*nd)++] = 1;
    } else {
      shape[(*nd)++] = a->shape[i];
    }
  }
}

static void max_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  if (!needs[0]) return;
  Tensor *a = n->inputs[0], *mask = n->saved[0];
  int64_t keep[T_MAXDIM];
  memcpy(keep, mask->shape, sizeof keep); /* mask has a's shape (flattened when dim < 0) */
  int dim = (int)n->ints[0];
  int64_t kshape[T_MAXDIM];
  int knd = mask->ndim;
  for (int i = 0; i < knd; i++) kshape[i] = i == dim ? 1 : mask->shape[i];
  int scope = t_scope_begin();
  Tensor *ge = t_temp(t_mul(t_temp(t_reshape(g, knd, kshape)), mask)); /* broadcasts over dim */
  gin[0] = t_reshape(ge, a->ndim, a->shape);
  t_scope_end(scope);
}

static Tensor *max_or_argmax(Tensor *a, int dim, int keepdim, int want_index) {
  const char *fn = want_index ? "argmax" : "max";
  if (a->numel == 0) t_argerror(fn, 1, "expected a non-empty tensor");
  Tensor *src = a;
  int64_t flat = a->numel;
  if (dim < 0) { /* over all elements */
    src = t_reshape(a, 1, &flat);
    dim = 0;
    keepdim = 0;
  } else if (dim >= a->ndim) {
    t_argerror(fn, 2, "dim %d out of range for a %d-d tensor", dim + 1, a->ndim);
  }
  int64_t shape[T_MAXDIM];
  int nd;
  reduced_shape(src, dim, keepdim, shape, &nd);
  Tensor *out = t_new(nd, shape);
  int64_t *idx = malloc((size_t)(out->numel ? out->numel : 1) * sizeof *idx);
  if (!idx) t_error("out of memory in '%s'", fn);
  max_kernel(src, dim, T_DATA(out), idx);
  if (want_index) {
    float *o = T_DATA(out);
    for (int64_t i = 0; i < out->numel; i++) o[i] = (float)(idx[i] + 1);
  } else if (ag_is_enabled() && a->requires_grad) {
    Tensor *mask = t_zeros(src->ndim, src->shape);
    int64_t outer, r, inner;
    split_at(src, dim, &outer, &r, &inner);
    float *m = T_DATA(mask);
    for (int64_t o = 0; o < outer; o++)
      for (int64_t i = 0; i < inner; i++) m[o * r * inner + idx[o * inner + i] * inner + i] = 1.0f;
    Node *n = ag_record(out, "max", max_backward, 1, &a);
    node_save(n, 0, mask);
    n->ints[0] = dim;
  }
  free(idx);
  if (src != a) t_release(src);
  return out;
}

Tensor *t_max(Tensor *a, int dim, int keepdim) { return max_or_argmax(a, dim, keepdim, 0); }
Tensor *t_argmax(Tensor *a, int dim, int keepdim) { return max_or_argmax(a, dim, keepdim, 1); }
