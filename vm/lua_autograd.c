/*
** lua_autograd.c: the "autograd" module: grad, no_grad, enabled.
*/
#include <stdlib.h>

#include "lua_tensor.h"

/* the inputs and gradients of one ag.grad call, in a userdata whose __gc releases
** the gradients still held (an error in the backward pass leaves some behind) */
#define GRAD_SCRATCH_MT "mamlrun.GradScratch"
typedef struct GradScratch {
  lua_Integer n; /* gradients at tensors[n .. 2n) to release */
  Tensor *tensors[];
} GradScratch;

static int grad_scratch_gc(lua_State *L) {
  GradScratch *s = luaL_checkudata(L, 1, GRAD_SCRATCH_MT);
  for (lua_Integer k = 0; k < s->n; k++) {
    t_release(s->tensors[s->n + k]);
    s->tensors[s->n + k] = NULL;
  }
  s->n = 0;
  return 0;
}

static const char *const grad_options[] = {"create_graph", "allow_unused", "grad_output", NULL};

/* ag.grad(output, inputs, {create_graph=, allow_unused=, grad_output=}) */
static int l_grad(lua_State *L) {
  Tensor *out = lt_check(L, 1);
  if (!lua_istable(L, 2)) return lt_argerror(L, 2, "grad", "expected a list of tensors, got %s", lt_typename(L, 2));
  int create_graph = 0, allow_unused = 0;
  Tensor *grad_output = NULL;
  if (lt_check_options(L, 3, "grad", grad_options)) {
    create_graph = lt_opt_boolean(L, 3, "grad", "create_graph", 0);
    allow_unused = lt_opt_boolean(L, 3, "grad", "allow_unused", 0);
    grad_output = lt_opt_tensor(L, 3, "grad", "grad_output"); /* the options table keeps it alive */
  }
  char b1[160], b2[160];
  if (!out->requires_grad)
    return lt_argerror(L, 1, "grad",
                       "output does not require grad: none of the tensors it was "
                       "computed from had requires_grad(true), or it was computed under no_grad");
  if (grad_output && !t_same_shape(grad_output, out))
    return lt_argerror(L, 3, "grad", "grad_output has shape %s, output has %s", t_shape_str(grad_output, b1, sizeof b1),
                       t_shape_str(out, b2, sizeof b2));
  if (!grad_output && out->numel != 1)
    return lt_argerror(L, 1, "grad", "output has shape %s: give opts.grad_output for a non-scalar output",
                       t_shape_str(out, b1, sizeof b1));
  lua_Integer n = luaL_len(L, 2);
  if (n < 1 || n > (1 << 20)) return lt_argerror(L, 2, "grad", "expected a non-empty list of tensors");
  GradScratch *scratch = lua_newuserdatauv(L, sizeof *scratch + (size_t)n * 2 * sizeof(Tensor *), 0);
  scratch->n = 0; /* no gradients yet for its __gc to release */
  luaL_setmetatable(L, GRAD_SCRATCH_MT);
  int scratch_index = lua_gettop(L);
  Tensor **inputs = scratch->tensors, **grads = inputs + n;
  for (lua_Integer k = 1; k <= n; k++) {
    lua_geti(L, 2, k);
    inputs[k - 1] = lt_test(L, -1);
    if (!inputs[k - 1])
      return lt_argerror(L, 2, "grad", "input %d is %s, expected a tensor", (int)k, lt_typename(L, -1));
    if (!inputs[k - 1]->requires_grad) return lt_argerror(L, 2, "grad", "input %d does not require grad", (int)k);
    lua_pop(L, 1);
  }
  int scope = t_scope_begin(); /* the seed is released by an error in the backward pass too */
  Tensor *seed = t_temp(grad_output ? t_retain(grad_output) : t_full(out->ndim, out->shape, 1.0f));
  for (lua_Integer k = 0; k < n; k++) grads[k] = NULL;
  scratch->n = n;
  ag_grad(out, seed, (int)n, inputs, create_graph, grads);
  t_scope_end(scope);
  for (lua_Integer k = 0; k < n; k++)
    if (!grads[k] && !allow_unused) {
      lua_pushcfunction(L, grad_scratch_gc); /* the gradients computed so far */
      lua_pushvalue(L, scratch_index);
      lua_call(L, 1, 0);
      return lt_argerror(L, 2, "grad", "output does not depend on input %d; pass allow_unused=true to get nil",
                         (int)k + 1);
    }
  lua_createtable(L, (int)n, 0);
  for (lua_Integer k = 0; k < n; k++) {
    if (grads[k]) lt_push(L, grads[k]);
    else lua_pushnil(L);
    grads[k] = NULL; /* owned by the pushed tensor now */
    lua_rawseti(L, -2, k + 1);
  }
  return 1;
}

/* ag.no_grad(fn, ...): fn's results, computed without recording. fn may not yield: the mode is the
** thread's, and a coroutine suspended inside would leave recording off for everything else ("attempt to
** yield across a C-call boundary" instead) */
static int l_no_grad(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  int old = ag_set_enabled(0);
  int nargs = lua_gettop(L) - 1;
  int status = lua_pcall(L, nargs, LUA_MULTRET, 0);
  ag_set_enabled(old);
  if (status != LUA_OK) return lua_error(L);
  return lua_gettop(L);
}

static int l_enabled(lua_State *L) {
  lua_pushboolean(L, ag_is_enabled());
  return 1;
}

static int l_set_enabled(lua_State *L) {
  luaL_checktype(L, 1, LUA_TBOOLEAN);
  lua_pushboolean(L, ag_set_enabled(lua_toboolean(L, 1)));
  return 1;
}

static const luaL_Reg autograd_functions[] = {
    {"grad", l_grad}, {"no_grad", l_no_grad}, {"enabled", l_enabled}, {"set_enabled", l_set_enabled}, {NULL, NULL}};

int luaopen_autograd(lua_State *L) {
  if (luaL_newmetatable(L, GRAD_SCRATCH_MT)) {
    lua_pushcfunction(L, grad_scratch_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  luaL_newlib(L, autograd_functions);
  return 1;
}
