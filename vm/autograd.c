/*
** autograd.c: the tape (nodes recorded by ops) and the reverse-mode engine.
**
** Each op with an input that requires grad records one Node in its output's
** grad_fn. ag_grad walks the graph from the output, keeps only the nodes on a
** path to a requested input, and calls their backward rules in reverse
** topological order. Backward rules are made of differentiable ops: with
** create_graph, grad mode stays on during the walk, so the gradients come out
** with a graph of their own and can be differentiated again.
*/
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "elementwise.h"
#include "tensor.h"

static _Thread_local int grad_enabled = 1;

int ag_is_enabled(void) { return grad_enabled; }

int ag_set_enabled(int on) {
  int old = grad_enabled;
  grad_enabled = on != 0;
  return old;
}

Node *ag_record(Tensor *out, const char *name, backward_fn bw, int ninputs, Tensor **inputs) {
  if (!grad_enabled) return NULL;
  int any = 0;
  for (int i = 0; i < ninputs; i++)
    if (inputs[i] && inputs[i]->requires_grad) any = 1;
  if (!any) return NULL;
  Node *n = calloc(1, sizeof *n);
  if (!n) t_error("out of memory recording '%s'", name);
  n->refcount = 1;
  n->name = name;
  n->backward = bw;
  n->ninputs = ninputs;
  n->inputs = n->inline_inputs;
  n->in_versions = n->inline_versions;
  if (ninputs > NODE_MAXIN && (!(n->inputs = calloc((size_t)ninputs, sizeof *n->inputs)) ||
                               !(n->in_versions = calloc((size_t)ninputs, sizeof *n->in_versions)))) {
    if (n->inputs != n->inline_inputs) free(n->inputs);
    free(n);
    t_error("out of memory recording '%s'", name);
  }
  for (int i = 0; i < ninputs; i++) {
    n->inputs[i] = inputs[i] ? t_retain(inputs[i]) : NULL;
    n->in_versions[i] = inputs[i] ? atomic_load(&inputs[i]->storage->version) : 0;
  }
  n->out_ndim = out->ndim;
  memcpy(n->out_shape, out->shape, sizeof out->shape);
  out->requires_grad = 1;
  out->grad_fn = n;
  return n;
}

void node_release(Node *n) {
  if (!n || --n->refcount > 0) return;
  for (int i = 0; i < n->ninputs; i++) t_release(n->inputs[i]);
  for (int i = 0; i < NODE_MAXSAVED; i++) t_release(n->saved[i]);
  t_release(n->acc);
  if (n->inputs != n->inline_inputs) free(n->inputs);
  if (n->in_versions != n->inline_versions) free(n->in_versions);
  free(n);
}

void node_save(Node *n, int k, Tensor *t) {
  n->saved[k] = t;
  n->saved_versions[k] = t ? atomic_load(&t->storage->version) : 0;
}

/* refuse to differentiate through a node whose inputs or saved tensors were written since it was recorded:
** its backward would use the new values, a gradient silently wrong */
static void check_unchanged(const Node *n) {
  for (int k = 0; k < n->ninputs; k++) {
    const Tensor *in = n->inputs[k];
    if (in && atomic_load(&in->storage->version) != n->in_versions[k])
      t_error("autograd: input %d of '%s' was changed in place after '%s' used it (an in-place method such as add_, "
              "fill_ or copy_ on it or on an alias of it, detach() or reshape; an optimizer step), so its gradient "
              "would be wrong: compute it again after the change, or change a clone()",
              k + 1, n->name, n->name);
  }
  for (int k = 0; k < NODE_MAXSAVED; k++) {
    const Tensor *s = n->saved[k];
    if (s && atomic_load(&s->storage->version) != n->saved_versions[k])
      t_error("autograd: a value that '%s' saved for its gradient (its output, through an alias of it) was "
              "changed in place after the op ran, so its gradient would be wrong: compute it again after the "
              "change, or change a clone()", n->name);
  }
}

Tensor *t_detach(Tensor *x) {
  Tensor *t = calloc(1, sizeof *t);
  if (!t) t_error("out of memory in 'detach'");
  t->refcount = 1;
  t->ndim = x->ndim;
  memcpy(t->shape, x->shape, sizeof x->shape);
  t->numel = x->numel;
  t->storage = x->storage;
  t->storage->refcount++;
  t->offset = x->offset;
  return t;
}

/* ------------------------------------------------------------ the engine */

typedef struct {
  Node **v;
  size_t n, cap;
} NodeList;

static void list_push(NodeList *l, Node *x) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 64;
    Node **v = realloc(l->v, cap * sizeof *v);
    if (!v) abort();
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = x;
}

/* global, not per thread: a node's mark must never match another thread's walk */
static _Atomic uint32_t current_mark;

/* a += b elementwise, in t_add's order (so the bits are the same) */
T_HOT static void add_into(float *a, const float *b, int64_t n) {
  for (int64_t i = 0; i < n; i++) a[i] += b[i];
}

/* add g into *slot (taking over g's reference). With grad mode off (nothing
** to record) a partial sum that only this walk holds is added to in place,
** saving a buffer per accumulation in the meta-gradient's backward pass. */
static void accumulate(Tensor **slot, Tensor *g) {
  Tensor *s = *slot;
  if (!s) {
    *slot = g;
    return;
  }
  if (!grad_enabled && s != g && !s->grad_fn && atomic_load(&s->refcount) == 1 &&
      atomic_load(&s->storage->refcount) == 1 && s->ndim == g->ndim &&
      memcmp(s->shape, g->shape, (size_t)s->ndim * sizeof *s->shape) == 0) {
    add_into(T_DATA(s), T_DATA(g), s->numel);
    t_written(s);
    t_release(g);
    return;
  }
  Tensor *sum = t_add(*slot, g);
  t_release(*slot);
  t_release(g);
  *slot = sum;
}

