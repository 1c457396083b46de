/*
** lua_mpi.c: the "mpi" module, data parallelism over processes with Open MPI.
**
**   local mpi = require "mpi"
**   mpi.rank(), mpi.size()             -- this process (0-based) and how many
**   mpi.allgather("bytes")             -- {bytes of rank 0, of rank 1, ...} on every rank
**   mpi.allgather(t)                   -- {t of rank 0 flattened, ...}: 1-d tensors, any lengths
**   mpi.allreduce_sum{t1, t2, ...}     -- new tensors: elementwise sums over the ranks
**   mpi.send(x, dest), mpi.recv(source) -- a string or a tensor's values (received 1-d)
**   mpi.bcast(x, root)                 -- root's string or tensor values on every rank
**   mpi.barrier(), mpi.finalize()
**   mpi.default_threads()              -- this rank's share of the cores (for threads=0)
**   mpi.available                      -- false when mamlrun was built without Open MPI
**
** MPI starts when the module is first required by a process that a launcher
** started (mpirun sets OMPI_COMM_WORLD_SIZE; PMIx and PMI launchers set
** PMIX_RANK / PMI_SIZE). Otherwise nothing is initialised and the module
** describes one process: rank 0 of 1. The host finalizes at exit
** (mpi_shutdown in vm/main.c): MPI_Finalize after success, MPI_Abort after
** an error, so the other ranks do not wait forever in a collective.
**
** Sums are reproducible: allreduce_sum gathers every rank's values and adds
** them in rank order (MPI_Allreduce leaves the order to the library), so
** every rank gets the same bits.
**
** Built without Open MPI (no ompi-c for pkg-config; see the Makefile), the
** module is a stub with the same functions for one process, and requiring it
** is an error when a launcher started more than one process: each would
** otherwise train alone and write its own run folder.
**
** Only the main thread communicates (MPI_THREAD_FUNNELED); the worker threads
** of the parallel module never call it.
*/
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef MAMLRUN_MPI
#include <mpi.h>
#endif

#include "lua_tensor.h"
#include "sys.h"

/* the number of processes a launcher started, from its environment; 0 if none */
static int launcher_size(void) {
  static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    const char *v = getenv(vars[i]);
    if (v != NULL && atoi(v) > 0) return atoi(v);
  }
  return getenv("PMIX_RANK") != NULL ? 1 : 0; /* PMIx without a size: at least us */
}

static int world_rank = 0, world_size = 1;

#ifdef MAMLRUN_MPI

static int started; /* MPI_Init_thread done here */
static int stopped; /* MPI_Finalize or MPI_Abort done */
static pthread_t main_thread;

static void finalize_at_exit(void) {
  if (started && !stopped) {
    stopped = 1;
    MPI_Finalize();
  }
}

