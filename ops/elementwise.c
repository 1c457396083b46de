/*
** elementwise.c: arithmetic with numpy broadcasting, unary math, comparisons,
** and the broadcast pair expand / sum_to. Each forward is followed by its
** backward rule, written with these same ops so it can be recorded.
*/
#include <math.h>
#include <string.h>

#include "elementwise.h"
#include "tensor.h"

/* ------------------------------------------------------------ broadcasting */

int t_broadcast_shape(const char *fn, const Tensor *a, const Tensor *b, int64_t *out) {
  int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
  for (int i = 0; i < nd; i++) {
    int ia = a->ndim - nd + i, ib = b->ndim - nd + i;
    int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
    if (sa != sb && sa != 1 && sb != 1) {
      char ba[160], bb[160];
      t_error("bad argument #2 to '%s' (shapes %s and %s cannot be broadcast: dim %d is %lld vs %lld)", fn,
              t_shape_str(a, ba, sizeof ba), t_shape_str(b, bb, sizeof bb), i + 1, (long long)sa, (long long)sb);
    }
    out[i] = sa == 1 ? sb : sa;
  }
  return nd;
}

/* strides of t seen in an nd-dim broadcast shape (0 where t is broadcast) */
static void bcast_strides(const Tensor *t, int nd, const int64_t *shape, int64_t *strides) {
  int64_t s = 1;
  for (int i = nd - 1; i >= 0; i--) {
    int it = t->ndim - nd + i;
    int64_t size = it >= 0 ? t->shape[it] : 1;
    strides[i] = (size == 1 && shape[i] != 1) ? 0 : s;
    s *= size;
  }
}

enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_POW, OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_MASK_GT0 };

/* out[i] = a[i] op b[i] over the last dim, with element strides sa, sb */
#define INNER(EXPR)                           \
  do {                                        \
    if (sa == 1 && sb == 1)                   \
      for (int64_t j = 0; j < n; j++) {       \
        float x = pa[j], y = pb[j];           \
        po[j] = (EXPR);                       \
      }                                       \
    else if (sa == 1 && sb == 0)              \
      for (int64_t j = 0; j < n; j++) {       \
        float x = pa[j], y = pb[0];           \
        po[j] = (EXPR);                       \
      }                                       \
    else if (sa == 0 && sb == 1)              \
      for (int64_t j = 0; j < n; j++) {       \
        float x = pa[0], y = pb[j];           \
        po[j] = (EXPR);                       \
      }                                       \
    else                                      \
      for (int64_t j = 0; j < n; j++) {       \
        float x = pa[j * sa], y = pb[j * sb]; \
        po[j] = (EXPR);                       \
      }                                       \
  } while (0)

T_HOT static void binary_inner(int op, int64_t n, const float *pa, int64_t sa, const float *pb, int64_t sb, float *po) {
  switch (op) {
    case OP_ADD: INNER(x + y); break;
    case OP_SUB: INNER(x - y); break;
    case OP_MUL: INNER(x * y); break;
    case OP_DIV: INNER(x / y); break;
    case OP_POW: INNER(powf(x, y)); break;
    case OP_EQ: INNER((float)(x == y)); break;
    case OP_NE: INNER((float)(x != y)); break;
    case OP_LT: INNER((float)(x < y)); break;
    case OP_LE: INNER((float)(x <= y)); break;
    case OP_GT: INNER((float)(x > y)); break;
    case OP_GE: INNER((float)(x >= y)); break;
    case OP_MASK_GT0: INNER(y > 0 ? x : 0.0f); break;
  }
}

/* Merge adjacent dims that every operand walks the same way (both
** contiguous, or both broadcast), and drop size-1 dims, so that a
** per-channel op on (N, C, H, W) runs as (N, C, H*W) with long inner loops.
** strides[k] are nops arrays of nd entries; returns the new nd. */
static int coalesce(int nd, int64_t *shape, int nops, int64_t **strides) {
  int out = 0;
  for (int i = 0; i < nd; i++) {
    if (shape[i] == 1) continue;
    if (out > 0) {
      int ok = 1;
      for (int k = 0; k < nops && ok; k++) {
        int64_t prev = strides[k][out - 1], cur = strides[k][i];
        ok = (prev == 0 && cur == 0) || (cur != 0 && prev == cur * shape[i]);
      }
      if (ok) {
        shape[out - 1] *= shape[i];
        for (int k = 0; k < nops; k++) strides[k][out - 1] = strides[k][i];
        continue;
      }
    }
    shape[out] = shape[i];
    for (int k = 0; k < nops; k++) strides[k][out] = strides[k][i];
    out++;
  }
  return out;
}

