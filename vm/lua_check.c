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
  if (!lua_isboolean(L, -1))
    lt_argerror(L, arg, fn, "option '%s' must be a boolean, got %s", key, lt_typename(L, -1));
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

lua_Integer lt_opt_integer(lua_State *L, int arg, const char *fn, const char *key, lua_Integer def,
                           lua_Integer lo, lua_Integer hi) {
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
