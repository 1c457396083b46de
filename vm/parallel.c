/*
** parallel.c: the "parallel" module: run independent Lua jobs on worker
** threads, each with its own Lua state (a Lua state is single-threaded).
**
**   local results = parallel.map("maml", "task_gradients", jobs)
**   parallel.map("maml", "task_gradients", jobs, {workers_only = true})
**
** calls require("maml").task_gradients(table.unpack(jobs[i])) for every i,
** on a pool of threads (the calling thread works too), and returns the
** results in job order. Values cross between states by copy: nil, booleans,
** numbers, strings, tables (trees, no cycles) and tensors. Tensors are
** shared, not copied, and cross as leaves (detached; requires_grad kept):
** graphs never span threads. A job's result does not depend on which thread
** ran it, so results do not depend on the number of threads.
**
** parallel.stats() counts what map did since the start or the last
** parallel.reset_stats(): {maps, threaded_maps (maps with worker threads in
** the pool), jobs, worker_jobs (jobs a worker thread ran, not the caller)},
** so a test can tell that a run took the threaded path.
*/
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lualib.h>

#include "lua_tensor.h"
#include "sys.h"

extern void openblas_set_num_threads(int);

/* ------------------------------------------------------------ values between states */

typedef struct Value Value;
struct Value {
  int type; /* LUA_TNIL, LUA_TBOOLEAN, LUA_TNUMBER, LUA_TSTRING, LUA_TTABLE, LUA_TUSERDATA (tensor) */
  int is_int;
  lua_Integer i;
  lua_Number n;
  char *s;
  size_t len;
  Tensor *t;
  int nfields;
  Value *keys, *vals;
};

static void value_free(Value *v) {
  if (!v) return;
  free(v->s);
  t_release(v->t);
  for (int k = 0; k < v->nfields; k++) {
    value_free(&v->keys[k]);
    value_free(&v->vals[k]);
  }
  free(v->keys);
  free(v->vals);
  memset(v, 0, sizeof *v);
}

/* Lua value at idx -> v; returns NULL or an error message (static) */
static const char *value_from_lua(lua_State *L, int idx, Value *v, int depth) {
  memset(v, 0, sizeof *v);
  idx = lua_absindex(L, idx);
  v->type = lua_type(L, idx);
  switch (v->type) {
    case LUA_TNIL: return NULL;
    case LUA_TBOOLEAN: v->i = lua_toboolean(L, idx); return NULL;
    case LUA_TNUMBER:
      v->is_int = lua_isinteger(L, idx);
      if (v->is_int) v->i = lua_tointeger(L, idx);
      else v->n = lua_tonumber(L, idx);
      return NULL;
    case LUA_TSTRING: {
      const char *s = lua_tolstring(L, idx, &v->len);
      v->s = malloc(v->len + 1);
      if (!v->s) return "out of memory";
      memcpy(v->s, s, v->len + 1);
      return NULL;
    }
    case LUA_TUSERDATA: {
      Tensor *t = lt_test(L, idx);
      if (!t) return "a userdata that is not a tensor cannot cross threads";
      Tensor *leaf = t_detach(t);
      leaf->requires_grad = t->requires_grad;
      v->t = leaf;
      return NULL;
    }
    case LUA_TTABLE: {
      if (depth > 64) return "tables nested more than 64 deep (a cycle?)";
      if (!lua_checkstack(L, 4)) return "out of memory"; /* each level holds a key and a value */
      int cap = 0;
      lua_pushnil(L);
      while (lua_next(L, idx)) {
        if (v->nfields == cap) {
          cap = cap ? 2 * cap : 8;
          Value *k2 = realloc(v->keys, (size_t)cap * sizeof *k2);
          if (k2) v->keys = k2;
          Value *v2 = realloc(v->vals, (size_t)cap * sizeof *v2);
          if (v2) v->vals = v2;
          if (!k2 || !v2) {
            lua_pop(L, 2);
            return "out of memory";
          }
        }
        int k = v->nfields++;
        const char *err = value_from_lua(L, -2, &v->keys[k], depth + 1);
        if (!err) err = value_from_lua(L, -1, &v->vals[k], depth + 1);
        else memset(&v->vals[k], 0, sizeof v->vals[k]);
        lua_pop(L, 1);
        if (err) {
          lua_pop(L, 1);
          return err;
        }
      }
      return NULL;
    }
    default: return "functions, threads and light userdata cannot cross threads";
  }
}

