/*
** conv.c: 2-d convolution, its two backward ops, and the kernels behind them.
**
** Two layouts. Channels-last (nhwc: x (N,H,W,C), y (N,OH,OW,O), what nn.conv4 and
** nn.peer_net run): im2col copies whole window rows of KW*C floats straight from x,
** and one OpenBLAS sgemm (t_sgemm) per chunk of images reads and writes the
** activations in place. Channels-first (N,C,H,W): each image is first turned
** channels-last, and y or gy go through (O, nb*P) copies. Either way a GEMM covers
** a chunk of images (the MAML maps are small, 13x13 .. 1x1: one GEMM per image
** would be far too small). Weights are used as (O, KH*KW*C) in the same order.
** Two special cases: one input channel (the first layer) runs its channels-first
** forward as plain loops, and a kernel as large as the input is three plain GEMMs.
** Channels-last convolutions go to oneDNN's direct kernels first (conv_dnnl.c: 1.1-1.25x faster
** MAML iterations), when the build has it; these kernels are what runs without it, with
** MAMLRUN_CONV=gemm, and for what oneDNN declines.
** Scratch buffers are per thread and only grow, so a training loop
** allocates nothing here after its first iteration.
** With OpenBLAS on one thread (mamlrun's default) results are bitwise the same
** on every run and every worker thread; more OpenBLAS threads, or the same image
** in another batch, change them by float rounding only (OpenBLAS's blocking).
**
** Second order: conv2d, conv2d_backward_input and conv2d_backward_weight are
** three bilinear ops; the backward of each is written with the other two, so
** a recorded backward pass is itself differentiable (any order).
*/
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE__
#include <xmmintrin.h>
#endif

#include "batchnorm.h"
#include "conv_dnnl.h"
#include "elementwise.h"
#include "matmul.h"
#include "nnops.h"
#include "shape.h"

/* ------------------------------------------------------------ geometry */

ConvGeom conv2d_geom(int64_t n, int64_t c, int64_t h, int64_t w, int64_t o, int64_t kh, int64_t kw, int stride,
                     int padding) {
  ConvGeom g = {n, c, h, w, o, kh, kw, 0, 0, stride, padding, 0, 0, NULL};
  g.oh = (h + 2 * (int64_t)padding - kh) / stride + 1;
  g.ow = (w + 2 * (int64_t)padding - kw) / stride + 1;
  return g;
}

/* ------------------------------------------------------------ scratch */

/* Per thread: columns (nb*P, K), a chunk of y or gy (O, nb*P), one image of x or gx
** channels-last (H,W,C), the weight or its gradient channels-last (O, K).
** Held under a pthread key, so a worker thread's buffers are freed when it exits. */
enum { COLS, YCHUNK, XCHUNK, WEIGHT, NSCRATCH };

/* A weight's channels-last copy is kept per thread for the next calls with the same weight: a
** MAML weight goes through the forward, backward_input and the recorded second-order ops several
** times. An entry is the storage's id (never reused) and version (bumped by every write into the
** data, t_written) at the copy, so a weight changed in place, or freed and its memory reused, is
** never served stale. The least recently used of WCACHE entries is replaced: enough for the
** weights of a 5-step inner loop of a 4-layer net, which the outer backward visits again. A weight
** of more than WCACHE_MAX floats is not kept (at most 32 MiB per thread). */
enum { WCACHE = 32, WCACHE_MAX = 1 << 18 };
typedef struct {
  uint64_t id, version, used;
  int64_t offset, o, c, kk; /* the copy is (o, kk, c) of the weight at offset */
  float *data;
  int64_t cap;
} WeightEntry;

typedef struct {
  float *data[NSCRATCH];
  int64_t size[NSCRATCH];
  WeightEntry weights[WCACHE];
  uint64_t clock;
} Scratch;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int64_t chunk_floats = (int64_t)1 << 18;

static void scratch_free(void *p) {
  Scratch *s = p;
  for (int i = 0; i < NSCRATCH; i++) free(s->data[i]);
  for (int i = 0; i < WCACHE; i++) free(s->weights[i].data);
  free(s);
}

static void scratch_key_create(void) {
  if (pthread_key_create(&scratch_key, scratch_free) != 0) abort();
}

int64_t conv2d_set_chunk_floats(int64_t n) {
  int64_t old = chunk_floats;
  chunk_floats = n > 0 ? n : 1;
  return old;
}

static Scratch *thread_scratch(void) {
  pthread_once(&scratch_once, scratch_key_create);
  Scratch *s = pthread_getspecific(scratch_key);
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s || pthread_setspecific(scratch_key, s) != 0) {
      free(s);
      t_error("conv2d: out of memory");
    }
  }
  return s;
}

static float *scratch(int slot, int64_t n) {
  Scratch *s = thread_scratch();
  if (n > s->size[slot]) {
    free(s->data[slot]);
    s->data[slot] = malloc((size_t)n * sizeof(float));
    s->size[slot] = s->data[slot] ? n : 0;
    if (!s->data[slot]) t_error("conv2d: out of memory (%lld floats of scratch)", (long long)n);
  }
  return s->data[slot];
}

/* images per chunk: the columns (nb*P, K) hold about chunk_floats */
static int64_t chunk_images(const ConvGeom *g) {
  int64_t per_image = g->c * g->kh * g->kw * g->oh * g->ow;
  int64_t nb = per_image > 0 ? chunk_floats / per_image : g->n;
  if (nb < 1) nb = 1;
  if (nb > g->n) nb = g->n;
  return nb;
}

/* grow the scratch before an op allocates its output, so a failure leaks nothing */
static void reserve_scratch(const ConvGeom *g) {
  int64_t nb = chunk_images(g), p = g->oh * g->ow, k = g->c * g->kh * g->kw;
  if (k > INT_MAX || g->o > INT_MAX || g->n > INT_MAX || nb * p > INT_MAX)
    t_error("conv2d: too large for one GEMM (K=%lld, OH*OW=%lld)", (long long)k, (long long)p);
  scratch(COLS, nb * p * k);
  scratch(YCHUNK, g->o * nb * p);
  scratch(XCHUNK, g->h * g->w * g->c);
  scratch(WEIGHT, g->o * k);
}

/* ------------------------------------------------------------ layouts */