static Tensor *binary_forward(const char *fn, int op, Tensor *a, Tensor *b) {
  int64_t shape[T_MAXDIM], sa[T_MAXDIM], sb[T_MAXDIM];
  int nd = t_broadcast_shape(fn, a, b, shape);
  Tensor *out = t_new(nd, shape);
  const float *da = T_DATA(a), *db = T_DATA(b);
  float *dout = T_DATA(out);
  if (out->numel == 0) return out;
  if (t_same_shape(a, b)) {
    binary_inner(op, out->numel, da, 1, db, 1, dout);
    return out;
  }
  bcast_strides(a, nd, shape, sa);
  bcast_strides(b, nd, shape, sb);
  nd = coalesce(nd, shape, 2, (int64_t *[]){sa, sb});
  if (nd == 0) {
    binary_inner(op, 1, da, 1, db, 1, dout);
    return out;
  }
  int64_t inner = shape[nd - 1], outer = out->numel / inner;
  int64_t idx[T_MAXDIM] = {0};
  int64_t oa = 0, ob = 0;
  for (int64_t r = 0; r < outer; r++) {
    binary_inner(op, inner, da + oa, sa[nd - 1], db + ob, sb[nd - 1], dout + r * inner);
    for (int d = nd - 2; d >= 0; d--) { /* odometer over the outer dims */
      idx[d]++;
      oa += sa[d];
      ob += sb[d];
      if (idx[d] < shape[d]) break;
      oa -= sa[d] * shape[d];
      ob -= sb[d] * shape[d];
      idx[d] = 0;
    }
  }
  return out;
}

/* ------------------------------------------------------------ expand / sum_to */

static void sum_to_backward(Node *n, Tensor *gout, Tensor **gin, const int *needs) {
  Tensor *a = n->inputs[0];
  if (needs[0]) gin[0] = t_expand(gout, a->ndim, a->shape);
}

static void expand_backward(Node *n, Tensor *gout, Tensor **gin, const int *needs) {
  Tensor *a = n->inputs[0];
  if (needs[0]) gin[0] = t_sum_to(gout, a->ndim, a->shape);
}

static int can_broadcast_to(const Tensor *a, int nd, const int64_t *shape) {
  if (a->ndim > nd) return 0;
  for (int i = 0; i < a->ndim; i++) {
    int64_t s = a->shape[i], t = shape[nd - a->ndim + i];
    if (s != t && s != 1) return 0;
  }
  return 1;
}

// a (broadcastable to shape) -> shape
Tensor *t_expand(Tensor *a, int nd, const int64_t *shape) {
  char b1[160], b2[160];
  t_check_shape("expand", 2, nd, shape);
  if (!can_broadcast_to(a, nd, shape))
    t_argerror("expand", 2, "cannot expand shape %s to %s", t_shape_str(a, b1, sizeof b1),
               t_shape_str2(nd, shape, b2, sizeof b2));
  if (a->ndim == nd && !memcmp(a->shape, shape, (size_t)nd * sizeof *shape)) return t_retain(a);
  Tensor *out = t_new(nd, shape);
  int64_t sa[T_MAXDIM], so[T_MAXDIM], oshape[T_MAXDIM], idx[T_MAXDIM] = {0};
  memcpy(oshape, shape, (size_t)nd * sizeof *shape);
  bcast_strides(a, nd, shape, sa);
  bcast_strides(out, nd, shape, so);
  int cnd = coalesce(nd, oshape, 2, (int64_t *[]){sa, so});
  const float *pa = T_DATA(a);
  float *po = T_DATA(out);
  int64_t inner = cnd ? oshape[cnd - 1] : 1, outer = inner ? out->numel / inner : 0, off = 0;
  int64_t s_in = cnd ? sa[cnd - 1] : 0;
  for (int64_t r = 0; r < outer; r++, po += inner) {
    if (s_in == 0)
      for (int64_t j = 0; j < inner; j++) po[j] = pa[off];
    else memcpy(po, pa + off, (size_t)inner * sizeof *po);
    for (int d = cnd - 2; d >= 0; d--) {
      idx[d]++;
      off += sa[d];
      if (idx[d] < oshape[d]) break;
      off -= sa[d] * oshape[d];
      idx[d] = 0;
    }
  }
  ag_record(out, "expand", expand_backward, 1, &a);
  return out;
}

