/*
** tensor.h: the tensor object, the autograd node and the C API of every op.
**
** A Tensor is a contiguous, row-major float32 N-d array. It is reference
** counted (t_retain / t_release); Lua userdata hold one reference each.
** reshape/view/flatten share the storage (a view); every other op allocates.
**
** Autograd: an op whose inputs require grad (and grad mode is on) records a
** Node in out->grad_fn. The node holds strong references to its inputs and
** saved tensors, never to its output, so a graph is freed as soon as the
** last tensor referring to it is released. Backward rules are written with
** the same differentiable ops, so a backward pass run with grad mode on is
** itself recorded and can be differentiated again (ag_grad create_graph).
*/
#ifndef MAMLRUN_TENSOR_H
#define MAMLRUN_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define T_MAXDIM 8
/* largest tensor we agree to allocate (elements); larger is an error */
#define T_MAXNUMEL ((int64_t)1 << 34)

typedef struct Storage {
  _Atomic int refcount; /* tensors are shared across worker threads */
  int64_t size; /* elements */
  float *data;
  void *cache; /* the buffer cache of the thread that allocated data (vm/tensor.c) */
  uint64_t id; /* unique in the process (never reused), for caches of values derived from data */
  _Atomic uint64_t version; /* bumped by every write into data after the op that made it (t_written) */
} Storage;

struct Node;

typedef struct Tensor {
  _Atomic int refcount;
  int ndim;
  int64_t shape[T_MAXDIM];
  int64_t numel;
  Storage *storage;
  int64_t offset; /* in elements, into storage->data */
  int requires_grad;
  struct Node *grad_fn; /* NULL for leaves and constants */
} Tensor;

/* T_ASAN: 1 in a build with AddressSanitizer (GCC and clang spell it apart), else 0 */
#if defined(__SANITIZE_ADDRESS__)
#define T_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_ASAN 1
#endif
#endif
#ifndef T_ASAN
#define T_ASAN 0
#endif

/* hot kernels get AVX-512 and AVX2 clones, picked at load time (GCC ifunc); ISO C mode
** (-std=c11) contracts no a*b+c into an FMA, and reductions are written in a fixed
** order (t_v8f), so every clone computes the same bits */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define T_HOT __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define T_HOT
#endif

/* Sums in 8 independent lanes (a GCC/clang vector type): vectorized, and in
** a fixed order, so the result does not depend on the machine. */
typedef float t_v8f __attribute__((vector_size(32)));

/* (macros: a function taking or returning a 32-byte vector changes the ABI without AVX) */
#define T_LOAD8(v, p) __builtin_memcpy(&(v), (p), sizeof(t_v8f))
#define T_HSUM8(a) ((((a)[0] + (a)[4]) + ((a)[1] + (a)[5])) + (((a)[2] + (a)[6]) + ((a)[3] + (a)[7])))

static inline float t_sum8(const float *p, int64_t n) {
  t_v8f acc = {0};
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    t_v8f v;
    T_LOAD8(v, p + k);
    acc += v;
  }
  float s = T_HSUM8(acc);
  for (; k < n; k++) s += p[k];
  return s;
}

static inline float t_dot8(const float *a, const float *b, int64_t n) {
  t_v8f acc = {0};
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    t_v8f va, vb;
    T_LOAD8(va, a + k);
    T_LOAD8(vb, b + k);
    acc += va * vb;
  }
  float s = T_HSUM8(acc);
  for (; k < n; k++) s += a[k] * b[k];
  return s;
}

#define T_DATA(t) ((t)->storage->data + (t)->offset)

/* ------------------------------------------------------------ errors */
/* Raise an error (never returns). The Lua bindings install a handler that
** turns it into a Lua error; C tests install one that longjmps. Ops check
** their arguments before they allocate, so an error leaks nothing. */
typedef void (*t_error_handler)(const char *msg);
void t_set_error_handler(t_error_handler h);
#if defined(__GNUC__)
#define T_NORETURN __attribute__((noreturn))
#define T_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define T_NORETURN
#define T_PRINTF(a, b)
#endif
T_NORETURN void t_error(const char *fmt, ...) T_PRINTF(1, 2);
/* "bad argument #arg to 'fn' (...)", like luaL_argerror */
T_NORETURN void t_argerror(const char *fn, int arg, const char *fmt, ...) T_PRINTF(3, 4);
/* Temporaries of composite ops. An op built from other ops holds intermediate
** tensors, and an error raised in the middle (t_error: the memory limit, a bad
** shape) does not return to release them. So such an op opens a scope, hands
** each temporary's reference to it (t_temp returns its argument), and closes
** it when it returns (releasing them); t_error empties every open scope of the
** thread before raising, and restores the grad mode the outermost scope began
** with. Scopes nest (an op calling an op).
**   int scope = t_scope_begin();
**   Tensor *z = t_temp(t_sub(x, m)), *out = t_exp(z);
**   t_scope_end(scope);
**   return out; */
int t_scope_begin(void);
Tensor *t_temp(Tensor *t);
void *t_temp_block(void *p); /* a malloc'd block, freed with the scope (NULL is fine) */
void t_scope_end(int scope);
/* open temporaries of this thread (0 outside every op; for tests) */
int t_temps_open(void);
/* shape as "(2, 3, 4)" into buf; returns buf */
char *t_shape_str(const Tensor *t, char *buf, size_t n);
char *t_shape_str2(int ndim, const int64_t *shape, char *buf, size_t n);

