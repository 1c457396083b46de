/*
** conv_dnnl.c: channels-last convolutions on oneDNN's direct kernels (libdnnl, when the Makefile
** finds it: MAMLRUN_DNNL). Each entry returns 1 when oneDNN computed the op, 0 when conv.c's own
** im2col + OpenBLAS kernels are to: in a build without oneDNN, with MAMLRUN_CONV=gemm, where the
** rule below gives the op to them (dnnl_takes: where they measured faster), and where oneDNN has no
** AVX2 or AVX-512 kernel of its own (own_kernel). The two compute the same convolution, rounded
** differently. MAMLRUN_CONV=dnnl is the default spelled out, and an error in a build without oneDNN;
** any other value is an error. MAMLRUN_CONV_VERBOSE=1 names, on stderr, the kernel oneDNN chose for
** each op and geometry as it is first used.
**
** Each thread keeps its own primitives (one per op and geometry, made on first use: oneDNN
** generates their code then), its own stream and scratchpad, and runs oneDNN on one OpenMP thread,
** so a task's result does not depend on the worker that runs it or on how many run. oneDNN wants the
** weights in a blocked layout of its choosing: they are reordered from (O,C,KH,KW), once per weight
** and thread (load_weight: cached by the storage's id and version, like conv.c's channels-last
** copies), and the weight gradient is reordered back.
*/
#include "conv_dnnl.h"
#include "matmul.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MODE_AUTO, MODE_GEMM, MODE_DNNL, MODE_BAD };
static int mode;
static char mode_error[200];
static pthread_once_t mode_once = PTHREAD_ONCE_INIT;

static void read_mode(void) {
  const char *e = getenv("MAMLRUN_CONV");
  if (!e || !*e) mode = MODE_AUTO;
  else if (strcmp(e, "gemm") == 0) mode = MODE_GEMM;
  else if (strcmp(e, "dnnl") == 0) mode = MODE_DNNL;
  else mode = MODE_BAD;
  if (mode == MODE_BAD)
    snprintf(mode_error, sizeof mode_error, "MAMLRUN_CONV must be 'dnnl' (oneDNN) or 'gemm' (im2col + OpenBLAS), got '%.60s'", e);
#ifndef MAMLRUN_DNNL
  if (mode == MODE_DNNL) {
    mode = MODE_BAD;
    snprintf(mode_error, sizeof mode_error,
             "MAMLRUN_CONV=dnnl: this mamlrun was built without oneDNN (install libdnnl-dev, then make clean all)");
  }
#endif
}

/* the mode, after raising the error of a bad MAMLRUN_CONV */
static int conv_mode(void) {
  pthread_once(&mode_once, read_mode);
  if (mode == MODE_BAD) t_error("conv2d: %s", mode_error);
  return mode;
}

#ifdef MAMLRUN_DNNL
#include <omp.h>
#include <stdatomic.h>

#include <oneapi/dnnl/dnnl.h>

enum { FWD, BWD_DATA, BWD_WEIGHTS };
enum { PCACHE = 48 };

typedef struct {
  int used, op, relu, bias, stride, padding;
  int64_t n, c, h, w, o, kh, kw;
  dnnl_primitive_t prim, wreorder; /* wreorder: oihw -> wfmt (FWD, BWD_DATA), wfmt -> oihw (BWD_WEIGHTS) */
  dnnl_memory_t src, wuser, wfmt, bias_m, dst, scratch;
  float *wbuf, *sbuf;
  uint64_t stamp;
} Prim;

enum { WCACHE = 32 };
typedef struct {
  uint64_t id, version, stamp; /* id 0: empty */
  int64_t offset;
  dnnl_memory_desc_t md; /* the layout */
  float *buf;
  size_t cap;
} Reordered;

typedef struct {
  dnnl_stream_t stream;
  Prim p[PCACHE];
  Reordered w[WCACHE];
  uint64_t clock;
} Local;

static dnnl_engine_t engine;
static int disabled; /* no engine: conv.c's own kernels */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t key;

static void prim_free(Prim *p) {
  if (!p->used) return;
  if (p->prim) dnnl_primitive_destroy(p->prim);
  if (p->wreorder) dnnl_primitive_destroy(p->wreorder);
  dnnl_memory_t *m[] = {&p->src, &p->wuser, &p->wfmt, &p->bias_m, &p->dst, &p->scratch};
  for (size_t i = 0; i < sizeof m / sizeof *m; i++)
    if (*m[i]) dnnl_memory_destroy(*m[i]);
  free(p->wbuf);
  free(p->sbuf);
  memset(p, 0, sizeof *p);
}