// a -> shape (a broadcast of shape): sums over the broadcast dims
T_HOT Tensor *t_sum_to(Tensor *a, int nd, const int64_t *shape) {
  char b1[160], b2[160];
  t_check_shape("sum_to", 2, nd, shape);
  Tensor target = {0};
  target.ndim = nd;
  memcpy(target.shape, shape, (size_t)nd * sizeof *shape);
  if (!can_broadcast_to(&target, a->ndim, a->shape))
    t_argerror("sum_to", 2, "shape %s does not broadcast to %s", t_shape_str2(nd, shape, b2, sizeof b2),
               t_shape_str(a, b1, sizeof b1));
  if (a->ndim == nd && !memcmp(a->shape, shape, (size_t)nd * sizeof *shape)) return t_retain(a);
  Tensor *out = t_zeros(nd, shape);
  int64_t so[T_MAXDIM], sa[T_MAXDIM], ishape[T_MAXDIM], idx[T_MAXDIM] = {0};
  int and = a->ndim;
  memcpy(ishape, a->shape, (size_t) and *sizeof *ishape);
  bcast_strides(out, and, a->shape, so);
  bcast_strides(a, and, a->shape, sa);
  and = coalesce(and, ishape, 2, (int64_t *[]){so, sa});
  const float *da = T_DATA(a);
  float *dout = T_DATA(out);
  int64_t inner = and? ishape[and-1] : 1, outer = inner ? a->numel / inner : 0;
  int64_t oo = 0, s_in = and? so[and-1] : 0;
  for (int64_t r = 0; r < outer; r++) {
    const float *pa = da + r * inner;
    if (s_in == 0) {
      dout[oo] += t_sum8(pa, inner);
    } else {
      float *po = dout + oo;
      for (int64_t j = 0; j < inner; j++) po[j] += pa[j];
    }
    for (int d = and-2; d >= 0; d--) {
      idx[d]++;
      oo += so[d];
      if (idx[d] < ishape[d]) break;
      oo -= so[d] * ishape[d];
      idx[d] = 0;
    }
  }
  ag_record(out, "sum_to", sum_to_backward, 1, &a);
  return out;
}

static Tensor *reduce_like(Tensor *g, Tensor *like) { return t_sum_to(g, like->ndim, like->shape); }

/* ------------------------------------------------------------ binary ops */

static void add_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  if (needs[0]) gin[0] = reduce_like(g, n->inputs[0]);
  if (needs[1]) gin[1] = reduce_like(g, n->inputs[1]);
}

Tensor *t_add(Tensor *a, Tensor *b) {
  Tensor *out = binary_forward("add", OP_ADD, a, b);
  ag_record(out, "add", add_backward, 2, (Tensor *[]){a, b});
  return out;
}

static void sub_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  if (needs[0]) gin[0] = reduce_like(g, n->inputs[0]);
  if (needs[1]) {
    int scope = t_scope_begin();
    gin[1] = reduce_like(t_temp(t_neg(g)), n->inputs[1]);
    t_scope_end(scope);
  }
}

Tensor *t_sub(Tensor *a, Tensor *b) {
  Tensor *out = binary_forward("sub", OP_SUB, a, b);
  ag_record(out, "sub", sub_backward, 2, (Tensor *[]){a, b});
  return out;
}

/* gin = sum_to(g * x, like) */
static Tensor *mul_reduce(Tensor *g, Tensor *x, Tensor *like) {
  int scope = t_scope_begin();
  Tensor *r = reduce_like(t_temp(t_mul(g, x)), like);
  t_scope_end(scope);
  return r;
}

static void mul_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  Tensor *a = n->inputs[0], *b = n->inputs[1];
  if (needs[0]) gin[0] = mul_reduce(g, b, a);
  if (needs[1]) gin[1] = mul_reduce(g, a, b);
}

Tensor *t_mul(Tensor *a, Tensor *b) {
  Tensor *out = binary_forward("mul", OP_MUL, a, b);
  ag_record(out, "mul", mul_backward, 2, (Tensor *[]){a, b});
  return out;
}

