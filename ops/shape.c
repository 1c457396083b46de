/*
** shape.c: reshape (a view), permute/transpose, narrow and its adjoint,
** cat. Each backward is another shape op.
*/
#include <stdlib.h>
#include <string.h>

#include "shape.h"
#include "tensor.h"

/* ------------------------------------------------------------ reshape */

static void reshape_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  Tensor *a = n->inputs[0];
  if (needs[0]) gin[0] = t_reshape(g, a->ndim, a->shape);
}

// a -> same data seen with shape (numel must match); shares storage
Tensor *t_reshape(Tensor *a, int nd, const int64_t *shape) {
  char b1[160], b2[160];
  t_check_shape("reshape", 2, nd, shape);
  int64_t numel = 1;
  for (int i = 0; i < nd; i++) numel *= shape[i];
  if (numel != a->numel)
    t_argerror("reshape", 2, "cannot reshape %s (%lld elements) to %s (%lld elements)", t_shape_str(a, b1, sizeof b1),
               (long long)a->numel, t_shape_str2(nd, shape, b2, sizeof b2), (long long)numel);
  Tensor *t = t_detach(a);
  t->ndim = nd;
  memcpy(t->shape, shape, (size_t)nd * sizeof *shape);
  ag_record(t, "reshape", reshape_backward, 1, &a);
  return t;
}

Tensor *t_contiguous_copy(Tensor *a) { /* a fresh copy (x:clone()) */
  Tensor *z = t_new(a->ndim, a->shape);
  memcpy(T_DATA(z), T_DATA(a), (size_t)a->numel * sizeof(float));
  Node *n = ag_record(z, "clone", reshape_backward, 1, &a);
  (void)n;
  return z;
}

/* ------------------------------------------------------------ permute */

static void permute_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  if (!needs[0]) return;
  int inv[T_MAXDIM];
  for (int i = 0; i < n->inputs[0]->ndim; i++) inv[n->ints[i]] = i;
  gin[0] = t_permute(g, inv);
}

// a -> out with out.shape[i] = a.shape[perm[i]] (a copy)
Tensor *t_permute(Tensor *a, const int *perm) {
  int nd = a->ndim, seen[T_MAXDIM] = {0};
  for (int i = 0; i < nd; i++) {
    if (perm[i] < 0 || perm[i] >= nd || seen[perm[i]]) t_argerror("permute", 2, "expected a permutation of 1..%d", nd);
    seen[perm[i]] = 1;
  }
  int64_t shape[T_MAXDIM] = {0}, astride[T_MAXDIM], ostride[T_MAXDIM];
  for (int i = 0; i < nd; i++) shape[i] = a->shape[perm[i]];
  Tensor *out = t_new(nd, shape);
  int64_t s = 1;
  for (int i = nd - 1; i >= 0; i--) {
    astride[i] = s;
    s *= a->shape[i];
  }
  for (int i = 0; i < nd; i++) ostride[i] = astride[perm[i]]; /* a's stride for out's dim i */
  const float *x = T_DATA(a);
  float *y = T_DATA(out);
  if (out->numel > 0) {
    int64_t idx[T_MAXDIM] = {0}, off = 0;
    int64_t inner = nd ? shape[nd - 1] : 1, is = nd ? ostride[nd - 1] : 1;
    for (int64_t r = 0; r < out->numel / inner; r++) {
      for (int64_t j = 0; j < inner; j++) y[r * inner + j] = x[off + j * is];
      for (int d = nd - 2; d >= 0; d--) {
        idx[d]++;
        off += ostride[d];
        if (idx[d] < shape[d]) break;
        off -= ostride[d] * shape[d];
        idx[d] = 0;
      }
    }
  }
  Node *n = ag_record(out, "permute", permute_backward, 1, &a);
  if (n)
    for (int i = 0; i < nd; i++) n->ints[i] = perm[i];
  return out;
}

Tensor *t_transpose(Tensor *a, int d0, int d1) {
  if (d0 < 0 || d0 >= a->ndim) t_argerror("transpose", 2, "dim %d out of range for a %d-d tensor", d0 + 1, a->ndim);
  if (d1 < 0 || d1 >= a->ndim) t_argerror("transpose", 3, "dim %d out of range for a %d-d tensor", d1 + 1, a->ndim);
  int perm[T_MAXDIM];
  for (int i = 0; i < a->ndim; i++) perm[i] = i;
  perm[d0] = d1;
  perm[d1] = d0;
  return t_permute(a, perm);
}

/* ------------------------------------------------------------ narrow */

/* copy a (outer, len, inner) block between tensors of dim sizes src_r/dst_r */
static void copy_slab(const float *src, int64_t src_r, int64_t src_start, float *dst, int64_t dst_r, int64_t dst_start,
                      int64_t outer, int64_t len, int64_t inner) {
  for (int64_t o = 0; o < outer; o++)
    memcpy(dst + (o * dst_r + dst_start) * inner, src + (o * src_r + src_start) * inner,
           (size_t)(len * inner) * sizeof(float));
}