static void start(lua_State *L) {
  if (started || launcher_size() == 0) return;
  int initialized = 0, provided = 0;
  MPI_Initialized(&initialized);
  if (!initialized && MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
    luaL_error(L, "mpi: MPI_Init_thread failed");
  started = 1;
  main_thread = pthread_self();
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  atexit(finalize_at_exit); /* os.exit skips the host's shutdown */
}

/* whether collectives go through MPI (else: one process, done locally);
** errors from another thread or after finalize */
static int communicating(lua_State *L, const char *fn) {
  if (!started) return 0;
  if (stopped) return luaL_error(L, "mpi.%s: MPI is finalized", fn);
  if (!pthread_equal(pthread_self(), main_thread))
    return luaL_error(L, "mpi.%s: only the main thread may communicate", fn);
  return 1;
}

void mpi_shutdown(int status) {
  if (!started || stopped) return;
  stopped = 1;
  if (status == 0) MPI_Finalize();
  else MPI_Abort(MPI_COMM_WORLD, status); /* the others may be waiting in a collective */
}

#else /* the stub: one process */

static void start(lua_State *L) {
  int n = launcher_size();
  if (n > 1)
    luaL_error(L,
               "mpi: this mamlrun was built without Open MPI but was started as one of %d processes "
               "(install libopenmpi-dev, then make clean && make)",
               n);
}

static int communicating(lua_State *L, const char *fn) {
  (void)L;
  (void)fn;
  return 0;
}

void mpi_shutdown(int status) { (void)status; }

#endif

/* ------------------------------------------------------------ helpers */

#ifdef MAMLRUN_MPI
/* displacements of counts; errors when the total does not fit MPI's int */
static int *displacements(lua_State *L, const int *counts, const char *fn) {
  int *displs = lt_scratch(L, (size_t)world_size * sizeof *displs);
  int64_t total = 0;
  for (int r = 0; r < world_size; r++) {
    if (total > INT_MAX) break;
    displs[r] = (int)total;
    total += counts[r];
  }
  if (total > INT_MAX) luaL_error(L, "mpi.%s: more than %d elements in all", fn, INT_MAX);
  return displs;
}
#endif

/* ------------------------------------------------------------ functions */

/* rank(): this process's number, 0 .. size() - 1 */
static int mpi_rank(lua_State *L) {
  lua_pushinteger(L, world_rank);
  return 1;
}

/* size(): the number of processes */
static int mpi_size(lua_State *L) {
  lua_pushinteger(L, world_size);
  return 1;
}

/* barrier(): wait until every rank has called it */
static int mpi_barrier(lua_State *L) {
#ifdef MAMLRUN_MPI
  if (communicating(L, "barrier")) MPI_Barrier(MPI_COMM_WORLD);
#else
  (void)communicating(L, "barrier");
#endif
  return 0;
}

/* allgather(string) -> {string of rank 0, ...}; allgather(tensor) -> {1-d
** tensor of rank 0, ...}. Each rank may give a different length. */
static int mpi_allgather(lua_State *L) {
  int is_string = lua_type(L, 1) == LUA_TSTRING;
  Tensor *t = is_string ? NULL : lt_test(L, 1);
  if (!is_string && t == NULL)
    return lt_argerror(L, 1, "allgather", "string or tensor expected, got %s", lt_typename(L, 1));
  int64_t n = is_string ? (int64_t)lua_rawlen(L, 1) : t->numel;
  if (n > INT_MAX) return lt_argerror(L, 1, "allgather", "more than %d elements", INT_MAX);
  lua_createtable(L, world_size, 0);
  if (!communicating(L, "allgather")) {
    if (is_string) {
      lua_pushvalue(L, 1);
    } else {
      Tensor *copy = t_new(1, &n);
      memcpy(T_DATA(copy), T_DATA(t), (size_t)n * sizeof(float));
      lt_push(L, copy);
    }
    lua_rawseti(L, -2, 1);
    return 1;
  }
#ifdef MAMLRUN_MPI
  int count = (int)n;
  int *counts = lt_scratch(L, (size_t)world_size * sizeof *counts);
  MPI_Allgather(&count, 1, MPI_INT, counts, 1, MPI_INT, MPI_COMM_WORLD);
  int *displs = displacements(L, counts, "allgather");
  int total = displs[world_size - 1] + counts[world_size - 1];
  if (is_string) {
    char *all = lt_scratch(L, (size_t)total);
    MPI_Allgatherv(lua_tostring(L, 1), count, MPI_CHAR, all, counts, displs, MPI_CHAR, MPI_COMM_WORLD);
    for (int r = 0; r < world_size; r++) {
      lua_pushlstring(L, all + displs[r], (size_t)counts[r]);
      lua_rawseti(L, -5, r + 1); /* below: counts, displs, all */
    }
  } else {
    float *all = lt_scratch(L, (size_t)total * sizeof(float));
    MPI_Allgatherv(T_DATA(t), count, MPI_FLOAT, all, counts, displs, MPI_FLOAT, MPI_COMM_WORLD);
    for (int r = 0; r < world_size; r++) {
      int64_t nr = counts[r];
      Tensor *part = t_new(1, &nr);
      memcpy(T_DATA(part), all + displs[r], (size_t)nr * sizeof(float));
      lt_push(L, part);
      lua_rawseti(L, -5, r + 1);
    }
  }
  lua_pop(L, 3);
#endif
  return 1;
}

/* allreduce_sum{t1, ...} -> {s1, ...}: s_i = t_i of rank 0 + t_i of rank 1
** + ..., added in rank order in float, the same on every rank. Every rank
** gives the same number of tensors with the same sizes. */
static int mpi_allreduce_sum(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer ntensors = luaL_len(L, 1);
  int64_t total = 0;
  for (lua_Integer i = 1; i <= ntensors; i++) {
    lua_geti(L, 1, i);
    Tensor *t = lt_test(L, -1);
    if (t == NULL)
      return lt_argerror(L, 1, "allreduce_sum", "item %d: tensor expected, got %s", (int)i, lt_typename(L, -1));
    total += t->numel;
    lua_pop(L, 1);
  }
  if (total > INT_MAX / (world_size > 0 ? world_size : 1))
    return lt_argerror(L, 1, "allreduce_sum", "%lld elements: too many", (long long)total);
  float *all = NULL;
  int ranks = 1;
  if (communicating(L, "allreduce_sum")) {
#ifdef MAMLRUN_MPI
    /* every rank must give the same sizes: compare them first */
    long long mine[2] = {(long long)ntensors, (long long)total};
    long long *sizes = lt_scratch(L, (size_t)world_size * sizeof mine);
    MPI_Allgather(mine, 2, MPI_LONG_LONG, sizes, 2, MPI_LONG_LONG, MPI_COMM_WORLD);
    for (int r = 0; r < world_size; r++)
      if (sizes[2 * r] != mine[0] || sizes[2 * r + 1] != mine[1])
        return lt_error(L, "mpi.allreduce_sum: rank %d gives %lld tensors of %lld elements, rank %d %lld of %lld",
                        world_rank, mine[0], mine[1], r, sizes[2 * r], sizes[2 * r + 1]);
    float *packed = lt_scratch(L, (size_t)total * sizeof(float));
    int64_t off = 0;
    for (lua_Integer i = 1; i <= ntensors; i++) {
      lua_geti(L, 1, i);
      Tensor *t = lt_test(L, -1);
      memcpy(packed + off, T_DATA(t), (size_t)t->numel * sizeof(float));
      off += t->numel;
      lua_pop(L, 1);
    }
    all = lt_scratch(L, (size_t)world_size * (size_t)total * sizeof(float));
    MPI_Allgather(packed, (int)total, MPI_FLOAT, all, (int)total, MPI_FLOAT, MPI_COMM_WORLD);
    ranks = world_size;
#endif
  }
  lua_createtable(L, (int)ntensors, 0);
  int64_t off = 0;
  for (lua_Integer i = 1; i <= ntensors; i++) {
    lua_geti(L, 1, i);
    Tensor *t = lt_test(L, -1);
    Tensor *sum = t_new(t->ndim, t->shape);
    float *o = T_DATA(sum);
    const float *x = all ? all + off : T_DATA(t);
    for (int64_t k = 0; k < t->numel; k++) o[k] = x[k];
    for (int r = 1; r < ranks; r++) {
      const float *y = all + (size_t)r * (size_t)total + off;
      for (int64_t k = 0; k < t->numel; k++) o[k] += y[k];
    }
    off += t->numel;
    lua_pop(L, 1);
    lt_push(L, sum);
    lua_rawseti(L, -2, i);
  }
  return 1;
}

/* a string or tensor to send: its bytes or floats */
typedef struct Payload {
  int is_string;
  const void *data;
  int64_t n; /* bytes or floats */
} Payload;

static Payload check_payload(lua_State *L, int i, const char *fn) {
  Payload p = {lua_type(L, i) == LUA_TSTRING, NULL, 0};
  if (p.is_string) {
    size_t len;
    p.data = lua_tolstring(L, i, &len);
    p.n = (int64_t)len;
  } else {
    Tensor *t = lt_test(L, i);
    if (t == NULL) lt_argerror(L, i, fn, "string or tensor expected, got %s", lt_typename(L, i));
    p.data = T_DATA(t);
    p.n = t->numel;
  }
  if (p.n > INT_MAX) lt_argerror(L, i, fn, "more than %d elements", INT_MAX);
  return p;
}

static int check_other_rank(lua_State *L, int i) {
  lua_Integer r = luaL_checkinteger(L, i);
  luaL_argcheck(L, r >= 0 && r < world_size && r != world_rank, i, "expected the rank of another process");
  return (int)r;
}

#define TAG_STRING 1
#define TAG_TENSOR 2

/* send(x, dest): a string, or a tensor's values, to rank dest (which calls recv) */
static int mpi_send(lua_State *L) {
  Payload p = check_payload(L, 1, "send");
  int dest = check_other_rank(L, 2);
#ifdef MAMLRUN_MPI
  if (communicating(L, "send"))
    MPI_Send(p.data, (int)p.n, p.is_string ? MPI_CHAR : MPI_FLOAT, dest, p.is_string ? TAG_STRING : TAG_TENSOR,
             MPI_COMM_WORLD);
#else
  (void)p;
  (void)dest;
#endif
  return 0;
}

/* recv(source) -> the string, or the values as a 1-d tensor, that rank source sent next */
static int mpi_recv(lua_State *L) {
  int source = check_other_rank(L, 1);
#ifdef MAMLRUN_MPI
  if (communicating(L, "recv")) {
    MPI_Status st;
    MPI_Probe(source, MPI_ANY_TAG, MPI_COMM_WORLD, &st);
    int count = 0;
    if (st.MPI_TAG == TAG_STRING) {
      MPI_Get_count(&st, MPI_CHAR, &count);
      char *buf = lt_scratch(L, (size_t)count);
      MPI_Recv(buf, count, MPI_CHAR, source, TAG_STRING, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      lua_pushlstring(L, buf, (size_t)count);
    } else {
      MPI_Get_count(&st, MPI_FLOAT, &count);
      int64_t n = count;
      Tensor *t = t_new(1, &n);
      lt_push(L, t);
      MPI_Recv(T_DATA(t), count, MPI_FLOAT, source, TAG_TENSOR, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    }
    return 1;
  }
#else
  (void)source;
#endif
  return 0;
}

/* bcast(x, root) -> root's x on every rank: a string, or a tensor's values as a 1-d tensor (root
** gets its own x back); x is ignored on the other ranks */
static int mpi_bcast(lua_State *L) {
  lua_Integer root = luaL_checkinteger(L, 2);
  luaL_argcheck(L, root >= 0 && root < world_size, 2, "expected a rank");
  Payload p = {0, NULL, 0};
  if (root == world_rank) p = check_payload(L, 1, "bcast");
  lua_settop(L, 1);
  if (!communicating(L, "bcast")) return 1;
#ifdef MAMLRUN_MPI
  long long head[2] = {p.is_string, (long long)p.n};
  MPI_Bcast(head, 2, MPI_LONG_LONG, (int)root, MPI_COMM_WORLD);
  MPI_Datatype type = head[0] ? MPI_CHAR : MPI_FLOAT;
  if (root == world_rank) {
    MPI_Bcast((void *)p.data, (int)p.n, type, (int)root, MPI_COMM_WORLD); /* root's buffer is only read */
  } else if (head[0]) {
    char *buf = lt_scratch(L, (size_t)head[1]);
    MPI_Bcast(buf, (int)head[1], type, (int)root, MPI_COMM_WORLD);
    lua_pushlstring(L, buf, (size_t)head[1]);
  } else {
    int64_t n = head[1];
    Tensor *t = t_new(1, &n);
    lt_push(L, t);
    MPI_Bcast(T_DATA(t), (int)n, type, (int)root, MPI_COMM_WORLD);
  }
#else
  (void)p;
#endif
  return 1;
}

/* default_threads(): threads for this rank's tasks when the config says threads=0: the CPUs it may
** run on (mpirun's binding sets them: one core per rank by default for 2 ranks), at most its share
** of the machine's cores among the ranks on it; $MAMLRUN_THREADS when set */
static int mpi_default_threads(lua_State *L) {
  lua_pushinteger(L, sys_default_threads());
  return 1;
}

/* finalize(): end MPI in this process (the host also does it at exit) */
static int mpi_finalize(lua_State *L) {
  (void)L;
  mpi_shutdown(0);
  return 0;
}

static const luaL_Reg mpi_funcs[] = {{"rank", mpi_rank},
                                     {"size", mpi_size},
                                     {"barrier", mpi_barrier},
                                     {"allgather", mpi_allgather},
                                     {"allreduce_sum", mpi_allreduce_sum},
                                     {"send", mpi_send},
                                     {"recv", mpi_recv},
                                     {"bcast", mpi_bcast},
                                     {"default_threads", mpi_default_threads},
                                     {"finalize", mpi_finalize},
                                     {NULL, NULL}};

int luaopen_mpi(lua_State *L) {
  start(L);
  luaL_newlib(L, mpi_funcs);
#ifdef MAMLRUN_MPI
  lua_pushboolean(L, 1);
#else
  lua_pushboolean(L, 0);
#endif
  lua_setfield(L, -2, "available");
  return 1;
}