/* ------------------------------------------------------------ life cycle */
Tensor *t_new(int ndim, const int64_t *shape); /* uninitialised data */
/* t_new that returns NULL with the reason in err instead of raising, for a
** caller that holds files or memory an error would leak */
Tensor *t_try_new(int ndim, const int64_t *shape, char *err, size_t errlen);
Tensor *t_zeros(int ndim, const int64_t *shape);
Tensor *t_full(int ndim, const int64_t *shape, float v);
Tensor *t_zeros_like(const Tensor *t);
Tensor *t_scalar(float v); /* 0-d tensor */
Tensor *t_retain(Tensor *t);
/* every write into an existing tensor's data (in-place ops, MPI receives, gradient accumulation,
** running statistics) calls this, so that a cache of values derived from the data (conv2d's
** channels-last weights) sees the change */
void t_written(Tensor *t);
void t_release(Tensor *t); /* NULL is fine */
/* check a shape given by a caller (sizes >= 0, product bounded) */
void t_check_shape(const char *fn, int arg, int ndim, const int64_t *shape);
int t_same_shape(const Tensor *a, const Tensor *b);
/* bytes held by live storages, and the peak, for memory accounting */
int64_t t_live_bytes(void);
int64_t t_peak_bytes(void);
void t_reset_peak_bytes(void);
/* bytes of tensors allocated by this thread since it started (never decreases) */
int64_t t_thread_allocated_bytes(void);
/* bytes of freed buffers kept for reuse by this thread, and giving them back */
int64_t t_cached_bytes(void);
void t_trim_cache(void);

/* ------------------------------------------------------------ random numbers */
/* xoshiro128** with splitmix64 seeding: the same numbers on every machine */
typedef struct Generator {
  uint32_t s[4];
  int has_spare; /* Box-Muller keeps its second normal */
  double spare;
} Generator;
void gen_seed(Generator *g, uint64_t seed);
uint32_t gen_u32(Generator *g);
double gen_uniform(Generator *g); /* [0, 1) with 53 random bits */
double gen_normal(Generator *g);
uint32_t gen_below(Generator *g, uint32_t n); /* uniform in [0, n), unbiased */
Generator *gen_default(void);

/* ------------------------------------------------------------ autograd */
typedef struct Node Node;
/* backward: given the gradient of the output, set gin[i] (a new reference,
** or NULL) for each input i with needs[i] set. Written with t_* ops so that
** with grad mode on it is recorded too. */
typedef void (*backward_fn)(Node *n, Tensor *gout, Tensor **gin, const int *needs);

#define NODE_MAXIN 4
#define NODE_MAXSAVED 4
struct Node {
  _Atomic int refcount;
  const char *name;
  backward_fn backward;
  int ninputs;
  Tensor **inputs; /* strong refs; points at inline_inputs unless ninputs > NODE_MAXIN */
  Tensor *inline_inputs[NODE_MAXIN];
  Tensor *saved[NODE_MAXSAVED]; /* strong refs, constants for backward (set with node_save) */
  /* the storage versions of the inputs and of the saved tensors when recorded: a write since (an in-place
  ** method on a leaf or on an alias, detach() or reshape) makes the backward refuse to run on it */
  uint64_t *in_versions; /* points at inline_versions unless ninputs > NODE_MAXIN */
  uint64_t inline_versions[NODE_MAXIN];
  uint64_t saved_versions[NODE_MAXSAVED];
  int64_t ints[2 * T_MAXDIM + 4];
  double scalars[4];
  int out_ndim; /* output shape, for checking and for zero-grads */
  int64_t out_shape[T_MAXDIM];
  /* engine scratch */
  Tensor *acc;
  uint32_t mark;
  int needed;
};

int ag_is_enabled(void);
int ag_set_enabled(int on); /* returns the previous value */
/* If grad mode is on and any input requires grad, make out a non-leaf
** requiring grad with a new node (returned, to fill ints/scalars/saved);
** otherwise return NULL. The inputs are retained by the node. */
Node *ag_record(Tensor *out, const char *name, backward_fn bw, int ninputs, Tensor **inputs);
void node_release(Node *n);
/* n->saved[k] = t (a reference it takes), with t's storage version now */
void node_save(Node *n, int k, Tensor *t);
/* Gradients of the scalar (or grad_output-weighted) output with respect to
** inputs. grads[i] gets a new reference, or NULL when output does not depend
** on inputs[i] (the caller decides whether that is an error). */
void ag_grad(Tensor *output, Tensor *grad_output, int ninputs, Tensor **inputs, int create_graph, Tensor **grads);
/* a tensor sharing x's data with no history */
Tensor *t_detach(Tensor *x);

/* ------------------------------------------------------------ ops */
/* Each op is declared once, in the header of its family: ops/elementwise.h,
** ops/reduce.h, ops/shape.h, ops/matmul.h, ops/nnops.h (conv, pool),
** ops/loss.h (linear, softmax, losses, batch norm), ops/batchnorm.h,
** ops/image.h. All ops return a new reference; names in error messages are
** the Lua names. */

#endif