// a (rows, cols) -> at (cols, rows), by 4x4 blocks in SSE registers; the next 4 rows
// are prefetched while these are done (a is usually the last layer's output, out of
// L2: 1.7x faster on the MAML layers)
static void transpose_sse(const float *a, int64_t rows, int64_t cols, float *at) {
  int64_t r0 = 0;
#ifdef __SSE__
  for (; r0 + 4 <= rows; r0 += 4) {
    if (r0 + 8 <= rows)
      for (int64_t q = 0; q < 4 * cols; q += 16) _mm_prefetch((const char *)(a + (r0 + 4) * cols + q), _MM_HINT_T0);
    int64_t c0 = 0;
    for (; c0 + 4 <= cols; c0 += 4) {
      const float *src = a + r0 * cols + c0;
      __m128 x0 = _mm_loadu_ps(src), x1 = _mm_loadu_ps(src + cols);
      __m128 x2 = _mm_loadu_ps(src + 2 * cols), x3 = _mm_loadu_ps(src + 3 * cols);
      _MM_TRANSPOSE4_PS(x0, x1, x2, x3);
      float *dst = at + c0 * rows + r0;
      _mm_storeu_ps(dst, x0);
      _mm_storeu_ps(dst + rows, x1);
      _mm_storeu_ps(dst + 2 * rows, x2);
      _mm_storeu_ps(dst + 3 * rows, x3);
    }
    for (; c0 < cols; c0++)
      for (int64_t r = r0; r < r0 + 4; r++) at[c0 * rows + r] = a[r * cols + c0];
  }
#endif
  for (; r0 < rows; r0++)
    for (int64_t c = 0; c < cols; c++) at[c * rows + r0] = a[r0 * cols + c];
}

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#include <immintrin.h>
#define HAVE_TRANSPOSE_AVX 1
/* one 8x8 block: rows r0..r0+7, columns c0..c0+7 of a to at */
__attribute__((target("avx"))) static inline void transpose8x8(const float *src, int64_t cols, float *dst,
                                                               int64_t rows) {
  __m256 x0 = _mm256_loadu_ps(src), x1 = _mm256_loadu_ps(src + cols);
  __m256 x2 = _mm256_loadu_ps(src + 2 * cols), x3 = _mm256_loadu_ps(src + 3 * cols);
  __m256 x4 = _mm256_loadu_ps(src + 4 * cols), x5 = _mm256_loadu_ps(src + 5 * cols);
  __m256 x6 = _mm256_loadu_ps(src + 6 * cols), x7 = _mm256_loadu_ps(src + 7 * cols);
  __m256 t0 = _mm256_unpacklo_ps(x0, x1), t1 = _mm256_unpackhi_ps(x0, x1);
  __m256 t2 = _mm256_unpacklo_ps(x2, x3), t3 = _mm256_unpackhi_ps(x2, x3);
  __m256 t4 = _mm256_unpacklo_ps(x4, x5), t5 = _mm256_unpackhi_ps(x4, x5);
  __m256 t6 = _mm256_unpacklo_ps(x6, x7), t7 = _mm256_unpackhi_ps(x6, x7);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(dst + rows, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(dst + 2 * rows, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(dst + 3 * rows, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(dst + 4 * rows, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(dst + 5 * rows, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(dst + 6 * rows, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(dst + 7 * rows, _mm256_permute2f128_ps(u3, u7, 0x31));
}

// the same by 8x8 AVX blocks (the CPU has AVX: checked once, below), in the order that
// streams the cold side: a's rows 8 at a time when a is the large tensor read from
// memory (out_cold 0: an image turned channels-last into scratch), at's rows 8 at a
// time when at is (out_cold 1: a gradient written back to its NCHW tensor), so that
// the cold side is read or written as 8 sequential streams and the scattered side
// stays in L1/L2; the rows and columns left over (% 8) are plain loops
__attribute__((target("avx"))) static void transpose_avx(const float *a, int64_t rows, int64_t cols, float *at,
                                                         int out_cold) {
  const int64_t r8 = rows - rows % 8, c8 = cols - cols % 8;
  if (!out_cold) {
    for (int64_t r0 = 0; r0 < r8; r0 += 8)
      for (int64_t c0 = 0; c0 < c8; c0 += 8) transpose8x8(a + r0 * cols + c0, cols, at + c0 * rows + r0, rows);
  } else {
    for (int64_t c0 = 0; c0 < c8; c0 += 8)
      for (int64_t r0 = 0; r0 < r8; r0 += 8) transpose8x8(a + r0 * cols + c0, cols, at + c0 * rows + r0, rows);
  }
  for (int64_t c = c8; c < cols; c++)
    for (int64_t r = 0; r < r8; r++) at[c * rows + r] = a[r * cols + c];
  for (int64_t r = r8; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) at[c * rows + r] = a[r * cols + c];
}
#endif

void conv2d_transpose_plane(const float *a, int64_t rows, int64_t cols, float *at, int kernel) {
#ifdef HAVE_TRANSPOSE_AVX
  static int avx = -1; /* (every thread computes the same value: relaxed atomics suffice) */
  int has_avx = __atomic_load_n(&avx, __ATOMIC_RELAXED);
  if (has_avx < 0) {
    has_avx = __builtin_cpu_supports("avx") ? 1 : 0;
    __atomic_store_n(&avx, has_avx, __ATOMIC_RELAXED);
  }
  if (kernel > 0 && has_avx) {
    transpose_avx(a, rows, cols, at, kernel == 2);
    return;
  }
#endif
  (void)kernel;
  transpose_sse(a, rows, cols, at);
}

/* a (rows, cols) -> at: a is cold (read from the activations), at is scratch */
static void transpose(const float *a, int64_t rows, int64_t cols, float *at) {
  conv2d_transpose_plane(a, rows, cols, at, 1);
}

/* the same when at is cold (written to the activations' gradient) and a scratch */
static void transpose_out(const float *a, int64_t rows, int64_t cols, float *at) {
  conv2d_transpose_plane(a, rows, cols, at, 2);
}

// w (O,C,KH*KW) -> wt (O,KH*KW,C), and back
static void weight_to_channels_last(const ConvGeom *g, const float *w, float *wt) {
  const int64_t kk = g->kh * g->kw;
  for (int64_t o = 0; o < g->o; o++) transpose(w + o * g->c * kk, g->c, kk, wt + o * kk * g->c);
}

static const float *cached_weight(const ConvGeom *g, Tensor *w);

/* the weight channels-last for the kernels: the cached copy of the op's weight tensor, else made
** in scratch */
static const float *channels_last_weight(const ConvGeom *g, const float *w) {
  if (g->weight && g->o * g->c * g->kh * g->kw <= WCACHE_MAX) return cached_weight(g, g->weight);
  float *wt = scratch(WEIGHT, g->o * g->c * g->kh * g->kw);
  weight_to_channels_last(g, w, wt);
  return wt;
}

/* w's channels-last copy from this thread's cache, made on a miss (see WeightEntry). Sanitizer
** builds check every hit against a fresh copy, so a write that missed t_written fails the tests. */
static const float *cached_weight(const ConvGeom *g, Tensor *w) {
  Scratch *s = thread_scratch();
  const uint64_t id = w->storage->id, version = atomic_load(&w->storage->version);
  const int64_t kk = g->kh * g->kw, n = g->o * g->c * kk;
  WeightEntry *e = NULL, *victim = &s->weights[0];
  for (int i = 0; i < WCACHE; i++) {
    WeightEntry *c = &s->weights[i];
    if (c->data && c->id == id && c->version == version && c->offset == w->offset && c->o == g->o &&
        c->c == g->c && c->kk == kk) {
      e = c;
      break;
    }
    if (c->used < victim->used) victim = c;
  }
  if (e) {
#if T_ASAN /* (sanitizer builds check every hit) */
    float *fresh = scratch(WEIGHT, n);
    weight_to_channels_last(g, T_DATA(w), fresh);
    if (memcmp(fresh, e->data, (size_t)n * sizeof(float)) != 0)
      t_error("conv2d: internal error: a cached channels-last weight is stale (a write without t_written)");
#endif
  } else {
    e = victim;
    if (e->cap < n) {
      float *p = malloc((size_t)n * sizeof(float));
      if (!p) t_error("conv2d: out of memory (%lld floats of weight cache)", (long long)n);
      free(e->data);
      e->data = p;
      e->cap = n;
    }
    weight_to_channels_last(g, T_DATA(w), e->data);
    e->id = id;
    e->version = version;
    e->offset = w->offset;
    e->o = g->o;
    e->c = g->c;
    e->kk = kk;
  }
  e->used = ++s->clock;
  return e->data;
}

static void weight_from_channels_last(const ConvGeom *g, const float *wt, float *w) {
  const int64_t kk = g->kh * g->kw;
  for (int64_t o = 0; o < g->o; o++) transpose(wt + o * kk * g->c, kk, g->c, w + o * g->c * kk);
}

// y (N,O,P) images n0..n0+nb-1 -> ychunk (O, nb*P)
static void gather_chunk(const ConvGeom *g, const float *y, int64_t n0, int64_t nb, float *ychunk) {
  const int64_t p = g->oh * g->ow;
  for (int64_t n = 0; n < nb; n++)
    for (int64_t o = 0; o < g->o; o++)
      memcpy(ychunk + o * nb * p + n * p, y + ((n0 + n) * g->o + o) * p, (size_t)p * sizeof(float));
}

/* ------------------------------------------------------------ im2col / col2im */

/* taps [lo, hi) of a window row starting at input column iw0 lie inside [0, W) */
static void valid_taps(const ConvGeom *g, int64_t iw0, int64_t *lo, int64_t *hi) {
  *lo = iw0 < 0 ? (-iw0 < g->kw ? -iw0 : g->kw) : 0; /* (padding may exceed the kernel) */
  *hi = g->w - iw0 < g->kw ? g->w - iw0 : g->kw;
  if (*hi < *lo) *hi = *lo;
}

// xt (nb,H,W,C) -> col (nb*OH*OW, KH*KW*C): row (n,oh,ow) holds the window at (oh,ow);
// a window row is KW*C contiguous floats of xt, zeros where it is in the padding
static void im2col(const ConvGeom *g, const float *xt, int64_t nb, float *col) {
  const int64_t c = g->c, rowlen = g->kw * c, k = g->kh * rowlen;
  float *row = col;
  for (int64_t n = 0; n < nb; n++)
    for (int64_t oh = 0; oh < g->oh; oh++)
      for (int64_t ow = 0; ow < g->ow; ow++, row += k) {
        int64_t iw0 = ow * g->stride - g->padding, lo, hi;
        valid_taps(g, iw0, &lo, &hi);
        for (int64_t i = 0; i < g->kh; i++) {
          int64_t ih = oh * g->stride - g->padding + i;
          float *dst = row + i * rowlen;
          if (ih < 0 || ih >= g->h) {
            memset(dst, 0, (size_t)rowlen * sizeof(float));
            continue;
          }
          const float *src = xt + ((n * g->h + ih) * g->w + iw0 + lo) * c; /* tap lo */
          for (int64_t q = 0; q < lo * c; q++) dst[q] = 0;
          if (rowlen <= 4)
            for (int64_t q = 0; q < (hi - lo) * c; q++) dst[lo * c + q] = src[q];
          else memcpy(dst + lo * c, src, (size_t)((hi - lo) * c) * sizeof(float));
          for (int64_t q = hi * c; q < rowlen; q++) dst[q] = 0;
        }
      }
}

/* the window positions o in [lo, hi) whose tap i = at + padding - o * stride lies in [0, taps):
** an input row (or column) at index `at` is read by these output rows (columns) */
static void reading_windows(int64_t at, int64_t taps, int64_t outs, const ConvGeom *g, int64_t *lo, int64_t *hi) {
  int64_t top = at + g->padding; /* o * stride <= top and top - o * stride < taps */
  *lo = top - taps + 1 > 0 ? (top - taps + 1 + g->stride - 1) / g->stride : 0;
  *hi = top >= 0 ? top / g->stride + 1 : 0;
  if (*hi > outs) *hi = outs;
  if (*lo > *hi) *lo = *hi;
}

// col (nb*OH*OW, KH*KW*C) -> gxt (nb,H,W,C), overwritten: the adjoint of im2col. Each input pixel
// is written once, the sum of the window taps that read it added in the order of the windows
// (rows of col), from 0: the bits of zeroing gxt and scattering the rows into it, without the
// zero fill and the read-modify-write passes over gxt
T_HOT static void col2im(const ConvGeom *g, const float *col, int64_t nb, float *gxt) {
  const int64_t c = g->c, k = g->kh * g->kw * c;
  for (int64_t n = 0; n < nb; n++)
    for (int64_t ih = 0; ih < g->h; ih++) {
      int64_t oh0, oh1;
      reading_windows(ih, g->kh, g->oh, g, &oh0, &oh1);
      for (int64_t iw = 0; iw < g->w; iw++) {
        int64_t ow0, ow1;
        reading_windows(iw, g->kw, g->ow, g, &ow0, &ow1);
        float *dst = gxt + ((n * g->h + ih) * g->w + iw) * c;
        for (int64_t q = 0; q < c; q++) dst[q] = 0.0f;
        for (int64_t oh = oh0; oh < oh1; oh++) {
          int64_t i = ih + g->padding - oh * g->stride;
          for (int64_t ow = ow0; ow < ow1; ow++) {
            int64_t j = iw + g->padding - ow * g->stride;
            const float *src = col + ((n * g->oh + oh) * g->ow + ow) * k + (i * g->kw + j) * c;
            for (int64_t q = 0; q < c; q++) dst[q] += src[q];
          }
        }
      }
    }
}

// x (N,C,H,W) images n0..n0+nb-1 -> col (nb*OH*OW, KH*KW*C), one image at a time
// through xt (H,W,C), which stays in L1/L2 between its transpose and im2col
static void images_to_columns(const ConvGeom *g, const float *x, int64_t n0, int64_t nb, float *xt, float *col) {
  const int64_t hw = g->h * g->w, rows = g->oh * g->ow * g->c * g->kh * g->kw;
  for (int64_t n = 0; n < nb; n++) {
    transpose(x + (n0 + n) * g->c * hw, g->c, hw, xt);
    im2col(g, xt, 1, col + n * rows);
  }
}

// col (nb*OH*OW, KH*KW*C) -> gx (N,C,H,W) images n0..n0+nb-1 (overwritten), through gxt (H,W,C)
static void columns_to_images(const ConvGeom *g, const float *col, int64_t n0, int64_t nb, float *gxt, float *gx) {
  const int64_t hw = g->h * g->w, rows = g->oh * g->ow * g->c * g->kh * g->kw;
  for (int64_t n = 0; n < nb; n++) {
    col2im(g, col + n * rows, 1, gxt);
    transpose_out(gxt, hw, g->c, gx + (n0 + n) * g->c * hw);
  }
}

/* ------------------------------------------------------------ one input channel */

/* The first layer's forward (C = 1, K = KH*KW = 9) is too thin a GEMM for OpenBLAS;
** plain loops over an image's taps (KH*KW, P), vectorised over P, do better (1.2-1.5x).
** So does its weight gradient: KH*KW dot products per output channel and image read gy
** once, where a (O, P) x (P, 9) GEMM per image ran at a fifth of that speed. The input
** gradient (not needed to train: images need no gradient) stays on GEMM. */

// x (H,W) of one image, C = 1 -> taps (KH*KW, OH*OW): taps[i*KW+j][oh*OW+ow] = x at
// (oh*stride - padding + i, ow*stride - padding + j), 0 in the padding
static void image_taps(const ConvGeom *g, const float *x, float *taps) {
  const int64_t s = g->stride, pad = g->padding;
  float *dst = taps;
  for (int64_t i = 0; i < g->kh; i++)
    for (int64_t j = 0; j < g->kw; j++) {
      /* output columns [lo, hi) read an input column inside [0, W) */
      int64_t lo = pad - j > 0 ? (pad - j + s - 1) / s : 0;
      int64_t hi = g->w + pad - j > 0 ? (g->w + pad - j + s - 1) / s : 0;
      if (hi > g->ow) hi = g->ow;
      if (lo > hi) lo = hi;
      for (int64_t oh = 0; oh < g->oh; oh++, dst += g->ow) {
        int64_t ih = oh * s - pad + i;
        if (ih < 0 || ih >= g->h) {
          for (int64_t ow = 0; ow < g->ow; ow++) dst[ow] = 0;
          continue;
        }
        const float *src = x + ih * g->w + lo * s - pad + j; /* output column lo */
        for (int64_t ow = 0; ow < lo; ow++) dst[ow] = 0;
        for (int64_t ow = lo; ow < hi; ow++) dst[ow] = src[(ow - lo) * s];
        for (int64_t ow = hi; ow < g->ow; ow++) dst[ow] = 0;
      }
    }
}

// y (P) = bias + sum over taps t of wo[t] * taps[t] (P), in the order of t; blocks of
// 32 (then 8) outputs stay in registers through all the taps
T_HOT static void weighted_taps(float *y, const float *taps, const float *wo, int64_t ntaps, int64_t p, float bias) {
  enum { QB = 32 };
  int64_t q0 = 0;
  for (; q0 + QB <= p; q0 += QB) {
    float acc[QB];
    for (int l = 0; l < QB; l++) acc[l] = bias;
    for (int64_t t = 0; t < ntaps; t++) {
      const float wt = wo[t], *tp = taps + t * p + q0;
      for (int l = 0; l < QB; l++) acc[l] += wt * tp[l];
    }
    for (int l = 0; l < QB; l++) y[q0 + l] = acc[l];
  }
  for (; q0 + 8 <= p; q0 += 8) {
    float acc[8];
    for (int l = 0; l < 8; l++) acc[l] = bias;
    for (int64_t t = 0; t < ntaps; t++) {
      const float wt = wo[t], *tp = taps + t * p + q0;
      for (int l = 0; l < 8; l++) acc[l] += wt * tp[l];
    }
    for (int l = 0; l < 8; l++) y[q0 + l] = acc[l];
  }
  for (int64_t q = q0; q < p; q++) {
    float acc = bias;
    for (int64_t t = 0; t < ntaps; t++) acc += wo[t] * taps[t * p + q];
    y[q] = acc;
  }
}

// out (N,O,OH,OW) from x (N,1,H,W), w (O,1,KH,KW), b (O) or NULL
static void conv2d_forward_c1(const ConvGeom *g, float *out, const float *x, const float *w, const float *b) {
  const int64_t p = g->oh * g->ow, kk = g->kh * g->kw;
  float *taps = scratch(COLS, kk * p);
  for (int64_t n = 0; n < g->n; n++) {
    image_taps(g, x + n * g->h * g->w, taps);
    for (int64_t o = 0; o < g->o; o++)
      weighted_taps(out + (n * g->o + o) * p, taps, w + o * kk, kk, p, b ? b[o] : 0.0f);
  }
}

// acc[t] += dot(g (P), taps[t] (P)) for t < nt <= 12: one pass over g, a vector
// accumulator per tap (independent chains), lanes summed in a fixed order. Inlined
// with a constant nt, the accumulators stay in registers.
static inline __attribute__((always_inline)) void tap_dots_n(float *acc, const float *g, const float *taps, int64_t nt,
                                                             int64_t p) {
  t_v8f a[12] = {{0}};
  int64_t k = 0;
  for (; k + 8 <= p; k += 8) {
    t_v8f gv;
    T_LOAD8(gv, g + k);
    for (int64_t t = 0; t < nt; t++) {
      t_v8f tv;
      T_LOAD8(tv, taps + t * p + k);
      a[t] += gv * tv;
    }
  }
  for (int64_t t = 0; t < nt; t++) {
    float sum = T_HSUM8(a[t]);
    for (int64_t q = k; q < p; q++) sum += g[q] * taps[t * p + q];
    acc[t] += sum;
  }
}

// the same for any number of taps: 3x3 and 2x2 kernels in one pass, others by 8
T_HOT static void tap_dots(float *acc, const float *g, const float *taps, int64_t nt, int64_t p) {
  if (nt == 9) tap_dots_n(acc, g, taps, 9, p);
  else if (nt == 4) tap_dots_n(acc, g, taps, 4, p);
  else
    for (int64_t t0 = 0; t0 < nt; t0 += 8) tap_dots_n(acc + t0, g, taps + t0 * p, nt - t0 < 8 ? nt - t0 : 8, p);
}

// gw (O,1,KH,KW) from x (N,1,H,W), gy (N,O,OH,OW): per image, the taps (KH*KW, P)
// and, for each o, their dot products with gy's row (P), added to gw image by image
static void conv2d_backward_weight_c1(const ConvGeom *g, float *gw, const float *x, const float *gy) {
  const int64_t p = g->oh * g->ow, kk = g->kh * g->kw;
  float *taps = scratch(COLS, kk * p);
  memset(gw, 0, (size_t)(g->o * kk) * sizeof(float));
  for (int64_t n = 0; n < g->n; n++) {
    image_taps(g, x + n * g->h * g->w, taps);
    for (int64_t o = 0; o < g->o; o++) tap_dots(gw + o * kk, gy + (n * g->o + o) * p, taps, kk, p);
  }
}

/* ------------------------------------------------------------ one output pixel */

/* A kernel as large as the unpadded input (the peer network's last conv, 2x2 on 2x2)
** has one output pixel whose window is the whole image in the weight's own order
** (c, i, j): the three ops are plain GEMMs on x (N, K), w (O, K), y (N, O), no copies. */
static int whole_image(const ConvGeom *g) { return g->padding == 0 && g->kh == g->h && g->kw == g->w; }

/* ------------------------------------------------------------ channels-last kernels */

/* With g->nhwc, activations are (N,H,W,C) and (N,OH,OW,O): im2col reads the images
** as they are, and each GEMM reads and writes a chunk of images in place, so no
** transposes and no copies of y or gy are left (only the weight's, O*K floats):
**   forward          y (nb*P, O)  = cols (nb*P, K) @ wt^T (K, O) + b
**   backward_input   cols         = gy (nb*P, O) @ wt (O, K), then col2im into gx
**   backward_weight  gwt (O, K)  += gy^T (O, nb*P) @ cols (nb*P, K)
** A kernel as large as the input is the same three GEMMs on x (N, K) in (i, j, c) order. */

// y = max(y, 0), in place (a fused ReLU, on a chunk of output while it is in the cache)
T_HOT static void relu_in_place(float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
}

// rows (R, O) = b (O) each: the GEMM then adds to them (beta 1), which spares OpenBLAS its
// zeroing pass over y (beta 0) and us a pass adding the bias afterwards
T_HOT static void fill_bias_rows(float *y, int64_t rows, int64_t o, const float *b) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t k = 0; k < o; k++) y[r * o + k] = b[k];
}

static void forward_nhwc(const ConvGeom *g, float *out, const float *x, const float *w, const float *b) {
  const int64_t p = g->oh * g->ow, k = g->c * g->kh * g->kw, nbmax = chunk_images(g);
  const int64_t xsize = g->h * g->w * g->c;
  if (conv_dnnl_forward(g, out, x, w, b)) return;
  const float *wt = channels_last_weight(g, w);
  if (whole_image(g)) { // y (N, O) = x (N, K) @ wt^T (K, O) + b
    if (b) fill_bias_rows(out, g->n, g->o, b);
    t_sgemm(0, 1, (int)g->n, (int)g->o, (int)k, 1.0f, x, (int)k, wt, (int)k, b ? 1.0f : 0.0f, out, (int)g->o);
    if (g->relu) relu_in_place(out, g->n * g->o);
    return;
  }
  float *col = scratch(COLS, nbmax * p * k);
  for (int64_t n0 = 0; n0 < g->n; n0 += nbmax) {
    int64_t nb = g->n - n0 < nbmax ? g->n - n0 : nbmax;
    float *y = out + n0 * p * g->o;
    im2col(g, x + n0 * xsize, nb, col);
    if (b) fill_bias_rows(y, nb * p, g->o, b);
    t_sgemm(0, 1, (int)(nb * p), (int)g->o, (int)k, 1.0f, col, (int)k, wt, (int)k, b ? 1.0f : 0.0f, y, (int)g->o);
    if (g->relu) relu_in_place(y, nb * p * g->o);
  }
}

static void backward_input_nhwc(const ConvGeom *g, float *gx, const float *gy, const float *w) {
  const int64_t p = g->oh * g->ow, k = g->c * g->kh * g->kw, nbmax = chunk_images(g);
  const int64_t xsize = g->h * g->w * g->c;
  if (conv_dnnl_backward_input(g, gx, gy, w)) return;
  const float *wt = channels_last_weight(g, w);
  if (whole_image(g)) { // gx (N, K) = gy (N, O) @ wt (O, K)
    t_sgemm(0, 0, (int)g->n, (int)k, (int)g->o, 1.0f, gy, (int)g->o, wt, (int)k, 0.0f, gx, (int)k);
    return;
  }
  float *col = scratch(COLS, nbmax * p * k);
  for (int64_t n0 = 0; n0 < g->n; n0 += nbmax) {
    int64_t nb = g->n - n0 < nbmax ? g->n - n0 : nbmax;
    t_sgemm(0, 0, (int)(nb * p), (int)k, (int)g->o, 1.0f, gy + n0 * p * g->o, (int)g->o, wt, (int)k, 0.0f, col, (int)k);
    col2im(g, col, nb, gx + n0 * xsize);
  }
}

static void backward_weight_nhwc(const ConvGeom *g, float *gw, const float *x, const float *gy) {
  const int64_t p = g->oh * g->ow, k = g->c * g->kh * g->kw, nbmax = chunk_images(g);
  const int64_t xsize = g->h * g->w * g->c;
  if (conv_dnnl_backward_weight(g, gw, x, gy)) return;
  float *gwt = scratch(WEIGHT, g->o * k);
  if (whole_image(g)) { // gwt (O, K) = gy^T (O, N) @ x (N, K)
    t_sgemm(1, 0, (int)g->o, (int)k, (int)g->n, 1.0f, gy, (int)g->o, x, (int)k, 0.0f, gwt, (int)k);
  } else {
    float *col = scratch(COLS, nbmax * p * k);
    for (int64_t n0 = 0; n0 < g->n; n0 += nbmax) {
      int64_t nb = g->n - n0 < nbmax ? g->n - n0 : nbmax;
      im2col(g, x + n0 * xsize, nb, col);
      t_sgemm(1, 0, (int)g->o, (int)k, (int)(nb * p), 1.0f, gy + n0 * p * g->o, (int)g->o, col, (int)k,
              n0 == 0 ? 0.0f : 1.0f, gwt, (int)k);
    }
  }
  weight_from_channels_last(g, gwt, gw);
}

/* ------------------------------------------------------------ kernels */

/* names the op and layer of the GEMMs that follow in the shape log (MAMLRUN_GEMM_LOG) */
static void gemm_site(const char *op, const ConvGeom *g) {
  if (t_gemm_log_on())
    t_gemm_site("conv2d.%s N%lld C%lld H%lldxW%lld O%lld k%lldx%lld s%d p%d", op, (long long)g->n, (long long)g->c,
                (long long)g->h, (long long)g->w, (long long)g->o, (long long)g->kh, (long long)g->kw, g->stride,
                g->padding);
}

/* Images per GEMM inside a chunk: all of them when the maps are small (P =
** OH*OW below 64, the MAML layers after the first), else one at a time,
** which reads gy and writes y in place instead of through (O, nb*P) copies. */
static int64_t gemm_images(const ConvGeom *g, int64_t nb) { return g->oh * g->ow >= 64 ? 1 : nb; }

static void forward_nchw(const ConvGeom *g, float *out, const float *x, const float *w, const float *b);

// out = conv(x, w) + b, then max(., 0) when g->relu
void conv2d_forward_kernel(const ConvGeom *g, float *out, const float *x, const float *w, const float *b) {
  const int64_t p = g->oh * g->ow, k = g->c * g->kh * g->kw;
  if (g->n * g->o * p == 0) return;
  gemm_site("forward", g);
  if (k == 0) { /* (an output channel's value is its bias) */
    for (int64_t i = 0; i < g->n * g->o * p; i++) out[i] = b ? b[g->nhwc ? i % g->o : i / p % g->o] : 0.0f;
  } else if (g->nhwc) {
    forward_nhwc(g, out, x, w, b); /* (its ReLU chunk by chunk) */
    return;
  } else {
    forward_nchw(g, out, x, w, b);
  }
  if (g->relu) relu_in_place(out, g->n * g->o * p);
}

// out (N,O,OH,OW) = wt (O,K) @ cols^T (K, N*P) + b (O), K = KH*KW*C > 0, P = OH*OW
static void forward_nchw(const ConvGeom *g, float *out, const float *x, const float *w, const float *b) {
  const int64_t p = g->oh * g->ow, k = g->c * g->kh * g->kw, nbmax = chunk_images(g);
  if (g->c == 1) {
    conv2d_forward_c1(g, out, x, w, b);
    return;
  }
  if (whole_image(g)) { // y (N, O) = x (N, K) @ w^T (K, O) + b
    for (int64_t n = 0; n < g->n; n++)
      for (int64_t o = 0; o < g->o; o++) out[n * g->o + o] = b ? b[o] : 0.0f;
    t_sgemm(0, 1, (int)g->n, (int)g->o, (int)k, 1.0f, x, (int)k, w, (int)k, 1.0f, out, (int)g->o);
    return;
  }
  float *col = scratch(COLS, nbmax * p * k), *ychunk = scratch(YCHUNK, g->o * nbmax * p);
  float *xt = scratch(XCHUNK, g->h * g->w * g->c);
  const float *wt = channels_last_weight(g, w);
  for (int64_t n0 = 0; n0 < g->n; n0 += nbmax) {
    int64_t nb = g->n - n0 < nbmax ? g->n - n0 : nbmax, gb = gemm_images(g, nb);
    images_to_columns(g, x, n0, nb, xt, col);
    for (int64_t m = 0; m < nb; m += gb) {
      // one image: (O, P) straight into out; several: (O, gb*P), then to out (gb, O, P)
      float *y = gb == 1 ? out + (n0 + m) * g->o * p : ychunk;
      t_sgemm(0, 1, (int)g->o, (int)(gb * p), (int)k, 1.0f, wt, (int)k, col + m * p * k, (int)k, 0.0f, y,
              (int)(gb * p));
      for (int64_t n = 0; n < gb; n++)
        for (int64_t o = 0; o < g->o; o++) {
          float *dst = out + ((n0 + m + n) * g->o + o) * p;
          const float *src = y + o * gb * p + n * p;
          float bias = b ? b[o] : 0.0f;
          if (gb == 1) {
            if (b)
              for (int64_t q = 0; q < p; q++) dst[q] += bias;
          } else {
            for (int64_t q = 0; q < p; q++) dst[q] = src[q] + bias;
          }
        }
    }
  }
}

// gx (N,C,H,W) = col2im(gy^T (N*P, O) @ wt (O, K))
void conv2d_backward_input_kernel(const ConvGeom *g, float *gx, const float *gy, const float *w) {
  const int64_t p = g->oh * g->ow, k = g->c * g->kh * g->kw, nbmax = chunk_images(g);
  const int64_t xsize = g->c * g->h * g->w;
  gemm_site("backward_input", g);
  if (g->n * p * k == 0 || g->o == 0) {
    memset(gx, 0, (size_t)(g->n * xsize) * sizeof(float));
    return;
  }
  if (g->nhwc) {
    backward_input_nhwc(g, gx, gy, w);
    return;
  }
  if (whole_image(g)) { // gx (N, K) = gy (N, O) @ w (O, K)
    t_sgemm(0, 0, (int)g->n, (int)k, (int)g->o, 1.0f, gy, (int)g->o, w, (int)k, 0.0f, gx, (int)k);
    return;
  }
  float *col = scratch(COLS, nbmax * p * k), *gychunk = scratch(YCHUNK, g->o * nbmax * p);
  float *gxt = scratch(XCHUNK, xsize);
  const float *wt = channels_last_weight(g, w);
  for (int64_t n0 = 0; n0 < g->n; n0 += nbmax) {
    int64_t nb = g->n - n0 < nbmax ? g->n - n0 : nbmax, gb = gemm_images(g, nb);
    for (int64_t m = 0; m < nb; m += gb) {
      const float *gyc = gy + (n0 + m) * g->o * p;
      if (gb > 1) {
        gather_chunk(g, gy, n0 + m, gb, gychunk);
        gyc = gychunk;
      }
      t_sgemm(1, 0, (int)(gb * p), (int)k, (int)g->o, 1.0f, gyc, (int)(gb * p), wt, (int)k, 0.0f, col + m * p * k,
              (int)k);
    }
    columns_to_images(g, col, n0, nb, gxt, gx);
  }
}

// gw (O,C,KH,KW) from gwt (O,K) = sum over chunks of gy (O, nb*P) @ cols (nb*P, K)
void conv2d_backward_weight_kernel(const ConvGeom *g, float *gw, const float *x, const float *gy) {
  const int64_t p = g->oh * g->ow, k = g->c * g->kh * g->kw, nbmax = chunk_images(g);
  const int64_t xsize = g->c * g->h * g->w;
  gemm_site("backward_weight", g);
  if (g->n * p * k == 0 || g->o == 0) {
    memset(gw, 0, (size_t)(g->o * k) * sizeof(float));
    return;
  }
  if (g->nhwc) {
    backward_weight_nhwc(g, gw, x, gy);
    return;
  }
  if (g->c == 1 && !whole_image(g)) {
    conv2d_backward_weight_c1(g, gw, x, gy);
    return;
  }
  if (whole_image(g)) { // gw (O, K) = gy^T (O, N) @ x (N, K)
    t_sgemm(1, 0, (int)g->o, (int)k, (int)g->n, 1.0f, gy, (int)g->o, x, (int)k, 0.0f, gw, (int)k);
    return;
  }
  float *col = scratch(COLS, nbmax * p * k), *gychunk = scratch(YCHUNK, g->o * nbmax * p);
  float *xt = scratch(XCHUNK, xsize), *gwt = scratch(WEIGHT, g->o * k);
  for (int64_t n0 = 0; n0 < g->n; n0 += nbmax) {
    int64_t nb = g->n - n0 < nbmax ? g->n - n0 : nbmax, gb = gemm_images(g, nb);
    images_to_columns(g, x, n0, nb, xt, col);
    for (int64_t m = 0; m < nb; m += gb) {
      const float *gyc = gy + (n0 + m) * g->o * p;
      if (gb > 1) {
        gather_chunk(g, gy, n0 + m, gb, gychunk);
        gyc = gychunk;
      }
      t_sgemm(0, 0, (int)g->o, (int)k, (int)(gb * p), 1.0f, gyc, (int)(gb * p), col + m * p * k, (int)k,
              n0 + m == 0 ? 0.0f : 1.0f, gwt, (int)k);
    }
  }
  weight_from_channels_last(g, gwt, gw);
}

/* ------------------------------------------------------------ argument checks */

/* stride, padding (argument opt_arg) and the kernel (argument kernel_arg) against the input */
static ConvGeom checked_geom(const char *fn, int kernel_arg, int opt_arg, int64_t n, int64_t c, int64_t h, int64_t w,
                             int64_t o, int64_t kh, int64_t kw, int stride, int padding) {
  if (stride < 1) t_argerror(fn, opt_arg, "stride must be >= 1, got %d", stride);
  if (padding < 0) t_argerror(fn, opt_arg, "padding must be >= 0, got %d", padding);
  if (kh < 1 || kw < 1)
    t_argerror(fn, kernel_arg, "kernel must be at least 1x1, got %lldx%lld", (long long)kh, (long long)kw);
  if (kh > h + 2 * (int64_t)padding || kw > w + 2 * (int64_t)padding)
    t_argerror(fn, kernel_arg, "kernel %lldx%lld is larger than the padded input %lldx%lld", (long long)kh,
               (long long)kw, (long long)(h + 2 * (int64_t)padding), (long long)(w + 2 * (int64_t)padding));
  return conv2d_geom(n, c, h, w, o, kh, kw, stride, padding);
}

static void check_4d(const char *fn, int arg, const Tensor *t, const char *what) {
  char buf[96];
  if (t->ndim != 4) t_argerror(fn, arg, "expected 4-d %s, got %d-d %s", what, t->ndim, t_shape_str(t, buf, sizeof buf));
}

/* ------------------------------------------------------------ ops */

/* an activation's (C, H, W) in its layout: (N,C,H,W), or (N,H,W,C) when nhwc */
static void image_dims(const Tensor *t, int nhwc, int64_t *c, int64_t *h, int64_t *w) {
  *c = t->shape[nhwc ? 3 : 1];
  *h = t->shape[nhwc ? 1 : 2];
  *w = t->shape[nhwc ? 2 : 3];
}

/* a new activation of n images, c channels, h x w, in the layout */
static Tensor *new_image(int nhwc, int64_t n, int64_t c, int64_t h, int64_t w) {
  return nhwc ? t_new(4, (int64_t[]){n, h, w, c}) : t_new(4, (int64_t[]){n, c, h, w});
}

static void record_geometry(Node *n, int stride, int padding, int nhwc) {
  if (!n) return;
  n->ints[0] = stride;
  n->ints[1] = padding;
  n->ints[2] = nhwc;
}

static void conv2d_backward(Node *n, Tensor *gout, Tensor **gin, const int *needs);
static void conv2d_backward_input_backward(Node *n, Tensor *gout, Tensor **gin, const int *needs);
static void conv2d_backward_weight_backward(Node *n, Tensor *gout, Tensor **gin, const int *needs);

// x (N,C,H,W), w (O,C,KH,KW), b (O) or NULL -> y (N,O,OH,OW); flags T_CONV_NHWC: x (N,H,W,C) ->
// y (N,OH,OW,O); T_CONV_RELU: y = max(conv + b, 0), its backward masked by y (saved as a detached view)
Tensor *t_conv2d(Tensor *x, Tensor *w, Tensor *b, int stride, int padding, int flags) {
  char b1[96], b2[96];
  int64_t c, h, wd;
  const int nhwc = (flags & T_CONV_NHWC) != 0, relu = (flags & T_CONV_RELU) != 0;
  check_4d("conv2d", 1, x, nhwc ? "input (N,H,W,C)" : "input (N,C,H,W)");
  check_4d("conv2d", 2, w, "weight (O,C,KH,KW)");
  image_dims(x, nhwc, &c, &h, &wd);
  if (w->shape[1] != c)
    t_argerror("conv2d", 2, "weight %s has %lld input channels, input %s has %lld", t_shape_str(w, b1, sizeof b1),
               (long long)w->shape[1], t_shape_str(x, b2, sizeof b2), (long long)c);
  if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
    t_argerror("conv2d", 3, "expected bias of shape (%lld), got %s", (long long)w->shape[0],
               t_shape_str(b, b1, sizeof b1));
  ConvGeom g =
      checked_geom("conv2d", 2, 4, x->shape[0], c, h, wd, w->shape[0], w->shape[2], w->shape[3], stride, padding);
  g.nhwc = nhwc;
  g.relu = relu;
  reserve_scratch(&g);
  g.weight = w; /* (its channels-last copy cached, when a kernel uses one) */
  Tensor *y = new_image(nhwc, g.n, g.o, g.oh, g.ow);
  conv2d_forward_kernel(&g, T_DATA(y), T_DATA(x), T_DATA(w), b ? T_DATA(b) : NULL);
  Node *n = ag_record(y, relu ? "conv2d_relu" : "conv2d", conv2d_backward, b ? 3 : 2, (Tensor *[]){x, w, b});
  record_geometry(n, stride, padding, nhwc);
  if (n && relu) node_save(n, 0, t_detach(y)); /* (a view: the node does not hold its own output) */
  return y;
}

/* an output's gradient (N,O,OH,OW) or (N,OH,OW,O) summed over all but its channels */
static Tensor *output_channel_sum(Tensor *gy, int nhwc) {
  if (!nhwc) return t_channel_sum(gy);
  int scope = t_scope_begin();
  Tensor *s = t_channel_sum(t_temp(t_reshape(gy, 2, (int64_t[]){gy->numel / gy->shape[3], gy->shape[3]})));
  t_scope_end(scope);
  return s;
}

static void conv2d_backward(Node *n, Tensor *gout, Tensor **gin, const int *needs) {
  Tensor *x = n->inputs[0], *w = n->inputs[1];
  int stride = (int)n->ints[0], padding = (int)n->ints[1], nhwc = (int)n->ints[2];
  int64_t c, h, wd;
  image_dims(x, nhwc, &c, &h, &wd);
  int scope = t_scope_begin();
  if (n->saved[0]) gout = t_temp(t_relu_backward(gout, n->saved[0])); /* (the fused ReLU's) */
  if (needs[0]) gin[0] = t_conv2d_backward_input(gout, w, h, wd, stride, padding, nhwc);
  if (needs[1]) gin[1] = t_conv2d_backward_weight(x, gout, w->shape[2], w->shape[3], stride, padding, nhwc);
  if (n->ninputs > 2 && needs[2]) gin[2] = output_channel_sum(gout, nhwc);
  t_scope_end(scope);
}

// gy (N,O,OH,OW), w (O,C,KH,KW) -> gx (N,C,H,W); with nhwc gy (N,OH,OW,O) -> gx (N,H,W,C)
Tensor *t_conv2d_backward_input(Tensor *gy, Tensor *w, int64_t h, int64_t w_, int stride, int padding, int nhwc) {
  const char *fn = "conv2d_backward_input";
  char b1[96], b2[96];
  int64_t o, oh, ow;
  check_4d(fn, 1, gy, nhwc ? "gradient (N,OH,OW,O)" : "gradient (N,O,OH,OW)");
  check_4d(fn, 2, w, "weight (O,C,KH,KW)");
  image_dims(gy, nhwc, &o, &oh, &ow);
  if (o != w->shape[0])
    t_argerror(fn, 2, "weight %s has %lld output channels, gradient %s has %lld", t_shape_str(w, b1, sizeof b1),
               (long long)w->shape[0], t_shape_str(gy, b2, sizeof b2), (long long)o);
  if (h < 0 || w_ < 0) t_argerror(fn, 3, "input size must be >= 0, got %lldx%lld", (long long)h, (long long)w_);
  ConvGeom g =
      checked_geom(fn, 2, 4, gy->shape[0], w->shape[1], h, w_, w->shape[0], w->shape[2], w->shape[3], stride, padding);
  if (g.oh != oh || g.ow != ow)
    t_argerror(fn, 3, "input size %lldx%lld gives a %lldx%lld output, gradient %s is not that", (long long)h,
               (long long)w_, (long long)g.oh, (long long)g.ow, t_shape_str(gy, b1, sizeof b1));
  g.nhwc = nhwc;
  reserve_scratch(&g);
  g.weight = w; /* (its channels-last copy cached, when a kernel uses one) */
  Tensor *gx = new_image(nhwc, g.n, g.c, g.h, g.w);
  conv2d_backward_input_kernel(&g, T_DATA(gx), T_DATA(gy), T_DATA(w));
  record_geometry(ag_record(gx, fn, conv2d_backward_input_backward, 2, (Tensor *[]){gy, w}), stride, padding, nhwc);
  return gx;
}

// gx = BI(gy, w) is bilinear: <g, BI(gy, w)> = <conv2d(g, w), gy> = <BW(g, gy), w>
static void conv2d_backward_input_backward(Node *n, Tensor *gout, Tensor **gin, const int *needs) {
  Tensor *gy = n->inputs[0], *w = n->inputs[1];
  int stride = (int)n->ints[0], padding = (int)n->ints[1], nhwc = (int)n->ints[2];
  if (needs[0]) gin[0] = t_conv2d(gout, w, NULL, stride, padding, nhwc);
  if (needs[1]) gin[1] = t_conv2d_backward_weight(gout, gy, w->shape[2], w->shape[3], stride, padding, nhwc);
}

// x (N,C,H,W), gy (N,O,OH,OW) -> gw (O,C,KH,KW); with nhwc x (N,H,W,C), gy (N,OH,OW,O)
Tensor *t_conv2d_backward_weight(Tensor *x, Tensor *gy, int64_t kh, int64_t kw, int stride, int padding, int nhwc) {
  const char *fn = "conv2d_backward_weight";
  char b1[96], b2[96];
  int64_t c, h, wd, o, oh, ow;
  check_4d(fn, 1, x, nhwc ? "input (N,H,W,C)" : "input (N,C,H,W)");
  check_4d(fn, 2, gy, nhwc ? "gradient (N,OH,OW,O)" : "gradient (N,O,OH,OW)");
  if (gy->shape[0] != x->shape[0])
    t_argerror(fn, 2, "gradient %s has batch %lld, input %s has %lld", t_shape_str(gy, b1, sizeof b1),
               (long long)gy->shape[0], t_shape_str(x, b2, sizeof b2), (long long)x->shape[0]);
  image_dims(x, nhwc, &c, &h, &wd);
  image_dims(gy, nhwc, &o, &oh, &ow);
  ConvGeom g = checked_geom(fn, 3, 4, x->shape[0], c, h, wd, o, kh, kw, stride, padding);
  if (g.oh != oh || g.ow != ow)
    t_argerror(fn, 2, "expected a gradient of size %lldx%lld, got %s", (long long)g.oh, (long long)g.ow,
               t_shape_str(gy, b1, sizeof b1));
  g.nhwc = nhwc;
  reserve_scratch(&g);
  Tensor *gw = t_new(4, (int64_t[]){g.o, g.c, g.kh, g.kw});
  conv2d_backward_weight_kernel(&g, T_DATA(gw), T_DATA(x), T_DATA(gy));
  record_geometry(ag_record(gw, fn, conv2d_backward_weight_backward, 2, (Tensor *[]){x, gy}), stride, padding, nhwc);
  return gw;
}

// gw = BW(x, gy) is bilinear: <g, BW(x, gy)> = <x, BI(gy, g)> = <conv2d(x, g), gy>
static void conv2d_backward_weight_backward(Node *n, Tensor *gout, Tensor **gin, const int *needs) {
  Tensor *x = n->inputs[0], *gy = n->inputs[1];
  int stride = (int)n->ints[0], padding = (int)n->ints[1], nhwc = (int)n->ints[2];
  int64_t c, h, wd;
  image_dims(x, nhwc, &c, &h, &wd);
  if (needs[0]) gin[0] = t_conv2d_backward_input(gy, gout, h, wd, stride, padding, nhwc);
  if (needs[1]) gin[1] = t_conv2d(x, gout, NULL, stride, padding, nhwc);
}