static int requested_index(Tensor *t, int ninputs, Tensor **inputs) {
  for (int i = 0; i < ninputs; i++)
    if (inputs[i] == t) return i;
  return -1;
}

/* does a gradient arriving at input `in` lead to something requested? */
static int leads_to_request(Tensor *in, uint32_t mark, int ninputs, Tensor **inputs) {
  if (!in || !in->requires_grad) return 0;
  if (in->grad_fn) return in->grad_fn->mark == mark && in->grad_fn->needed;
  return requested_index(in, ninputs, inputs) >= 0;
}

typedef struct {
  Node *node;
  int next_input;
} Frame;

/* Mark every node reachable from root; set node->needed (1: its gradient is
** requested, 2: gradient flows through it to a request) and return, in
** post-order (inputs before the nodes that use them), those with needed != 0. */
static NodeList needed_nodes(Node *root, uint32_t mark, int ninputs, Tensor **inputs) {
  NodeList order = {0};
  Frame *stack = NULL;
  size_t depth = 0, cap = 0;
#define PUSH(nd)                                    \
  do {                                              \
    if (depth == cap) {                             \
      cap = cap ? 2 * cap : 64;                     \
      Frame *s_ = realloc(stack, cap * sizeof *s_); \
      if (!s_) abort();                             \
      stack = s_;                                   \
    }                                               \
    (nd)->mark = mark;                              \
    (nd)->needed = 0;                               \
    stack[depth].node = (nd);                       \
    stack[depth++].next_input = 0;                  \
  } while (0)
  PUSH(root);
  while (depth > 0) {
    Frame *f = &stack[depth - 1];
    Node *n = f->node;
    if (f->next_input < n->ninputs) {
      Tensor *in = n->inputs[f->next_input++];
      if (in && in->grad_fn && in->grad_fn->mark != mark) PUSH(in->grad_fn);
      continue;
    }
    int through = 0, wanted = 0;
    for (int k = 0; k < n->ninputs; k++) through |= leads_to_request(n->inputs[k], mark, ninputs, inputs);
    for (int i = 0; i < ninputs; i++) wanted |= inputs[i]->grad_fn == n;
    n->needed = through ? 2 : wanted;
    if (n->needed) list_push(&order, n);
    depth--;
  }
#undef PUSH
  free(stack);
  return order;
}

void ag_grad(Tensor *output, Tensor *grad_output, int ninputs, Tensor **inputs, int create_graph, Tensor **grads) {
  for (int i = 0; i < ninputs; i++) grads[i] = NULL;
  int scope = t_scope_begin(); /* an error in a backward rule restores the grad mode of here */
  int old_mode = ag_set_enabled(create_graph);
  Tensor *seed = grad_output ? t_retain(grad_output) : t_full(output->ndim, output->shape, 1.0f);
  Node *root = output->grad_fn;
  if (!root) { /* output is a leaf: only d output / d output is defined */
    int k = requested_index(output, ninputs, inputs);
    if (k >= 0) grads[k] = t_retain(seed);
    t_release(seed);
    ag_set_enabled(old_mode);
    t_scope_end(scope);
    return;
  }
  uint32_t mark = ++current_mark;
  NodeList order = needed_nodes(root, mark, ninputs, inputs);
  t_temp_block(order.v); /* freed when the scope ends, or by an error in a backward rule */
  root->acc = seed;
  for (size_t oi = order.n; oi-- > 0;) { /* reverse topological order */
    Node *n = order.v[oi];
    Tensor *gout = n->acc;
    n->acc = NULL;
    if (!gout) continue; /* nothing reached this node */
    for (int i = 0; i < ninputs; i++)
      if (inputs[i]->grad_fn == n) grads[i] = t_retain(gout);
    if (n->needed != 2) {
      t_release(gout);
      continue;
    }
    Tensor *gin_inline[NODE_MAXIN] = {0}, **gin = gin_inline;
    int needs_inline[NODE_MAXIN] = {0}, *needs = needs_inline;
    if (n->ninputs > NODE_MAXIN) {
      gin = calloc((size_t)n->ninputs, sizeof *gin);
      needs = calloc((size_t)n->ninputs, sizeof *needs);
      if (!gin || !needs) abort();
    }
    for (int k = 0; k < n->ninputs; k++) needs[k] = leads_to_request(n->inputs[k], mark, ninputs, inputs);
    int rule_scope = t_scope_begin(); /* gout is released by an error in the rule too */
    t_temp(gout);
    check_unchanged(n);
    n->backward(n, gout, gin, needs);
    t_scope_end(rule_scope);
    for (int k = 0; k < n->ninputs; k++) {
      Tensor *in = n->inputs[k];
      if (!gin[k]) continue;
      if (!needs[k]) t_release(gin[k]);
      else if (in->grad_fn) accumulate(&in->grad_fn->acc, gin[k]);
      else accumulate(&grads[requested_index(in, ninputs, inputs)], gin[k]);
    }
    if (gin != gin_inline) {
      free(gin);
      free(needs);
    }
  }
  /* a leaf listed twice: later copies share the first one's gradient */
  for (int i = 0; i < ninputs; i++) {
    int k = requested_index(inputs[i], ninputs, inputs);
    if (k != i && !inputs[i]->grad_fn && grads[k]) grads[i] = t_retain(grads[k]);
  }
  t_release(root->acc); /* root was not needed: output does not depend on inputs */
  root->acc = NULL;
  for (size_t oi = 0; oi < order.n; oi++) { /* nodes no gradient reached */
    t_release(order.v[oi]->acc);
    order.v[oi]->acc = NULL;
  }
  ag_set_enabled(old_mode);
  t_scope_end(scope);
}
