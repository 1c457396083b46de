/*
** matmul.c: (batched) matrix product on OpenBLAS sgemm.
** a (..., n, k) @ b (..., k, m) -> (..., n, m); batch dims equal, or one
** side 2-d (shared by every batch entry); 1-d operands are vectors.
*/
#include <cblas.h>
#include <stdatomic.h>
#include <string.h>

#include "elementwise.h"
#include "matmul.h"
#include "shape.h"
#include "tensor.h"

static _Atomic int64_t flops_done;

int64_t t_flops(void) { return flops_done; }

/* row-major sgemm that counts its 2*M*N*K FLOPs (for the benchmarks) */
void t_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
             int ldb, float beta, float *c, int ldc) {
  flops_done += 2 * (int64_t)m * n * k;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha,
              a, lda, b, ldb, beta, c, ldc);
}

static void matmul_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  Tensor *a = n->inputs[0], *b = n->inputs[1];
  int scope = t_scope_begin();
  if (needs[0]) { /* ga = g @ b^T, summed over broadcast batch dims */
    Tensor *bt = t_temp(t_transpose(b, b->ndim - 2, b->ndim - 1));
    gin[0] = t_sum_to(t_temp(t_matmul(g, bt)), a->ndim, a->shape);
  }
  if (needs[1]) { /* gb = a^T @ g */
    if (b->ndim == 2 && a->ndim > 2) { /* fold a's batch into rows */
      int64_t as[2] = {a->numel / a->shape[a->ndim - 1], a->shape[a->ndim - 1]};
      int64_t gs[2] = {g->numel / g->shape[g->ndim - 1], g->shape[g->ndim - 1]};
      Tensor *a2t = t_temp(t_transpose(t_temp(t_reshape(a, 2, as)), 0, 1));
      gin[1] = t_matmul(a2t, t_temp(t_reshape(g, 2, gs)));
    } else {
      Tensor *at = t_temp(t_transpose(a, a->ndim - 2, a->ndim - 1));
      gin[1] = t_sum_to(t_temp(t_matmul(at, g)), b->ndim, b->shape);
    }
  }
  t_scope_end(scope);
}

static Tensor *matmul_2d_plus(Tensor *a, Tensor *b) {
  char b1[160], b2[160];
  int na = a->ndim, nb = b->ndim;
  int64_t n = a->shape[na - 2], k = a->shape[na - 1], m = b->shape[nb - 1];
  if (b->shape[nb - 2] != k)
    t_argerror("matmul", 2, "inner sizes differ: %s @ %s (%lld vs %lld)", t_shape_str(a, b1, sizeof b1),
               t_shape_str(b, b2, sizeof b2), (long long)k, (long long)b->shape[nb - 2]);
  int64_t shape[T_MAXDIM];
  int nd;
  int64_t batch = 1;
  if (na > 2 && nb > 2) {
    if (na != nb || memcmp(a->shape, b->shape, (size_t)(na - 2) * sizeof(int64_t)))
      t_argerror("matmul", 2, "batch dims differ: %s @ %s", t_shape_str(a, b1, sizeof b1),
                 t_shape_str(b, b2, sizeof b2));
  }
  Tensor *big = na >= nb ? a : b;
  nd = big->ndim;
  for (int i = 0; i < nd - 2; i++) {
    shape[i] = big->shape[i];
    batch *= shape[i];
  }
  shape[nd - 2] = n;
  shape[nd - 1] = m;
  Tensor *out = t_new(nd, shape);
  const float *pa = T_DATA(a), *pb = T_DATA(b);
  float *po = T_DATA(out);
  if (out->numel == 0) return out;
  if (k == 0) {
    memset(po, 0, (size_t)out->numel * sizeof *po);
  } else if (nb == 2) { /* every batch entry of a times the same b: one GEMM */
    t_sgemm(0, 0, (int)(batch * n), (int)m, (int)k, 1.0f, pa, (int)k, pb, (int)m, 0.0f, po, (int)m);
  } else {
    int64_t sa = na > 2 ? n * k : 0, sb = k * m;
    for (int64_t i = 0; i < batch; i++)
      t_sgemm(0, 0, (int)n, (int)m, (int)k, 1.0f, pa + i * sa, (int)k, pb + i * sb, (int)m, 0.0f, po + i * n * m,
              (int)m);
  }
  return out;
}

Tensor *t_matmul(Tensor *a, Tensor *b) {
  if (a->ndim == 0) t_argerror("matmul", 1, "expected a tensor with at least 1 dim, got a scalar");
  if (b->ndim == 0) t_argerror("matmul", 2, "expected a tensor with at least 1 dim, got a scalar");
  int64_t ka = a->shape[a->ndim - 1], kb = b->shape[b->ndim == 1 ? 0 : b->ndim - 2];
  if (ka != kb) {
    char b1[160], b2[160];
    t_argerror("matmul", 2, "inner sizes differ: %s @ %s (%lld vs %lld)", t_shape_str(a, b1, sizeof b1),
               t_shape_str(b, b2, sizeof b2), (long long)ka, (long long)kb);
  }
  if (a->ndim == 1 || b->ndim == 1) { /* vectors: promote, multiply, squeeze */
    int64_t as[T_MAXDIM], bs[T_MAXDIM];
    Tensor *a2 = a, *b2 = b;
    int scope = t_scope_begin();
    if (a->ndim == 1) {
      as[0] = 1;
      as[1] = a->shape[0];
      a2 = t_temp(t_reshape(a, 2, as));
    }
    if (b->ndim == 1) {
      bs[0] = b->shape[0];
      bs[1] = 1;
      b2 = t_temp(t_reshape(b, 2, bs));
    }
    Tensor *p = t_temp(t_matmul(a2, b2));
    int64_t shape[T_MAXDIM];
    int nd = 0;
    for (int i = 0; i < p->ndim; i++) {
      if (i == p->ndim - 2 && a->ndim == 1) continue;
      if (i == p->ndim - 1 && b->ndim == 1) continue;
      shape[nd++] = p->shape[i];
    }
    Tensor *r = t_reshape(p, nd, shape);
    t_scope_end(scope);
    return r;
  }
  Tensor *out = matmul_2d_plus(a, b);
  ag_record(out, "matmul", matmul_backward, 2, (Tensor *[]){a, b});
  return out;
}
