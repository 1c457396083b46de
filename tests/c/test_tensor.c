/*
** test_tensor.c: the tensor core in C: reference counts and views, memory
** accounting, the broadcasting kernel and sum_to/expand against naive loops,
** reductions and shape ops against naive loops, the autograd engine on
** hand-built graphs (custom nodes that record their calls), deep chains of
** 100k nodes released and differentiated on a small stack, argument errors.
** Prints TAP lines; exits non-zero if any test fails.
*/
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "elementwise.h"
#include "loss.h"
#include "matmul.h"
#include "reduce.h"
#include "shape.h"
#include "tap.h"
#include "tensor.h"


/* ------------------------------------------------------------ helpers */

static Generator gen;

static int irand(int lo, int hi) { return lo + (int)gen_below(&gen, (uint32_t)(hi - lo + 1)); }

static Tensor *randn_shape(int nd, const int64_t *shape) {
  Tensor *t = t_new(nd, shape);
  for (int64_t i = 0; i < t->numel; i++) T_DATA(t)[i] = (float)gen_normal(&gen);
  return t;
}

static Tensor *vec(int n, const float *v) {
  int64_t s = n;
  Tensor *t = t_new(1, &s);
  memcpy(T_DATA(t), v, (size_t)n * sizeof *v);
  return t;
}

static Tensor *leaf(Tensor *t) {
  t->requires_grad = 1;
  return t;
}

static int bitwise_equal(const Tensor *a, const Tensor *b) {
  return t_same_shape(a, b) && !memcmp(T_DATA(a), T_DATA(b), (size_t)a->numel * sizeof(float));
}

static double max_abs_diff(const Tensor *a, const double *want) {
  double worst = 0;
  for (int64_t i = 0; i < a->numel; i++) {
    double e = fabs(T_DATA(a)[i] - want[i]);
    worst = worse(worst, e);
  }
  return worst;
}

/* the flat offset in a tensor of shape (nd, shape) of the broadcast index idx
** of an ndo-dim output (size-1 dims of the input stay at 0) */
static int64_t bcast_offset(int nd, const int64_t *shape, int ndo, const int64_t *idx) {
  int64_t off = 0;
  for (int i = 0; i < nd; i++) {
    int64_t k = idx[ndo - nd + i];
    off = off * shape[i] + (shape[i] == 1 ? 0 : k);
  }
  return off;
}

/* next index of an odometer over shape; 0 when it wraps */
static int next_index(int nd, const int64_t *shape, int64_t *idx) {
  for (int d = nd - 1; d >= 0; d--) {
    if (++idx[d] < shape[d]) return 1;
    idx[d] = 0;
  }
  return 0;
}

/* ------------------------------------------------------------ errors */

static jmp_buf on_error;
static char last_error[512];

static void catch_error(const char *msg) {
  snprintf(last_error, sizeof last_error, "%s", msg);
  longjmp(on_error, 1);
}