static void outer_inner(const Tensor *a, int dim, int64_t *outer, int64_t *inner) {
  *outer = 1;
  *inner = 1;
  for (int i = 0; i < dim; i++) *outer *= a->shape[i];
  for (int i = dim + 1; i < a->ndim; i++) *inner *= a->shape[i];
}

static void narrow_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  if (needs[0]) gin[0] = t_pad_narrow(g, (int)n->ints[0], n->ints[1], n->inputs[0]->shape[n->ints[0]]);
}

// a -> a[..., start:start+len, ...] along dim (0-based start)
Tensor *t_narrow(Tensor *a, int dim, int64_t start, int64_t len) {
  if (dim < 0 || dim >= a->ndim) t_argerror("narrow", 1, "dim %d out of range for a %d-d tensor", dim + 1, a->ndim);
  if (start < 0 || len < 0 || start > a->shape[dim] - len)
    t_argerror("narrow", 3, "start %lld (0-based), length %lld: outside the %lld elements of dim %d", (long long)start,
               (long long)len, (long long)a->shape[dim], dim + 1); /* (start + len may overflow) */
  int64_t shape[T_MAXDIM], outer, inner;
  memcpy(shape, a->shape, sizeof shape);
  shape[dim] = len;
  outer_inner(a, dim, &outer, &inner);
  Tensor *out = t_new(a->ndim, shape);
  copy_slab(T_DATA(a), a->shape[dim], start, T_DATA(out), len, 0, outer, len, inner);
  Node *n = ag_record(out, "narrow", narrow_backward, 1, &a);
  if (n) {
    n->ints[0] = dim;
    n->ints[1] = start;
  }
  return out;
}

static void pad_narrow_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  if (needs[0]) gin[0] = t_narrow(g, (int)n->ints[0], n->ints[1], n->inputs[0]->shape[n->ints[0]]);
}

// g -> zeros with dim of size full, g placed at start (narrow's adjoint)
Tensor *t_pad_narrow(Tensor *g, int dim, int64_t start, int64_t full) {
  if (dim < 0 || dim >= g->ndim || start < 0 || start + g->shape[dim] > full) t_argerror("pad_narrow", 2, "bad slice");
  int64_t shape[T_MAXDIM], outer, inner;
  memcpy(shape, g->shape, sizeof shape);
  shape[dim] = full;
  outer_inner(g, dim, &outer, &inner);
  Tensor *out = t_zeros(g->ndim, shape);
  copy_slab(T_DATA(g), g->shape[dim], 0, T_DATA(out), full, start, outer, g->shape[dim], inner);
  Node *n = ag_record(out, "pad_narrow", pad_narrow_backward, 1, &g);
  if (n) {
    n->ints[0] = dim;
    n->ints[1] = start;
  }
  return out;
}

/* ------------------------------------------------------------ cat */

static void cat_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  int dim = (int)n->ints[0];
  int64_t start = 0;
  for (int i = 0; i < n->ninputs; i++) {
    int64_t len = n->inputs[i]->shape[dim];
    if (needs[i]) gin[i] = t_narrow(g, dim, start, len);
    start += len;
  }
}

// ts[0..n) -> one tensor, joined along dim (other dims must match)
Tensor *t_cat(int n, Tensor **ts, int dim) {
  char b1[160], b2[160];
  if (n < 1) t_argerror("cat", 1, "expected a non-empty list of tensors");
  Tensor *f = ts[0];
  if (dim < 0 || dim >= f->ndim) t_argerror("cat", 2, "dim %d out of range for %d-d tensors", dim + 1, f->ndim);
  int64_t shape[T_MAXDIM];
  memcpy(shape, f->shape, sizeof shape);
  shape[dim] = 0;
  for (int i = 0; i < n; i++) {
    Tensor *t = ts[i];
    int ok = t->ndim == f->ndim;
    for (int d = 0; ok && d < f->ndim; d++) ok = d == dim || t->shape[d] == f->shape[d];
    if (!ok)
      t_argerror("cat", 1, "tensor %d has shape %s, incompatible with %s along dim %d", i + 1,
                 t_shape_str(t, b1, sizeof b1), t_shape_str(f, b2, sizeof b2), dim + 1);
    shape[dim] += t->shape[dim];
  }
  Tensor *out = t_new(f->ndim, shape);
  int64_t outer, inner, start = 0;
  outer_inner(f, dim, &outer, &inner);
  for (int i = 0; i < n; i++) {
    copy_slab(T_DATA(ts[i]), ts[i]->shape[dim], 0, T_DATA(out), shape[dim], start, outer, ts[i]->shape[dim], inner);
    start += ts[i]->shape[dim];
  }
  Node *node = ag_record(out, "cat", cat_backward, n, ts);
  if (node) node->ints[0] = dim;
  return out;
}
