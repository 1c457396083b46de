/*
** tests/fuzz/fuzz_checkpoint.c: libFuzzer target for checkpoint files
** (lua/checkpoint.lua decode, and its unpack of a body, which reaches
** T.deserialize in vm/lua_tensor.c for every tensor). A Lua state like the
** host's (standard libraries, the tensor module preloaded, the project's lua/
** folder on package.path) decodes each input; a bad file must fail with a
** message (an options.input_error naming the file, which the host prints
** without a traceback), never crash. The body is also unpacked directly, as if its
** header and checksum were right.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lua_coverage.h"
#include "lua_tensor.h"

#ifndef MAMLRUN_LUA_DIR
#error "build with -DMAMLRUN_LUA_DIR='\"<repo>/lua\"' (see the Makefile's fuzz target)"
#endif

static lua_State *L;
static int checkpoint_ref;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  L = luaL_newstate();
  if (!L) abort();
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_tensor);
  lua_setfield(L, -2, "tensor");
  lua_pop(L, 1);
  lua_getglobal(L, "package");
  lua_pushstring(L, MAMLRUN_LUA_DIR "/?.lua");
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  lua_getglobal(L, "require");
  lua_pushstring(L, "checkpoint");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    fprintf(stderr, "fuzz_checkpoint: %s\n", lua_tostring(L, -1));
    abort();
  }
  checkpoint_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_coverage_start(L);
  return 0;
}

/* the message of the input error at the top of the stack (lua/options.lua), else NULL */
static const char *input_error_message(void) {
  if (lua_type(L, -1) != LUA_TTABLE || luaL_getmetafield(L, -1, "__name") == LUA_TNIL) return NULL;
  int named = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "mamlrun.input_error") == 0;
  lua_pop(L, 1);
  if (!named) return NULL;
  lua_getfield(L, -1, "message");
  const char *msg = lua_tostring(L, -1); /* (the table on the stack keeps it alive) */
  lua_pop(L, 1);
  return msg;
}

/* checkpoint[fn](bytes, ...): returns normally (0), or fails with a message (-1) */
static int call(const char *fn, const uint8_t *data, size_t size) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, checkpoint_ref);
  lua_getfield(L, -1, fn);
  lua_pushlstring(L, (const char *)data, size);
  lua_pushliteral(L, "fuzz input");
  int status = lua_pcall(L, 2, 1, 0);
  if (status != LUA_OK && input_error_message() == NULL) {
    fprintf(stderr, "checkpoint.%s raised a %s, not an input error with a message\n", fn, luaL_typename(L, -1));
    abort();
  }
  if (status != LUA_OK) {
    const char *e = getenv("FUZZ_EXPECT_VALID");
    if (e && e[0] == '1' && strcmp(fn, "decode") == 0) {
      /* (tests/suites.d/fuzz.sh, on checkpoints known to be valid: a decoder that refused
      ** everything would otherwise pass) */
      fprintf(stderr, "checkpoint.decode refused a valid checkpoint: %s\n", input_error_message());
      abort();
    }
  }
  lua_settop(L, 0);
  return status == LUA_OK ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  call("decode", data, size);
  call("unpack", data, size);
  lua_gc(L, LUA_GCCOLLECT); /* tensors made from this input are freed now, not during the next one */
  return 0;
}
