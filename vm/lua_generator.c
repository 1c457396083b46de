/*
** lua_generator.c: random generators (xoshiro128**, vm/tensor.c) as Lua
** values: T.generator(seed), T.manual_seed, T.default_generator and the
** methods uniform, normal, random, permutation, get_state, set_state, clone.
*/
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "lua_tensor.h"

/* a generator userdata points at its own state, or at the default one */
typedef struct {
  Generator *g;
  Generator own;
} GeneratorBox;

Generator *lt_check_generator(lua_State *L, int i) {
  GeneratorBox *box = luaL_testudata(L, i, LT_GENERATOR_MT);
  if (!box) luaL_typeerror(L, i, "generator"); /* not the registry name mamlrun.Generator */
  return box->g;
}

static Generator *push_generator(lua_State *L, Generator *shared) {
  GeneratorBox *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->g = shared ? shared : &box->own;
  luaL_setmetatable(L, LT_GENERATOR_MT);
  return box->g;
}

static uint64_t check_seed(lua_State *L, int i) {
  int isnum;
  lua_Integer s = lua_tointegerx(L, i, &isnum);
  if (!isnum) luaL_typeerror(L, i, "integer seed");
  return (uint64_t)s;
}

static int l_generator(lua_State *L) {
  uint64_t seed = check_seed(L, 1);
  gen_seed(push_generator(L, NULL), seed);
  return 1;
}

static int l_manual_seed(lua_State *L) {
  gen_seed(gen_default(), check_seed(L, 1));
  return 0;
}

static int l_default_generator(lua_State *L) {
  push_generator(L, gen_default());
  return 1;
}

static int g_uniform(lua_State *L) {
  lua_pushnumber(L, gen_uniform(lt_check_generator(L, 1)));
  return 1;
}

static int g_normal(lua_State *L) {
  lua_pushnumber(L, gen_normal(lt_check_generator(L, 1)));
  return 1;
}

static int g_random(lua_State *L) {
  Generator *g = lt_check_generator(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 1 && n <= 0xffffffffLL, 2, "expected 1 <= n < 2^32");
  lua_pushinteger(L, (lua_Integer)gen_below(g, (uint32_t)n) + 1);
  return 1;
}

static int g_permutation(lua_State *L) { /* Fisher-Yates */
  Generator *g = lt_check_generator(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 0 && n <= (1 << 26), 2, "expected 0 <= n <= 2^26");
  int *p = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *p, 0);
  for (lua_Integer i = 0; i < n; i++) p[i] = (int)i + 1;
  for (lua_Integer i = n - 1; i > 0; i--) {
    lua_Integer j = gen_below(g, (uint32_t)(i + 1));
    int t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  lua_createtable(L, (int)n, 0);
  for (lua_Integer i = 0; i < n; i++) {
    lua_pushinteger(L, p[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int g_get_state(lua_State *L) {
  Generator *g = lt_check_generator(L, 1);
  char buf[128];
  int64_t spare_bits;
  memcpy(&spare_bits, &g->spare, sizeof spare_bits);
  snprintf(buf, sizeof buf, "xoshiro128ss:%08x%08x%08x%08x:%d:%016llx", g->s[0], g->s[1], g->s[2], g->s[3],
           g->has_spare, (unsigned long long)spare_bits);
  lua_pushstring(L, buf);
  return 1;
}

/* exactly the format of get_state: sscanf alone would take fewer digits,
** signs and spaces (a truncated state would load as another state) */
static int is_state_string(const char *s) {
  static const char prefix[] = "xoshiro128ss:";
  if (strncmp(s, prefix, sizeof prefix - 1)) return 0;
  s += sizeof prefix - 1;
  for (int i = 0; i < 32; i++)
    if (!isxdigit((unsigned char)*s++)) return 0;
  if (s[0] != ':' || (s[1] != '0' && s[1] != '1') || s[2] != ':') return 0;
  s += 3;
  for (int i = 0; i < 16; i++)
    if (!isxdigit((unsigned char)*s++)) return 0;
  return *s == 0;
}

static int g_set_state(lua_State *L) {
  Generator *g = lt_check_generator(L, 1);
  const char *s = luaL_checkstring(L, 2);
  unsigned a, b, c, d;
  int spare;
  unsigned long long bits;
  char tail;
  if (!is_state_string(s) ||
      sscanf(s, "xoshiro128ss:%8x%8x%8x%8x:%d:%16llx%c", &a, &b, &c, &d, &spare, &bits, &tail) != 6 ||
      (spare != 0 && spare != 1) || !(a | b | c | d))
    return lt_argerror(L, 2, "set_state", "expected a string from get_state, got '%s'", s);
  g->s[0] = a;
  g->s[1] = b;
  g->s[2] = c;
  g->s[3] = d;
  g->has_spare = spare;
  memcpy(&g->spare, &bits, sizeof bits);
  return 0;
}

static int g_clone(lua_State *L) {
  Generator *g = lt_check_generator(L, 1);
  *push_generator(L, NULL) = *g;
  return 1;
}

static int g_tostring(lua_State *L) {
  lt_check_generator(L, 1);
  lua_pushfstring(L, "generator (%p)", lua_topointer(L, 1));
  return 1;
}

static const luaL_Reg generator_methods[] = {
    {"uniform", g_uniform},     {"normal", g_normal},       {"random", g_random}, {"permutation", g_permutation},
    {"get_state", g_get_state}, {"set_state", g_set_state}, {"clone", g_clone},   {NULL, NULL}};

Generator *lt_opt_generator(lua_State *L, int i) {
  lt_enter(L);
  if (lua_isnoneornil(L, i)) return gen_default();
  return lt_check_generator(L, i);
}

static const luaL_Reg generator_functions[] = {{"generator", l_generator},
                                               {"manual_seed", l_manual_seed},
                                               {"default_generator", l_default_generator},
                                               {NULL, NULL}};

void lt_open_generator(lua_State *L, int module) {
  lt_setfuncs(L, module, generator_functions);
  if (luaL_newmetatable(L, LT_GENERATOR_MT)) {
    luaL_newlib(L, generator_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, g_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "generator");
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
}
