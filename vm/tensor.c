/*
** tensor.c: tensor allocation and reference counting, errors, and the
** random number generator.
*/
#include "tensor.h"
#include "sys.h"

#include <math.h>
#include <pthread.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ errors */

static void default_error_handler(const char *msg) {
  fprintf(stderr, "mamlrun: %s\n", msg);
  abort();
}

static _Thread_local t_error_handler error_handler = default_error_handler;

void t_set_error_handler(t_error_handler h) { error_handler = h ? h : default_error_handler; }

/* ------------------------------------------------------------ temporaries of composite ops */

/* at most this many at once on a thread (a fixed array: nothing to free when a thread ends) */
#define T_MAXTEMPS 512
typedef struct Temp {
  void *p;
  void (*drop)(void *);
} Temp;
static _Thread_local Temp temps[T_MAXTEMPS];
static _Thread_local int ntemps, scope_depth, scope_grad_mode;

static void drop_tensor(void *t) { t_release(t); }

static void push_temp(void *p, void (*drop)(void *)) {
  if (ntemps == T_MAXTEMPS) {
    drop(p);
    t_error("more than %d temporaries in composite ops", T_MAXTEMPS);
  }
  temps[ntemps].p = p;
  temps[ntemps++].drop = drop;
}

static void pop_temp(void) {
  ntemps--;
  temps[ntemps].drop(temps[ntemps].p);
}

int t_scope_begin(void) {
  if (scope_depth++ == 0) scope_grad_mode = ag_is_enabled();
  return ntemps;
}

void t_scope_end(int scope) {
  while (ntemps > scope) pop_temp();
  scope_depth--;
}

Tensor *t_temp(Tensor *t) {
  push_temp(t, drop_tensor);
  return t;
}

void *t_temp_block(void *p) {
  if (p) push_temp(p, free);
  return p;
}

int t_temps_open(void) { return ntemps; }

/* the error path: the ops that opened scopes will not return */
static void abandon_scopes(void) {
  while (ntemps > 0) pop_temp();
  if (scope_depth > 0) ag_set_enabled(scope_grad_mode);
  scope_depth = 0;
}

void t_error(const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  abandon_scopes();
  error_handler(msg);
  abort(); /* a handler must not return */
}

