/*
** lua_inplace.c: the in-place tensor methods, for optimizer updates and
** buffers: copy_, fill_, zero_, add_, mul_, addcmul_, addcdiv_. They refuse a
** tensor computed by differentiable ops (its graph would be wrong).
*/
#include <string.h>

#include "lua_tensor.h"

static Tensor *check_inplace(lua_State *L, const char *fn) {
  Tensor *t = lt_check(L, 1);
  if (t->grad_fn)
    lt_argerror(L, 1, fn, "in-place change of a tensor computed by differentiable ops; detach() it first");
  t_written(t);
  return t;
}

static Tensor *check_same(lua_State *L, int i, Tensor *t, const char *fn) {
  Tensor *s = lt_check(L, i);
  char b1[160], b2[160];
  if (s->numel != t->numel || (!t_same_shape(s, t) && s->numel != 1))
    lt_argerror(L, i, fn, "expected shape %s, got %s", t_shape_str(t, b1, sizeof b1), t_shape_str(s, b2, sizeof b2));
  return s;
}

static int m_copy_(lua_State *L) {
  Tensor *t = check_inplace(L, "copy_"), *s = check_same(L, 2, t, "copy_");
  if (T_DATA(s) != T_DATA(t)) memmove(T_DATA(t), T_DATA(s), (size_t)t->numel * sizeof(float));
  lua_settop(L, 1);
  return 1;
}

static int m_fill_(lua_State *L) {
  Tensor *t = check_inplace(L, "fill_");
  float v = (float)luaL_checknumber(L, 2);
  float *d = T_DATA(t);
  for (int64_t i = 0; i < t->numel; i++) d[i] = v;
  lua_settop(L, 1);
  return 1;
}

static int m_zero_(lua_State *L) {
  Tensor *t = check_inplace(L, "zero_");
  memset(T_DATA(t), 0, (size_t)t->numel * sizeof(float));
  lua_settop(L, 1);
  return 1;
}

static int m_add_(lua_State *L) { /* t += alpha * y, y a tensor or a number */
  Tensor *t = check_inplace(L, "add_");
  float *d = T_DATA(t);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    float v = (float)(lua_tonumber(L, 2) * luaL_optnumber(L, 3, 1.0)); /* (alpha too: t += alpha * v) */
    for (int64_t i = 0; i < t->numel; i++) d[i] += v;
  } else {
    Tensor *y = check_same(L, 2, t, "add_");
    float alpha = (float)luaL_optnumber(L, 3, 1.0);
    const float *s = T_DATA(y);
    for (int64_t i = 0; i < t->numel; i++) d[i] += alpha * s[i];
  }
  lua_settop(L, 1);
  return 1;
}

static int m_mul_(lua_State *L) {
  Tensor *t = check_inplace(L, "mul_");
  float *d = T_DATA(t);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    float v = (float)lua_tonumber(L, 2);
    for (int64_t i = 0; i < t->numel; i++) d[i] *= v;
  } else {
    const float *s = T_DATA(check_same(L, 2, t, "mul_"));
    for (int64_t i = 0; i < t->numel; i++) d[i] *= s[i];
  }
  lua_settop(L, 1);
  return 1;
}

static int m_addcmul_(lua_State *L) { /* t += v * a * b */
  Tensor *t = check_inplace(L, "addcmul_");
  const float *a = T_DATA(check_same(L, 2, t, "addcmul_")), *b = T_DATA(check_same(L, 3, t, "addcmul_"));
  float v = (float)luaL_optnumber(L, 4, 1.0);
  float *d = T_DATA(t);
  for (int64_t i = 0; i < t->numel; i++) d[i] += v * a[i] * b[i];
  lua_settop(L, 1);
  return 1;
}

static int m_addcdiv_(lua_State *L) { /* t += v * a / b */
  Tensor *t = check_inplace(L, "addcdiv_");
  const float *a = T_DATA(check_same(L, 2, t, "addcdiv_")), *b = T_DATA(check_same(L, 3, t, "addcdiv_"));
  float v = (float)luaL_optnumber(L, 4, 1.0);
  float *d = T_DATA(t);
  for (int64_t i = 0; i < t->numel; i++) d[i] += v * a[i] / b[i];
  lua_settop(L, 1);
  return 1;
}

static const luaL_Reg inplace_methods[] = {{"copy_", m_copy_},       {"fill_", m_fill_}, {"zero_", m_zero_},
                                           {"add_", m_add_},         {"mul_", m_mul_},   {"addcmul_", m_addcmul_},
                                           {"addcdiv_", m_addcdiv_}, {NULL, NULL}};

void lt_open_inplace(lua_State *L, int methods) { lt_setfuncs(L, methods, inplace_methods); }
