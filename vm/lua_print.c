/*
** lua_print.c: tostring of a tensor, as torch prints one: the values (%.4g),
** all of a tensor of at most 1000 elements, else the first and last 3 of each
** dim with "..." between; then the shape and the autograd state.
*/
#include <math.h>
#include <stdio.h>

#include "lua_tensor.h"

/* one value as %.4g; NaN as "nan" whatever its sign bit (0/0 gives "-nan" on x86) */
static void format_number(char *num, size_t n, float v) {
  if (isnan(v)) snprintf(num, n, "nan");
  else snprintf(num, n, "%.4g", v);
}

/* print values like torch: all of a small tensor, the edges of a large one */
static void format_values(luaL_Buffer *b, const float *d, int nd, const int64_t *shape, int abbreviate, int indent) {
  char num[48];
  if (nd == 0) {
    format_number(num, sizeof num, d[0]);
    luaL_addstring(b, num);
    return;
  }
  int64_t stride = 1;
  for (int i = 1; i < nd; i++) stride *= shape[i];
  luaL_addchar(b, '{');
  for (int64_t i = 0; i < shape[0]; i++) {
    if (abbreviate && shape[0] > 6 && i == 3) {
      luaL_addstring(b, "...,");
      if (nd > 1) {
        luaL_addchar(b, '\n');
        for (int k = 0; k < indent + 1; k++) luaL_addchar(b, ' ');
      } else {
        luaL_addchar(b, ' ');
      }
      i = shape[0] - 3;
    }
    if (nd == 1) {
      format_number(num, sizeof num, d[i]);
      luaL_addstring(b, num);
    } else {
      format_values(b, d + i * stride, nd - 1, shape + 1, abbreviate, indent + 1);
    }
    if (i + 1 < shape[0]) {
      luaL_addchar(b, ',');
      if (nd > 1) {
        luaL_addchar(b, '\n');
        for (int k = 0; k < indent + 1; k++) luaL_addchar(b, ' ');
      } else {
        luaL_addchar(b, ' ');
      }
    }
  }
  luaL_addchar(b, '}');
}

int lt_tostring(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  luaL_Buffer b;
  char sh[160];
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "tensor(");
  format_values(&b, T_DATA(t), t->ndim, t->shape, t->numel > 1000, 8);
  luaL_addstring(&b, ", shape ");
  luaL_addstring(&b, t_shape_str(t, sh, sizeof sh));
  if (t->requires_grad) luaL_addstring(&b, t->grad_fn ? ", grad_fn " : ", requires_grad");
  if (t->grad_fn) luaL_addstring(&b, t->grad_fn->name);
  luaL_addchar(&b, ')');
  luaL_pushresult(&b);
  return 1;
}
