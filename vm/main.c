/*
** main.c: the mamlrun host, a stand-alone Lua interpreter in the style of
** Lua's own lua.c. It preloads the tensor, autograd and omniglot modules,
** points package.path at the project's Lua library, turns key=value
** arguments into an overrides table, and offers scripts a small "mamlrun"
** module (clock, peak memory, tty test, SIGINT/SIGTERM polling).
**
**   mamlrun [options] SCRIPT [key=value ...] [args ...] [-- args ...]
*/
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h> /* openblas_get_config */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "blas.h"
#include "conv_dnnl.h"
#include "lua_tensor.h"
#include "sys.h"

#define MAMLRUN_VERSION "0.1.0"
#define SIGNAL_FN_KEY "mamlrun.on_signal" /* registry: the on_signal callback */

static const char *progname = "mamlrun";

/* what the command line asked for; filled by collectargs before Lua starts */
typedef struct Options {
  int list; /* --list */
  int script; /* argv index of SCRIPT, 0 if none */
  int interactive; /* -i */
  int compare; /* --compare: SCRIPT is lua/compare.lua's main, on the arguments after it */
} Options;

/* ------------------------------------------------------------ messages */

static void print_usage(FILE *f) {
  fprintf(f,
          "usage: %s [options] [SCRIPT [key=value ...] [args ...] [-- args ...]]\n"
          "Runs the Lua file SCRIPT ('-' reads it from stdin) with the modules\n"
          "tensor, autograd, omniglot and mamlrun preloaded.\n"
          "Options (before SCRIPT):\n"
          "  -e CODE        run the Lua string CODE (repeatable; runs before SCRIPT)\n"
          "  -i             enter interactive mode after SCRIPT and -e\n"
          "  --compare RUN... [--plot FILE.svg] [--markdown] [--target VALUE]\n"
          "                 compare run folders\n"
          "  -h, --help     show this help and exit\n"
          "  --list         list the shipped experiments and exit\n"
          "  -v, --version  show version information and exit\n"
          "  --             stop handling options (the next argument is SCRIPT)\n"
          "SCRIPT is a file, else a shipped experiment by name (omniglot5w1s) or by\n"
          "its path under the install (experiments/omniglot5w1s.lua); a file of that\n"
          "name in the current folder comes first (see 'man mamlrun').\n"
          "Arguments after SCRIPT:\n"
          "  key=value      an override; key is a Lua name, dots make nested tables\n"
          "                 (inner.lr=0.01 -> overrides.inner.lr). The value is a\n"
          "                 number (1, 0.5, 1e-3), true/false, or else a string\n"
          "                 ('...' or \"...\" force a string). A key given twice is\n"
          "                 an error. SCRIPT gets them as its first argument\n"
          "                 (local overrides = ...) and as require('mamlrun').overrides.\n"
          "  other          plain arguments: the global arg[1..n], and the script's\n"
          "                 varargs after the overrides table (arg[0] = SCRIPT)\n"
          "  --help, -h     the override help=true: an experiment script prints its\n"
          "                 keys, their values and meanings, and runs nothing\n"
          "  --check        the override check=true: an experiment script builds the\n"
          "                 run as it would (keys, data, network, checkpoints), says\n"
          "                 what it would do, and runs and writes nothing\n"
          "  -- args        everything after '--' is a plain argument\n"
          "Exit status: 0 success, 1 Lua error, 2 usage error.\n",
          progname);
}

static void print_version(void) {
  const char *replaced, *source = blas_core_source(&replaced);
  printf("mamlrun " MAMLRUN_VERSION " (" LUA_RELEASE ", %s)\n", openblas_get_config());
  if (replaced != NULL)
    printf("OpenBLAS core %s, set by mamlrun: OpenBLAS had chosen its generic %s kernels\n", openblas_get_corename(),
           replaced);
  else printf("OpenBLAS core %s, chosen by %s\n", openblas_get_corename(), source);
  char conv[256];
  printf("convolutions: %s\n", conv_backend(conv, sizeof conv));
}

/* a usage error: message, then the usage (or a hint), exit status 2 */
static int usage_error(int full_usage, const char *fmt, const char *what) {
  fprintf(stderr, "%s: ", progname);
  fprintf(stderr, fmt, what);
  fputc('\n', stderr);
  if (full_usage) print_usage(stderr);
  else fprintf(stderr, "(try '%s --help')\n", progname);
  return 2;
}

