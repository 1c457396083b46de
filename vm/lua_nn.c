/*
** lua_nn.c: Lua bindings of the convolution and pooling ops (ops/conv.c, ops/pool.c).
**
**   T.conv2d(x, w [, b [, {stride=1, padding=0, layout="nchw", relu=false}]])
**                                                        x (N,C,H,W), w (O,C,KH,KW), b (O);
**                                                        layout="nhwc": x (N,H,W,C) -> (N,OH,OW,O)
**   T.max_pool2d(x, k [, {stride=k, padding=0}])         padding <= k/2
**   T.avg_pool2d(x, k [, {stride=k, padding=0}])         padding counts as zeros
**   T.global_avg_pool2d(x [, {layout="nchw"}])           (N,C,H,W) or (N,H,W,C) -> (N,C)
**   T.conv2d_backward_input(gy, w, {H, W} [, opts])      the adjoint of conv2d in x
**   T.conv2d_backward_weight(x, gy, {KH, KW} [, opts])   the adjoint of conv2d in w
**
** All are differentiable to any order, and also tensor methods (x:conv2d(w, b)).
*/
#include <limits.h>
#include <math.h>
#include <string.h>

#include "loss.h"
#include "lua_tensor.h"
#include "nnops.h"

/* an integer that fits a C int, or a Lua error on argument arg naming what */
static int to_int(lua_State *L, int arg, lua_Integer v, const char *what) {
  if (v < INT_MIN || v > INT_MAX) luaL_argerror(L, arg, lua_pushfstring(L, "%s out of range, got %I", what, v));
  return (int)v;
}

/* {stride=, padding=, ...} at arg (none or nil: the defaults in opt[], and 0 returned), names
** the keys allowed; any other key is an error, so a typo like {pading=1} does not pass silently */
static int read_conv_options(lua_State *L, int arg, const char *fn, const char *const *names, int opt[2]) {
  if (!lt_check_options(L, arg, fn, names)) return 0;
  for (int i = 0; i < 2; i++) opt[i] = (int)lt_opt_integer(L, arg, fn, names[i], opt[i], INT_MIN, INT_MAX);
  return 1;
}

/* {stride=, padding=} of the poolings */
static void check_conv_options(lua_State *L, int arg, const char *fn, int opt[2]) {
  static const char *const names[] = {"stride", "padding", NULL};
  read_conv_options(L, arg, fn, names, opt);
}

/* {layout="nchw"|"nhwc"} of an options table at arg that the caller has checked, as 0 or 1 */
static int opt_layout(lua_State *L, int arg, const char *fn) {
  const char *layout = lt_opt_string(L, arg, fn, "layout", "nchw");
  if (strcmp(layout, "nchw") == 0) return 0;
  if (strcmp(layout, "nhwc") == 0) return 1;
  return lt_argerror(L, arg, fn, "layout must be \"nchw\" or \"nhwc\", got \"%s\"", layout);
}

/* {stride=, padding=, layout=} of the convolution ops, and relu= when with_relu (conv2d's):
** the flags T_CONV_NHWC and T_CONV_RELU */
static int check_conv_layout_options(lua_State *L, int arg, const char *fn, int opt[2], int with_relu) {
  static const char *const names[] = {"stride", "padding", "layout", NULL};
  static const char *const relu_names[] = {"stride", "padding", "layout", "relu", NULL};
  if (!read_conv_options(L, arg, fn, with_relu ? relu_names : names, opt)) return 0;
  int flags = opt_layout(L, arg, fn) ? T_CONV_NHWC : 0;
  if (with_relu && lt_opt_boolean(L, arg, fn, "relu", 0)) flags |= T_CONV_RELU;
  return flags;
}

/* two sizes {a, b} (or one number n meaning {n, n}) at arg */
static void check_pair(lua_State *L, int arg, const char *what, int64_t pair[2]) {
  if (lua_type(L, arg) == LUA_TNUMBER) {
    pair[0] = pair[1] = luaL_checkinteger(L, arg);
    return;
  }
  if (!lua_istable(L, arg))
    luaL_argerror(L, arg, lua_pushfstring(L, "expected %s as a number or {h, w}, got %s", what, luaL_typename(L, arg)));
  if (luaL_len(L, arg) != 2)
    luaL_argerror(L, arg,
                  lua_pushfstring(L, "expected %s as {h, w}, got a table of length %I", what, luaL_len(L, arg)));
  for (int i = 0; i < 2; i++) {
    int isint = 0;
    lua_geti(L, arg, i + 1);
    pair[i] = lua_type(L, -1) == LUA_TNUMBER ? lua_tointegerx(L, -1, &isint) : 0;
    if (!isint)
      luaL_argerror(L, arg, lua_pushfstring(L, "expected integers in %s, got %s", what, luaL_typename(L, -1)));
    lua_pop(L, 1);
  }
}

