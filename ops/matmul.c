/*
** matmul.c: (batched) matrix product on OpenBLAS sgemm.
** a (..., n, k) @ b (..., k, m) -> (..., n, m); batch dims equal, or one
** side 2-d (shared by every batch entry); 1-d operands are vectors.
*/
#include <cblas.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "elementwise.h"
#include "matmul.h"
#include "shape.h"
#include "tensor.h"

static _Atomic int64_t flops_done;

int64_t t_flops(void) { return flops_done; }

void t_count_flops(int64_t n) { flops_done += n; }

/* ------------------------------------------------------------ GEMM shape log */

/* MAMLRUN_GEMM_LOG=FILE: every distinct (site, transposes, M, N, K, beta) that t_sgemm is called
** with, and how many times, appended to FILE when the process exits (docs/gemm_libraries.md).
** Off by default: then each GEMM costs one relaxed load and a branch, and the ops name no site. */
typedef struct {
  char site[120];
  int ta, tb, m, n, k, beta;
  int64_t calls;
} GemmShape;

static atomic_int gemm_log_state = -1; /* -1: not read yet, 0: off, 1: on */
static pthread_once_t gemm_log_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t gemm_log_lock = PTHREAD_MUTEX_INITIALIZER;
static GemmShape *gemm_shapes;
static size_t gemm_nshapes, gemm_cap;
static _Thread_local char gemm_site_name[120];

static void gemm_log_dump(void) {
  const char *path = getenv("MAMLRUN_GEMM_LOG");
  if (!path || !*path) return;
  FILE *f = fopen(path, "a");
  if (!f) { /* asked for and lost: say so */
    fprintf(stderr, "mamlrun: MAMLRUN_GEMM_LOG: cannot open '%s': %s (no sgemm shapes written)\n", path,
            strerror(errno));
    return;
  }
  pthread_mutex_lock(&gemm_log_lock);
  fprintf(f, "# calls ta tb M N K beta site (row-major C = op(A) op(B) + beta C; A MxK, B KxN)\n");
  for (size_t i = 0; i < gemm_nshapes; i++) {
    const GemmShape *s = &gemm_shapes[i];
    fprintf(f, "%lld %d %d %d %d %d %d %s\n", (long long)s->calls, s->ta, s->tb, s->m, s->n, s->k, s->beta,
            s->site[0] ? s->site : "-");
  }
  pthread_mutex_unlock(&gemm_log_lock);
  fclose(f);
}

static void gemm_log_init(void) {
  const char *path = getenv("MAMLRUN_GEMM_LOG");
  int on = path && *path;
  if (on && atexit(gemm_log_dump) != 0) on = 0;
  atomic_store(&gemm_log_state, on);
}

int t_gemm_log_on(void) {
  int s = atomic_load_explicit(&gemm_log_state, memory_order_relaxed);
  if (s < 0) {
    pthread_once(&gemm_log_once, gemm_log_init);
    s = atomic_load(&gemm_log_state);
  }
  return s;
}

void t_gemm_site(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(gemm_site_name, sizeof gemm_site_name, fmt, ap);
  va_end(ap);
}

static void gemm_log_record(int ta, int tb, int m, int n, int k, float beta) {
  int b = beta != 0.0f;
  pthread_mutex_lock(&gemm_log_lock);
  for (size_t i = 0; i < gemm_nshapes; i++) {
    GemmShape *s = &gemm_shapes[i];
    if (s->ta == ta && s->tb == tb && s->m == m && s->n == n && s->k == k && s->beta == b &&
        !strcmp(s->site, gemm_site_name)) {
      s->calls++;
      pthread_mutex_unlock(&gemm_log_lock);
      return;
    }
  }
  if (gemm_nshapes == gemm_cap) {
    size_t cap = gemm_cap ? 2 * gemm_cap : 64;
    GemmShape *p = realloc(gemm_shapes, cap * sizeof *p);
    if (!p) { /* out of memory: this shape goes unlogged */
      pthread_mutex_unlock(&gemm_log_lock);
      return;
    }
    gemm_shapes = p, gemm_cap = cap;
  }
  GemmShape *s = &gemm_shapes[gemm_nshapes++];
  memcpy(s->site, gemm_site_name, sizeof s->site);
  s->ta = ta, s->tb = tb, s->m = m, s->n = n, s->k = k, s->beta = b, s->calls = 1;
  pthread_mutex_unlock(&gemm_log_lock);
}

/* ------------------------------------------------------------ GEMM */

/* row-major sgemm that counts its 2*M*N*K FLOPs (for the benchmarks) */
void t_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
             int ldb, float beta, float *c, int ldc) {
  flops_done += 2 * (int64_t)m * n * k;
  if (atomic_load_explicit(&gemm_log_state, memory_order_relaxed) != 0 && t_gemm_log_on())
    gemm_log_record(trans_a, trans_b, m, n, k, beta);
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha,
              a, lda, b, ldb, beta, c, ldc);
}

static Tensor *matmul_at(Tensor *a, Tensor *b, const char *site);

static void matmul_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  Tensor *a = n->inputs[0], *b = n->inputs[1];
  int scope = t_scope_begin();
  if (needs[0]) { /* ga = g @ b^T, summed over broadcast batch dims */
    Tensor *bt = t_temp(t_transpose(b, b->ndim - 2, b->ndim - 1));
    gin[0] = t_sum_to(t_temp(matmul_at(g, bt, "matmul.grad_a")), a->ndim, a->shape);
  }
  if (needs[1]) { /* gb = a^T @ g */
    if (b->ndim == 2 && a->ndim > 2) { /* fold a's batch into rows */
      int64_t as[2] = {a->numel / a->shape[a->ndim - 1], a->shape[a->ndim - 1]};
      int64_t gs[2] = {g->numel / g->shape[g->ndim - 1], g->shape[g->ndim - 1]};
      Tensor *a2t = t_temp(t_transpose(t_temp(t_reshape(a, 2, as)), 0, 1));
      gin[1] = matmul_at(a2t, t_temp(t_reshape(g, 2, gs)), "matmul.grad_b");
    } else {
      Tensor *at = t_temp(t_transpose(a, a->ndim - 2, a->ndim - 1));
      gin[1] = t_sum_to(t_temp(matmul_at(at, g, "matmul.grad_b")), b->ndim, b->shape);
    }
  }
  t_scope_end(scope);
}

static Tensor *matmul_2d_plus(Tensor *a, Tensor *b, const char *site) {
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
  if (t_gemm_log_on()) t_gemm_site("%s %s @ %s", site, t_shape_str(a, b1, sizeof b1), t_shape_str(b, b2, sizeof b2));
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

Tensor *t_matmul(Tensor *a, Tensor *b) { return matmul_at(a, b, "matmul"); }

/* site: the op named in the GEMM shape log */
static Tensor *matmul_at(Tensor *a, Tensor *b, const char *site) {
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
    Tensor *p = t_temp(matmul_at(a2, b2, site));
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
  Tensor *out = matmul_2d_plus(a, b, site);
  ag_record(out, "matmul", matmul_backward, 2, (Tensor *[]){a, b});
  return out;
}