static void local_free(void *v) {
  Local *l = v;
  for (int i = 0; i < PCACHE; i++) prim_free(&l->p[i]);
  for (int i = 0; i < WCACHE; i++) free(l->w[i].buf);
  if (l->stream) dnnl_stream_destroy(l->stream);
  free(l);
}

static void init_once(void) {
  if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) disabled = 1;
  else if (pthread_key_create(&key, local_free) != 0) disabled = 1;
}

/* this thread's primitives, or NULL: conv.c's kernels */
static Local *local(void) {
  if (conv_mode() == MODE_GEMM) return NULL;
  pthread_once(&once, init_once);
  if (disabled) {
    if (mode == MODE_DNNL) t_error("conv2d: MAMLRUN_CONV=dnnl, but oneDNN's CPU engine could not be created");
    return NULL;
  }
  Local *l = pthread_getspecific(key);
  if (!l) {
    l = calloc(1, sizeof *l);
    if (!l) return NULL;
    if (dnnl_stream_create(&l->stream, engine, dnnl_stream_default_flags) != dnnl_success ||
        pthread_setspecific(key, l) != 0) {
      if (l->stream) dnnl_stream_destroy(l->stream);
      free(l);
      return NULL;
    }
    omp_set_num_threads(1); /* this thread's oneDNN calls run on it alone */
  }
  return l;
}

/* p empty, keyed by op on g */
static void prim_key(Prim *p, int op, const ConvGeom *g, int bias, uint64_t stamp) {
  p->used = 1, p->op = op, p->relu = op == FWD && g->relu, p->bias = bias, p->stride = g->stride;
  p->padding = g->padding, p->n = g->n, p->c = g->c, p->h = g->h, p->w = g->w, p->o = g->o;
  p->kh = g->kh, p->kw = g->kw, p->stamp = stamp;
}

static int same(const Prim *p, int op, const ConvGeom *g, int bias) {
  return p->used && p->op == op && p->n == g->n && p->c == g->c && p->h == g->h && p->w == g->w && p->o == g->o &&
         p->kh == g->kh && p->kw == g->kw && p->stride == g->stride && p->padding == g->padding &&
         p->relu == (op == FWD && g->relu) && p->bias == bias;
}

#define OK(x) ((x) == dnnl_success)

static int make_memory(dnnl_memory_t *m, const dnnl_memory_desc_t *md) {
  return OK(dnnl_memory_create(m, md, engine, DNNL_MEMORY_NONE));
}

/* Where oneDNN's kernels are the faster (docs/gemm_libraries.md, "Session 7": each op on the
** MAML layers' shapes, one thread): every forward but a kernel as large as the input (conv.c's
** plain GEMMs are 1.3-2x faster there), and the backward ops on output maps of 9 pixels or more
** (on 2x2 maps im2col + OpenBLAS is 1.2-1.4x faster). A rule of the geometry alone, never a
** timing, so every thread and rank makes the same choice. */
static int dnnl_takes(int op, const ConvGeom *g) {
  if (g->padding == 0 && g->kh == g->h && g->kw == g->w) return 0;
  return op == FWD || g->oh * g->ow >= 9;
}

/* oneDNN's own AVX2 or AVX-512 kernels ("brgconv:avx512_core", "jit:avx2"): its reference kernel,
** its im2col + GEMM one and its SSE4.1 ones are no faster than conv.c's (on an SSE4.1-only core,
** DNNL_MAX_CPU_ISA=SSE41: 22-34 GFLOP/s against 30-31) */
static int own_kernel(const char *impl) {
  return strstr(impl, "avx") != NULL && strstr(impl, "gemm") == NULL && strncmp(impl, "ref", 3) != 0;
}