static void l_message(const char *pname, const char *msg) {
  if (pname) fprintf(stderr, "%s: ", pname);
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

/* A mistake of the user's rather than of the script (a mistyped key=value
** override): an error object that is a table whose metatable's __name is
** "mamlrun.usage_error" and whose field message is a string. The host prints
** the message as it prints a bad command line, without a traceback, and
** exits with status 2. A problem with a file or folder the user named (a
** checkpoint that is truncated, a dataset folder without Omniglot) is such a
** table named "mamlrun.input_error", and a run that cannot go on (a
** non-finite meta-loss) one named "mamlrun.run_stopped": the message alone,
** exit status 1. (options.usage_error, input_error, run_stopped in
** lua/options.lua.) */
#define USAGE_ERROR_NAME "mamlrun.usage_error"
static const char *const quiet_error_names[] = {"mamlrun.input_error", "mamlrun.run_stopped"};
static int usage_error_raised = 0;

/* the message of the error object at idx if it is a table named name, else NULL */
static const char *named_error_message(lua_State *L, int idx, const char *name) {
  const char *msg = NULL;
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE || luaL_getmetafield(L, idx, "__name") == LUA_TNIL) return NULL;
  int is_named = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), name) == 0;
  lua_pop(L, 1);
  if (is_named && lua_getfield(L, idx, "message") == LUA_TSTRING) msg = lua_tostring(L, -1);
  lua_pop(L, is_named ? 1 : 0); /* (the table keeps the string alive) */
  return msg;
}

static const char *usage_error_message(lua_State *L, int idx) {
  return named_error_message(L, idx, USAGE_ERROR_NAME);
}

/* the message of an input error or a stopped run at idx (status 1, no traceback), else NULL */
static const char *quiet_error_message(lua_State *L, int idx) {
  for (size_t i = 0; i < sizeof quiet_error_names / sizeof quiet_error_names[0]; i++) {
    const char *msg = named_error_message(L, idx, quiet_error_names[i]);
    if (msg != NULL) return msg;
  }
  return NULL;
}

/* print the error message at the top of the stack, if status is an error */
static int report(lua_State *L, int status) {
  const char *usage = status != LUA_OK ? usage_error_message(L, -1) : NULL;
  const char *quiet = status != LUA_OK && usage == NULL ? quiet_error_message(L, -1) : NULL;
  if (usage != NULL) {
    usage_error_raised = 1;
    usage_error(0, "%s", usage);
    lua_pop(L, 1);
  } else if (status != LUA_OK) {
    const char *msg = quiet != NULL ? quiet : lua_tostring(L, -1);
    if (msg == NULL) msg = "(error object is not a string)";
    l_message(progname, msg);
    lua_pop(L, 1);
  }
  return status;
}

/* message handler: turn any error object into a string with a traceback */
static int msghandler(lua_State *L) {
  /* the user's mistake, a file of theirs, a run that cannot go on: no traceback */
  if (usage_error_message(L, 1) != NULL || quiet_error_message(L, 1) != NULL) return 1;
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) msg = lua_tostring(L, -1);
    else msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* call the function below narg arguments, with the message handler */
static int docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  int status = lua_pcall(L, narg, nres, base);
  lua_remove(L, base);
  return status;
}

/* ------------------------------------------------------------ the mamlrun module */

static volatile sig_atomic_t pending_signal = 0;
/* the last signal signal_pending() reported while on_signal was in force: a
** script that ends normally after it exits with 128 + its number (130 for
** SIGINT, 143 for SIGTERM), as a shell reports a process a signal stopped */
static int reported_signal = 0;