/* run STMT expecting t_error with a message containing WANT */
#define EXPECT_ERROR(STMT, WANT)                                                                          \
  do {                                                                                                    \
    last_error[0] = 0;                                                                                    \
    if (!setjmp(on_error)) {                                                                              \
      STMT;                                                                                               \
      ok(0, "expected an error containing \"%s\" from %s", WANT, #STMT);                                  \
    } else {                                                                                              \
      ok(strstr(last_error, WANT) != NULL, "%s fails with \"%s\" (got \"%s\")", #STMT, WANT, last_error); \
    }                                                                                                     \
  } while (0)

/* ------------------------------------------------------------ life cycle */

static void test_refcounts_and_views(void) {
  int64_t live = t_live_bytes();
  Tensor *a = t_zeros(2, (int64_t[]){3, 4});
  ok(a->refcount == 1 && a->storage->refcount == 1 && a->numel == 12 && a->grad_fn == NULL && !a->requires_grad,
     "a new tensor holds one reference to its own storage");
  ok(t_live_bytes() == live + 48, "live bytes count the storage (%lld)", (long long)(t_live_bytes() - live));
  Tensor *v = t_reshape(a, 1, (int64_t[]){12});
  ok(v->storage == a->storage && a->storage->refcount == 2 && T_DATA(v) == T_DATA(a) && v->ndim == 1,
     "reshape is a view sharing the storage");
  ok(t_live_bytes() == live + 48, "a view allocates no storage");
  Tensor *n = t_narrow(a, 1, 1, 2);
  ok(n->storage != a->storage && n->shape[1] == 2, "narrow copies");
  Tensor *d = t_detach(v);
  ok(d->storage == a->storage && a->storage->refcount == 3 && d->refcount == 1, "detach shares the storage");
  ok(t_retain(a) == a && a->refcount == 2, "t_retain adds a reference");
  t_release(a);
  ok(a->refcount == 1, "t_release drops it");
  T_DATA(a)[5] = 7;
  t_release(a);
  ok(v->storage->refcount == 2 && T_DATA(v)[5] == 7 && T_DATA(d)[5] == 7,
     "views keep the storage alive after the base is released");
  t_release(v);
  t_release(d);
  t_release(n);
  t_release(NULL);
  ok(t_live_bytes() == live, "everything freed: live bytes back to the start");
  Tensor *s = t_scalar(2.5f);
  ok(s->ndim == 0 && s->numel == 1 && T_DATA(s)[0] == 2.5f, "t_scalar is a 0-d tensor");
  Tensor *e = t_zeros(2, (int64_t[]){0, 5});
  ok(e->numel == 0 && t_live_bytes() == live + 4 + 4, "an empty tensor holds one element's worth of storage");
  t_release(s);
  t_release(e);
  t_reset_peak_bytes();
  Tensor *big = t_new(1, (int64_t[]){1000});
  t_release(big);
  ok(t_peak_bytes() == live + 4000 && t_live_bytes() == live, "peak bytes remember the largest live total");
  s = t_new(1, (int64_t[]){3});
  ok(((uintptr_t)T_DATA(s) & 63) == 0, "data is 64-byte aligned");
  t_release(s);
}

/* a graph is freed when its output goes, and only then */
static void test_graph_lifetime(void) {
  int64_t live = t_live_bytes();
  Tensor *x = leaf(randn_shape(1, (int64_t[]){100}));
  Tensor *y = t_exp(x), *z = t_mul(y, x), *s = t_sum(z, 0, 0);
  t_release(y);
  t_release(z);
  ok(s->grad_fn && x->refcount >= 2, "the graph holds its inputs");
  t_release(s);
  ok(x->refcount == 1 && t_live_bytes() == live + 400, "releasing the output frees the graph (x stays)");
  t_release(x);
  ok(t_live_bytes() == live, "and x last");
}

/* ------------------------------------------------------------ broadcasting */

typedef Tensor *(*binop)(Tensor *, Tensor *);

static float ref_op(int op, float x, float y) {
  switch (op) {
    case 0: return x + y;
    case 1: return x - y;
    case 2: return x * y;
    case 3: return x / y;
    case 4: return powf(x, y);
    case 5: return (float)(x < y);
    default: return (float)(x == y);
  }
}

static Tensor *cmp_lt(Tensor *a, Tensor *b) { return t_compare(a, b, CMP_LT); }
static Tensor *cmp_eq(Tensor *a, Tensor *b) { return t_compare(a, b, CMP_EQ); }

static void test_broadcast_kernel(void) {
  static const binop ops[] = {t_add, t_sub, t_mul, t_div, t_pow, cmp_lt, cmp_eq};
  static const char *names[] = {"add", "sub", "mul", "div", "pow", "lt", "eq"};
  for (int op = 0; op < 7; op++) {
    int bad = 0, shapes = 0;
    for (int trial = 0; trial < 150; trial++) {
      /* an output shape, and each input a suffix of it with some dims set to 1 */
      int nd = irand(0, 4);
      int64_t out_shape[T_MAXDIM], sa[T_MAXDIM], sb[T_MAXDIM];
      for (int i = 0; i < nd; i++) out_shape[i] = irand(1, 4);
      int na = irand(0, nd), nb = irand(0, nd);
      if (irand(0, 1)) na = nd; /* at least one side is often full */
      else nb = nd;
      for (int i = 0; i < na; i++) sa[i] = irand(0, 2) ? out_shape[nd - na + i] : 1;
      for (int i = 0; i < nb; i++) sb[i] = irand(0, 2) ? out_shape[nd - nb + i] : 1;
      Tensor *a = randn_shape(na, sa), *b = randn_shape(nb, sb);
      if (op == 4)
        for (int64_t i = 0; i < a->numel; i++) T_DATA(a)[i] = fabsf(T_DATA(a)[i]) + 0.1f;
      if (op == 6)
        for (int64_t i = 0; i < b->numel; i++) /* some equal values */
          if (i % 2 == 0 && a->numel) T_DATA(b)[i] = T_DATA(a)[i % a->numel];
      Tensor *c = ops[op](a, b);
      /* the broadcast shape of (na, sa) and (nb, sb) */
      int ndc = na > nb ? na : nb;
      int64_t want_shape[T_MAXDIM];
      for (int i = 0; i < ndc; i++) {
        int ia = na - ndc + i, ib = nb - ndc + i;
        int64_t x = ia >= 0 ? sa[ia] : 1, y = ib >= 0 ? sb[ib] : 1;
        want_shape[i] = x == 1 ? y : x;
      }
      int shape_ok = c->ndim == ndc && !memcmp(c->shape, want_shape, (size_t)ndc * sizeof(int64_t));
      if (!shape_ok) {
        bad++;
      } else if (c->numel > 0) {
        int64_t idx[T_MAXDIM] = {0}, k = 0;
        do {
          float want = ref_op(op, T_DATA(a)[bcast_offset(na, sa, ndc, idx)], T_DATA(b)[bcast_offset(nb, sb, ndc, idx)]);
          float got = T_DATA(c)[k++];
          if (memcmp(&want, &got, sizeof want) && !(isnan(want) && isnan(got))) bad++;
        } while (next_index(ndc, c->shape, idx));
      }
      shapes++;
      t_release(a);
      t_release(b);
      t_release(c);
    }
    ok(bad == 0, "%s with broadcasting is bitwise equal to a naive loop on %d shape pairs", names[op], shapes);
  }
}

static void test_sum_to_expand(void) {
  int bad_sum = 0, bad_expand = 0, bad_adjoint = 0, trials = 0;
  for (int trial = 0; trial < 200; trial++) {
    int nd = irand(0, 4);
    int64_t big[T_MAXDIM], small[T_MAXDIM];
    for (int i = 0; i < nd; i++) big[i] = irand(1, 4);
    int ns = irand(0, nd);
    for (int i = 0; i < ns; i++) small[i] = irand(0, 1) ? big[nd - ns + i] : 1;
    Tensor *g = randn_shape(nd, big), *a = randn_shape(ns, small);
    Tensor *s = t_sum_to(g, ns, small), *e = t_expand(a, nd, big);
    /* naive: accumulate every element of g into its broadcast source */
    double *want = calloc((size_t)(a->numel ? a->numel : 1), sizeof *want);
    int64_t idx[T_MAXDIM] = {0}, k = 0;
    if (g->numel > 0) do {
        int64_t src = bcast_offset(ns, small, nd, idx);
        want[src] += T_DATA(g)[k];
        if (T_DATA(e)[k] != T_DATA(a)[src]) bad_expand++;
        k++;
      } while (next_index(nd, big, idx));
    if (!t_same_shape(s, a) || max_abs_diff(s, want) > 1e-5) bad_sum++;
    if (!t_same_shape(e, g)) bad_expand++;
    /* <expand(a), g> = <a, sum_to(g)>: each is the other's adjoint */
    double l = 0, r = 0;
    for (int64_t i = 0; i < g->numel; i++) l += (double)T_DATA(e)[i] * T_DATA(g)[i];
    for (int64_t i = 0; i < a->numel; i++) r += (double)T_DATA(a)[i] * T_DATA(s)[i];
    if (fabs(l - r) > 1e-4 * (1 + fabs(l))) bad_adjoint++;
    free(want);
    t_release(g), t_release(a), t_release(s), t_release(e);
    trials++;
  }
  ok(bad_sum == 0, "sum_to matches a naive accumulation on %d shapes", trials);
  ok(bad_expand == 0, "expand matches a naive broadcast on %d shapes", trials);
  ok(bad_adjoint == 0, "expand and sum_to are adjoint on %d shapes", trials);
  Tensor *a = randn_shape(2, (int64_t[]){2, 3});
  Tensor *same = t_sum_to(a, 2, a->shape), *same2 = t_expand(a, 2, a->shape);
  ok(same == a && same2 == a && a->refcount == 3, "sum_to and expand to the same shape return the tensor itself");
  t_release(same), t_release(same2), t_release(a);
}

/* ------------------------------------------------------------ reductions, shape ops */

static void test_reductions(void) {
  int64_t shape[3] = {3, 4, 5};
  Tensor *x = randn_shape(3, shape);
  int bad = 0;
  for (uint32_t mask = 1; mask < 8; mask++) {
    for (int keep = 0; keep <= 1; keep++) {
      Tensor *s = t_sum(x, mask, keep), *m = t_mean(x, mask, keep), *v = t_var(x, mask, keep, 1);
      /* naive, in double, over the kept index */
      int64_t kshape[3], count = 1;
      for (int i = 0; i < 3; i++) {
        kshape[i] = mask & (1u << i) ? 1 : shape[i];
        if (mask & (1u << i)) count *= shape[i];
      }
      int64_t nkept = 60 / count;
      double *sum = calloc((size_t)nkept, sizeof *sum), *sq = calloc((size_t)nkept, sizeof *sq);
      int64_t idx[3] = {0, 0, 0}, k = 0;
      do {
        sum[bcast_offset(3, kshape, 3, idx)] += T_DATA(x)[k++];
      } while (next_index(3, shape, idx));
      k = 0;
      do {
        int64_t o = bcast_offset(3, kshape, 3, idx);
        double d = T_DATA(x)[k++] - sum[o] / count;
        sq[o] += d * d;
      } while (next_index(3, shape, idx));
      if (s->numel != nkept || m->numel != nkept || v->numel != nkept) bad++;
      if (s->ndim != (keep ? 3 : 3 - __builtin_popcount(mask))) bad++;
      for (int64_t i = 0; i < nkept && s->numel == nkept; i++) {
        if (fabs(T_DATA(s)[i] - sum[i]) > 1e-4) bad++;
        if (fabs(T_DATA(m)[i] - sum[i] / count) > 1e-5) bad++;
        if (fabs(T_DATA(v)[i] - sq[i] / (count - 1)) > 1e-4 * (1 + sq[i])) bad++;
      }
      free(sum), free(sq);
      t_release(s), t_release(m), t_release(v);
    }
  }
  ok(bad == 0, "sum, mean and var over every set of dims, keepdim or not, match naive loops");
  /* max / argmax along each dim */
  bad = 0;
  for (int dim = 0; dim < 3; dim++) {
    Tensor *mx = t_max(x, dim, 0), *am = t_argmax(x, dim, 1);
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < dim; i++) outer *= shape[i];
    for (int i = dim + 1; i < 3; i++) inner *= shape[i];
    for (int64_t o = 0; o < outer; o++)
      for (int64_t i = 0; i < inner; i++) {
        float best = -INFINITY;
        int64_t bi = 0;
        for (int64_t r = 0; r < shape[dim]; r++) {
          float v = T_DATA(x)[(o * shape[dim] + r) * inner + i];
          if (v > best) best = v, bi = r;
        }
        if (T_DATA(mx)[o * inner + i] != best || T_DATA(am)[o * inner + i] != (float)(bi + 1)) bad++;
      }
    if (mx->ndim != 2 || am->ndim != 3 || am->shape[dim] != 1) bad++;
    t_release(mx), t_release(am);
  }
  ok(bad == 0, "max and argmax (1-based) along each dim match naive loops");
  t_release(x);
}

static void test_shape_ops(void) {
  int bad = 0;
  for (int trial = 0; trial < 100; trial++) {
    int nd = irand(1, 5);
    int64_t shape[T_MAXDIM];
    for (int i = 0; i < nd; i++) shape[i] = irand(1, 4);
    int perm[T_MAXDIM];
    for (int i = 0; i < nd; i++) perm[i] = i;
    for (int i = nd - 1; i > 0; i--) {
      int j = irand(0, i), t = perm[i];
      perm[i] = perm[j], perm[j] = t;
    }
    Tensor *x = randn_shape(nd, shape), *p = t_permute(x, perm);
    int64_t idx[T_MAXDIM] = {0}, pidx[T_MAXDIM], k = 0;
    do { /* p[i0, i1, ...] = x[index with idx[perm[j]] = i_j] */
      for (int j = 0; j < nd; j++) pidx[j] = idx[perm[j]];
      int64_t off = 0;
      for (int j = 0; j < nd; j++) off = off * p->shape[j] + pidx[j];
      if (T_DATA(p)[off] != T_DATA(x)[k++]) bad++;
    } while (next_index(nd, shape, idx));
    /* narrow + pad_narrow put the slice back in place, zeros elsewhere */
    int dim = irand(0, nd - 1);
    int64_t start = irand(0, (int)shape[dim] - 1), len = irand(0, (int)(shape[dim] - start));
    Tensor *n = t_narrow(x, dim, start, len), *back = t_pad_narrow(n, dim, start, shape[dim]);
    k = 0;
    memset(idx, 0, sizeof idx);
    do {
      float want = idx[dim] >= start && idx[dim] < start + len ? T_DATA(x)[k] : 0.0f;
      if (T_DATA(back)[k++] != want) bad++;
    } while (next_index(nd, shape, idx));
    /* cat of the pieces before, in, after the slice is x again */
    Tensor *pre = t_narrow(x, dim, 0, start), *post = t_narrow(x, dim, start + len, shape[dim] - start - len);
    Tensor *joined = t_cat(3, (Tensor *[]){pre, n, post}, dim);
    if (!bitwise_equal(joined, x)) bad++;
    t_release(x), t_release(p), t_release(n), t_release(back), t_release(pre), t_release(post), t_release(joined);
  }
  ok(bad == 0, "permute, narrow, pad_narrow and cat match naive index maps on random shapes");
}

static void test_matmul(void) {
  double worst = 0;
  for (int trial = 0; trial < 50; trial++) {
    int64_t n = irand(1, 6), k = irand(1, 6), m = irand(1, 6), batch = irand(1, 3);
    int mode = irand(0, 2); /* 0: batched both, 1: batched x 2-d, 2: 2-d x batched */
    Tensor *a = mode == 2 ? randn_shape(2, (int64_t[]){n, k}) : randn_shape(3, (int64_t[]){batch, n, k});
    Tensor *b = mode == 1 ? randn_shape(2, (int64_t[]){k, m}) : randn_shape(3, (int64_t[]){batch, k, m});
    Tensor *c = t_matmul(a, b);
    if (c->ndim != 3 || c->shape[0] != batch || c->shape[1] != n || c->shape[2] != m) {
      worst = INFINITY;
    } else {
      for (int64_t q = 0; q < batch; q++)
        for (int64_t i = 0; i < n; i++)
          for (int64_t j = 0; j < m; j++) {
            double s = 0;
            for (int64_t r = 0; r < k; r++)
              s += (double)T_DATA(a)[(mode == 2 ? 0 : q * n * k) + i * k + r] *
                   T_DATA(b)[(mode == 1 ? 0 : q * k * m) + r * m + j];
            worst = worse(worst, fabs(T_DATA(c)[(q * n + i) * m + j] - s));
          }
    }
    t_release(a), t_release(b), t_release(c);
  }
  ok(worst < 1e-4, "matmul (batched, batched x 2-d, 2-d x batched) matches naive loops (worst %.2g)", worst);
}

/* ------------------------------------------------------------ the engine */

/* a custom op y = a * b (elementwise, same shapes) whose backward records
** its calls and the needs flags, and is written with t_mul so it records */
static int calls_mulrec;
static int last_needs[2];

static void mulrec_backward(Node *n, Tensor *g, Tensor **gin, const int *needs) {
  calls_mulrec++;
  last_needs[0] = needs[0];
  last_needs[1] = needs[1];
  if (needs[0]) gin[0] = t_mul(g, n->inputs[1]);
  if (needs[1]) gin[1] = t_mul(g, n->inputs[0]);
}

static Tensor *mulrec(Tensor *a, Tensor *b) {
  int old = ag_set_enabled(0);
  Tensor *out = t_mul(a, b);
  ag_set_enabled(old);
  ag_record(out, "mulrec", mulrec_backward, 2, (Tensor *[]){a, b});
  return out;
}

static void test_engine(void) {
  int64_t live = t_live_bytes();
  float xv[3] = {1, 2, -3}, wv[3] = {0.5f, -1, 2};
  Tensor *x = leaf(vec(3, xv)), *w = leaf(vec(3, wv)), *c = vec(3, (float[]){1, 1, 1});
  /* y = x w, z = y x = x^2 w, s = sum(z) */
  Tensor *y = mulrec(x, w);
  ok(y->grad_fn && !strcmp(y->grad_fn->name, "mulrec") && y->requires_grad && y->grad_fn->ninputs == 2,
     "ag_record makes a non-leaf with a named node");
  Tensor *z = mulrec(y, x), *s = t_sum(z, 0, 0);
  Tensor *grads[3];
  calls_mulrec = 0;
  ag_grad(s, NULL, 2, (Tensor *[]){x, w}, 0, grads);
  int right = grads[0] && grads[1];
  for (int i = 0; right && i < 3; i++)
    right =
        fabsf(T_DATA(grads[0])[i] - 2 * xv[i] * wv[i]) < 1e-6f && fabsf(T_DATA(grads[1])[i] - xv[i] * xv[i]) < 1e-6f;
  ok(right, "d sum(x^2 w) / dx = 2xw and / dw = x^2 through a diamond of custom nodes");
  ok(calls_mulrec == 2, "each node's backward runs once (%d calls)", calls_mulrec);
  ok(!grads[0]->requires_grad && !grads[0]->grad_fn, "without create_graph the gradient has no graph");
  t_release(grads[0]), t_release(grads[1]);

  /* only w requested: the node y = x w must not compute x's gradient */
  calls_mulrec = 0;
  Tensor *yw = mulrec(c, w), *sw = t_sum(yw, 0, 0);
  ag_grad(sw, NULL, 1, &w, 0, grads);
  ok(calls_mulrec == 1 && last_needs[0] == 0 && last_needs[1] == 1,
     "needs[] is set only for inputs on a path to a request");
  ok(grads[0] && T_DATA(grads[0])[0] == 1 && T_DATA(grads[0])[2] == 1, "gradient through a constant input");
  t_release(grads[0]);

  /* a request the output does not depend on: NULL */
  Tensor *u = leaf(vec(3, xv));
  ag_grad(sw, NULL, 2, (Tensor *[]){u, w}, 0, grads);
  ok(grads[0] == NULL && grads[1] != NULL, "an unused input gets NULL");
  t_release(grads[1]);

  /* a requested intermediate, listed with a leaf and twice */
  ag_grad(s, NULL, 3, (Tensor *[]){z, y, z}, 0, grads);
  right = grads[0] && grads[1] && grads[2];
  for (int i = 0; right && i < 3; i++)
    right = T_DATA(grads[0])[i] == 1 && T_DATA(grads[2])[i] == 1 && fabsf(T_DATA(grads[1])[i] - xv[i]) < 1e-6f;
  ok(right, "gradients with respect to intermediates (one listed twice)");
  for (int i = 0; i < 3; i++) t_release(grads[i]);
  ag_grad(s, NULL, 2, (Tensor *[]){w, w}, 0, grads);
  ok(grads[0] && grads[0] == grads[1], "a leaf listed twice gets the same gradient twice");
  t_release(grads[0]), t_release(grads[1]);

  /* grad_output weights a non-scalar output */
  Tensor *go = vec(3, (float[]){1, 0, 2});
  ag_grad(z, go, 1, &w, 0, grads);
  ok(grads[0] && T_DATA(grads[0])[0] == 1 && T_DATA(grads[0])[1] == 0 && T_DATA(grads[0])[2] == 18,
     "grad_output gives a vector-Jacobian product");
  t_release(grads[0]);

  /* create_graph: the gradient is differentiable; d/dx of sum(dz/dx) = d/dx sum(2xw) = 2w */
  ag_grad(s, NULL, 1, &x, 1, grads);
  Tensor *gx = grads[0];
  ok(gx->requires_grad && gx->grad_fn, "with create_graph the gradient has a graph");
  Tensor *gs = t_sum(gx, 0, 0);
  ag_grad(gs, NULL, 2, (Tensor *[]){x, w}, 0, grads);
  right = grads[0] && grads[1];
  for (int i = 0; right && i < 3; i++)
    right = fabsf(T_DATA(grads[0])[i] - 2 * wv[i]) < 1e-6f && fabsf(T_DATA(grads[1])[i] - 2 * xv[i]) < 1e-6f;
  ok(right, "second derivatives through the custom node's recorded backward");
  ok(ag_is_enabled(), "grad mode is restored after ag_grad");
  t_release(grads[0]), t_release(grads[1]), t_release(gx), t_release(gs);

  /* the output itself as a leaf */
  ag_grad(x, go, 1, &x, 0, grads);
  ok(grads[0] && bitwise_equal(grads[0], go), "the gradient of a leaf with respect to itself is grad_output");
  t_release(grads[0]);

  /* no recording with grad mode off, or without inputs requiring grad */
  int old = ag_set_enabled(0);
  Tensor *off = t_mul(x, w);
  ag_set_enabled(old);
  Tensor *consts = t_mul(c, c);
  ok(!off->grad_fn && !off->requires_grad && !consts->grad_fn && !consts->requires_grad,
     "no node without grad mode or grad inputs");
  t_release(off), t_release(consts);

  t_release(x), t_release(w), t_release(c), t_release(y), t_release(z), t_release(s), t_release(yw), t_release(sw),
      t_release(u), t_release(go);
  ok(t_live_bytes() == live, "the engine leaks nothing (%lld bytes left)", (long long)(t_live_bytes() - live));
}

/* ------------------------------------------------------------ deep chains */

#define CHAIN 100000

typedef struct {
  int grad_ok, freed;
} ChainResult;

static void *deep_chain(void *arg) {
  ChainResult *r = arg;
  int64_t live = t_live_bytes();
  /* release without backward: a chain of 100k nodes */
  Tensor *x = leaf(t_full(1, (int64_t[]){1}, 1.0f)), *y = t_retain(x);
  for (int i = 0; i < CHAIN; i++) {
    Tensor *next = t_add_scalar(y, 0.5);
    t_release(y);
    y = next;
  }
  t_release(y);
  /* backward along a chain of 100k nodes, then release */
  y = t_retain(x);
  for (int i = 0; i < CHAIN; i++) {
    Tensor *next = t_mul_scalar(y, 1.0);
    t_release(y);
    y = next;
  }
  Tensor *g;
  ag_grad(y, NULL, 1, &x, 0, &g);
  r->grad_ok = g && T_DATA(g)[0] == 1.0f;
  t_release(g);
  t_release(y);
  /* a node with 1000 inputs: the release list spills beyond its fixed part */
  Tensor *parts[1000];
  for (int i = 0; i < 1000; i++) parts[i] = t_mul_scalar(x, 2.0);
  Tensor *joined = t_cat(1000, parts, 0);
  for (int i = 0; i < 1000; i++) t_release(parts[i]);
  t_release(joined);
  t_release(x);
  r->freed = t_live_bytes() == live;
  return NULL;
}

static void test_deep_chain(void) {
  /* on a 256 KB stack: recursion 100k deep (release or backward) would overflow it */
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  pthread_t th;
  ChainResult r = {0, 0};
  int started = pthread_create(&th, &attr, deep_chain, &r) == 0;
  if (started) pthread_join(th, NULL);
  pthread_attr_destroy(&attr);
  ok(started && r.grad_ok, "backward along a chain of %d nodes on a 256 KB stack", CHAIN);
  ok(started && r.freed, "chains of %d nodes are released without recursion, leaving nothing", CHAIN);
}

/* ------------------------------------------------------------ generator */

static void test_generator(void) {
  Generator a, b;
  gen_seed(&a, 123);
  gen_seed(&b, 123);
  int same = 1;
  for (int i = 0; i < 1000; i++) same &= gen_u32(&a) == gen_u32(&b);
  ok(same, "the same seed gives the same stream");
  gen_seed(&a, 0);
  ok(a.s[0] | a.s[1] | a.s[2] | a.s[3], "seed 0 gives a non-zero state");
  int in_range = 1, hits[7] = {0};
  for (int i = 0; i < 7000; i++) {
    uint32_t v = gen_below(&a, 7);
    if (v >= 7) in_range = 0;
    else hits[v]++;
  }
  for (int i = 0; i < 7; i++) in_range &= hits[i] > 800 && hits[i] < 1200;
  ok(in_range, "gen_below(7) is in range and roughly uniform");
  double lo = 1, hi = 0;
  int outside = 0;
  for (int i = 0; i < 10000; i++) {
    double u = gen_uniform(&a);
    outside += !(u >= 0 && u < 1); /* (a NaN too, which fmin and fmax would drop) */
    lo = fmin(lo, u), hi = fmax(hi, u);
  }
  ok(!outside && lo < 0.01 && hi > 0.99, "gen_uniform covers [0, 1)");
}

/* ------------------------------------------------------------ errors */

static void test_errors(void) {
  int64_t live = t_live_bytes();
  Tensor *a = t_zeros(2, (int64_t[]){2, 3}), *b = t_zeros(1, (int64_t[]){4}), *s = t_scalar(1);
  Tensor *volatile out = NULL;
  t_set_error_handler(catch_error);
  EXPECT_ERROR(out = t_add(a, b),
               "bad argument #2 to 'add' (shapes (2, 3) and (4) cannot be broadcast: dim 2 is 3 vs 4)");
  EXPECT_ERROR(out = t_mul(b, a), "bad argument #2 to 'mul' (shapes (4) and (2, 3) cannot be broadcast");
  EXPECT_ERROR(out = t_zeros(2, (int64_t[]){-1, 2}), "expected sizes >= 0, got -1 in dim 1");
  EXPECT_ERROR(out = t_zeros(2, (int64_t[]){INT64_MAX, INT64_MAX}), "is too large (more than 17179869184 elements)");
  EXPECT_ERROR(out = t_zeros(2, (int64_t[]){0, INT64_MAX}), "is too large");
  EXPECT_ERROR(out = t_zeros(9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}), "expected at most 8 dims, got 9");
  EXPECT_ERROR(out = t_reshape(a, 1, (int64_t[]){5}), "cannot reshape (2, 3) (6 elements) to (5) (5 elements)");
  EXPECT_ERROR(out = t_expand(a, 2, (int64_t[]){3, 3}),
               "bad argument #2 to 'expand' (cannot expand shape (2, 3) to (3, 3))");
  EXPECT_ERROR(out = t_sum_to(a, 1, (int64_t[]){2}), "bad argument #2 to 'sum_to'");
  EXPECT_ERROR(out = t_narrow(a, 1, 2, 2), "start 2 (0-based), length 2: outside the 3 elements of dim 2");
  EXPECT_ERROR(out = t_narrow(a, 1, INT64_MAX, 2), "'narrow'");
  EXPECT_ERROR(out = t_narrow(a, 1, 1, INT64_MAX), "'narrow'");
  EXPECT_ERROR(out = t_narrow(a, 2, 0, 1), "dim 3 out of range for a 2-d tensor");
  EXPECT_ERROR(out = t_permute(a, (int[]){0, 0}), "expected a permutation of 1..2");
  EXPECT_ERROR(out = t_transpose(a, 0, 2), "bad argument #3 to 'transpose' (dim 3 out of range for a 2-d tensor)");
  EXPECT_ERROR(out = t_cat(2, (Tensor *[]){a, b}, 0), "tensor 2 has shape (4), incompatible with (2, 3) along dim 1");
  EXPECT_ERROR(out = t_cat(0, NULL, 0), "expected a non-empty list of tensors");
  EXPECT_ERROR(out = t_matmul(a, a), "inner sizes differ: (2, 3) @ (2, 3) (3 vs 2)");
  EXPECT_ERROR(out = t_matmul(s, a),
               "bad argument #1 to 'matmul' (expected a tensor with at least 1 dim, got a scalar)");
  EXPECT_ERROR(out = t_sum(a, 1u << 2, 0), "bad argument #2 to 'sum' (dim out of range for a 2-d tensor)");
  EXPECT_ERROR(out = t_max(b, 1, 0), "dim 2 out of range for a 1-d tensor");
  Tensor *empty = t_zeros(1, (int64_t[]){0});
  EXPECT_ERROR(out = t_argmax(empty, -1, 0), "bad argument #1 to 'argmax' (expected a non-empty tensor)");
  EXPECT_ERROR(out = t_log_softmax(s, 0), "expected a tensor with at least 1 dim, got a scalar");
  EXPECT_ERROR(out = t_mse_loss(a, b), "bad argument #2 to 'mse_loss'");
  EXPECT_ERROR(out = t_linear(a, b, NULL), "expected 2-d weight (out, in), got (4)");
  EXPECT_ERROR(out = t_cross_entropy(a, (int64_t[]){1, 4}, 2), "label 4 at position 2 is outside 1..3");
  t_set_error_handler(NULL);
  ok(out == NULL, "no failed op returned a tensor");
  t_release(a), t_release(b), t_release(s), t_release(empty);
  ok(t_live_bytes() == live, "failed ops leak nothing (%lld bytes left)", (long long)(t_live_bytes() - live));
}

