/*
** tests/fuzz/fuzz_overrides.c: libFuzzer target for the command line's
** key=value overrides: the parser in vm/main.c (collect_script_args and the
** static functions behind it, compiled into this file with the host's main
** renamed), then the config resolution of lua/experiment.lua (resolve), as
** `mamlrun SCRIPT key=value ...` does it. An input is the argument list,
** split at NUL bytes. Properties: no crash; a usage error or a resolved
** config; a resolution error is a string (or a usage error object's
** message) that names one of the overrides' keys.
*/
#define main mamlrun_host_main
#include "../../vm/main.c"
#undef main

#include "lua_coverage.h"

#ifndef MAMLRUN_LUA_DIR
#error "build with -DMAMLRUN_LUA_DIR='\"<repo>/lua\"' (see the Makefile's fuzz target)"
#endif

static lua_State *state;
static int check_ref, resolve_ref;

/* (resolve, overrides) -> true, or false and the message that names no key */
static const char check_code[] =
    "local resolve, overrides = ...\n"
    "local ok, err = pcall(resolve, {}, overrides)\n"
    "if ok then return true end\n"
    "if require('options').is_usage_error(err) then err = err.message end\n"
    "if type(err) ~= 'string' then return false, 'an error object of type ' .. type(err) end\n"
    "for k in pairs(overrides) do if err:find(\"'\" .. k, 1, true) then return true end end\n"
    "return false, err\n";

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  stderr = fopen("/dev/null", "w"); /* usage errors print (fd 2 stays for libFuzzer and sanitizers) */
  if (!stderr) abort();
  state = luaL_newstate();
  if (!state) abort();
  luaL_openlibs(state);
  preload_modules(state);
  set_package_path(state, MAMLRUN_LUA_DIR, NULL);
  if (luaL_loadbuffer(state, check_code, sizeof check_code - 1, "=check") != LUA_OK) abort();
  check_ref = luaL_ref(state, LUA_REGISTRYINDEX);
  lua_getglobal(state, "require");
  lua_pushliteral(state, "experiment");
  if (lua_pcall(state, 1, 1, 0) != LUA_OK) {
    printf("fuzz_overrides: %s\n", lua_tostring(state, -1));
    abort();
  }
  lua_getfield(state, -1, "resolve");
  resolve_ref = luaL_ref(state, LUA_REGISTRYINDEX);
  lua_settop(state, 0);
  lua_coverage_start(state);
  return 0;
}

typedef struct Args {
  int argc;
  char **argv;
} Args;

/* collect the overrides as the host does, then resolve them (protected: the parser may raise memory errors) */
static int parse_and_resolve(lua_State *L) {
  Args *a = lua_touserdata(L, 1);
  lua_settop(L, 0);
  if (collect_script_args(L, a->argc, a->argv, 1) < 0) return 0; /* a usage error */
  int overrides = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, resolve_ref);
  lua_pushvalue(L, overrides);
  lua_call(L, 2, 2);
  if (!lua_toboolean(L, -2)) {
    printf("the error names none of the overrides' keys: %s\n", lua_tostring(L, -1));
    abort();
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* argv = {"mamlrun", "script.lua", the input's NUL-separated strings} */
  char *copy = malloc(size + 1);
  char **argv = malloc((size + 4) * sizeof *argv);
  if (!copy || !argv) abort();
  memcpy(copy, data, size);
  copy[size] = '\0';
  int argc = 0;
  argv[argc++] = (char *)"mamlrun";
  argv[argc++] = (char *)"script.lua";
  for (size_t i = 0; i <= size;) {
    argv[argc++] = copy + i;
    i += strlen(copy + i) + 1;
  }
  argv[argc] = NULL;
  Args a = {argc, argv};
  lua_pushcfunction(state, parse_and_resolve);
  lua_pushlightuserdata(state, &a);
  if (lua_pcall(state, 1, 0, 0) != LUA_OK) {
    printf("fuzz_overrides: %s\n", lua_tostring(state, -1));
    abort();
  }
  lua_settop(state, 0);
  lua_gc(state, LUA_GCCOLLECT);
  free(argv);
  free(copy);
  return 0;
}