/* SIGINT/SIGTERM once Lua asked for them: only set a flag. A second signal
** before the script polled the first one kills the process as usual. */
static void flag_signal(int sig) {
  if (pending_signal != 0) {
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  pending_signal = sig;
}

static void set_signal_handlers(void (*handler)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sa.sa_flags = SA_RESTART; /* reads and writes of a training loop go on */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

/* is_tty([fd=1]): whether the file descriptor is a terminal */
static int mr_is_tty(lua_State *L) {
  int fd = (int)luaL_optinteger(L, 1, 1);
  lua_pushboolean(L, isatty(fd));
  return 1;
}

/* time(): monotonic clock in seconds, for durations */
static int mr_time(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
  return 1;
}

/* Resident set size now, in bytes (Linux /proc), or -1 if unreadable. */
static long long rss_now(void) {
  long pages = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL) return -1;
  int n = fscanf(f, "%ld %ld", &pages, &resident);
  fclose(f);
  return n == 2 ? (long long)resident * sysconf(_SC_PAGESIZE) : -1;
}

/* rss(): resident set size of the process now, in bytes */
static int mr_rss(lua_State *L) {
  long long now = rss_now();
  if (now < 0) return luaL_error(L, "rss: cannot read /proc/self/statm");
  lua_pushinteger(L, (lua_Integer)now);
  return 1;
}

/* rss_peak(): peak resident set size of the process, in bytes. The kernel
** keeps the high-water mark and /proc/self/statm from counters synced at
** different times, so the peak is taken as at least the size now (rss() is
** never above rss_peak()) and at least any peak reported before. */
static int mr_rss_peak(lua_State *L) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return luaL_error(L, "rss_peak: getrusage failed");
  static _Atomic long long seen = 0; /* and never below what it reported before */
  long long peak = (long long)ru.ru_maxrss * 1024; /* Linux: kilobytes */
  long long now = rss_now(), old = atomic_load(&seen);
  if (now > peak) peak = now;
  while (peak > old && !atomic_compare_exchange_weak(&seen, &old, peak)) {
  }
  lua_pushinteger(L, (lua_Integer)(peak > old ? peak : old));
  return 1;
}

/* on_signal([fn]): from now on SIGINT/SIGTERM set a flag that signal_pending
** reports (calling fn(name) first, if given). on_signal(false) restores the
** default behaviour (the signal terminates the process). */
static int mr_on_signal(lua_State *L) {
  if (lua_isboolean(L, 1) && !lua_toboolean(L, 1)) {
    set_signal_handlers(SIG_DFL);
    pending_signal = 0;
    reported_signal = 0;
    lua_pushnil(L);
  } else {
    if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    set_signal_handlers(flag_signal);
  }
  lua_setfield(L, LUA_REGISTRYINDEX, SIGNAL_FN_KEY);
  return 0;
}

/* signal_pending(): "SIGINT" or "SIGTERM" if one arrived since the last poll
** (the flag is cleared), else nil */
static int mr_signal_pending(lua_State *L) {
  int sig = pending_signal;
  if (sig == 0) {
    lua_pushnil(L);
    return 1;
  }
  pending_signal = 0;
  reported_signal = sig;
  const char *name = (sig == SIGINT) ? "SIGINT" : "SIGTERM";
  if (lua_getfield(L, LUA_REGISTRYINDEX, SIGNAL_FN_KEY) == LUA_TFUNCTION) {
    lua_pushstring(L, name);
    lua_call(L, 1, 0);
  } else {
    lua_pop(L, 1);
  }
  lua_pushstring(L, name);
  return 1;
}

/* dir(path): the names in a folder (without . and ..), in no particular
** order; nil and a message when it cannot be read */
static int mr_dir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  DIR *d = opendir(path);
  if (d == NULL) return luaL_fileresult(L, 0, path);
  lua_newtable(L);
  lua_Integer n = 0;
  struct dirent *e;
  errno = 0;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    lua_pushstring(L, e->d_name);
    lua_rawseti(L, -2, ++n);
  }
  int failed = errno != 0;
  closedir(d);
  if (failed) return luaL_fileresult(L, 0, path);
  return 1;
}

static const luaL_Reg mamlrun_funcs[] = {{"dir", mr_dir},
                                         {"is_tty", mr_is_tty},
                                         {"time", mr_time},
                                         {"rss", mr_rss},
                                         {"rss_peak", mr_rss_peak},
                                         {"on_signal", mr_on_signal},
                                         {"signal_pending", mr_signal_pending},
                                         {NULL, NULL}};

/* ------------------------------------------------------------ overrides */

/* length of the key if s is "key=value" with key a dotted Lua name, else 0 */
static size_t override_key_len(const char *s) {
  const char *p = s;
  for (;;) {
    if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '_')) return 0;
    while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_') p++;
    if (*p == '=') return (size_t)(p - s);
    if (*p != '.') return 0;
    p++;
  }
}

/* the override an option after SCRIPT stands for (--help, -h: help=true; --check: check=true), else NULL */
static const char *request_override(const char *s) {
  if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) return "help=true";
  if (strcmp(s, "--check") == 0) return "check=true";
  return NULL;
}