static void value_push(lua_State *L, const Value *v) {
  luaL_checkstack(L, 4, "parallel: nesting too deep");
  switch (v->type) {
    case LUA_TBOOLEAN: lua_pushboolean(L, (int)v->i); break;
    case LUA_TNUMBER:
      if (v->is_int) lua_pushinteger(L, v->i);
      else lua_pushnumber(L, v->n);
      break;
    case LUA_TSTRING: lua_pushlstring(L, v->s, v->len); break;
    case LUA_TUSERDATA: {
      Tensor *leaf = t_detach(v->t);
      leaf->requires_grad = v->t->requires_grad;
      lt_push(L, leaf);
      break;
    }
    case LUA_TTABLE:
      lua_createtable(L, 0, v->nfields);
      for (int k = 0; k < v->nfields; k++) {
        value_push(L, &v->keys[k]);
        value_push(L, &v->vals[k]);
        lua_rawset(L, -3);
      }
      break;
    default: lua_pushnil(L);
  }
}

/* ------------------------------------------------------------ the pool */

typedef struct {
  const char *module, *function;
  int njobs;
  Value *args; /* njobs tables of arguments */
  Value *results; /* njobs tables of results */
  char **errors; /* njobs messages or NULL */
  atomic_int next;
} Batch;

typedef struct Worker {
  pthread_t thread;
  lua_State *L;
} Worker;

static struct {
  pthread_mutex_t mu;
  pthread_cond_t work, done;
  Worker *workers;
  int nworkers; /* threads besides the caller */
  Batch *batch; /* current batch, NULL when idle */
  uint64_t epoch; /* incremented per batch */
  int busy; /* workers still on the current batch */
  int shutdown;
  char *path, *cpath;
  lua_CFunction preload_funcs[16];
  char *preload_names[16];
  int npreload;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER};

static _Thread_local int in_worker;

/* parallel.stats(): updated by the caller (maps, jobs) and the workers (worker_jobs) */
static struct { atomic_llong maps, threaded_maps, jobs, worker_jobs; } stats;

/* a new state set up like the caller's: same package paths and C preloads */
static lua_State *worker_state(void) {
  lua_State *L = luaL_newstate();
  if (!L) return NULL;
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, pool.path);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, pool.cpath);
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (int i = 0; i < pool.npreload; i++) {
    lua_pushcfunction(L, pool.preload_funcs[i]);
    lua_setfield(L, -2, pool.preload_names[i]);
  }
  lua_pop(L, 1);
  return L;
}

static int traceback_handler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) msg = luaL_tolstring(L, 1, NULL);
  luaL_traceback(L, L, msg, 1);
  return 1;
}

static char *dup_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* run job j of b in state L */
static void run_job(lua_State *L, Batch *b, int j) {
  int top = lua_gettop(L);
  lua_pushcfunction(L, traceback_handler);
  int h = lua_gettop(L);
  lua_getglobal(L, "require");
  lua_pushstring(L, b->module);
  int status = lua_pcall(L, 1, 1, h);
  if (status == LUA_OK) {
    lua_getfield(L, -1, b->function);
    if (!lua_isfunction(L, -1)) {
      b->errors[j] = dup_string("the function named is not in the module");
      lua_settop(L, top);
      return;
    }
    const Value *args = &b->args[j];
    int nargs = 0;
    for (int k = 0; k < args->nfields; k++) { /* args is a list: push in order 1..n */
      for (int m = 0; m < args->nfields; m++) {
        const Value *key = &args->keys[m];
        if (key->type == LUA_TNUMBER && key->is_int && key->i == k + 1) {
          value_push(L, &args->vals[m]);
          nargs++;
          break;
        }
      }
    }
    int base = lua_gettop(L) - nargs; /* the function's index */
    status = lua_pcall(L, nargs, LUA_MULTRET, h);
    if (status == LUA_OK) {
      int nres = lua_gettop(L) - base + 1;
      lua_createtable(L, nres, 0); /* results as a list */
      for (int k = 0; k < nres; k++) {
        lua_pushvalue(L, base + k);
        lua_rawseti(L, -2, k + 1);
      }
      const char *err = value_from_lua(L, -1, &b->results[j], 0);
      if (err) b->errors[j] = dup_string(err);
      lua_settop(L, top);
      return;
    }
  }
  b->errors[j] = dup_string(lua_tostring(L, -1) ? lua_tostring(L, -1) : "error object is not a string");
  lua_settop(L, top);
}

static void run_batch(lua_State *L, Batch *b, int by_worker) {
  for (;;) {
    int j = atomic_fetch_add(&b->next, 1);
    if (j >= b->njobs) break;
    run_job(L, b, j);
    if (by_worker) atomic_fetch_add(&stats.worker_jobs, 1);
    /* a job's tensors (a whole task's graph) are garbage now: free them at
    ** once rather than when this state's collector next runs */
    lua_gc(L, LUA_GCCOLLECT);
  }
}