void t_argerror(const char *fn, int arg, const char *fmt, ...) {
  char detail[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  t_error("bad argument #%d to '%s' (%s)", arg, fn, detail);
}

char *t_shape_str2(int ndim, const int64_t *shape, char *buf, size_t n) {
  size_t len = 0;
  len += (size_t)snprintf(buf, n, "(");
  for (int i = 0; i < ndim && len < n; i++)
    len += (size_t)snprintf(buf + len, n - len, i ? ", %lld" : "%lld", (long long)shape[i]);
  if (len < n) snprintf(buf + len, n - len, ")");
  return buf;
}

char *t_shape_str(const Tensor *t, char *buf, size_t n) { return t_shape_str2(t->ndim, t->shape, buf, n); }

/* ------------------------------------------------------------ life cycle */

static _Atomic int64_t live_bytes, peak_bytes;
static _Atomic int64_t live_high_water; /* the most live bytes ever: T.reset_peak_memory leaves it */
static _Atomic int64_t cached_total; /* in all threads' caches */
static _Thread_local int64_t thread_allocated_bytes; /* only grows */

int64_t t_live_bytes(void) { return live_bytes; }
int64_t t_thread_allocated_bytes(void) { return thread_allocated_bytes; }

/* ------------------------------------------------------------ the buffer cache */
/* A training loop allocates the same sizes every iteration. Freed buffers
** wait in a per-thread cache keyed by exact size, so the next iteration
** reuses them: no malloc, no page faults, no arena growth. The cache holds at
** most T_CACHE_BYTES per thread, and beyond that buffers up to a quarter of
** it while the live and cached bytes together stay under the most bytes
** ever live: memory the process has already needed at once, so the cache does
** not raise the peak. (A second-order task frees hundreds of MB of same-size
** buffers at its end and asks for them again in the next.) When a freed buffer
** does not fit, the buffers freed longest ago make room for it: the sizes a
** backward pass frees are the sizes it asks for next (without that, 20w5s at
** second order sent 1.5 GB of buffers per meta-iteration back to the system and
** faulted them in again). What still does not fit goes back to malloc, and from
** there to the system (see T_MMAP_THRESHOLD). */
#define T_CACHE_BYTES ((size_t)128 << 20)
#define T_CACHE_BUCKETS 256

typedef struct CachedBuffer { /* (in the freed buffer itself, 64 bytes or more) */
  struct CachedBuffer *next; /* in its bucket */
  struct CachedBuffer *newer, *older; /* the cache's buffers in the order they were freed */
  size_t bytes;
} CachedBuffer;

typedef struct {
  CachedBuffer *buckets[T_CACHE_BUCKETS];
  CachedBuffer *newest, *oldest;
  size_t bytes;
} BufferCache;

static _Thread_local BufferCache *thread_cache;
static _Atomic uint64_t next_storage_id = 1;
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

/* every cached buffer back to malloc */
static void cache_empty(BufferCache *c) {
  cached_total -= (int64_t)c->bytes;
  for (int i = 0; i < T_CACHE_BUCKETS; i++)
    while (c->buckets[i]) {
      CachedBuffer *b = c->buckets[i];
      c->buckets[i] = b->next;
      free(b);
    }
  c->newest = c->oldest = NULL;
  c->bytes = 0;
}

static void cache_drop(void *p) { /* at thread exit */
  cache_empty(p);
  free(p);
}

/* Below the cache, buffers from 1 MB up are mapped and unmapped one by one.
** glibc otherwise raises its mmap threshold to the largest block freed so
** far (up to 32 MB), after which big buffers come from its arenas, one per
** thread, whose freed memory stays resident: with two threads that held
** more than the tensors and the caches together. The cache does the reuse. */
#define T_MMAP_THRESHOLD (1 << 20)

static void cache_key_init(void) {
  pthread_key_create(&cache_key, cache_drop);
#ifdef __GLIBC__
  mallopt(M_MMAP_THRESHOLD, T_MMAP_THRESHOLD);
#endif
}

static BufferCache *cache_get(void) {
  if (!thread_cache) {
    pthread_once(&cache_once, cache_key_init);
    thread_cache = calloc(1, sizeof *thread_cache);
    if (thread_cache) pthread_setspecific(cache_key, thread_cache);
  }
  return thread_cache;
}

static size_t bucket_of(size_t bytes) { return (bytes / 64 * 2654435761u) % T_CACHE_BUCKETS; }

/* b out of the cache's order and its accounting (its bucket is the caller's) */
static void cache_unlink(BufferCache *c, CachedBuffer *b) {
  if (b->newer) b->newer->older = b->older;
  else c->newest = b->older;
  if (b->older) b->older->newer = b->newer;
  else c->oldest = b->newer;
  c->bytes -= b->bytes;
  cached_total -= (int64_t)b->bytes;
}

/* bytes is a multiple of 64 */
static float *buffer_alloc(size_t bytes) {
  BufferCache *c = cache_get();
  if (c) {
    CachedBuffer **link = &c->buckets[bucket_of(bytes)];
    for (; *link; link = &(*link)->next)
      if ((*link)->bytes == bytes) {
        CachedBuffer *b = *link;
        *link = b->next;
        cache_unlink(c, b);
        return (float *)(void *)b;
      }
  }
  return aligned_alloc(64, bytes);
}

static int cache_fits(const BufferCache *c, size_t bytes) {
  return c->bytes + bytes <= T_CACHE_BYTES ||
         (bytes <= T_CACHE_BYTES / 4 && live_bytes + cached_total + (int64_t)bytes <= live_high_water + (int64_t)T_CACHE_BYTES);
}

/* the buffer freed longest ago back to malloc */
static void cache_evict_oldest(BufferCache *c) {
  CachedBuffer *b = c->oldest, **link = &c->buckets[bucket_of(b->bytes)];
  while (*link != b) link = &(*link)->next;
  *link = b->next;
  cache_unlink(c, b);
  free(b);
}

/* owner: the cache of the thread that allocated the buffer. A buffer freed on
** another thread (a worker's result, released by the caller) goes back to
** malloc: cached there, it would wait for a size that thread never asks for,
** and each thread's cache would grow to its bound. */
static void buffer_free(float *data, size_t bytes, const BufferCache *owner) {
  BufferCache *c = cache_get();
  if (!c || c != owner || bytes > T_CACHE_BYTES) {
    free(data);
    return;
  }
  while (!cache_fits(c, bytes) && c->oldest) cache_evict_oldest(c);
  if (!cache_fits(c, bytes)) {
    free(data);
    return;
  }
  CachedBuffer *b = (CachedBuffer *)(void *)data;
  b->bytes = bytes;
  b->next = c->buckets[bucket_of(bytes)];
  c->buckets[bucket_of(bytes)] = b;
  b->newer = NULL;
  b->older = c->newest;
  if (c->newest) c->newest->newer = b;
  else c->oldest = b;
  c->newest = b;
  c->bytes += bytes;
  cached_total += (int64_t)bytes;
}

void t_trim_cache(void) {
  if (thread_cache) cache_empty(thread_cache);
}

int64_t t_cached_bytes(void) { return thread_cache ? (int64_t)thread_cache->bytes : 0; }
int64_t t_peak_bytes(void) { return peak_bytes; }
void t_reset_peak_bytes(void) { peak_bytes = live_bytes; }

void t_check_shape(const char *fn, int arg, int ndim, const int64_t *shape) {
  if (ndim < 0 || ndim > T_MAXDIM) t_argerror(fn, arg, "expected at most %d dims, got %d", T_MAXDIM, ndim);
  /* the product of the non-zero sizes: an empty tensor must not hide a huge
  ** size either, or products of its sizes (strides) would overflow */
  int64_t product = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) t_argerror(fn, arg, "expected sizes >= 0, got %lld in dim %d", (long long)shape[i], i + 1);
    if (shape[i] > 0 && product > T_MAXNUMEL / shape[i]) {
      char buf[160];
      t_argerror(fn, arg, "shape %s is too large (more than %lld elements)", t_shape_str2(ndim, shape, buf, sizeof buf),
                 (long long)T_MAXNUMEL);
    }
    if (shape[i] > 0) product *= shape[i];
  }
}