/* push an override value: a quoted string, a boolean, a number, or a string */
static void push_override_value(lua_State *L, const char *v) {
  size_t n = strlen(v);
  if (n >= 2 && (v[0] == '\'' || v[0] == '"') && v[n - 1] == v[0]) lua_pushlstring(L, v + 1, n - 2);
  else if (strcmp(v, "true") == 0) lua_pushboolean(L, 1);
  else if (strcmp(v, "false") == 0) lua_pushboolean(L, 0);
  else if (lua_stringtonumber(L, v) == 0) /* pushes the number on success */ lua_pushstring(L, v);
}

/* set overrides[key] = value for "key=value" (keylen bytes of key) into the
** table at index t; dots descend into (new) nested tables. Returns NULL or
** an error message naming the key. */
static const char *set_override(lua_State *L, int t, const char *kv, size_t keylen) {
  const char *key = lua_pushlstring(L, kv, keylen); /* the full key, for messages */
  lua_pushvalue(L, t);
  const char *seg = kv, *end = kv + keylen;
  for (;;) {
    const char *dot = memchr(seg, '.', (size_t)(end - seg));
    if (dot == NULL) break;
    lua_pushlstring(L, seg, (size_t)(dot - seg));
    int type = lua_rawget(L, -2);
    if (type == LUA_TNIL) {
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushlstring(L, seg, (size_t)(dot - seg));
      lua_pushvalue(L, -2);
      lua_rawset(L, -4);
    } else if (type != LUA_TTABLE) {
      return lua_pushfstring(L, "override '%s' conflicts with '%s' (already a value)", key,
                             lua_pushlstring(L, kv, (size_t)(dot - kv)));
    }
    lua_remove(L, -2); /* descend */
    seg = dot + 1;
  }
  lua_pushlstring(L, seg, (size_t)(end - seg));
  int type = lua_rawget(L, -2);
  lua_pop(L, 1);
  if (type == LUA_TTABLE) return lua_pushfstring(L, "override '%s' conflicts with '%s.*' given before", key, key);
  if (type != LUA_TNIL) return lua_pushfstring(L, "duplicate override '%s' (key given twice)", key);
  lua_pushlstring(L, seg, (size_t)(end - seg));
  push_override_value(L, kv + keylen + 1);
  lua_rawset(L, -3);
  lua_pop(L, 2); /* table, key */
  return NULL;
}

/* split the arguments after SCRIPT: overrides into a new table (pushed),
** plain ones into the global 'arg' (with arg[0] = SCRIPT, arg[-1] = the
** binary). Returns the number of plain arguments, or -1 after a usage error
** message. */
static int collect_script_args(lua_State *L, int argc, char **argv, int script) {
  lua_newtable(L); /* overrides */
  int overrides = lua_gettop(L);
  lua_createtable(L, argc, 2); /* arg */
  lua_pushstring(L, argv[0]);
  lua_rawseti(L, -2, -1);
  lua_pushstring(L, script ? argv[script] : argv[0]);
  lua_rawseti(L, -2, 0);
  int nplain = 0, only_plain = 0;
  /* --help after SCRIPT is the override help=true and --check the override check=true (lua/experiment.lua
  ** answers them), unless an option stands in SCRIPT's place (one that takes the arguments after it as
  ** they are) */
  int request_is_override = script > 0 && (argv[script][0] != '-' || argv[script][1] == '\0');
  for (int i = script ? script + 1 : argc; i < argc; i++) {
    size_t keylen;
    const char *request = NULL;
    if (!only_plain && strcmp(argv[i], "--") == 0) {
      only_plain = 1;
    } else if (!only_plain && ((keylen = override_key_len(argv[i])) > 0 ||
                               (request_is_override && (request = request_override(argv[i])) != NULL))) {
      const char *kv = keylen > 0 ? argv[i] : request;
      const char *err = set_override(L, overrides, kv, keylen > 0 ? keylen : strcspn(kv, "="));
      if (err != NULL) {
        usage_error(0, "%s", err);
        return -1;
      }
    } else {
      lua_pushstring(L, argv[i]);
      lua_rawseti(L, -2, ++nplain);
    }
  }
  lua_setglobal(L, "arg");
  return nplain;
}

/* ------------------------------------------------------------ paths */