static void *worker_main(void *arg) {
  Worker *w = arg;
  in_worker = 1;
  uint64_t seen = 0;
  pthread_mutex_lock(&pool.mu);
  for (;;) {
    while (!pool.shutdown && (!pool.batch || pool.epoch == seen)) pthread_cond_wait(&pool.work, &pool.mu);
    if (pool.shutdown) break;
    seen = pool.epoch;
    Batch *b = pool.batch;
    pthread_mutex_unlock(&pool.mu);
    if (!w->L) w->L = worker_state();
    if (w->L) run_batch(w->L, b, 1);
    pthread_mutex_lock(&pool.mu);
    if (--pool.busy == 0) pthread_cond_signal(&pool.done);
  }
  pthread_mutex_unlock(&pool.mu);
  if (w->L) lua_close(w->L);
  return NULL;
}

static void stop_workers(void) {
  pthread_mutex_lock(&pool.mu);
  pool.shutdown = 1;
  pthread_cond_broadcast(&pool.work);
  pthread_mutex_unlock(&pool.mu);
  for (int i = 0; i < pool.nworkers; i++) pthread_join(pool.workers[i].thread, NULL);
  free(pool.workers);
  pool.workers = NULL;
  pool.nworkers = 0;
  pool.shutdown = 0;
}