/* The tensor memory we agree to hold: MAMLRUN_MEMORY_LIMIT bytes (e.g. 4e9),
** else 90% of the machine's memory. Past it an allocation is a Lua error that
** says so, rather than a kill by the kernel's OOM killer (which may pick
** another process). */
static int64_t memory_limit(void) {
  static _Atomic int64_t limit; /* 0: not read yet (racing threads compute the same value) */
  if (limit == 0) {
    int64_t v = sys_env_memory_limit(NULL, 0); /* (the host refuses a bad value at start) */
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    if (v > 0) limit = v;
    else if (pages > 0 && page > 0) limit = (int64_t)((double)pages * (double)page * 0.9);
    else limit = INT64_MAX;
  }
  return limit;
}

/* a new tensor, or NULL with the reason in err when the memory limit or malloc refuses */
static Tensor *new_tensor(int ndim, const int64_t *shape, char *err, size_t errlen) {
  int64_t numel = 1;
  for (int i = 0; i < ndim; i++) numel *= shape[i];
  if (live_bytes + numel * (int64_t)sizeof(float) > memory_limit()) {
    snprintf(err, errlen,
             "out of memory: a tensor of %lld elements (%.3g GB) would bring the tensors to %.3g GB, more than the "
             "limit of %.3g GB (MAMLRUN_MEMORY_LIMIT, by default 90%% of the machine's memory)",
             (long long)numel, numel * 4e-9, (live_bytes + numel * 4.0) * 1e-9, memory_limit() * 1e-9);
    return NULL;
  }
  Tensor *t = calloc(1, sizeof *t);
  Storage *s = calloc(1, sizeof *s);
  /* 64-byte aligned data for the SIMD kernels */
  size_t bytes = (size_t)(numel > 0 ? numel : 1) * sizeof(float);
  size_t rounded = (bytes + 63) & ~(size_t)63;
  float *data = buffer_alloc(rounded);
  if (!t || !s || !data) {
    free(t);
    free(s);
    free(data);
    snprintf(err, errlen, "out of memory allocating a tensor of %lld elements", (long long)numel);
    return NULL;
  }
  s->refcount = 1;
  s->size = numel;
  s->data = data;
  s->cache = thread_cache;
  s->id = atomic_fetch_add(&next_storage_id, 1);
  live_bytes += (int64_t)bytes;
  thread_allocated_bytes += (int64_t)bytes;
  if (live_bytes > peak_bytes) peak_bytes = live_bytes;
  if (live_bytes > live_high_water) live_high_water = live_bytes;
  t->refcount = 1;
  t->ndim = ndim;
  if (ndim > 0) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape); /* shape may be NULL for 0-d */
  t->numel = numel;
  t->storage = s;
  return t;
}

Tensor *t_new(int ndim, const int64_t *shape) {
  t_check_shape("tensor", 1, ndim, shape);
  char err[400];
  Tensor *t = new_tensor(ndim, shape, err, sizeof err);
  if (!t) t_error("%s", err);
  return t;
}

Tensor *t_try_new(int ndim, const int64_t *shape, char *err, size_t errlen) {
  for (int i = 0; i < ndim; i++)
    if (shape[i] < 0 || shape[i] > T_MAXNUMEL) {
      snprintf(err, errlen, "invalid tensor shape");
      return NULL;
    }
  int64_t numel = 1;
  for (int i = 0; i < ndim; i++)
    if (shape[i] && numel > T_MAXNUMEL / shape[i]) {
      snprintf(err, errlen, "a tensor of more than %lld elements", (long long)T_MAXNUMEL);
      return NULL;
    } else {
      numel *= shape[i];
    }
  return new_tensor(ndim, shape, err, errlen);
}

Tensor *t_zeros(int ndim, const int64_t *shape) {
  Tensor *t = t_new(ndim, shape);
  memset(T_DATA(t), 0, (size_t)t->numel * sizeof(float));
  return t;
}