/* the directory of this binary into buf (no trailing slash), or 0 */
static int binary_dir(const char *argv0, char *buf) {
  if (realpath("/proc/self/exe", buf) == NULL && (strchr(argv0, '/') == NULL || realpath(argv0, buf) == NULL)) return 0;
  char *slash = strrchr(buf, '/');
  if (slash == NULL) return 0;
  *slash = '\0';
  return 1;
}

/* push the project's Lua library directory: <bindir>/lua in the build tree,
** else <prefix>/share/mamlrun/lua when the binary is <prefix>/bin/mamlrun;
** nil when neither exists */
static void push_lua_root(lua_State *L, const char *argv0) {
  char dir[PATH_MAX];
  if (binary_dir(argv0, dir)) {
    const char *build = lua_pushfstring(L, "%s/lua", dir);
    if (sys_is_dir(build)) return;
    lua_pop(L, 1);
    size_t n = strlen(dir);
    if (n >= 4 && strcmp(dir + n - 4, "/bin") == 0) {
      const char *installed = lua_pushfstring(L, "%s/share/mamlrun/lua", lua_pushlstring(L, dir, n - 4));
      lua_remove(L, -2);
      if (sys_is_dir(installed)) return;
      lua_pop(L, 1);
    }
  }
  lua_pushnil(L);
}

/* package.path = root/?.lua;root/?/init.lua;scriptdir/?.lua;<default> */
static void set_package_path(lua_State *L, const char *root, const char *script) {
  luaL_Buffer b;
  lua_getglobal(L, "package");
  luaL_buffinit(L, &b);
  if (root != NULL) {
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", root, root);
    luaL_addvalue(&b);
  }
  if (script != NULL && strcmp(script, "-") != 0) {
    const char *slash = strrchr(script, '/');
    if (slash == NULL) luaL_addstring(&b, ".");
    else luaL_addlstring(&b, script, slash == script ? 1 : (size_t)(slash - script));
    luaL_addstring(&b, "/?.lua;");
  }
  lua_getfield(L, -2, "path");
  luaL_addvalue(&b);
  luaL_pushresult(&b);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
}

/* mamlrun.blas = {config=, core=, set_by=, openblas_chose=}: the OpenBLAS build, the
** core it runs, who chose it ("openblas", "OPENBLAS_CORETYPE" or "mamlrun") and, when
** mamlrun replaced a fallback core, the one OpenBLAS had chosen */
static void push_blas_info(lua_State *L) {
  const char *replaced, *source = blas_core_source(&replaced);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, openblas_get_config());
  lua_setfield(L, -2, "config");
  lua_pushstring(L, openblas_get_corename());
  lua_setfield(L, -2, "core");
  lua_pushstring(L, source);
  lua_setfield(L, -2, "set_by");
  if (replaced != NULL) {
    lua_pushstring(L, replaced);
    lua_setfield(L, -2, "openblas_chose");
  }
}

/* package.loaded.mamlrun = {version=, overrides=, script=, root=, cwd=, ...};
** expects the overrides table and the root (string or nil) at the top, and
** pops the root */
static void register_mamlrun_module(lua_State *L, const char *script) {
  luaL_newlib(L, mamlrun_funcs);
  lua_pushliteral(L, MAMLRUN_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushboolean(L, T_ASAN); /* mamlrun.asan */
  lua_setfield(L, -2, "asan");
  push_blas_info(L);
  lua_setfield(L, -2, "blas");
  char conv[256];
  lua_pushstring(L, conv_backend(conv, sizeof conv));
  lua_setfield(L, -2, "conv");
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "root");
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, "overrides");
  if (script != NULL) lua_pushstring(L, script);
  else lua_pushnil(L);
  lua_setfield(L, -2, "script");
  char cwd[PATH_MAX]; /* mamlrun.cwd: the folder it was started in (relative paths the user gave are of it) */
  if (getcwd(cwd, sizeof cwd) != NULL) lua_pushstring(L, cwd);
  else lua_pushnil(L);
  lua_setfield(L, -2, "cwd");
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_insert(L, -2);
  lua_setfield(L, -2, "mamlrun");
  lua_pop(L, 2); /* the loaded table and the root */
}

static void preload_modules(lua_State *L) {
  static const luaL_Reg modules[] = {{"tensor", luaopen_tensor},     {"autograd", luaopen_autograd},
                                     {"omniglot", luaopen_omniglot}, {"parallel", luaopen_parallel},
                                     {"mpi", luaopen_mpi},           {NULL, NULL}};
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (const luaL_Reg *m = modules; m->name != NULL; m++) {
    lua_pushcfunction(L, m->func);
    lua_setfield(L, -2, m->name);
  }
  lua_pop(L, 1);
}

