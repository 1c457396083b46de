/*
** lua_construct.c: the tensor constructors of the "tensor" module: T.tensor
** (from nested tables, a number or a tensor), zeros, ones, full, arange, randn, rand.
*/
#include <math.h>
#include <string.h>

#include "lua_tensor.h"
#include "shape.h"

static void infer_shape(lua_State *L, int idx, int depth, int *nd, int64_t *shape) {
  if (depth >= T_MAXDIM) lt_argerror(L, 1, "tensor", "more than %d levels of nesting", T_MAXDIM);
  lua_Integer n = luaL_len(L, idx);
  shape[depth] = n;
  *nd = depth + 1;
  if (n > 0) {
    lua_geti(L, idx, 1);
    if (lua_istable(L, -1)) infer_shape(L, lua_gettop(L), depth + 1, nd, shape);
    lua_pop(L, 1);
  }
}

static float *fill_from_table(lua_State *L, int idx, int depth, int nd, const int64_t *shape, float *out) {
  lua_Integer n = luaL_len(L, idx);
  if (n != shape[depth])
    lt_argerror(L, 1, "tensor", "ragged nesting: expected %lld entries at depth %d, got %lld", (long long)shape[depth],
                depth + 1, (long long)n);
  for (lua_Integer k = 1; k <= n; k++) {
    lua_geti(L, idx, k);
    if (depth + 1 < nd) {
      if (!lua_istable(L, -1))
        lt_argerror(L, 1, "tensor", "expected a table at depth %d, got %s", depth + 2, lt_typename(L, -1));
      out = fill_from_table(L, lua_gettop(L), depth + 1, nd, shape, out);
    } else {
      if (lua_type(L, -1) != LUA_TNUMBER)
        lt_argerror(L, 1, "tensor", "expected numbers, got %s at depth %d", lt_typename(L, -1), depth + 1);
      *out++ = (float)lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
  }
  return out;
}

static int l_tensor(lua_State *L) {
  lt_enter(L);
  if (lua_type(L, 1) == LUA_TNUMBER) {
    lt_push(L, t_scalar((float)lua_tonumber(L, 1)));
    return 1;
  }
  Tensor *src = lt_test(L, 1);
  if (src) {
    int old = ag_set_enabled(0);
    Tensor *t = t_contiguous_copy(src);
    ag_set_enabled(old);
    lt_push(L, t);
    return 1;
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  int64_t shape[T_MAXDIM];
  int nd = 0;
  infer_shape(L, 1, 0, &nd, shape);
  t_check_shape("tensor", 1, nd, shape);
  /* fill a scratch userdata first: a ragged table errors without leaking */
  int64_t numel = 1;
  for (int i = 0; i < nd; i++) numel *= shape[i];
  float *tmp = lua_newuserdatauv(L, (size_t)(numel ? numel : 1) * sizeof(float), 0);
  fill_from_table(L, 1, 0, nd, shape, tmp);
  Tensor *t = t_new(nd, shape);
  memcpy(T_DATA(t), tmp, (size_t)numel * sizeof(float));
  lt_push(L, t);
  return 1;
}

static int l_zeros(lua_State *L) {
  int64_t shape[T_MAXDIM];
  int nd = lt_check_shape(L, 1, shape, "zeros");
  lt_push(L, t_zeros(nd, shape));
  return 1;
}

static int l_ones(lua_State *L) {
  int64_t shape[T_MAXDIM];
  int nd = lt_check_shape(L, 1, shape, "ones");
  lt_push(L, t_full(nd, shape, 1.0f));
  return 1;
}

static int l_full(lua_State *L) {
  int64_t shape[T_MAXDIM];
  int nd = lt_check_shape(L, 1, shape, "full");
  float v = (float)luaL_checknumber(L, 2);
  lt_push(L, t_full(nd, shape, v));
  return 1;
}

static int l_arange(lua_State *L) {
  lt_enter(L);
  double a = luaL_checknumber(L, 1), b, step = luaL_optnumber(L, 3, 1.0);
  if (lua_isnoneornil(L, 2)) {
    b = a;
    a = 0;
  } else {
    b = luaL_checknumber(L, 2);
  }
  luaL_argcheck(L, step != 0 && isfinite(step), 3, "expected a finite non-zero step");
  luaL_argcheck(L, isfinite(a) && isfinite(b), 1, "expected finite bounds");
  double count = ceil((b - a) / step);
  if (count < 0) count = 0;
  if (count > (double)T_MAXNUMEL) return lt_argerror(L, 2, "arange", "more than %lld elements", (long long)T_MAXNUMEL);
  int64_t n = (int64_t)count;
  Tensor *t = t_new(1, &n);
  float *d = T_DATA(t);
  for (int64_t i = 0; i < n; i++) d[i] = (float)(a + (double)i * step);
  lt_push(L, t);
  return 1;
}

static int random_tensor(lua_State *L, const char *fn, int normal) {
  int64_t shape[T_MAXDIM];
  int nd = lt_check_shape(L, 1, shape, fn);
  Generator *g = lt_opt_generator(L, 2);
  Tensor *t = t_new(nd, shape);
  float *d = T_DATA(t);
  for (int64_t i = 0; i < t->numel; i++) d[i] = (float)(normal ? gen_normal(g) : gen_uniform(g));
  lt_push(L, t);
  return 1;
}

static int l_randn(lua_State *L) { return random_tensor(L, "randn", 1); }
static int l_rand(lua_State *L) { return random_tensor(L, "rand", 0); }

static const luaL_Reg construct_functions[] = {{"tensor", l_tensor}, {"zeros", l_zeros},   {"ones", l_ones},
                                               {"full", l_full},     {"arange", l_arange}, {"randn", l_randn},
                                               {"rand", l_rand},     {NULL, NULL}};

void lt_open_construct(lua_State *L, int module) { lt_setfuncs(L, module, construct_functions); }