Tensor *t_full(int ndim, const int64_t *shape, float v) {
  Tensor *t = t_new(ndim, shape);
  float *d = T_DATA(t);
  for (int64_t i = 0; i < t->numel; i++) d[i] = v;
  return t;
}

Tensor *t_zeros_like(const Tensor *t) { return t_zeros(t->ndim, t->shape); }

Tensor *t_scalar(float v) { return t_full(0, NULL, v); }

void t_written(Tensor *t) { atomic_fetch_add(&t->storage->version, 1); }

Tensor *t_retain(Tensor *t) {
  t->refcount++;
  return t;
}

static void storage_release(Storage *s) {
  if (--s->refcount == 0) {
    size_t bytes = (size_t)(s->size > 0 ? s->size : 1) * sizeof(float);
    live_bytes -= (int64_t)bytes;
    buffer_free(s->data, (bytes + 63) & ~(size_t)63, s->cache);
    free(s);
  }
}

/* Releasing a long chain (a graph of 100k nodes) must not recurse 100k deep:
** tensors whose count drops to zero go on a work list. */
void t_release(Tensor *t) {
  /* the list lives in thread-local storage and spills to the heap only when
  ** long; the heap copy is freed when the list empties (kept in a thread-local
  ** pointer, it would leak at every thread's exit) */
  static _Thread_local Tensor *fixed[256];
  static _Thread_local Tensor **pending;
  static _Thread_local size_t npending, cap;
  static _Thread_local int releasing;
  if (!t) return;
  if (--t->refcount > 0) return;
  if (!pending) {
    pending = fixed;
    cap = sizeof fixed / sizeof *fixed;
  }
  if (npending == cap) {
    size_t ncap = 2 * cap;
    Tensor **p = pending == fixed ? malloc(ncap * sizeof *p) : realloc(pending, ncap * sizeof *p);
    if (!p) abort();
    if (pending == fixed) memcpy(p, fixed, sizeof fixed);
    pending = p;
    cap = ncap;
  }
  pending[npending++] = t;
  if (releasing) return;
  releasing = 1;
  while (npending > 0) {
    Tensor *x = pending[--npending];
    storage_release(x->storage);
    Node *n = x->grad_fn;
    free(x);
    if (n) node_release(n); /* may push more tensors */
  }
  if (pending != fixed) {
    free(pending);
    pending = fixed;
    cap = sizeof fixed / sizeof *fixed;
  }
  releasing = 0;
}

int t_same_shape(const Tensor *a, const Tensor *b) {
  if (a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return 0;
  return 1;
}

/* ------------------------------------------------------------ random numbers */

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void gen_seed(Generator *g, uint64_t seed) {
  uint64_t x = seed;
  uint64_t a = splitmix64(&x), b = splitmix64(&x);
  g->s[0] = (uint32_t)a;
  g->s[1] = (uint32_t)(a >> 32);
  g->s[2] = (uint32_t)b;
  g->s[3] = (uint32_t)(b >> 32);
  if (!(g->s[0] | g->s[1] | g->s[2] | g->s[3])) g->s[0] = 1;
  g->has_spare = 0;
  g->spare = 0;
}

static uint32_t rotl(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }

uint32_t gen_u32(Generator *g) { /* xoshiro128** */
  uint32_t *s = g->s;
  uint32_t result = rotl(s[1] * 5, 7) * 9;
  uint32_t t = s[1] << 9;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 11);
  return result;
}

double gen_uniform(Generator *g) {
  uint64_t hi = gen_u32(g) >> 5, lo = gen_u32(g) >> 6; /* 27 + 26 bits */
  return (double)(hi * 67108864.0 + lo) / 9007199254740992.0;
}

double gen_normal(Generator *g) { /* Box-Muller, both values used */
  if (g->has_spare) {
    g->has_spare = 0;
    return g->spare;
  }
  double u1 = gen_uniform(g), u2 = gen_uniform(g);
  if (u1 < 1e-300) u1 = 1e-300;
  double r = sqrt(-2.0 * log(u1)), th = 2.0 * 3.14159265358979323846 * u2;
  g->spare = r * sin(th);
  g->has_spare = 1;
  return r * cos(th);
}

uint32_t gen_below(Generator *g, uint32_t n) { /* Lemire's method, unbiased */
  uint64_t m = (uint64_t)gen_u32(g) * n;
  uint32_t l = (uint32_t)m;
  if (l < n) {
    uint32_t t = (uint32_t)(-n) % n;
    while (l < t) {
      m = (uint64_t)gen_u32(g) * n;
      l = (uint32_t)m;
    }
  }
  return (uint32_t)(m >> 32);
}

Generator *gen_default(void) {
  static Generator g;
  static int seeded;
  if (!seeded) {
    gen_seed(&g, 0);
    seeded = 1;
  }
  return &g;
}
