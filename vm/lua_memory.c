/*
** lua_memory.c: tensor memory and work counters of the tensor module:
** T.memory() {live_bytes, peak_bytes, cached_bytes, allocated_bytes},
** T.reset_peak_memory(), T.flops().
*/
#include "lua_tensor.h"
#include "matmul.h"

static int l_memory(lua_State *L) {
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, t_live_bytes());
  lua_setfield(L, -2, "live_bytes");
  lua_pushinteger(L, t_peak_bytes());
  lua_setfield(L, -2, "peak_bytes");
  lua_pushinteger(L, t_cached_bytes());
  lua_setfield(L, -2, "cached_bytes");
  lua_pushinteger(L, t_thread_allocated_bytes());
  lua_setfield(L, -2, "allocated_bytes");
  return 1;
}

static int l_flops(lua_State *L) {
  lua_pushinteger(L, t_flops());
  return 1;
}

static int l_reset_peak_memory(lua_State *L) {
  (void)L;
  t_reset_peak_bytes();
  return 0;
}

static const luaL_Reg memory_functions[] = {
    {"memory", l_memory}, {"flops", l_flops}, {"reset_peak_memory", l_reset_peak_memory}, {NULL, NULL}};

void lt_open_memory(lua_State *L, int module) { lt_setfuncs(L, module, memory_functions); }