/* ------------------------------------------------------------ running code */

/* push the module lua/locate.lua of the Lua library root (it finds scripts
** and the shipped experiments); a Lua error status if it cannot be loaded */
static int push_locate(lua_State *L, const char *root) {
  int status = luaL_loadfile(L, lua_pushfstring(L, "%s/locate.lua", root));
  lua_remove(L, -2); /* the file name */
  if (status == LUA_OK) status = docall(L, 0, 1);
  return status;
}

/* push the file to run for SCRIPT: locate.script's choice (a file in the
** current folder first, then a shipped experiment by name or by its path
** under the install), or SCRIPT itself without a Lua library. Returns 0
** after printing why nothing was found. */
static int find_script(lua_State *L, const char *root, const char *name) {
  if (root == NULL || strcmp(name, "-") == 0) {
    lua_pushstring(L, name);
    return 1;
  }
  int status = push_locate(L, root);
  if (status == LUA_OK) {
    lua_getfield(L, -1, "script");
    lua_pushstring(L, name);
    lua_createtable(L, 0, 1);
    lua_pushstring(L, root);
    lua_setfield(L, -2, "root");
    status = docall(L, 2, 2);
    lua_remove(L, -3); /* the module */
  }
  if (report(L, status) != LUA_OK) return 0;
  if (lua_type(L, -2) != LUA_TSTRING) {
    l_message(progname, luaL_optstring(L, -1, "locate.script found nothing"));
    lua_pop(L, 2);
    return 0;
  }
  lua_pop(L, 1); /* the (nil) message */
  return 1;
}

/* --list: print the shipped experiments with their descriptions */
static int list_experiments(lua_State *L, const char *root) {
  if (root == NULL) {
    l_message(progname, "--list: no Lua library beside the binary (lua/ or ../share/mamlrun/lua)");
    return LUA_ERRRUN;
  }
  int status = push_locate(L, root);
  if (status == LUA_OK) {
    lua_getfield(L, -1, "list_text");
    lua_remove(L, -2);
    lua_createtable(L, 0, 1);
    lua_pushstring(L, root);
    lua_setfield(L, -2, "root");
    status = docall(L, 1, 1);
  }
  if (status == LUA_OK) {
    fputs(luaL_optstring(L, -1, ""), stdout);
    lua_pop(L, 1);
  }
  return report(L, status);
}

static int dostring(lua_State *L, const char *code, const char *name) {
  int status = luaL_loadbuffer(L, code, strlen(code), name);
  if (status == LUA_OK) status = docall(L, 0, 0);
  return report(L, status);
}

/* `--check` (check=true) is answered by experiment.run, which sets mamlrun.checked; a script that ran
** without building an experiment checked nothing and must not look as if it had: 0 then, after a
** usage error naming the script */
static int check_answered(lua_State *L, const char *fname, int overrides) {
  lua_getfield(L, overrides, "check");
  int asked = lua_isboolean(L, -1) && lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (!asked) return 1;
  int top = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, "mamlrun");
  int answered = lua_istable(L, -1) && (lua_getfield(L, -1, "checked"), lua_toboolean(L, -1));
  lua_settop(L, top);
  if (answered) return 1;
  usage_error(0, "--check (check=true): %s ran as a plain script, it is not an experiment (it built none with "
                 "experiment.run), so nothing was checked; --check is for experiment scripts",
              strcmp(fname, "-") == 0 ? "stdin" : fname);
  usage_error_raised = 1;
  return 0;
}

/* load SCRIPT and call it with the overrides table and the plain args */
static int handle_script(lua_State *L, const char *fname, int overrides, int nplain) {
  int status = luaL_loadfile(L, strcmp(fname, "-") == 0 ? NULL : fname);
  if (status == LUA_OK) {
    lua_pushvalue(L, overrides);
    luaL_checkstack(L, nplain + 3, "too many script arguments");
    lua_getglobal(L, "arg");
    for (int i = 1; i <= nplain; i++) lua_rawgeti(L, -i, i);
    lua_remove(L, -nplain - 1); /* the arg table */
    status = docall(L, nplain + 1, 0);
    if (status == LUA_OK && !check_answered(L, fname, overrides)) return LUA_ERRRUN;
  }
  return report(L, status);
}