/* remember the caller's package paths and C preloads for worker states */
static void capture_environment(lua_State *L) {
  free(pool.path);
  free(pool.cpath);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  pool.path = dup_string(lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
  lua_getfield(L, -2, "cpath");
  pool.cpath = dup_string(lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
  lua_pop(L, 3);
  for (int i = 0; i < pool.npreload; i++) free(pool.preload_names[i]);
  pool.npreload = 0;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushnil(L);
  while (lua_next(L, -2) && pool.npreload < 16) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_iscfunction(L, -1) && lua_tocfunction(L, -1)) {
      pool.preload_funcs[pool.npreload] = lua_tocfunction(L, -1);
      pool.preload_names[pool.npreload++] = dup_string(lua_tostring(L, -2));
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static int nthreads = 0; /* total, the caller included; 0 = not decided yet */

static void start_workers(lua_State *L, int total) {
  stop_workers();
  capture_environment(L);
  pool.workers = calloc((size_t)(total > 1 ? total - 1 : 1), sizeof *pool.workers);
  if (!pool.workers) luaL_error(L, "parallel: out of memory");
  for (int i = 0; i < total - 1; i++) {
    if (pthread_create(&pool.workers[i].thread, NULL, worker_main, &pool.workers[i]) != 0) break;
    pool.nworkers++;
  }
  nthreads = total;
}

/* ------------------------------------------------------------ Lua API */

/* parallel.map(module, function, jobs [, {workers_only=false}]) -> results:
** results[i] is the list of values job i returned. workers_only: the caller
** runs none of the jobs, the worker threads all (a job's result as a fresh
** state computes it, for a check against the caller's own) */
static int l_map(lua_State *L) {
  static const char *const options[] = {"workers_only", NULL};
  const char *module = luaL_checkstring(L, 1), *function = luaL_checkstring(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  lt_check_options(L, 4, "map", options);
  int workers_only = lt_opt_boolean(L, 4, "map", "workers_only", 0);
  if (in_worker) return luaL_error(L, "parallel.map: cannot be called from inside a parallel job");
  if (nthreads == 0) start_workers(L, sys_default_threads());
  if (workers_only && pool.nworkers == 0)
    return lt_argerror(L, 4, "map", "option 'workers_only' needs worker threads, but the pool has none "
                       "(parallel.threads() is %d)", nthreads);
  lua_Integer njobs = luaL_len(L, 3);
  if (njobs < 0 || njobs > (1 << 24)) return lt_argerror(L, 3, "map", "too many jobs");
  /* a plain copy of the list first: lua_geti may run metamethods that raise
  ** errors, which must not happen once the arrays below are allocated */
  lua_createtable(L, (int)njobs, 0);
  for (lua_Integer j = 1; j <= njobs; j++) {
    lua_geti(L, 3, j);
    lua_rawseti(L, -2, j);
  }
  lua_replace(L, 3);
  Batch b = {module, function, (int)njobs, NULL, NULL, NULL, 0};
  b.args = calloc((size_t)(njobs ? njobs : 1), sizeof *b.args);
  b.results = calloc((size_t)(njobs ? njobs : 1), sizeof *b.results);
  b.errors = calloc((size_t)(njobs ? njobs : 1), sizeof *b.errors);
  const char *err = (!b.args || !b.results || !b.errors) ? "out of memory" : NULL;
  int bad = 0;
  for (lua_Integer j = 0; j < njobs && !err; j++) {
    lua_rawgeti(L, 3, j + 1);
    if (!lua_istable(L, -1)) err = "each job must be a list of arguments";
    else err = value_from_lua(L, -1, &b.args[j], 0);
    bad = (int)j + 1;
    lua_pop(L, 1);
  }
  if (!err) {
    /* workers and caller share the cores: one BLAS thread each */
    if (pool.nworkers > 0) openblas_set_num_threads(1);
    pthread_mutex_lock(&pool.mu);
    pool.batch = &b;
    pool.epoch++;
    pool.busy = pool.nworkers;
    pthread_cond_broadcast(&pool.work);
    pthread_mutex_unlock(&pool.mu);
    atomic_fetch_add(&stats.maps, 1);
    if (pool.nworkers > 0) atomic_fetch_add(&stats.threaded_maps, 1);
    atomic_fetch_add(&stats.jobs, njobs);
    if (!workers_only) {
      in_worker = 1; /* the caller works too, in its own state */
      run_batch(L, &b, 0);
      in_worker = 0;
    }
    pthread_mutex_lock(&pool.mu);
    while (pool.busy > 0) pthread_cond_wait(&pool.done, &pool.mu);
    pool.batch = NULL;
    pthread_mutex_unlock(&pool.mu);
  }
  int failed = -1;
  for (lua_Integer j = 0; j < njobs && failed < 0 && !err; j++)
    if (b.errors[j]) failed = (int)j;
  if (!err && failed < 0) {
    lua_createtable(L, (int)njobs, 0);
    for (lua_Integer j = 0; j < njobs; j++) {
      value_push(L, &b.results[j]);
      lua_rawseti(L, -2, j + 1);
    }
  } else if (failed >= 0) {
    lua_pushfstring(L, "parallel.map: job %d (%s.%s) failed: %s", failed + 1, module, function, b.errors[failed]);
  } else {
    lua_pushfstring(L, "bad argument #3 to 'map' (job %d: %s)", bad, err);
  }
  for (lua_Integer j = 0; j < njobs; j++) {
    if (b.args) value_free(&b.args[j]);
    if (b.results) value_free(&b.results[j]);
    if (b.errors) free(b.errors[j]);
  }
  free(b.args);
  free(b.results);
  free(b.errors);
  if (err || failed >= 0) return lua_error(L);
  return 1;
}

/* parallel.set_threads(n): total threads for map, the caller included */
static int l_set_threads(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  if (n < 1 || n > SYS_MAX_THREADS)
    return luaL_argerror(L, 1, lua_pushfstring(L, "expected 1..%d threads, got %I", SYS_MAX_THREADS, n));
  if (in_worker) return luaL_error(L, "parallel.set_threads: not from inside a parallel job");
  if (n != nthreads) start_workers(L, (int)n);
  return 0;
}

static int l_threads(lua_State *L) {
  lua_pushinteger(L, nthreads ? nthreads : sys_default_threads());
  return 1;
}

/* parallel.stats() -> {maps =, threaded_maps =, jobs =, worker_jobs =} */
static int l_stats(lua_State *L) {
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, (lua_Integer)atomic_load(&stats.maps));
  lua_setfield(L, -2, "maps");
  lua_pushinteger(L, (lua_Integer)atomic_load(&stats.threaded_maps));
  lua_setfield(L, -2, "threaded_maps");
  lua_pushinteger(L, (lua_Integer)atomic_load(&stats.jobs));
  lua_setfield(L, -2, "jobs");
  lua_pushinteger(L, (lua_Integer)atomic_load(&stats.worker_jobs));
  lua_setfield(L, -2, "worker_jobs");
  return 1;
}

/* parallel.reset_stats(): every count back to 0 */
static int l_reset_stats(lua_State *L) {
  if (in_worker) return luaL_error(L, "parallel.reset_stats: not from inside a parallel job");
  atomic_store(&stats.maps, 0);
  atomic_store(&stats.threaded_maps, 0);
  atomic_store(&stats.jobs, 0);
  atomic_store(&stats.worker_jobs, 0);
  return 0;
}

static const luaL_Reg parallel_functions[] = {
    {"map", l_map},     {"set_threads", l_set_threads}, {"threads", l_threads},
    {"stats", l_stats}, {"reset_stats", l_reset_stats}, {NULL, NULL}};

int luaopen_parallel(lua_State *L) {
  luaL_newlib(L, parallel_functions);
  lua_pushinteger(L, SYS_MAX_THREADS);
  lua_setfield(L, -2, "max_threads");
  return 1;
}
