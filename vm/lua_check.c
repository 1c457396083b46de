/*
** lua_check.c: the argument toolkit of every binding file, in the spirit of
** lauxlib: error messages with C printf formats, "bad argument" messages in
** one form, and options tables that refuse keys they do not know.
*/
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lua_tensor.h"

/* lua_pushfstring knows no %lld, %zu, %g or %u and fails with "invalid
** option" instead of reporting the error: format with vsnprintf first */
static int raise_message(lua_State *L, const char *msg) {
  luaL_where(L, 1);
  lua_pushstring(L, msg);
  lua_concat(L, 2);
  return lua_error(L);
}

int lt_error(lua_State *L, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return raise_message(L, msg);
}

int lt_argerror(lua_State *L, int arg, const char *fn, const char *fmt, ...) {
  char detail[448], msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  snprintf(msg, sizeof msg, "bad argument #%d to '%s' (%s)", arg, fn, detail);
  return raise_message(L, msg);
}

/* "a, b, c" of a NULL-terminated list, cut to fit n bytes */
static void join_names(const char *const names[], char *out, size_t n) {
  size_t used = 0;
  out[0] = 0;
  for (int i = 0; names[i] && used + 1 < n; i++) {
    int w = snprintf(out + used, n - used, "%s%s", i ? ", " : "", names[i]);
    if (w < 0) break;
    used += (size_t)w;
  }
}

int lt_check_options(lua_State *L, int arg, const char *fn, const char *const valid[]) {
  if (lua_isnoneornil(L, arg)) return 0;
  if (!lua_istable(L, arg)) lt_argerror(L, arg, fn, "expected a table of options, got %s", lt_typename(L, arg));
  arg = lua_absindex(L, arg);
  lua_pushnil(L);
  while (lua_next(L, arg)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      lt_argerror(L, arg, fn, "option names must be strings, got %s", luaL_typename(L, -2));
    const char *key = lua_tostring(L, -2);
    int i = 0;
    while (valid[i] && strcmp(valid[i], key) != 0) i++;
    if (!valid[i]) {
      char names[256];
      join_names(valid, names, sizeof names);
      lt_argerror(L, arg, fn, "unknown option '%s'; valid options: %s", key, names);
    }
    lua_pop(L, 1);
  }
  return 1;
}