/* ------------------------------------------------------------ REPL (from lua.c) */

#define EOFMARK "<eof>"
#define MARKLEN (sizeof(EOFMARK) - 1)

/* read a line into the stack; 0 at end of input. Prompts only on a tty. */
static int pushline(lua_State *L, int firstline) {
  char *line = NULL;
  size_t cap = 0;
  if (isatty(STDIN_FILENO)) {
    fputs(firstline ? "> " : ">> ", stdout);
    fflush(stdout);
  }
  ssize_t n = getline(&line, &cap, stdin);
  if (n < 0) {
    free(line);
    return 0;
  }
  if (n > 0 && line[n - 1] == '\n') line[--n] = '\0';
  if (firstline && line[0] == '=') /* '=expr' as in Lua 5.2/5.3 */
    lua_pushfstring(L, "return %s", line + 1);
  else lua_pushlstring(L, line, (size_t)n);
  free(line);
  return 1;
}

/* a syntax error that only says the chunk ended too early */
static int incomplete(lua_State *L, int status) {
  if (status == LUA_ERRSYNTAX) {
    size_t lmsg;
    const char *msg = lua_tolstring(L, -1, &lmsg);
    if (lmsg >= MARKLEN && strcmp(msg + lmsg - MARKLEN, EOFMARK) == 0) {
      lua_pop(L, 1);
      return 1;
    }
  }
  return 0;
}

/* try the line as 'return <line>;', so expressions print their values */
static int addreturn(lua_State *L) {
  const char *line = lua_tostring(L, -1);
  const char *retline = lua_pushfstring(L, "return %s;", line);
  int status = luaL_loadbuffer(L, retline, strlen(retline), "=stdin");
  if (status == LUA_OK) lua_remove(L, -2); /* the modified line */
  else lua_pop(L, 2); /* the error and the modified line */
  return status;
}

/* compile the line as a statement, reading continuation lines as needed */
static int multiline(lua_State *L) {
  for (;;) {
    size_t len;
    const char *line = lua_tolstring(L, 1, &len);
    int status = luaL_loadbuffer(L, line, len, "=stdin");
    if (!incomplete(L, status) || !pushline(L, 0)) return status;
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  }
}

/* read and compile the next statement; -1 at end of input */
static int loadline(lua_State *L) {
  lua_settop(L, 0);
  if (!pushline(L, 1)) return -1;
  int status = addreturn(L);
  if (status != LUA_OK) status = multiline(L);
  lua_remove(L, 1); /* the line */
  return status;
}

/* print the values on the stack with the global 'print' */
static void l_print(lua_State *L) {
  int n = lua_gettop(L);
  if (n > 0) {
    luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
    lua_getglobal(L, "print");
    lua_insert(L, 1);
    if (lua_pcall(L, n, 0, 0) != LUA_OK)
      l_message(progname, lua_pushfstring(L, "error calling 'print' (%s)", lua_tostring(L, -1)));
  }
}

static void doREPL(lua_State *L) {
  const char *oldprogname = progname;
  int status;
  if (isatty(STDIN_FILENO)) print_version();
  progname = NULL; /* errors in the REPL need no program name */
  while ((status = loadline(L)) != -1) {
    if (status == LUA_OK) status = docall(L, 0, LUA_MULTRET);
    if (status == LUA_OK) l_print(L);
    else report(L, status);
  }
  lua_settop(L, 0);
  if (isatty(STDIN_FILENO)) fputs("\n", stdout);
  fflush(stdout);
  progname = oldprogname;
}

/* ------------------------------------------------------------ main */