static void div_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  Tensor *a = n->inputs[0], *b = n->inputs[1];
  int scope = t_scope_begin();
  Tensor *gb = t_temp(t_div(g, b)); /* g / b */
  if (needs[0]) gin[0] = reduce_like(gb, a);
  if (needs[1]) /* -g a / b^2 = -(g / b) * (a / b) */
    gin[1] = reduce_like(t_temp(t_neg(t_temp(t_mul(gb, t_temp(t_div(a, b)))))), b);
  t_scope_end(scope);
}

Tensor *t_div(Tensor *a, Tensor *b) {
  Tensor *out = binary_forward("div", OP_DIV, a, b);
  ag_record(out, "div", div_backward, 2, (Tensor *[]){a, b});
  return out;
}

static void pow_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  Tensor *a = n->inputs[0], *b = n->inputs[1];
  int scope = t_scope_begin();
  if (needs[0]) { /* g * b * a^(b-1) */
    Tensor *p = t_temp(t_pow(a, t_temp(t_add_scalar(b, -1.0))));
    gin[0] = mul_reduce(g, t_temp(t_mul(p, b)), a);
  }
  if (needs[1]) /* g * a^b * log(a) */
    gin[1] = mul_reduce(g, t_temp(t_mul(t_temp(t_pow(a, b)), t_temp(t_log(a)))), b);
  t_scope_end(scope);
}

Tensor *t_pow(Tensor *a, Tensor *b) {
  Tensor *out = binary_forward("pow", OP_POW, a, b);
  ag_record(out, "pow", pow_backward, 2, (Tensor *[]){a, b});
  return out;
}

Tensor *t_compare(Tensor *a, Tensor *b, int op) {
  static const char *names[] = {"eq", "ne", "lt", "le", "gt", "ge"};
  static const int ops[] = {OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE};
  return binary_forward(names[op], ops[op], a, b); /* no gradient */
}

/* g where x > 0, else 0: relu's backward. Linear in g, so its own backward
** is itself; the mask is piecewise constant in x (zero gradient). */
static void mask_positive_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  if (needs[0]) gin[0] = t_relu_backward(g, n->inputs[1]);
}

Tensor *t_relu_backward(Tensor *g, Tensor *x) {
  Tensor *out = binary_forward("relu_backward", OP_MASK_GT0, g, x);
  ag_record(out, "relu_backward", mask_positive_backward, 2, (Tensor *[]){g, x});
  return out;
}

/* ------------------------------------------------------------ unary ops */

enum {
  U_ADDS,
  U_MULS,
  U_POWS,
  U_RSUBS,
  U_RDIVS,
  U_NEG,
  U_EXP,
  U_LOG,
  U_SQRT,
  U_ABS,
  U_SIGN,
  U_RELU,
  U_SIGMOID,
  U_TANH
};