/* the primitive for op on g, made on a miss; NULL when oneDNN has no own kernel for it */
static Prim *lookup(Local *l, int op, const ConvGeom *g, int bias) {
  if (!dnnl_takes(op, g)) return NULL;
  Prim *victim = &l->p[0];
  for (int i = 0; i < PCACHE; i++) {
    Prim *p = &l->p[i];
    if (same(p, op, g, bias)) {
      p->stamp = ++l->clock;
      return p->prim ? p : NULL;
    }
    if (!p->used || (victim->used && p->stamp < victim->stamp)) victim = p;
  }
  prim_free(victim);
  Prim *p = victim;
  prim_key(p, op, g, bias, ++l->clock);

  /* (the right and bottom padding that the output size implies: conv2d's floor division may leave
  ** input rows unread, which oneDNN says with a smaller, even negative, padding) */
  dnnl_dims_t sd = {g->n, g->c, g->h, g->w}, wd = {g->o, g->c, g->kh, g->kw}, bd = {g->o},
              dd = {g->n, g->o, g->oh, g->ow}, st = {g->stride, g->stride}, pl = {g->padding, g->padding},
              pr = {(g->oh - 1) * g->stride + g->kh - g->h - g->padding,
                    (g->ow - 1) * g->stride + g->kw - g->w - g->padding};
  dnnl_memory_desc_t smd, wany, wplain, bmd, dmd;
  dnnl_convolution_desc_t fd, cd;
  dnnl_primitive_desc_t fpd = NULL, pd = NULL, rpd = NULL;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t po = NULL;
  int good = OK(dnnl_memory_desc_init_by_tag(&smd, 4, sd, dnnl_f32, dnnl_nhwc)) &&
             OK(dnnl_memory_desc_init_by_tag(&dmd, 4, dd, dnnl_f32, dnnl_nhwc)) &&
             OK(dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_x)) &&
             OK(dnnl_memory_desc_init_by_tag(&wany, 4, wd, dnnl_f32, dnnl_format_tag_any)) &&
             OK(dnnl_memory_desc_init_by_tag(&wplain, 4, wd, dnnl_f32, dnnl_oihw)) &&
             OK(dnnl_primitive_attr_create(&attr)) &&
             OK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
  if (good && p->relu)
    good = OK(dnnl_post_ops_create(&po)) && OK(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f)) &&
           OK(dnnl_primitive_attr_set_post_ops(attr, po));
  good = good && OK(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &smd, &wany,
                                                       op == FWD && bias ? &bmd : NULL, &dmd, st, pl, pr));
  if (good && op == FWD) {
    good = OK(dnnl_primitive_desc_create(&pd, &fd, attr, engine, NULL));
  } else if (good) {
    good = OK(dnnl_primitive_desc_create(&fpd, &fd, NULL, engine, NULL));
    if (good && op == BWD_DATA)
      good = OK(dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &smd, &wany, &dmd, st, pl, pr));
    else if (good)
      good = OK(dnnl_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &smd, &wany, NULL, &dmd, st, pl,
                                                            pr));
    good = good && OK(dnnl_primitive_desc_create(&pd, &cd, attr, engine, fpd));
  }
  const char *impl = NULL;
  if (good) good = OK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl)) && own_kernel(impl);
  if (good) {
    const dnnl_memory_desc_t *wfmt = dnnl_primitive_desc_query_md(pd, op == BWD_WEIGHTS ? dnnl_query_diff_weights_md : dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *spmd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t wbytes = dnnl_memory_desc_get_size(wfmt), sbytes = spmd ? dnnl_memory_desc_get_size(spmd) : 0;
    p->wbuf = aligned_alloc(64, (wbytes + 63) / 64 * 64);
    p->sbuf = sbytes ? aligned_alloc(64, (sbytes + 63) / 64 * 64) : NULL;
    good = p->wbuf && (!sbytes || p->sbuf) && OK(dnnl_primitive_create(&p->prim, pd)) && make_memory(&p->src, &smd) &&
           make_memory(&p->dst, &dmd) && make_memory(&p->wuser, &wplain) && make_memory(&p->wfmt, wfmt) &&
           (!sbytes || make_memory(&p->scratch, spmd)) && (!(op == FWD && bias) || make_memory(&p->bias_m, &bmd));
    if (good) good = OK(dnnl_memory_set_data_handle(p->wfmt, p->wbuf)) && (!sbytes || OK(dnnl_memory_set_data_handle(p->scratch, p->sbuf)));
    if (good && !dnnl_memory_desc_equal(wfmt, &wplain)) {
      good = op == BWD_WEIGHTS ? OK(dnnl_reorder_primitive_desc_create(&rpd, wfmt, engine, &wplain, engine, NULL))
                               : OK(dnnl_reorder_primitive_desc_create(&rpd, &wplain, engine, wfmt, engine, NULL));
      good = good && OK(dnnl_primitive_create(&p->wreorder, rpd));
    }
  }
  if (getenv("MAMLRUN_CONV_VERBOSE"))
    fprintf(stderr, "conv_dnnl: op %d N%lld C%lld H%lld O%lld k%lld s%d p%d relu %d: %s%s\n", op, (long long)g->n,
            (long long)g->c, (long long)g->h, (long long)g->o, (long long)g->kh, g->stride, g->padding, p->relu,
            impl ? impl : "(no kernel)", good ? "" : ", declined: im2col + OpenBLAS runs it");
  if (rpd) dnnl_primitive_desc_destroy(rpd);
  if (pd) dnnl_primitive_desc_destroy(pd);
  if (fpd) dnnl_primitive_desc_destroy(fpd);
  if (po) dnnl_post_ops_destroy(po);
  if (attr) dnnl_primitive_attr_destroy(attr);
  if (!good) { /* remembered as declined: an entry without a primitive */
    prim_free(p);
    prim_key(p, op, g, bias, l->clock);
    return NULL;
  }
  return p;
}

