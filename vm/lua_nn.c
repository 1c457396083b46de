/*
** lua_nn.c: Lua bindings of the convolution and pooling ops (ops/conv.c, ops/pool.c).
**
**   T.conv2d(x, w [, b [, {stride=1, padding=0}]])       x (N,C,H,W), w (O,C,KH,KW), b (O)
**   T.max_pool2d(x, k [, {stride=k, padding=0}])         padding <= k/2
**   T.avg_pool2d(x, k [, {stride=k, padding=0}])         padding counts as zeros
**   T.global_avg_pool2d(x)                               (N,C,H,W) -> (N,C)
**   T.conv2d_backward_input(gy, w, {H, W} [, opts])      the adjoint of conv2d in x
**   T.conv2d_backward_weight(x, gy, {KH, KW} [, opts])   the adjoint of conv2d in w
**
** All are differentiable to any order, and also tensor methods (x:conv2d(w, b)).
*/
#include <limits.h>
#include <string.h>

#include "lua_tensor.h"
#include "nnops.h"

/* an integer that fits a C int, or a Lua error on argument arg naming what */
static int to_int(lua_State *L, int arg, lua_Integer v, const char *what) {
  if (v < INT_MIN || v > INT_MAX)
    luaL_argerror(L, arg, lua_pushfstring(L, "%s out of range, got %I", what, v));
  return (int)v;
}

/* {stride=, padding=} at arg (none or nil: the defaults in opt[]); any
** other key is an error, so a typo like {pading=1} does not pass silently */
static void check_conv_options(lua_State *L, int arg, const char *fn, int opt[2]) {
  static const char *const names[] = {"stride", "padding", NULL};
  if (!lt_check_options(L, arg, fn, names)) return;
  for (int i = 0; i < 2; i++) opt[i] = (int)lt_opt_integer(L, arg, fn, names[i], opt[i], INT_MIN, INT_MAX);
}

/* two sizes {a, b} (or one number n meaning {n, n}) at arg */
static void check_pair(lua_State *L, int arg, const char *what, int64_t pair[2]) {
  if (lua_type(L, arg) == LUA_TNUMBER) {
    pair[0] = pair[1] = luaL_checkinteger(L, arg);
    return;
  }
  if (!lua_istable(L, arg))
    luaL_argerror(L, arg, lua_pushfstring(L, "expected %s as a number or {h, w}, got %s", what,
                                           luaL_typename(L, arg)));
  if (luaL_len(L, arg) != 2)
    luaL_argerror(L, arg, lua_pushfstring(L, "expected %s as {h, w}, got a table of length %I", what,
                                           luaL_len(L, arg)));
  for (int i = 0; i < 2; i++) {
    int isint = 0;
    lua_geti(L, arg, i + 1);
    pair[i] = lua_type(L, -1) == LUA_TNUMBER ? lua_tointegerx(L, -1, &isint) : 0;
    if (!isint)
      luaL_argerror(L, arg, lua_pushfstring(L, "expected integers in %s, got %s", what,
                                             luaL_typename(L, -1)));
    lua_pop(L, 1);
  }
}

// T.conv2d(x (N,C,H,W), w (O,C,KH,KW) [, b (O) [, {stride=1, padding=0}]]) -> (N,O,OH,OW)
static int l_conv2d(lua_State *L) {
  Tensor *x = lt_check(L, 1), *w = lt_check(L, 2);
  Tensor *b = lua_isnoneornil(L, 3) ? NULL : lt_check(L, 3);
  int opt[2] = {1, 0};
  check_conv_options(L, 4, "conv2d", opt);
  lt_push(L, t_conv2d(x, w, b, opt[0], opt[1]));
  return 1;
}

// T.conv2d_backward_input(gy (N,O,OH,OW), w (O,C,KH,KW), {H, W} [, opts]) -> (N,C,H,W)
static int l_conv2d_backward_input(lua_State *L) {
  Tensor *gy = lt_check(L, 1), *w = lt_check(L, 2);
  int64_t hw[2];
  check_pair(L, 3, "input size", hw);
  int opt[2] = {1, 0};
  check_conv_options(L, 4, "conv2d_backward_input", opt);
  lt_push(L, t_conv2d_backward_input(gy, w, hw[0], hw[1], opt[0], opt[1]));
  return 1;
}

// T.conv2d_backward_weight(x (N,C,H,W), gy (N,O,OH,OW), {KH, KW} [, opts]) -> (O,C,KH,KW)
static int l_conv2d_backward_weight(lua_State *L) {
  Tensor *x = lt_check(L, 1), *gy = lt_check(L, 2);
  int64_t k[2];
  check_pair(L, 3, "kernel size", k);
  int opt[2] = {1, 0};
  check_conv_options(L, 4, "conv2d_backward_weight", opt);
  lt_push(L, t_conv2d_backward_weight(x, gy, k[0], k[1], opt[0], opt[1]));
  return 1;
}

/* x, k and {stride=k, padding=0} of a pooling */
static Tensor *check_pool_args(lua_State *L, const char *fn, int *k, int *stride, int *padding) {
  Tensor *x = lt_check(L, 1);
  *k = to_int(L, 2, luaL_checkinteger(L, 2), "kernel size");
  int opt[2] = {*k, 0};
  check_conv_options(L, 3, fn, opt);
  *stride = opt[0];
  *padding = opt[1];
  return x;
}

// T.max_pool2d(x (N,C,H,W), k [, {stride=k, padding=0}]) -> (N,C,OH,OW)
static int l_max_pool2d(lua_State *L) {
  int k, stride, padding;
  Tensor *x = check_pool_args(L, "max_pool2d", &k, &stride, &padding);
  lt_push(L, t_max_pool2d(x, k, stride, padding, NULL));
  return 1;
}

// T.avg_pool2d(x (N,C,H,W), k [, {stride=k, padding=0}]) -> (N,C,OH,OW)
static int l_avg_pool2d(lua_State *L) {
  int k, stride, padding;
  Tensor *x = check_pool_args(L, "avg_pool2d", &k, &stride, &padding);
  lt_push(L, t_avg_pool2d(x, k, stride, padding));
  return 1;
}

// T.global_avg_pool2d(x (N,C,H,W)) -> (N,C)
static int l_global_avg_pool2d(lua_State *L) {
  lt_push(L, t_global_avg_pool2d(lt_check(L, 1)));
  return 1;
}

static const luaL_Reg nn_funcs[] = {
    {"conv2d", l_conv2d},
    {"conv2d_backward_input", l_conv2d_backward_input},
    {"conv2d_backward_weight", l_conv2d_backward_weight},
    {"max_pool2d", l_max_pool2d},
    {"avg_pool2d", l_avg_pool2d},
    {"global_avg_pool2d", l_global_avg_pool2d},
    {NULL, NULL},
};

void lt_open_nn(lua_State *L, int module, int methods) {
  module = lua_absindex(L, module);
  methods = lua_absindex(L, methods);
  lua_pushvalue(L, module);
  luaL_setfuncs(L, nn_funcs, 0);
  lua_pushvalue(L, methods);
  luaL_setfuncs(L, nn_funcs, 0);
  lua_pop(L, 2);
}
