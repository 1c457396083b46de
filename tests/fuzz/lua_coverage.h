/*
** tests/fuzz/lua_coverage.h: coverage of Lua code for libFuzzer. The Lua
** library is not instrumented, so without this the fuzzer could not tell
** inputs that take different paths through the Lua library apart. A line hook
** counts transitions between (chunk, line) pairs in an array that libFuzzer
** reads as extra coverage counters.
*/
#ifndef MAMLRUN_FUZZ_LUA_COVERAGE_H
#define MAMLRUN_FUZZ_LUA_COVERAGE_H

#include <stdint.h>

#include <lua.h>

static uint8_t lua_edges[1 << 14] __attribute__((section("__libfuzzer_extra_counters"), used));

static void lua_coverage_hook(lua_State *L, lua_Debug *ar) {
  static uintptr_t previous;
  lua_getinfo(L, "S", ar); /* ar->source: the chunk's name, one string per chunk */
  uintptr_t here = ((uintptr_t)ar->source >> 3) * 0x9e3779b1u ^ (uintptr_t)ar->currentline * 2654435761u;
  lua_edges[(here ^ (previous >> 1)) & (sizeof lua_edges - 1)]++;
  previous = here;
}

/* count the lines that Lua code of L runs from now on */
static void lua_coverage_start(lua_State *L) { lua_sethook(L, lua_coverage_hook, LUA_MASKLINE, 0); }

#endif