// T.conv2d(x (N,C,H,W), w (O,C,KH,KW) [, b (O) [, {stride=1, padding=0}]]) -> (N,O,OH,OW)
static int l_conv2d(lua_State *L) {
  Tensor *x = lt_check(L, 1), *w = lt_check(L, 2);
  Tensor *b = lua_isnoneornil(L, 3) ? NULL : lt_check(L, 3);
  int opt[2] = {1, 0};
  int flags = check_conv_layout_options(L, 4, "conv2d", opt, 1);
  lt_push(L, t_conv2d(x, w, b, opt[0], opt[1], flags));
  return 1;
}

// T.conv2d_backward_input(gy (N,O,OH,OW), w (O,C,KH,KW), {H, W} [, opts]) -> (N,C,H,W)
static int l_conv2d_backward_input(lua_State *L) {
  Tensor *gy = lt_check(L, 1), *w = lt_check(L, 2);
  int64_t hw[2];
  check_pair(L, 3, "input size", hw);
  int opt[2] = {1, 0};
  int flags = check_conv_layout_options(L, 4, "conv2d_backward_input", opt, 0);
  lt_push(L, t_conv2d_backward_input(gy, w, hw[0], hw[1], opt[0], opt[1], flags));
  return 1;
}

// T.conv2d_backward_weight(x (N,C,H,W), gy (N,O,OH,OW), {KH, KW} [, opts]) -> (O,C,KH,KW)
static int l_conv2d_backward_weight(lua_State *L) {
  Tensor *x = lt_check(L, 1), *gy = lt_check(L, 2);
  int64_t k[2];
  check_pair(L, 3, "kernel size", k);
  int opt[2] = {1, 0};
  int flags = check_conv_layout_options(L, 4, "conv2d_backward_weight", opt, 0);
  lt_push(L, t_conv2d_backward_weight(x, gy, k[0], k[1], opt[0], opt[1], flags));
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

// T.global_avg_pool2d(x (N,C,H,W) [, {layout="nchw"|"nhwc"}]) -> (N,C)
static int l_global_avg_pool2d(lua_State *L) {
  static const char *const names[] = {"layout", NULL};
  Tensor *x = lt_check(L, 1);
  int nhwc = lt_check_options(L, 2, "global_avg_pool2d", names) ? opt_layout(L, 2, "global_avg_pool2d") : 0;
  lt_push(L, t_global_avg_pool2d(x, nhwc));
  return 1;
}

/* ------------------------------------------------------------ losses, linear, softmax, batch norm */

/* labels at index i: a tensor of 1-based classes or a Lua list of at most
** `most` (a longer list is an error before allocating, even when its __len
** lies); the array lives in a userdata left on the stack */
static int64_t *check_labels(lua_State *L, int i, int64_t most, int64_t *n, const char *fn) {
  Tensor *t = lt_test(L, i);
  if (t) {
    *n = t->numel;
    int64_t *out = lua_newuserdatauv(L, (size_t)(*n ? *n : 1) * sizeof *out, 0);
    const float *d = T_DATA(t);
    for (int64_t k = 0; k < *n; k++) {
      if (!(fabsf(d[k]) <= 1e15f) || d[k] != floorf(d[k])) /* (also NaN; no undefined cast to int64) */
        lt_argerror(L, i, fn, "label %g at position %lld is not an integer class",
                    isnan(d[k]) ? (double)NAN : (double)d[k], (long long)k + 1);
      out[k] = (int64_t)d[k];
    }
    return out;
  }
  if (!lua_istable(L, i)) lt_argerror(L, i, fn, "expected labels as a tensor or a list, got %s", lt_typename(L, i));
  *n = luaL_len(L, i);
  if (*n > most)
    lt_argerror(L, i, fn, "expected at most %lld labels, got a list of %lld", (long long)most, (long long)*n);
  int64_t *out = lua_newuserdatauv(L, (size_t)(*n > 0 ? *n : 1) * sizeof *out, 0);
  for (int64_t k = 0; k < *n; k++) {
    lua_geti(L, i, k + 1);
    int isnum = 0;
    lua_Integer v = lua_type(L, -1) == LUA_TNUMBER ? lua_tointegerx(L, -1, &isnum) : 0;
    if (!isnum && lua_type(L, -1) == LUA_TNUMBER)
      lt_argerror(L, i, fn, "expected integer labels, got %g at position %lld", lua_tonumber(L, -1), (long long)k + 1);
    if (!isnum)
      lt_argerror(L, i, fn, "expected integer labels, got %s at position %lld", lt_typename(L, -1), (long long)k + 1);
    out[k] = v;
    lua_pop(L, 1);
  }
  return out;
}

/* at most one label per logit (at least 65536, so that the op itself says
** what is wrong with empty or tiny logits) */
static int64_t most_labels(const Tensor *logits) { return logits->numel > 65536 ? logits->numel : 65536; }

static int l_cross_entropy(lua_State *L) {
  Tensor *x = lt_check(L, 1);
  int64_t n;
  int64_t *labels = check_labels(L, 2, most_labels(x), &n, "cross_entropy");
  lt_push(L, t_cross_entropy(x, labels, n));
  return 1;
}

static int l_accuracy(lua_State *L) {
  Tensor *x = lt_check(L, 1);
  int64_t n;
  int64_t *labels = check_labels(L, 2, most_labels(x), &n, "accuracy");
  lua_pushnumber(L, t_accuracy(x, labels, n));
  return 1;
}

static Tensor *opt_tensor(lua_State *L, int i, const char *fn) {
  if (lua_isnoneornil(L, i)) return NULL;
  Tensor *t = lt_test(L, i);
  if (!t) lt_argerror(L, i, fn, "expected tensor or nil, got %s", lt_typename(L, i));
  return t;
}

static int l_linear(lua_State *L) {
  Tensor *x = lt_check(L, 1), *w = lt_check(L, 2), *b = opt_tensor(L, 3, "linear");
  lt_push(L, t_linear(x, w, b));
  return 1;
}

static int l_log_softmax(lua_State *L) {
  Tensor *x = lt_check(L, 1);
  lt_push(L, t_log_softmax(x, lt_check_dim(L, 2, x->ndim, "log_softmax")));
  return 1;
}

static int l_softmax(lua_State *L) {
  Tensor *x = lt_check(L, 1);
  lt_push(L, t_softmax(x, lt_check_dim(L, 2, x->ndim, "softmax")));
  return 1;
}

static int l_mse_loss(lua_State *L) {
  Tensor *a = lt_check(L, 1), *b = lt_check(L, 2);
  lt_push(L, t_mse_loss(a, b));
  return 1;
}

static const char *const batch_norm_options[] = {"running_mean", "running_var", "training", "momentum",
                                                 "eps",          "layout",      "relu",     NULL};

static int l_batch_norm(lua_State *L) {
  Tensor *x = lt_check(L, 1), *w = opt_tensor(L, 2, "batch_norm"), *b = opt_tensor(L, 3, "batch_norm");
  BatchNormOpts o = {NULL, NULL, 1, 0.1, 1e-5, 0, 0};
  if (lt_check_options(L, 4, "batch_norm", batch_norm_options)) {
    o.running_mean = lt_opt_tensor(L, 4, "batch_norm", "running_mean"); /* the options table keeps them alive */
    o.running_var = lt_opt_tensor(L, 4, "batch_norm", "running_var");
    o.training = lt_opt_boolean(L, 4, "batch_norm", "training", 1);
    if (!o.running_mean != !o.running_var)
      return lt_argerror(L, 4, "batch_norm", "give both running_mean and running_var, or neither");
    o.momentum = lt_opt_number(L, 4, "batch_norm", "momentum", 0.1, 0.0, 1.0);
    o.eps = lt_opt_number(L, 4, "batch_norm", "eps", 1e-5, 0.0, 1.0);
    o.nhwc = opt_layout(L, 4, "batch_norm");
    o.relu = lt_opt_boolean(L, 4, "batch_norm", "relu", 0);
  }
  lt_push(L, t_batch_norm(x, w, b, &o));
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

/* module functions only (not methods) */
static const luaL_Reg nn_module_funcs[] = {{"cross_entropy", l_cross_entropy},
                                           {"accuracy", l_accuracy},
                                           {"linear", l_linear},
                                           {"log_softmax", l_log_softmax},
                                           {"softmax", l_softmax},
                                           {"mse_loss", l_mse_loss},
                                           {"batch_norm", l_batch_norm},
                                           {NULL, NULL}};

void lt_open_nn(lua_State *L, int module, int methods) {
  module = lua_absindex(L, module);
  methods = lua_absindex(L, methods);
  lua_pushvalue(L, module);
  luaL_setfuncs(L, nn_funcs, 0);
  luaL_setfuncs(L, nn_module_funcs, 0);
  lua_pushvalue(L, methods);
  luaL_setfuncs(L, nn_funcs, 0);
  lua_pop(L, 2);
}