/* check the options before SCRIPT; returns -1 to go on, else an exit status
** (0 after --help/--version, 2 after a usage error) */
static int collectargs(int argc, char **argv, Options *o) {
  int has_e = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-' || strcmp(a, "-") == 0) {
      o->script = i;
      break;
    }
    if (strcmp(a, "--") == 0) {
      if (i + 1 < argc) o->script = i + 1;
      break;
    }
    if (strcmp(a, "--compare") == 0) {
      o->script = i;
      o->compare = 1;
      break;
    }
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      print_usage(stdout);
      return 0;
    }
    if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0) {
      print_version();
      return 0;
    }
    if (strcmp(a, "--list") == 0) {
      o->list = 1;
    } else if (strcmp(a, "-i") == 0) {
      o->interactive = 1;
    } else if (strncmp(a, "-e", 2) == 0) {
      if (a[2] == '\0' && ++i >= argc) return usage_error(1, "'%s' needs an argument", "-e");
      has_e = 1;
    } else {
      return usage_error(1, "unrecognized option '%s'", a);
    }
  }
  if (o->list && (o->script != 0 || has_e || o->interactive))
    return usage_error(1, "%s", "--list takes no SCRIPT, -e or -i");
  if (o->script == 0 && !has_e && !o->interactive && !o->list)
    return usage_error(1, "%s", "missing SCRIPT (or -e CODE, or -i)");
  char conv[256]; /* a bad MAMLRUN_CONV stops the run before it starts */
  if (strncmp(conv_backend(conv, sizeof conv), "error: ", 7) == 0) return usage_error(0, "%s", conv + 7);
  char env[160]; /* and so does a bad MAMLRUN_THREADS or MAMLRUN_MEMORY_LIMIT */
  if (sys_env_threads(env, sizeof env) < 0 || sys_env_memory_limit(env, sizeof env) < 0)
    return usage_error(0, "%s", env);
  return -1;
}

/* run the -e chunks in order */
static int run_e_options(lua_State *L, int argc, char **argv, int last) {
  for (int i = 1; i < last && i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) break;
    if (strncmp(argv[i], "-e", 2) == 0) {
      const char *code = argv[i][2] != '\0' ? argv[i] + 2 : argv[++i];
      if (dostring(L, code, "=(command line)") != LUA_OK) return 0;
    }
  }
  return 1;
}

/* everything that runs inside the Lua state, protected; returns the exit
** status as an integer */
static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  const Options *o = (const Options *)lua_touserdata(L, 3);
  const char *script = o->script && !o->compare ? argv[o->script] : NULL;
  lua_settop(L, 0);
  luaL_checkversion(L);
  luaL_openlibs(L);
  preload_modules(L);
  push_lua_root(L, argv[0]); /* 1: the Lua library or nil */
  const char *root = lua_tostring(L, 1);
  if (script != NULL) { /* 2: the file to run */
    if (!find_script(L, root, script)) {
      lua_pushinteger(L, 1);
      return 1;
    }
    script = lua_tostring(L, 2);
  } else {
    lua_pushnil(L);
  }
  int nplain = collect_script_args(L, argc, argv, o->script); /* 3: overrides */
  if (nplain < 0) {
    lua_pushinteger(L, 2);
    return 1;
  }
  if (script != NULL) { /* arg[0]: the file found for SCRIPT */
    lua_getglobal(L, "arg");
    lua_pushstring(L, script);
    lua_rawseti(L, -2, 0);
    lua_pop(L, 1);
  }
  int overrides = lua_gettop(L);
  lua_pushvalue(L, 1);
  set_package_path(L, root, script);
  register_mamlrun_module(L, script); /* pops the root */
  if (o->list) {
    lua_pushinteger(L, list_experiments(L, root) == LUA_OK ? 0 : 1);
    return 1;
  }
  lua_gc(L, LUA_GCRESTART);
  lua_gc(L, LUA_GCGEN, 0, 0);
  if (!run_e_options(L, argc, argv, o->script ? o->script : argc) ||
      (script != NULL && handle_script(L, script, overrides, nplain) != LUA_OK) ||
      (o->compare && dostring(L, "require('compare').main(arg)", "=--compare") != LUA_OK)) {
    lua_pushinteger(L, usage_error_raised ? 2 : 1);
    return 1;
  }
  if (o->interactive) doREPL(L);
  lua_pushinteger(L, 0);
  return 1;
}

int main(int argc, char **argv) {
  Options o = {0};
  if (argv[0] == NULL || argv[0][0] == '\0') argv[0] = (char *)"mamlrun";
  blas_ensure_core(argv); /* may run this program again, on OpenBLAS's fast kernels */
  int status = collectargs(argc, argv, &o);
  if (status >= 0) return status;
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    l_message(progname, "cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  lua_gc(L, LUA_GCSTOP); /* no collections while starting up */
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  lua_pushlightuserdata(L, &o);
  status = lua_pcall(L, 3, 1, 0);
  int result = (status == LUA_OK) ? (int)lua_tointeger(L, -1) : 1;
  report(L, status);
  mpi_shutdown(result); /* under mpirun: an error aborts the other ranks too */
  lua_close(L);
  return result == 0 && reported_signal != 0 ? 128 + reported_signal : result;
}