/* push options[key]; 0 (nothing pushed) when the options are absent or the field is nil */
static int get_option(lua_State *L, int arg, const char *key) {
  if (lua_isnoneornil(L, arg)) return 0;
  if (lua_getfield(L, arg, key) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  return 0;
}

int lt_opt_boolean(lua_State *L, int arg, const char *fn, const char *key, int def) {
  if (!get_option(L, arg, key)) return def;
  if (!lua_isboolean(L, -1)) lt_argerror(L, arg, fn, "option '%s' must be a boolean, got %s", key, lt_typename(L, -1));
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

lua_Integer lt_opt_integer(lua_State *L, int arg, const char *fn, const char *key, lua_Integer def, lua_Integer lo,
                           lua_Integer hi) {
  if (!get_option(L, arg, key)) return def;
  int isint = 0;
  lua_Integer v = lua_type(L, -1) == LUA_TNUMBER ? lua_tointegerx(L, -1, &isint) : 0;
  if (!isint && lua_type(L, -1) == LUA_TNUMBER)
    lt_argerror(L, arg, fn, "option '%s' must be an integer, got %g", key, lua_tonumber(L, -1));
  if (!isint) lt_argerror(L, arg, fn, "option '%s' must be an integer, got %s", key, lt_typename(L, -1));
  if (v < lo || v > hi)
    lt_argerror(L, arg, fn, "option '%s' must be in %lld..%lld, got %lld", key, (long long)lo, (long long)hi,
                (long long)v);
  lua_pop(L, 1);
  return v;
}

double lt_opt_number(lua_State *L, int arg, const char *fn, const char *key, double def, double lo, double hi) {
  if (!get_option(L, arg, key)) return def;
  if (lua_type(L, -1) != LUA_TNUMBER)
    lt_argerror(L, arg, fn, "option '%s' must be a number, got %s", key, lt_typename(L, -1));
  double v = lua_tonumber(L, -1);
  if (!(v >= lo && v <= hi)) lt_argerror(L, arg, fn, "option '%s' must be in [%g, %g], got %g", key, lo, hi, v);
  lua_pop(L, 1);
  return v;
}

Tensor *lt_opt_tensor(lua_State *L, int arg, const char *fn, const char *key) {
  if (!get_option(L, arg, key)) return NULL;
  Tensor *t = lt_test(L, -1);
  if (!t) lt_argerror(L, arg, fn, "option '%s' must be a tensor or nil, got %s", key, lt_typename(L, -1));
  lua_pop(L, 1); /* the options table keeps the tensor alive */
  return t;
}

const char *lt_opt_string(lua_State *L, int arg, const char *fn, const char *key, const char *def) {
  if (!get_option(L, arg, key)) return def;
  if (lua_type(L, -1) != LUA_TSTRING)
    lt_argerror(L, arg, fn, "option '%s' must be a string, got %s", key, lt_typename(L, -1));
  const char *s = lua_tostring(L, -1);
  lua_pop(L, 1); /* the options table keeps the string alive */
  return s;
}

/* ------------------------------------------------------------ shapes and dims */

int lt_check_shape(lua_State *L, int i, int64_t *shape, const char *fn) {
  lt_enter(L);
  if (lua_type(L, i) != LUA_TTABLE)
    return lt_argerror(L, i, fn, "expected shape table like {2, 3}, got %s", lt_typename(L, i));
  lua_Integer n = luaL_len(L, i);
  if (n > T_MAXDIM) return lt_argerror(L, i, fn, "expected at most %d dims, got %d", T_MAXDIM, (int)n);
  for (lua_Integer k = 1; k <= n; k++) {
    lua_geti(L, i, k);
    int isnum = 0; /* numbers only: lua_tointegerx would also take the string "2" */
    lua_Integer v = lua_type(L, -1) == LUA_TNUMBER ? lua_tointegerx(L, -1, &isnum) : 0;
    if (!isnum && lua_type(L, -1) == LUA_TNUMBER)
      return lt_argerror(L, i, fn, "expected integer sizes, got %g at position %d", lua_tonumber(L, -1), (int)k);
    if (!isnum)
      return lt_argerror(L, i, fn, "expected integer sizes, got %s at position %d", lt_typename(L, -1), (int)k);
    if (v < 0) return lt_argerror(L, i, fn, "expected sizes >= 0, got %lld at position %d", (long long)v, (int)k);
    shape[k - 1] = v;
    lua_pop(L, 1);
  }
  t_check_shape(fn, i, (int)n, shape);
  return (int)n;
}

/* the dim at stack index idx, reported as argument arg (an entry of a list
** of dims is pushed on the stack but belongs to the list's argument) */
int lt_check_dim_at(lua_State *L, int idx, int arg, int ndim, const char *fn) {
  int isnum = 0;
  lua_Integer d = lua_type(L, idx) == LUA_TNUMBER ? lua_tointegerx(L, idx, &isnum) : 0;
  if (!isnum && lua_type(L, idx) == LUA_TNUMBER)
    return lt_argerror(L, arg, fn, "expected integer dim, got %g", lua_tonumber(L, idx));
  if (!isnum) return lt_argerror(L, arg, fn, "expected integer dim, got %s", lt_typename(L, idx));
  if (d < 0) d += ndim + 1;
  if (d < 1 || d > ndim)
    return lt_argerror(L, arg, fn, "dim %lld out of range for a %d-d tensor", (long long)lua_tointeger(L, idx), ndim);
  return (int)d - 1;
}

int lt_check_dim(lua_State *L, int i, int ndim, const char *fn) { return lt_check_dim_at(L, i, i, ndim, fn); }