static int run(Local *l, dnnl_primitive_t prim, int nargs, const dnnl_exec_arg_t *args) {
  return OK(dnnl_primitive_execute(prim, l->stream, nargs, args)) && OK(dnnl_stream_wait(l->stream));
}

/* a convolution op of g run: its FLOPs counted as t_sgemm counts the GEMM path's (T.flops) */
static int done(const ConvGeom *g) {
  t_count_flops(2 * g->n * g->oh * g->ow * g->o * g->c * g->kh * g->kw);
  return 1;
}

/* A weight in oneDNN's layout, kept per thread for the next calls with the same weight (a MAML
** weight goes through the forward, backward_input and the recorded second-order ops several times),
** under the storage's id and version as in conv.c's WeightEntry: a weight written in place, or
** freed and its memory reused, is never served stale. Sanitizer builds check every hit. */
static int reorder(Local *l, Prim *p, const float *w, float *to) {
  dnnl_exec_arg_t a[] = {{DNNL_ARG_FROM, p->wuser}, {DNNL_ARG_TO, p->wfmt}};
  return OK(dnnl_memory_set_data_handle(p->wuser, (void *)w)) && OK(dnnl_memory_set_data_handle(p->wfmt, to)) &&
         run(l, p->wreorder, 2, a);
}

/* the weight in p's layout, from the cache or reordered into it */
static int load_weight(Local *l, Prim *p, const float *w, Tensor *wt) {
  if (!p->wreorder) return OK(dnnl_memory_set_data_handle(p->wfmt, (void *)w));
  if (!wt) return reorder(l, p, w, p->wbuf);
  const uint64_t id = wt->storage->id, version = atomic_load(&wt->storage->version);
  const dnnl_memory_desc_t *md;
  if (!OK(dnnl_memory_get_memory_desc(p->wfmt, &md))) return 0;
  Reordered *e = NULL, *victim = &l->w[0];
  for (int i = 0; i < WCACHE; i++) {
    Reordered *c = &l->w[i];
    if (c->buf && c->id == id && c->version == version && c->offset == wt->offset && dnnl_memory_desc_equal(&c->md, md)) {
      e = c;
      break;
    }
    if (c->stamp < victim->stamp) victim = c;
  }
  if (e) {
    e->stamp = ++l->clock;
#if T_ASAN
    size_t bytes = dnnl_memory_desc_get_size(md);
    if (!reorder(l, p, w, p->wbuf)) return 0;
    if (memcmp(p->wbuf, e->buf, bytes) != 0)
      t_error("conv2d: internal error: a cached oneDNN weight is stale (a write without t_written)");
#endif
    return OK(dnnl_memory_set_data_handle(p->wfmt, e->buf));
  }
  e = victim;
  e->stamp = ++l->clock;
  size_t bytes = dnnl_memory_desc_get_size(md);
  if (e->cap < bytes) {
    free(e->buf);
    e->buf = aligned_alloc(64, (bytes + 63) / 64 * 64);
    e->cap = e->buf ? bytes : 0;
    if (!e->buf) return 0;
  }
  e->id = 0;
  if (!reorder(l, p, w, e->buf)) return 0;
  e->id = id, e->version = version, e->offset = wt->offset, e->md = *md;
  return 1;
}

