/*
** lua_tensor.c: the "tensor" module: its methods (inspection, arithmetic,
** comparisons, reductions, shape ops, autograd flags) and metamethods, and the
** registration of the rest: constructors (lua_construct.c), generators
** (lua_generator.c), tostring (lua_print.c), in-place methods
** (lua_inplace.c), network ops (lua_nn.c), serialisation and files
** (lua_io.c), memory counters (lua_memory.c). The bridge between Tensor and
** userdata is lua_bridge.c; argument checks are lua_check.c.
** A binding checks its arguments, calls the op, pushes the result.
*/
#include <stdlib.h>
#include <string.h>

#include "elementwise.h"
#include "lua_tensor.h"
#include "matmul.h"
#include "reduce.h"
#include "shape.h"

/* ------------------------------------------------------------ inspection */

static void push_shape(lua_State *L, int nd, const int64_t *shape) {
  lua_createtable(L, nd, 0);
  for (int i = 0; i < nd; i++) {
    lua_pushinteger(L, shape[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

static int m_shape(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  push_shape(L, t->ndim, t->shape);
  return 1;
}

static int m_size(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  if (lua_isnoneornil(L, 2)) return m_shape(L);
  int d = lt_check_dim(L, 2, t->ndim, "size");
  lua_pushinteger(L, t->shape[d]);
  return 1;
}

static int m_dim(lua_State *L) {
  lua_pushinteger(L, lt_check(L, 1)->ndim);
  return 1;
}

static int m_numel(lua_State *L) {
  lua_pushinteger(L, lt_check(L, 1)->numel);
  return 1;
}

static int m_item(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  char b[160];
  if (t->numel != 1)
    return lt_argerror(L, 1, "item", "expected a tensor with one element, got shape %s", t_shape_str(t, b, sizeof b));
  lua_pushnumber(L, T_DATA(t)[0]);
  return 1;
}

static void push_nested(lua_State *L, const float *d, int nd, const int64_t *shape) {
  if (nd == 0) {
    lua_pushnumber(L, d[0]);
    return;
  }
  int64_t stride = 1;
  for (int i = 1; i < nd; i++) stride *= shape[i];
  lua_createtable(L, (int)shape[0], 0);
  for (int64_t i = 0; i < shape[0]; i++) {
    if (nd == 1) lua_pushnumber(L, d[i]);
    else push_nested(L, d + i * stride, nd - 1, shape + 1);
    lua_rawseti(L, -2, i + 1);
  }
}

static int m_totable(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  luaL_checkstack(L, t->ndim + 4, "tensor nesting too deep");
  push_nested(L, T_DATA(t), t->ndim, t->shape);
  return 1;
}

static int l_is_tensor(lua_State *L) {
  lua_pushboolean(L, lt_test(L, 1) != NULL);
  return 1;
}

/* the flat offset of x[i1, i2, ...] (1-based; one index = flat position) */
static int64_t check_index(lua_State *L, Tensor *t, int first, int last, const char *fn) {
  int n = last - first + 1;
  if (n == 1) {
    lua_Integer i = luaL_checkinteger(L, first);
    if (i < 1 || i > t->numel)
      lt_argerror(L, first, fn, "flat index %lld outside 1..%lld", (long long)i, (long long)t->numel);
    return i - 1;
  }
  if (n != t->ndim) lt_argerror(L, first, fn, "expected 1 flat index or %d indices, got %d", t->ndim, n);
  int64_t off = 0;
  for (int k = 0; k < n; k++) {
    lua_Integer i = luaL_checkinteger(L, first + k);
    if (i < 1 || i > t->shape[k])
      lt_argerror(L, first + k, fn, "index %lld outside 1..%lld of dim %d", (long long)i, (long long)t->shape[k],
                  k + 1);
    off = off * t->shape[k] + (i - 1);
  }
  return off;
}

static int m_get(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  lua_pushnumber(L, T_DATA(t)[check_index(L, t, 2, lua_gettop(L), "get")]);
  return 1;
}

static int m_set(lua_State *L) { /* x:set(value, i...) */
  Tensor *t = lt_check(L, 1);
  float v = (float)luaL_checknumber(L, 2);
  if (t->grad_fn)
    return lt_argerror(L, 1, "set", "in-place change of a tensor computed by differentiable ops; detach() it first");
  T_DATA(t)[check_index(L, t, 3, lua_gettop(L), "set")] = v;
  t_written(t);
  lua_settop(L, 1);
  return 1;
}

/* ------------------------------------------------------------ arithmetic */

typedef Tensor *(*binary_op)(Tensor *, Tensor *);

/* a op b where either may be a number; numbers take the cheap scalar paths */
static int arith(lua_State *L, int op) {
  lt_enter(L);
  Tensor *a = lt_test(L, 1), *b = lt_test(L, 2), *out = NULL;
  int na = lua_type(L, 1) == LUA_TNUMBER, nb = lua_type(L, 2) == LUA_TNUMBER;
  static const char *names[] = {"add", "sub", "mul", "div"};
  if (!a && !na) return lt_argerror(L, 1, names[op], "expected tensor or number, got %s", lt_typename(L, 1));
  if (!b && !nb) return lt_argerror(L, 2, names[op], "expected tensor or number, got %s", lt_typename(L, 2));
  if (!a && !b) return lt_argerror(L, 1, names[op], "expected a tensor on one side, got two numbers");
  if (a && b) {
    static const binary_op ops[] = {t_add, t_sub, t_mul, t_div};
    out = ops[op](a, b);
  } else if (a) {
    double s = lua_tonumber(L, 2);
    switch (op) {
      case 0: out = t_add_scalar(a, s); break;
      case 1: out = t_add_scalar(a, -s); break;
      case 2: out = t_mul_scalar(a, s); break;
      default: out = t_mul_scalar(a, 1.0 / s); break;
    }
  } else {
    double s = lua_tonumber(L, 1);
    switch (op) {
      case 0: out = t_add_scalar(b, s); break;
      case 1: out = t_rsub_scalar(b, s); break;
      case 2: out = t_mul_scalar(b, s); break;
      default: out = t_rdiv_scalar(b, s); break;
    }
  }
  lt_push(L, out);
  return 1;
}

static int m_add(lua_State *L) { return arith(L, 0); }
static int m_sub(lua_State *L) { return arith(L, 1); }
static int m_mul(lua_State *L) { return arith(L, 2); }
static int m_div(lua_State *L) { return arith(L, 3); }

/* a:sub_scaled(b, s) = a - b * s in one op (an SGD step) */
static int m_sub_scaled(lua_State *L) {
  lt_enter(L);
  Tensor *a = lt_check(L, 1), *b = lt_check(L, 2);
  lt_push(L, t_sub_scaled(a, b, luaL_checknumber(L, 3)));
  return 1;
}

static int m_pow(lua_State *L) {
  Tensor *a = lt_check(L, 1);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    lt_push(L, t_pow_scalar(a, lua_tonumber(L, 2)));
    return 1;
  }
  Tensor *b = lt_test(L, 2);
  if (!b) return luaL_typeerror(L, 2, "tensor or number");
  lt_push(L, t_pow(a, b));
  return 1;
}

#define UNARY(name, fn)             \
  static int name(lua_State *L) {   \
    lt_push(L, fn(lt_check(L, 1))); \
    return 1;                       \
  }
UNARY(m_neg, t_neg)
UNARY(m_exp, t_exp)
UNARY(m_log, t_log)
UNARY(m_sqrt, t_sqrt)
UNARY(m_abs, t_abs)
UNARY(m_sign, t_sign)
UNARY(m_relu, t_relu)
UNARY(m_sigmoid, t_sigmoid)
UNARY(m_tanh, t_tanh)

static int compare(lua_State *L, int op) {
  Tensor *a = lt_check(L, 1), *owned, *b = lt_check_tensor_or_number(L, 2, &owned);
  Tensor *out = t_compare(a, b, op);
  t_release(owned);
  lt_push(L, out);
  return 1;
}
static int m_eq(lua_State *L) { return compare(L, CMP_EQ); }
static int m_ne(lua_State *L) { return compare(L, CMP_NE); }
static int m_lt(lua_State *L) { return compare(L, CMP_LT); }
static int m_le(lua_State *L) { return compare(L, CMP_LE); }
static int m_gt(lua_State *L) { return compare(L, CMP_GT); }
static int m_ge(lua_State *L) { return compare(L, CMP_GE); }

/* ------------------------------------------------------------ reductions */

/* dims at index i: nil (all), a number, or a list; returns a bitmask */
static uint32_t check_dims(lua_State *L, int i, Tensor *t, const char *fn) {
  if (lua_isnoneornil(L, i)) return t->ndim ? (1u << t->ndim) - 1 : 0;
  if (lua_type(L, i) == LUA_TNUMBER) return 1u << lt_check_dim(L, i, t->ndim, fn);
  if (!lua_istable(L, i)) lt_argerror(L, i, fn, "expected dim or list of dims, got %s", lt_typename(L, i));
  uint32_t mask = 0;
  lua_Integer n = luaL_len(L, i);
  if (n > T_MAXDIM) /* (also bounds the loop when __len lies) */
    lt_argerror(L, i, fn, "expected at most %d dims, got a list of %lld", T_MAXDIM, (long long)n);
  for (lua_Integer k = 1; k <= n; k++) {
    lua_geti(L, i, k);
    mask |= 1u << lt_check_dim_at(L, lua_gettop(L), i, t->ndim, fn);
    lua_pop(L, 1);
  }
  return mask;
}

static int m_sum(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  uint32_t dims = check_dims(L, 2, t, "sum");
  lt_push(L, t_sum(t, dims, lua_toboolean(L, 3)));
  return 1;
}

static int m_mean(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  uint32_t dims = check_dims(L, 2, t, "mean");
  lt_push(L, t_mean(t, dims, lua_toboolean(L, 3)));
  return 1;
}

static int m_var(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  uint32_t dims = check_dims(L, 2, t, "var");
  int unbiased = lua_isnoneornil(L, 4) ? 1 : lua_toboolean(L, 4);
  lt_push(L, t_var(t, dims, lua_toboolean(L, 3), unbiased));
  return 1;
}

static int m_max(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  if (lua_isnoneornil(L, 2)) {
    lt_push(L, t_max(t, -1, 0));
    return 1;
  }
  int d = lt_check_dim(L, 2, t->ndim, "max");
  int keep = lua_toboolean(L, 3);
  lt_push(L, t_max(t, d, keep));
  lt_push(L, t_argmax(t, d, keep));
  return 2;
}

static int m_argmax(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  int d = lua_isnoneornil(L, 2) ? -1 : lt_check_dim(L, 2, t->ndim, "argmax");
  lt_push(L, t_argmax(t, d, lua_toboolean(L, 3)));
  return 1;
}

static int m_matmul(lua_State *L) {
  Tensor *a = lt_check(L, 1), *b = lt_check(L, 2);
  lt_push(L, t_matmul(a, b));
  return 1;
}

/* ------------------------------------------------------------ shape ops */

/* shape at i, with one -1 inferred from numel */
static int check_view_shape(lua_State *L, int i, Tensor *t, int64_t *shape, const char *fn) {
  lt_enter(L);
  if (lua_type(L, i) != LUA_TTABLE)
    return lt_argerror(L, i, fn, "expected shape table like {2, -1}, got %s", lt_typename(L, i));
  lua_Integer n = luaL_len(L, i);
  if (n > T_MAXDIM) return lt_argerror(L, i, fn, "expected at most %d dims", T_MAXDIM);
  int infer = -1;
  int64_t known = 1;
  for (lua_Integer k = 1; k <= n; k++) {
    lua_geti(L, i, k);
    int isnum = 0;
    lua_Integer v = lua_type(L, -1) == LUA_TNUMBER ? lua_tointegerx(L, -1, &isnum) : 0;
    lua_pop(L, 1);
    if (!isnum || v < -1 || (v == -1 && infer >= 0))
      return lt_argerror(L, i, fn, "expected sizes >= 0 and at most one -1, got entry %d", (int)k);
    shape[k - 1] = v;
    if (v == -1) infer = (int)k - 1;
    else if (v > 0) known = known > T_MAXNUMEL || v > T_MAXNUMEL ? T_MAXNUMEL + 1 : known * v; /* no overflow */
    else if (v == 0) known = 0;
  }
  char b1[160], b2[160];
  if (infer >= 0) {
    if (known == 0 || t->numel % known)
      return lt_argerror(L, i, fn, "cannot infer -1 reshaping %s", t_shape_str(t, b1, sizeof b1));
    shape[infer] = t->numel / known;
  }
  /* checked here so that the error names view or reshape, whichever was called */
  t_check_shape(fn, i, (int)n, shape);
  int64_t numel = 1;
  for (int k = 0; k < n; k++) numel *= shape[k];
  if (numel != t->numel)
    return lt_argerror(L, i, fn, "cannot reshape %s (%lld elements) to %s (%lld elements)",
                       t_shape_str(t, b1, sizeof b1), (long long)t->numel, t_shape_str2((int)n, shape, b2, sizeof b2),
                       (long long)numel);
  return (int)n;
}

static int m_reshape(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  int64_t shape[T_MAXDIM];
  int nd = check_view_shape(L, 2, t, shape, "reshape");
  lt_push(L, t_reshape(t, nd, shape));
  return 1;
}

static int m_view(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  int64_t shape[T_MAXDIM];
  int nd = check_view_shape(L, 2, t, shape, "view");
  lt_push(L, t_reshape(t, nd, shape));
  return 1;
}

static int m_transpose(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  int d0 = lt_check_dim(L, 2, t->ndim, "transpose"), d1 = lt_check_dim(L, 3, t->ndim, "transpose");
  lt_push(L, t_transpose(t, d0, d1));
  return 1;
}

static int m_permute(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  int perm[T_MAXDIM];
  luaL_checktype(L, 2, LUA_TTABLE);
  if (luaL_len(L, 2) != t->ndim)
    return lt_argerror(L, 2, "permute", "expected a permutation of %d dims, got %d entries", t->ndim,
                       (int)luaL_len(L, 2));
  for (int k = 0; k < t->ndim; k++) {
    lua_geti(L, 2, k + 1);
    perm[k] = lt_check_dim_at(L, lua_gettop(L), 2, t->ndim, "permute");
    lua_pop(L, 1);
  }
  lt_push(L, t_permute(t, perm));
  return 1;
}

static int m_narrow(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  int d = lt_check_dim(L, 2, t->ndim, "narrow");
  lua_Integer start = luaL_checkinteger(L, 3), len = luaL_checkinteger(L, 4);
  if (start < 1 || len < 0 || start - 1 > t->shape[d] - len) /* (no overflow with a huge start or len) */
    return lt_argerror(L, 3, "narrow", "start %lld, length %lld: not within 1..%lld of dim %d", (long long)start,
                       (long long)len, (long long)t->shape[d], d + 1);
  lt_push(L, t_narrow(t, d, start - 1, len));
  return 1;
}

static int m_select(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  int d = lt_check_dim(L, 2, t->ndim, "select");
  lua_Integer i = luaL_checkinteger(L, 3);
  if (i < 0) i += t->shape[d] + 1;
  if (i < 1 || i > t->shape[d])
    return lt_argerror(L, 3, "select", "index %lld outside 1..%lld of dim %d", (long long)lua_tointeger(L, 3),
                       (long long)t->shape[d], d + 1);
  Tensor *n = t_narrow(t, d, i - 1, 1);
  int64_t shape[T_MAXDIM];
  int nd = 0;
  for (int k = 0; k < t->ndim; k++)
    if (k != d) shape[nd++] = t->shape[k];
  Tensor *r = t_reshape(n, nd, shape);
  t_release(n);
  lt_push(L, r);
  return 1;
}

static int m_flatten(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  int start = lua_isnoneornil(L, 2) ? 0 : (t->ndim ? lt_check_dim(L, 2, t->ndim, "flatten") : 0);
  int64_t shape[T_MAXDIM];
  int nd = 0;
  for (int k = 0; k < start; k++) shape[nd++] = t->shape[k];
  int64_t rest = 1;
  for (int k = start; k < t->ndim; k++) rest *= t->shape[k];
  shape[nd++] = rest;
  lt_push(L, t_reshape(t, nd, shape));
  return 1;
}

static int m_unsqueeze(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  if (t->ndim >= T_MAXDIM) return lt_argerror(L, 1, "unsqueeze", "already %d dims", T_MAXDIM);
  int d = lt_check_dim(L, 2, t->ndim + 1, "unsqueeze");
  int64_t shape[T_MAXDIM];
  for (int k = 0, j = 0; k <= t->ndim; k++) shape[k] = k == d ? 1 : t->shape[j++];
  lt_push(L, t_reshape(t, t->ndim + 1, shape));
  return 1;
}

static int m_squeeze(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  int only = lua_isnoneornil(L, 2) ? -1 : lt_check_dim(L, 2, t->ndim, "squeeze");
  int64_t shape[T_MAXDIM];
  int nd = 0;
  for (int k = 0; k < t->ndim; k++)
    if (!(t->shape[k] == 1 && (only < 0 || only == k))) shape[nd++] = t->shape[k];
  lt_push(L, t_reshape(t, nd, shape));
  return 1;
}

static int m_expand(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  int64_t shape[T_MAXDIM];
  int nd = lt_check_shape(L, 2, shape, "expand");
  lt_push(L, t_expand(t, nd, shape));
  return 1;
}

static int m_clone(lua_State *L) {
  lt_push(L, t_contiguous_copy(lt_check(L, 1)));
  return 1;
}

static int m_contiguous(lua_State *L) {
  lt_push(L, t_retain(lt_check(L, 1))); /* always contiguous */
  return 1;
}

/* a Lua list of tensors at index i into a malloc'd array (in a userdata) */
static Tensor **check_tensor_list(lua_State *L, int i, int *n, const char *fn) {
  lt_enter(L);
  if (!lua_istable(L, i)) lt_argerror(L, i, fn, "expected a list of tensors, got %s", lt_typename(L, i));
  lua_Integer len = luaL_len(L, i);
  if (len < 1 || len > (1 << 24)) lt_argerror(L, i, fn, "expected a non-empty list of tensors");
  Tensor **ts = lua_newuserdatauv(L, (size_t)len * sizeof *ts, 0);
  for (lua_Integer k = 1; k <= len; k++) {
    lua_geti(L, i, k);
    ts[k - 1] = lt_test(L, -1);
    if (!ts[k - 1]) lt_argerror(L, i, fn, "expected a tensor at position %d, got %s", (int)k, lt_typename(L, -1));
    lua_pop(L, 1);
  }
  *n = (int)len;
  return ts; /* kept alive by the userdata on the stack */
}

static int l_cat(lua_State *L) {
  int n;
  lua_settop(L, 2); /* the list's scratch userdata goes to 3, not into the dim's slot */
  Tensor **ts = check_tensor_list(L, 1, &n, "cat");
  int d = lua_isnoneornil(L, 2) ? 0 : lt_check_dim(L, 2, ts[0]->ndim, "cat");
  lt_push(L, t_cat(n, ts, d));
  return 1;
}

static int l_stack(lua_State *L) {
  int n;
  lua_settop(L, 2); /* the list's scratch userdata goes to 3, not into the dim's slot */
  Tensor **ts = check_tensor_list(L, 1, &n, "stack");
  int nd = ts[0]->ndim;
  if (nd >= T_MAXDIM) return lt_argerror(L, 1, "stack", "tensors already have %d dims", T_MAXDIM);
  int d = lua_isnoneornil(L, 2) ? 0 : lt_check_dim(L, 2, nd + 1, "stack");
  char b1[160], b2[160];
  for (int k = 1; k < n; k++)
    if (!t_same_shape(ts[k], ts[0]))
      return lt_argerror(L, 1, "stack", "tensor %d has shape %s, expected %s like tensor 1", k + 1,
                         t_shape_str(ts[k], b1, sizeof b1), t_shape_str(ts[0], b2, sizeof b2));
  int64_t shape[T_MAXDIM];
  for (int k = 0, j = 0; k <= nd; k++) shape[k] = k == d ? 1 : ts[0]->shape[j++];
  Tensor **us = lua_newuserdatauv(L, (size_t)n * sizeof *us, 0);
  for (int k = 0; k < n; k++) us[k] = t_reshape(ts[k], nd + 1, shape);
  Tensor *out = t_cat(n, us, d);
  for (int k = 0; k < n; k++) t_release(us[k]);
  lt_push(L, out);
  return 1;
}

/* ------------------------------------------------------------ autograd flags */

static int m_requires_grad(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  if (lua_isnone(L, 2)) {
    lua_pushboolean(L, t->requires_grad);
    return 1;
  }
  luaL_checktype(L, 2, LUA_TBOOLEAN);
  int on = lua_toboolean(L, 2);
  if (t->grad_fn && !on)
    return lt_argerror(L, 1, "requires_grad",
                       "a tensor computed by differentiable ops cannot stop requiring grad; use detach()");
  if (!t->grad_fn) t->requires_grad = on;
  lua_settop(L, 1);
  return 1;
}

static int m_detach(lua_State *L) {
  lt_push(L, t_detach(lt_check(L, 1)));
  return 1;
}

static int m_is_leaf(lua_State *L) {
  lua_pushboolean(L, lt_check(L, 1)->grad_fn == NULL);
  return 1;
}

static int m_grad_fn(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  if (t->grad_fn) lua_pushstring(L, t->grad_fn->name);
  else lua_pushnil(L);
  return 1;
}

/* ------------------------------------------------------------ registration */

static const luaL_Reg tensor_methods[] = {{"shape", m_shape},
                                          {"size", m_size},
                                          {"dim", m_dim},
                                          {"numel", m_numel},
                                          {"item", m_item},
                                          {"totable", m_totable},
                                          {"add", m_add},
                                          {"sub", m_sub},
                                          {"mul", m_mul},
                                          {"div", m_div},
                                          {"sub_scaled", m_sub_scaled},
                                          {"pow", m_pow},
                                          {"neg", m_neg},
                                          {"exp", m_exp},
                                          {"log", m_log},
                                          {"sqrt", m_sqrt},
                                          {"abs", m_abs},
                                          {"sign", m_sign},
                                          {"relu", m_relu},
                                          {"sigmoid", m_sigmoid},
                                          {"tanh", m_tanh},
                                          {"eq", m_eq},
                                          {"ne", m_ne},
                                          {"lt", m_lt},
                                          {"le", m_le},
                                          {"gt", m_gt},
                                          {"ge", m_ge},
                                          {"sum", m_sum},
                                          {"mean", m_mean},
                                          {"var", m_var},
                                          {"max", m_max},
                                          {"argmax", m_argmax},
                                          {"matmul", m_matmul},
                                          {"reshape", m_reshape},
                                          {"view", m_view},
                                          {"transpose", m_transpose},
                                          {"permute", m_permute},
                                          {"narrow", m_narrow},
                                          {"select", m_select},
                                          {"flatten", m_flatten},
                                          {"unsqueeze", m_unsqueeze},
                                          {"squeeze", m_squeeze},
                                          {"expand", m_expand},
                                          {"clone", m_clone},
                                          {"contiguous", m_contiguous},
                                          {"requires_grad", m_requires_grad},
                                          {"detach", m_detach},
                                          {"is_leaf", m_is_leaf},
                                          {"grad_fn", m_grad_fn},
                                          {"get", m_get},
                                          {"set", m_set},
                                          {NULL, NULL}};

static const luaL_Reg tensor_functions[] = {
    {"is_tensor", l_is_tensor}, {"cat", l_cat}, {"stack", l_stack}, {NULL, NULL}};

/* methods that are also module functions: T.exp(x) == x:exp() */
static const char *const method_functions[] = {
    "add",     "sub",    "sub_scaled", "mul",       "div",     "pow",    "neg",    "exp",     "log",       "sqrt",    "abs",
    "sign",    "relu",   "sigmoid",   "tanh",    "sum",    "mean",   "var",     "max",       "argmax",  "matmul",
    "reshape", "view",   "transpose", "permute", "narrow", "select", "flatten", "unsqueeze", "squeeze", "expand",
    "clone",   "detach", "eq",        "ne",      "lt",     "le",     "gt",      "ge",        NULL};

extern void openblas_set_num_threads(int);

int luaopen_tensor(lua_State *L) {
  lt_enter(L);
  /* MAML's GEMMs are small: OpenBLAS threads only cost time, and the
  ** parallel module splits work by task. OPENBLAS_NUM_THREADS still wins. */
  if (!getenv("OPENBLAS_NUM_THREADS")) openblas_set_num_threads(1);
  luaL_newlib(L, tensor_functions); /* module */
  int module = lua_gettop(L);
  luaL_newlib(L, tensor_methods); /* methods */
  int methods = lua_gettop(L);
  lt_open_construct(L, module);
  lt_open_generator(L, module);
  lt_open_inplace(L, methods);
  lt_open_nn(L, module, methods);
  lt_open_io(L, module);
  lt_open_memory(L, module);
  for (int i = 0; method_functions[i]; i++) {
    lua_getfield(L, methods, method_functions[i]);
    lua_setfield(L, module, method_functions[i]);
  }
  if (luaL_newmetatable(L, LT_TENSOR_MT)) {
    lua_pushvalue(L, methods);
    lua_setfield(L, -2, "__index");
    static const luaL_Reg meta[] = {{"__add", m_add},
                                    {"__sub", m_sub},
                                    {"__mul", m_mul},
                                    {"__div", m_div},
                                    {"__unm", m_neg},
                                    {"__pow", m_pow},
                                    {"__tostring", lt_tostring},
                                    {"__gc", lt_tensor_gc},
                                    {"__close", lt_tensor_gc},
                                    {NULL, NULL}};
    luaL_setfuncs(L, meta, 0);
    lua_pushliteral(L, "tensor");
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
  lua_pushvalue(L, methods);
  lua_setfield(L, module, "methods"); /* for Lua extensions of the tensor type */
  lua_settop(L, module);
  return 1;
}