/* y = op(x), elementwise */
T_HOT static void unary_kernel(int op, int64_t n, const float *x, float *y, double s) {
  float f = (float)s;
  switch (op) {
    case U_ADDS:
      for (int64_t i = 0; i < n; i++) y[i] = x[i] + f;
      break;
    case U_MULS:
      for (int64_t i = 0; i < n; i++) y[i] = x[i] * f;
      break;
    case U_POWS:
      if (s == 2.0)
        for (int64_t i = 0; i < n; i++) y[i] = x[i] * x[i];
      else if (s == 1.0) memcpy(y, x, (size_t)n * sizeof *y);
      else if (s == -1.0)
        for (int64_t i = 0; i < n; i++) y[i] = 1.0f / x[i];
      else if (s == 0.5)
        for (int64_t i = 0; i < n; i++) y[i] = sqrtf(x[i]);
      else
        for (int64_t i = 0; i < n; i++) y[i] = powf(x[i], f);
      break;
    case U_RSUBS:
      for (int64_t i = 0; i < n; i++) y[i] = f - x[i];
      break;
    case U_RDIVS:
      for (int64_t i = 0; i < n; i++) y[i] = f / x[i];
      break;
    case U_NEG:
      for (int64_t i = 0; i < n; i++) y[i] = -x[i];
      break;
    case U_EXP:
      for (int64_t i = 0; i < n; i++) y[i] = expf(x[i]);
      break;
    case U_LOG:
      for (int64_t i = 0; i < n; i++) y[i] = logf(x[i]);
      break;
    case U_SQRT:
      for (int64_t i = 0; i < n; i++) y[i] = sqrtf(x[i]);
      break;
    case U_ABS:
      for (int64_t i = 0; i < n; i++) y[i] = fabsf(x[i]);
      break;
    case U_SIGN:
      for (int64_t i = 0; i < n; i++) y[i] = (float)((x[i] > 0) - (x[i] < 0));
      break;
    case U_RELU:
      for (int64_t i = 0; i < n; i++) y[i] = x[i] < 0 ? 0.0f : x[i];
      break; /* NaN stays NaN */
    case U_SIGMOID:
      for (int64_t i = 0; i < n; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
      break;
    case U_TANH:
      for (int64_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
      break;
  }
}

static Tensor *unary_forward(int op, Tensor *a, double s) {
  Tensor *out = t_new(a->ndim, a->shape);
  unary_kernel(op, a->numel, T_DATA(a), T_DATA(out), s);
  return out;
}

#define RECORD1(out, name, bw, a) ag_record(out, name, bw, 1, (Tensor *[]){a})

static void identity_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  (void)n;
  if (needs[0]) gin[0] = t_retain(g);
}

Tensor *t_add_scalar(Tensor *a, double s) {
  Tensor *out = unary_forward(U_ADDS, a, s);
  RECORD1(out, "add_scalar", identity_backward, a);
  return out;
}

static void mul_scalar_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  if (needs[0]) gin[0] = t_mul_scalar(g, n->scalars[0]);
}

Tensor *t_mul_scalar(Tensor *a, double s) {
  Tensor *out = unary_forward(U_MULS, a, s);
  Node *n = RECORD1(out, "mul_scalar", mul_scalar_backward, a);
  if (n) n->scalars[0] = s;
  return out;
}

/* a - b s: d/da = g, d/db = g (-s), which is (-g) s bit for bit, as sub then mul_scalar give it */
static void sub_scaled_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  if (needs[0]) gin[0] = t_retain(g);
  if (needs[1]) gin[1] = t_mul_scalar(g, -n->scalars[0]);
}

T_HOT static void sub_scaled_kernel(int64_t n, const float *a, const float *b, float f, float *y) {
  for (int64_t i = 0; i < n; i++) y[i] = a[i] - b[i] * f; /* (no contraction in ISO C: a - (b f)) */
}

// a, b of one shape -> a - b * s in one pass and one node: an SGD step, with the bits of a - (b * s)
Tensor *t_sub_scaled(Tensor *a, Tensor *b, double s) {
  char b1[160], b2[160];
  if (!t_same_shape(a, b))
    t_argerror("sub_scaled", 2, "expected the shape of argument 1, %s, got %s", t_shape_str(a, b1, sizeof b1),
               t_shape_str(b, b2, sizeof b2));
  Tensor *out = t_new(a->ndim, a->shape);
  sub_scaled_kernel(a->numel, T_DATA(a), T_DATA(b), (float)s, T_DATA(out));
  Node *n = ag_record(out, "sub_scaled", sub_scaled_backward, 2, (Tensor *[]){a, b});
  if (n) n->scalars[0] = s;
  return out;
}

static void pow_scalar_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  if (!needs[0]) return;
  double p = n->scalars[0];
  if (p == 1.0) {
    gin[0] = t_retain(g);
    return;
  }
  if (p == 0.0) { /* x^0 is constant: 0 * x^-1 would give NaN at x = 0 */
    gin[0] = t_zeros_like(g);
    return;
  }
  int scope = t_scope_begin();
  Tensor *d = p == 2.0 ? t_mul_scalar(n->inputs[0], 2.0)
                       : t_mul_scalar(t_temp(t_pow_scalar(n->inputs[0], p - 1.0)), p); /* p * a^(p-1) */
  gin[0] = t_mul(g, t_temp(d));
  t_scope_end(scope);
}

Tensor *t_pow_scalar(Tensor *a, double p) {
  Tensor *out = unary_forward(U_POWS, a, p);
  Node *n = RECORD1(out, "pow_scalar", pow_scalar_backward, a);
  if (n) n->scalars[0] = p;
  return out;
}

static void neg_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  (void)n;
  if (needs[0]) gin[0] = t_neg(g);
}