/* the checker itself: an op that returns NaN must fail it */
static void test_checker_fails_on_nan(void) {
  Tensor *a = t_zeros(1, (int64_t[]){3});
  T_DATA(a)[1] = NAN;
  double e = max_abs_diff(a, (const double[]){0, 0, 0});
  ok(!(e <= 1e-6), "max_abs_diff reports a NaN element as a failure (got %g)", e);
  t_release(a);
}

/* the per-thread buffer cache (vm/tensor.c): a freed buffer serves the next tensor of its size, and
** once the cache is at its bound the buffers freed longest ago make room for the one freed now (the
** sizes a backward pass frees are those it asks for next) */
static void test_buffer_cache(void) {
  t_trim_cache();
  const int64_t big = (int64_t)8 << 20; /* 32 MB tensors, each size distinct */
  enum { FIRST = 6, MORE = 14 };
  Tensor *t[FIRST];
  for (int i = 0; i < FIRST; i++) t[i] = t_new(1, (int64_t[]){big - 16 * i});
  for (int i = 0; i < FIRST; i++) t_release(t[i]);
  int64_t cached = t_cached_bytes();
  ok(cached >= FIRST * (big - 16 * FIRST) * 4, "the cache keeps %d freed 32 MB buffers (%lld bytes)", FIRST,
     (long long)cached);
  int served = 0;
  for (int j = 0; j < MORE; j++) { /* new sizes, each freed and asked for again */
    int64_t n = big - 16 * (FIRST + j);
    t_release(t_new(1, (int64_t[]){n}));
    int64_t before = t_cached_bytes();
    Tensor *again = t_new(1, (int64_t[]){n});
    served += t_cached_bytes() == before - n * 4;
    t_release(again);
  }
  ok(served == MORE, "each buffer freed last serves the next tensor of its size (%d of %d)", served, MORE);
  int64_t before = t_cached_bytes();
  Tensor *oldest = t_new(1, (int64_t[]){big});
  ok(t_cached_bytes() == before, "the buffer freed first was given back to make room");
  t_release(oldest);
  ok(t_cached_bytes() <= t_peak_bytes() + ((int64_t)128 << 20),
     "the cache stays under its bound (%lld bytes)", (long long)t_cached_bytes());
  t_trim_cache();
  ok(t_cached_bytes() == 0, "t_trim_cache empties it");
}

int main(void) {
  gen_seed(&gen, 2024);
  test_checker_fails_on_nan();
  test_refcounts_and_views();
  test_graph_lifetime();
  test_broadcast_kernel();
  test_sum_to_expand();
  test_reductions();
  test_shape_ops();
  test_matmul();
  test_engine();
  test_deep_chain();
  test_generator();
  test_errors();
  test_buffer_cache();
  return tap_done();
}