int conv_dnnl_forward(const ConvGeom *g, float *y, const float *x, const float *w, const float *b) {
  Local *l = local();
  Prim *p = l ? lookup(l, FWD, g, b != NULL) : NULL;
  if (!p || !load_weight(l, p, w, g->weight)) return 0;
  dnnl_exec_arg_t a[5] = {{DNNL_ARG_SRC, p->src}, {DNNL_ARG_WEIGHTS, p->wfmt}, {DNNL_ARG_DST, p->dst}};
  int na = 3;
  if (p->scratch) a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->scratch};
  if (b) a[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, p->bias_m};
  return OK(dnnl_memory_set_data_handle(p->src, (void *)x)) && OK(dnnl_memory_set_data_handle(p->dst, y)) &&
         (!b || OK(dnnl_memory_set_data_handle(p->bias_m, (void *)b))) && run(l, p->prim, na, a) && done(g);
}

int conv_dnnl_backward_input(const ConvGeom *g, float *gx, const float *gy, const float *w) {
  Local *l = local();
  Prim *p = l ? lookup(l, BWD_DATA, g, 0) : NULL;
  if (!p || !load_weight(l, p, w, g->weight)) return 0;
  dnnl_exec_arg_t a[4] = {{DNNL_ARG_DIFF_DST, p->dst}, {DNNL_ARG_WEIGHTS, p->wfmt}, {DNNL_ARG_DIFF_SRC, p->src}};
  int na = 3;
  if (p->scratch) a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->scratch};
  return OK(dnnl_memory_set_data_handle(p->dst, (void *)gy)) && OK(dnnl_memory_set_data_handle(p->src, gx)) &&
         run(l, p->prim, na, a) && done(g);
}

int conv_dnnl_backward_weight(const ConvGeom *g, float *gw, const float *x, const float *gy) {
  Local *l = local();
  Prim *p = l ? lookup(l, BWD_WEIGHTS, g, 0) : NULL;
  if (!p) return 0;
  dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, p->src}, {DNNL_ARG_DIFF_DST, p->dst}, {DNNL_ARG_DIFF_WEIGHTS, p->wfmt}};
  int na = 3;
  if (p->scratch) a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->scratch};
  if (!p->wreorder && !OK(dnnl_memory_set_data_handle(p->wfmt, gw))) return 0;
  if (!OK(dnnl_memory_set_data_handle(p->src, (void *)x)) || !OK(dnnl_memory_set_data_handle(p->dst, (void *)gy)) ||
      !run(l, p->prim, na, a))
    return 0;
  if (!p->wreorder) return done(g);
  dnnl_exec_arg_t r[] = {{DNNL_ARG_FROM, p->wfmt}, {DNNL_ARG_TO, p->wuser}};
  return OK(dnnl_memory_set_data_handle(p->wuser, gw)) && run(l, p->wreorder, 2, r) && done(g);
}

/* what runs the convolutions in the default mode */
static void dnnl_backend(char *buf, size_t n) {
  pthread_once(&once, init_once);
  const dnnl_version_t *v = dnnl_version();
  if (disabled) snprintf(buf, n, "im2col + OpenBLAS (oneDNN %d.%d.%d has no CPU engine here)", v->major, v->minor, v->patch);
  else snprintf(buf, n, "oneDNN %d.%d.%d, channels-last (im2col + OpenBLAS for the rest)", v->major, v->minor, v->patch);
}

#else
int conv_dnnl_forward(const ConvGeom *g, float *y, const float *x, const float *w, const float *b) {
  (void)g, (void)y, (void)x, (void)w, (void)b;
  (void)conv_mode(); /* (raises a bad MAMLRUN_CONV) */
  return 0;
}
int conv_dnnl_backward_input(const ConvGeom *g, float *gx, const float *gy, const float *w) {
  (void)g, (void)gx, (void)gy, (void)w;
  (void)conv_mode(); /* (raises a bad MAMLRUN_CONV) */
  return 0;
}
int conv_dnnl_backward_weight(const ConvGeom *g, float *gw, const float *x, const float *gy) {
  (void)g, (void)gw, (void)x, (void)gy;
  (void)conv_mode(); /* (raises a bad MAMLRUN_CONV) */
  return 0;
}
static void dnnl_backend(char *buf, size_t n) { snprintf(buf, n, "im2col + OpenBLAS (built without oneDNN)"); }
#endif

const char *conv_backend(char *buf, size_t n) {
  pthread_once(&mode_once, read_mode);
  if (mode == MODE_BAD) snprintf(buf, n, "error: %s", mode_error);
  else if (mode == MODE_GEMM) snprintf(buf, n, "im2col + OpenBLAS (MAMLRUN_CONV=gemm)");
  else dnnl_backend(buf, n);
  return buf;
}