Tensor *t_rsub_scalar(Tensor *a, double s) {
  Tensor *out = unary_forward(U_RSUBS, a, s);
  RECORD1(out, "rsub_scalar", neg_backward, a);
  return out;
}

static void rdiv_scalar_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  if (!needs[0]) return; /* d(s/a) = -s / a^2 */
  int scope = t_scope_begin();
  Tensor *q = t_temp(t_pow_scalar(n->inputs[0], -2.0)), *d = t_temp(t_mul_scalar(q, -n->scalars[0]));
  gin[0] = t_mul(g, d);
  t_scope_end(scope);
}

Tensor *t_rdiv_scalar(Tensor *a, double s) {
  Tensor *out = unary_forward(U_RDIVS, a, s);
  Node *n = RECORD1(out, "rdiv_scalar", rdiv_scalar_backward, a);
  if (n) n->scalars[0] = s;
  return out;
}

Tensor *t_neg(Tensor *a) {
  Tensor *out = unary_forward(U_NEG, a, 0);
  RECORD1(out, "neg", neg_backward, a);
  return out;
}

static void exp_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  if (!needs[0]) return;
  int scope = t_scope_begin();
  gin[0] = t_mul(g, t_temp(t_exp(n->inputs[0]))); /* recomputed: saving the output would be a cycle */
  t_scope_end(scope);
}

Tensor *t_exp(Tensor *a) {
  Tensor *out = unary_forward(U_EXP, a, 0);
  RECORD1(out, "exp", exp_backward, a);
  return out;
}

static void log_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  if (needs[0]) gin[0] = t_div(g, n->inputs[0]);
}

Tensor *t_log(Tensor *a) {
  Tensor *out = unary_forward(U_LOG, a, 0);
  RECORD1(out, "log", log_backward, a);
  return out;
}

static void sqrt_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  if (!needs[0]) return; /* g * 0.5 / sqrt(a) */
  int scope = t_scope_begin();
  gin[0] = t_mul(g, t_temp(t_rdiv_scalar(t_temp(t_sqrt(n->inputs[0])), 0.5)));
  t_scope_end(scope);
}

Tensor *t_sqrt(Tensor *a) {
  Tensor *out = unary_forward(U_SQRT, a, 0);
  RECORD1(out, "sqrt", sqrt_backward, a);
  return out;
}

static void abs_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  if (!needs[0]) return;
  int scope = t_scope_begin();
  gin[0] = t_mul(g, t_temp(t_sign(n->inputs[0])));
  t_scope_end(scope);
}

Tensor *t_abs(Tensor *a) {
  Tensor *out = unary_forward(U_ABS, a, 0);
  RECORD1(out, "abs", abs_backward, a);
  return out;
}

Tensor *t_sign(Tensor *a) { return unary_forward(U_SIGN, a, 0); }

static void relu_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  if (needs[0]) gin[0] = t_relu_backward(g, n->inputs[0]);
}

Tensor *t_relu(Tensor *a) {
  Tensor *out = unary_forward(U_RELU, a, 0);
  RECORD1(out, "relu", relu_backward, a);
  return out;
}

static void sigmoid_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  if (!needs[0]) return; /* g * s * (1 - s) */
  int scope = t_scope_begin();
  Tensor *s = t_temp(t_sigmoid(n->inputs[0])), *one_minus = t_temp(t_rsub_scalar(s, 1.0));
  gin[0] = t_mul(g, t_temp(t_mul(s, one_minus)));
  t_scope_end(scope);
}

Tensor *t_sigmoid(Tensor *a) {
  Tensor *out = unary_forward(U_SIGMOID, a, 0);
  RECORD1(out, "sigmoid", sigmoid_backward, a);
  return out;
}

static void tanh_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  if (!needs[0]) return; /* g * (1 - tanh^2) */
  int scope = t_scope_begin();
  Tensor *t2 = t_temp(t_pow_scalar(t_temp(t_tanh(n->inputs[0])), 2.0));
  gin[0] = t_mul(g, t_temp(t_rsub_scalar(t2, 1.0)));
  t_scope_end(scope);
}

Tensor *t_tanh(Tensor *a) {
  Tensor *out = unary_forward(U_TANH, a, 0);
  RECORD1(out, "tanh", tanh_backward, a);
  return out;
}
