/*
** lua_tensor.c: the "tensor" module. Tensors are full userdata holding one
** reference to a C Tensor; methods and metamethods live in LT_TENSOR_MT.
** A binding checks its arguments, calls the op, pushes the result.
*/
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checksum.h"
#include "loss.h"
#include "lua_tensor.h"
#include "sys.h"

/* ------------------------------------------------------------ bridge */

static Generator *check_gen(lua_State *L, int i);

/* the state whose C function is running: t_error raises the Lua error there */
static _Thread_local lua_State *current_L;

static void lua_error_handler(const char *msg) {
  lua_State *L = current_L;
  lt_error(L, "%s", msg);
}

static void enter(lua_State *L) {
  current_L = L;
  t_set_error_handler(lua_error_handler);
}

typedef struct {
  Tensor *t;
} TensorBox;

/* Lua's collector sees a few bytes per tensor, not the megabytes behind it,
** so tensor memory paces its own collections: a state runs a full collection
** once its thread has allocated GC_BUDGET bytes of tensors since the last one
** (or as many bytes as the Lua heap holds, if more: a collection's cost grows
** with the heap). The count is per thread, as each worker has its own state:
** the process-wide live bytes include other threads' tensors, which this
** state's collection cannot free. A budget rather than a ratio of live bytes
** keeps the garbage bounded: an autograd graph that is garbage holds all the
** activations of a forward pass. */
#define GC_BUDGET ((int64_t)16 << 20)
static _Thread_local int64_t allocated_at_gc;

void lt_push(lua_State *L, Tensor *t) {
  enter(L);
  int64_t allocated = t_thread_allocated_bytes();
  if (allocated - allocated_at_gc > GC_BUDGET &&
      allocated - allocated_at_gc > (int64_t)lua_gc(L, LUA_GCCOUNT) * 1024) {
    lua_gc(L, LUA_GCCOLLECT);
    allocated_at_gc = t_thread_allocated_bytes();
  }
  TensorBox *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->t = t;
  luaL_setmetatable(L, LT_TENSOR_MT);
}

const char *lt_typename(lua_State *L, int i) {
  TensorBox *box = luaL_testudata(L, i, LT_TENSOR_MT);
  if (box && !box->t) return "closed tensor"; /* released by its <close> variable */
  if (luaL_getmetafield(L, i, "__name") != LUA_TNIL) {
    const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 1); /* the metatable keeps the string alive */
    if (name) return name;
  }
  return luaL_typename(L, i);
}

Tensor *lt_test(lua_State *L, int i) {
  TensorBox *box = luaL_testudata(L, i, LT_TENSOR_MT);
  return box && box->t ? box->t : NULL;
}

Tensor *lt_check(lua_State *L, int i) {
  enter(L);
  Tensor *t = lt_test(L, i);
  if (!t && luaL_testudata(L, i, LT_TENSOR_MT)) luaL_argerror(L, i, "tensor expected, got closed tensor");
  if (!t) luaL_typeerror(L, i, "tensor");
  return t;
}

Tensor *lt_check_tensor_or_number(lua_State *L, int i, Tensor **owned) {
  *owned = NULL;
  if (lua_type(L, i) == LUA_TNUMBER) {
    *owned = t_scalar((float)lua_tonumber(L, i));
    return *owned;
  }
  Tensor *t = lt_test(L, i);
  if (!t) luaL_typeerror(L, i, "tensor or number");
  return t;
}

int lt_check_shape(lua_State *L, int i, int64_t *shape, const char *fn) {
  enter(L);
  if (lua_type(L, i) != LUA_TTABLE)
    return lt_argerror(L, i, fn, "expected shape table like {2, 3}, got %s",
                      lt_typename(L, i));
  lua_Integer n = luaL_len(L, i);
  if (n > T_MAXDIM) return lt_argerror(L, i, fn, "expected at most %d dims, got %d", T_MAXDIM, (int)n);
  for (lua_Integer k = 1; k <= n; k++) {
    lua_geti(L, i, k);
    int isnum = 0; /* numbers only: lua_tointegerx would also take the string "2" */
    lua_Integer v = lua_type(L, -1) == LUA_TNUMBER ? lua_tointegerx(L, -1, &isnum) : 0;
    if (!isnum && lua_type(L, -1) == LUA_TNUMBER)
      return lt_argerror(L, i, fn, "expected integer sizes, got %g at position %d",
                      lua_tonumber(L, -1), (int)k);
    if (!isnum)
      return lt_argerror(L, i, fn, "expected integer sizes, got %s at position %d",
                      lt_typename(L, -1), (int)k);
    if (v < 0)
      return lt_argerror(L, i, fn, "expected sizes >= 0, got %lld at position %d",
                        (long long)v, (int)k);
    shape[k - 1] = v;
    lua_pop(L, 1);
  }
  t_check_shape(fn, i, (int)n, shape);
  return (int)n;
}

/* the dim at stack index idx, reported as argument arg (an entry of a list
** of dims is pushed on the stack but belongs to the list's argument) */
static int check_dim_at(lua_State *L, int idx, int arg, int ndim, const char *fn) {
  int isnum = 0;
  lua_Integer d = lua_type(L, idx) == LUA_TNUMBER ? lua_tointegerx(L, idx, &isnum) : 0;
  if (!isnum && lua_type(L, idx) == LUA_TNUMBER)
    return lt_argerror(L, arg, fn, "expected integer dim, got %g", lua_tonumber(L, idx));
  if (!isnum) return lt_argerror(L, arg, fn, "expected integer dim, got %s", lt_typename(L, idx));
  if (d < 0) d += ndim + 1;
  if (d < 1 || d > ndim)
    return lt_argerror(L, arg, fn, "dim %lld out of range for a %d-d tensor",
                    (long long)lua_tointeger(L, idx), ndim);
  return (int)d - 1;
}

int lt_check_dim(lua_State *L, int i, int ndim, const char *fn) { return check_dim_at(L, i, i, ndim, fn); }

Generator *lt_opt_generator(lua_State *L, int i) {
  enter(L);
  if (lua_isnoneornil(L, i)) return gen_default();
  return check_gen(L, i);
}

void lt_register(lua_State *L, const luaL_Reg *funcs) { luaL_setfuncs(L, funcs, 0); }

void *lt_scratch(lua_State *L, size_t bytes) { return lua_newuserdatauv(L, bytes ? bytes : 1, 0); }

static void push_shape(lua_State *L, int nd, const int64_t *shape) {
  lua_createtable(L, nd, 0);
  for (int i = 0; i < nd; i++) {
    lua_pushinteger(L, shape[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

/* ------------------------------------------------------------ construction */

static void infer_shape(lua_State *L, int idx, int depth, int *nd, int64_t *shape) {
  if (depth >= T_MAXDIM) lt_argerror(L, 1, "tensor", "more than %d levels of nesting", T_MAXDIM);
  lua_Integer n = luaL_len(L, idx);
  shape[depth] = n;
  *nd = depth + 1;
  if (n > 0) {
    lua_geti(L, idx, 1);
    if (lua_istable(L, -1)) infer_shape(L, lua_gettop(L), depth + 1, nd, shape);
    lua_pop(L, 1);
  }
}

static float *fill_from_table(lua_State *L, int idx, int depth, int nd, const int64_t *shape, float *out) {
  lua_Integer n = luaL_len(L, idx);
  if (n != shape[depth])
    lt_argerror(L, 1, "tensor", "ragged nesting: expected %lld entries at depth %d, got %lld",
               (long long)shape[depth], depth + 1, (long long)n);
  for (lua_Integer k = 1; k <= n; k++) {
    lua_geti(L, idx, k);
    if (depth + 1 < nd) {
      if (!lua_istable(L, -1))
        lt_argerror(L, 1, "tensor", "expected a table at depth %d, got %s", depth + 2,
                   lt_typename(L, -1));
      out = fill_from_table(L, lua_gettop(L), depth + 1, nd, shape, out);
    } else {
      if (lua_type(L, -1) != LUA_TNUMBER)
        lt_argerror(L, 1, "tensor", "expected numbers, got %s at depth %d", lt_typename(L, -1),
                   depth + 1);
      *out++ = (float)lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
  }
  return out;
}

static int l_tensor(lua_State *L) {
  enter(L);
  if (lua_type(L, 1) == LUA_TNUMBER) {
    lt_push(L, t_scalar((float)lua_tonumber(L, 1)));
    return 1;
  }
  Tensor *src = lt_test(L, 1);
  if (src) {
    int old = ag_set_enabled(0);
    Tensor *t = t_contiguous_copy(src);
    ag_set_enabled(old);
    lt_push(L, t);
    return 1;
  }
  luaL_checktype(L, 1, LUA_TTABLE);
  int64_t shape[T_MAXDIM];
  int nd = 0;
  infer_shape(L, 1, 0, &nd, shape);
  t_check_shape("tensor", 1, nd, shape);
  /* fill a scratch userdata first: a ragged table errors without leaking */
  int64_t numel = 1;
  for (int i = 0; i < nd; i++) numel *= shape[i];
  float *tmp = lua_newuserdatauv(L, (size_t)(numel ? numel : 1) * sizeof(float), 0);
  fill_from_table(L, 1, 0, nd, shape, tmp);
  Tensor *t = t_new(nd, shape);
  memcpy(T_DATA(t), tmp, (size_t)numel * sizeof(float));
  lt_push(L, t);
  return 1;
}

static int l_zeros(lua_State *L) {
  int64_t shape[T_MAXDIM];
  int nd = lt_check_shape(L, 1, shape, "zeros");
  lt_push(L, t_zeros(nd, shape));
  return 1;
}

static int l_ones(lua_State *L) {
  int64_t shape[T_MAXDIM];
  int nd = lt_check_shape(L, 1, shape, "ones");
  lt_push(L, t_full(nd, shape, 1.0f));
  return 1;
}

static int l_full(lua_State *L) {
  int64_t shape[T_MAXDIM];
  int nd = lt_check_shape(L, 1, shape, "full");
  float v = (float)luaL_checknumber(L, 2);
  lt_push(L, t_full(nd, shape, v));
  return 1;
}

static int l_arange(lua_State *L) {
  enter(L);
  double a = luaL_checknumber(L, 1), b, step = luaL_optnumber(L, 3, 1.0);
  if (lua_isnoneornil(L, 2)) {
    b = a;
    a = 0;
  } else {
    b = luaL_checknumber(L, 2);
  }
  luaL_argcheck(L, step != 0 && isfinite(step), 3, "expected a finite non-zero step");
  luaL_argcheck(L, isfinite(a) && isfinite(b), 1, "expected finite bounds");
  double count = ceil((b - a) / step);
  if (count < 0) count = 0;
  if (count > (double)T_MAXNUMEL) return lt_argerror(L, 2, "arange", "more than %lld elements", (long long)T_MAXNUMEL);
  int64_t n = (int64_t)count;
  Tensor *t = t_new(1, &n);
  float *d = T_DATA(t);
  for (int64_t i = 0; i < n; i++) d[i] = (float)(a + (double)i * step);
  lt_push(L, t);
  return 1;
}

static int random_tensor(lua_State *L, const char *fn, int normal) {
  int64_t shape[T_MAXDIM];
  int nd = lt_check_shape(L, 1, shape, fn);
  Generator *g = lt_opt_generator(L, 2);
  Tensor *t = t_new(nd, shape);
  float *d = T_DATA(t);
  for (int64_t i = 0; i < t->numel; i++) d[i] = (float)(normal ? gen_normal(g) : gen_uniform(g));
  lt_push(L, t);
  return 1;
}

static int l_randn(lua_State *L) { return random_tensor(L, "randn", 1); }
static int l_rand(lua_State *L) { return random_tensor(L, "rand", 0); }

/* ------------------------------------------------------------ generators */

/* a generator userdata points at its own state, or at the default one */
typedef struct {
  Generator *g;
  Generator own;
} GeneratorBox;

static Generator *check_gen(lua_State *L, int i) {
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
  lua_pushnumber(L, gen_uniform(check_gen(L, 1)));
  return 1;
}

static int g_normal(lua_State *L) {
  lua_pushnumber(L, gen_normal(check_gen(L, 1)));
  return 1;
}

static int g_random(lua_State *L) {
  Generator *g = check_gen(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 1 && n <= 0xffffffffLL, 2, "expected 1 <= n < 2^32");
  lua_pushinteger(L, (lua_Integer)gen_below(g, (uint32_t)n) + 1);
  return 1;
}

static int g_permutation(lua_State *L) { /* Fisher-Yates */
  Generator *g = check_gen(L, 1);
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
  Generator *g = check_gen(L, 1);
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
  Generator *g = check_gen(L, 1);
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
  Generator *g = check_gen(L, 1);
  *push_generator(L, NULL) = *g;
  return 1;
}

static int g_tostring(lua_State *L) {
  check_gen(L, 1);
  lua_pushfstring(L, "generator (%p)", lua_topointer(L, 1));
  return 1;
}

static const luaL_Reg generator_methods[] = {{"uniform", g_uniform},     {"normal", g_normal},
                                             {"random", g_random},       {"permutation", g_permutation},
                                             {"get_state", g_get_state}, {"set_state", g_set_state},
                                             {"clone", g_clone},         {NULL, NULL}};

/* ------------------------------------------------------------ inspection */

static int m_shape(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  push_shape(L, t->ndim, t->shape);
  return 1;
}

static int m_size(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  if (lua_isnoneornil(L, 2)) return m_shape(L);
  int d = lt_check_dim(L, 2, t->ndim, "size");
  lua_pushinteger(L, t->shape[d]);
  return 1;
}

static int m_dim(lua_State *L) {
  lua_pushinteger(L, lt_check(L, 1)->ndim);
  return 1;
}

static int m_numel(lua_State *L) {
  lua_pushinteger(L, lt_check(L, 1)->numel);
  return 1;
}

static int m_item(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  char b[160];
  if (t->numel != 1)
    return lt_argerror(L, 1, "item", "expected a tensor with one element, got shape %s",
                      t_shape_str(t, b, sizeof b));
  lua_pushnumber(L, T_DATA(t)[0]);
  return 1;
}

static void push_nested(lua_State *L, const float *d, int nd, const int64_t *shape) {
  if (nd == 0) {
    lua_pushnumber(L, d[0]);
    return;
  }
  int64_t stride = 1;
  for (int i = 1; i < nd; i++) stride *= shape[i];
  lua_createtable(L, (int)shape[0], 0);
  for (int64_t i = 0; i < shape[0]; i++) {
    if (nd == 1) lua_pushnumber(L, d[i]);
    else push_nested(L, d + i * stride, nd - 1, shape + 1);
    lua_rawseti(L, -2, i + 1);
  }
}

static int m_totable(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  luaL_checkstack(L, t->ndim + 4, "tensor nesting too deep");
  push_nested(L, T_DATA(t), t->ndim, t->shape);
  return 1;
}

/* one value as %.4g; NaN as "nan" whatever its sign bit (0/0 gives "-nan" on x86) */
static void format_number(char *num, size_t n, float v) {
  if (isnan(v)) snprintf(num, n, "nan");
  else snprintf(num, n, "%.4g", v);
}

/* print values like torch: all of a small tensor, the edges of a large one */
static void format_values(luaL_Buffer *b, const float *d, int nd, const int64_t *shape, int abbreviate, int indent) {
  char num[48];
  if (nd == 0) {
    format_number(num, sizeof num, d[0]);
    luaL_addstring(b, num);
    return;
  }
  int64_t stride = 1;
  for (int i = 1; i < nd; i++) stride *= shape[i];
  luaL_addchar(b, '{');
  for (int64_t i = 0; i < shape[0]; i++) {
    if (abbreviate && shape[0] > 6 && i == 3) {
      luaL_addstring(b, "...,");
      if (nd > 1) {
        luaL_addchar(b, '\n');
        for (int k = 0; k < indent + 1; k++) luaL_addchar(b, ' ');
      } else {
        luaL_addchar(b, ' ');
      }
      i = shape[0] - 3;
    }
    if (nd == 1) {
      format_number(num, sizeof num, d[i]);
      luaL_addstring(b, num);
    } else {
      format_values(b, d + i * stride, nd - 1, shape + 1, abbreviate, indent + 1);
    }
    if (i + 1 < shape[0]) {
      luaL_addchar(b, ',');
      if (nd > 1) {
        luaL_addchar(b, '\n');
        for (int k = 0; k < indent + 1; k++) luaL_addchar(b, ' ');
      } else {
        luaL_addchar(b, ' ');
      }
    }
  }
  luaL_addchar(b, '}');
}

static int m_tostring(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  luaL_Buffer b;
  char sh[160];
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "tensor(");
  format_values(&b, T_DATA(t), t->ndim, t->shape, t->numel > 1000, 8);
  luaL_addstring(&b, ", shape ");
  luaL_addstring(&b, t_shape_str(t, sh, sizeof sh));
  if (t->requires_grad) luaL_addstring(&b, t->grad_fn ? ", grad_fn " : ", requires_grad");
  if (t->grad_fn) luaL_addstring(&b, t->grad_fn->name);
  luaL_addchar(&b, ')');
  luaL_pushresult(&b);
  return 1;
}

static int m_gc(lua_State *L) {
  TensorBox *box = luaL_checkudata(L, 1, LT_TENSOR_MT);
  t_release(box->t);
  box->t = NULL;
  return 0;
}

static int l_is_tensor(lua_State *L) {
  lua_pushboolean(L, lt_test(L, 1) != NULL);
  return 1;
}

/* the flat offset of x[i1, i2, ...] (1-based; one index = flat position) */
static int64_t check_index(lua_State *L, Tensor *t, int first, int last, const char *fn) {
  int n = last - first + 1;
  if (n == 1) {
    lua_Integer i = luaL_checkinteger(L, first);
    if (i < 1 || i > t->numel)
      lt_argerror(L, first, fn, "flat index %lld outside 1..%lld", (long long)i, (long long)t->numel);
    return i - 1;
  }
  if (n != t->ndim) lt_argerror(L, first, fn, "expected 1 flat index or %d indices, got %d", t->ndim, n);
  int64_t off = 0;
  for (int k = 0; k < n; k++) {
    lua_Integer i = luaL_checkinteger(L, first + k);
    if (i < 1 || i > t->shape[k])
      lt_argerror(L, first + k, fn, "index %lld outside 1..%lld of dim %d", (long long)i,
                 (long long)t->shape[k], k + 1);
    off = off * t->shape[k] + (i - 1);
  }
  return off;
}

static int m_get(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  lua_pushnumber(L, T_DATA(t)[check_index(L, t, 2, lua_gettop(L), "get")]);
  return 1;
}

static int m_set(lua_State *L) { /* x:set(value, i...) */
  Tensor *t = lt_check(L, 1);
  float v = (float)luaL_checknumber(L, 2);
  if (t->grad_fn) return lt_argerror(L, 1, "set", "in-place change of a tensor computed by differentiable ops; detach() it first");
  T_DATA(t)[check_index(L, t, 3, lua_gettop(L), "set")] = v;
  lua_settop(L, 1);
  return 1;
}

/* ------------------------------------------------------------ arithmetic */

typedef Tensor *(*binary_op)(Tensor *, Tensor *);

/* a op b where either may be a number; numbers take the cheap scalar paths */
static int arith(lua_State *L, int op) {
  enter(L);
  Tensor *a = lt_test(L, 1), *b = lt_test(L, 2), *out = NULL;
  int na = lua_type(L, 1) == LUA_TNUMBER, nb = lua_type(L, 2) == LUA_TNUMBER;
  static const char *names[] = {"add", "sub", "mul", "div"};
  if (!a && !na) return lt_argerror(L, 1, names[op], "expected tensor or number, got %s", lt_typename(L, 1));
  if (!b && !nb) return lt_argerror(L, 2, names[op], "expected tensor or number, got %s", lt_typename(L, 2));
  if (!a && !b) return lt_argerror(L, 1, names[op], "expected a tensor on one side, got two numbers");
  if (a && b) {
    static const binary_op ops[] = {t_add, t_sub, t_mul, t_div};
    out = ops[op](a, b);
  } else if (a) {
    double s = lua_tonumber(L, 2);
    switch (op) {
      case 0: out = t_add_scalar(a, s); break;
      case 1: out = t_add_scalar(a, -s); break;
      case 2: out = t_mul_scalar(a, s); break;
      default: out = t_mul_scalar(a, 1.0 / s); break;
    }
  } else {
    double s = lua_tonumber(L, 1);
    switch (op) {
      case 0: out = t_add_scalar(b, s); break;
      case 1: out = t_rsub_scalar(b, s); break;
      case 2: out = t_mul_scalar(b, s); break;
      default: out = t_rdiv_scalar(b, s); break;
    }
  }
  lt_push(L, out);
  return 1;
}

static int m_add(lua_State *L) { return arith(L, 0); }
static int m_sub(lua_State *L) { return arith(L, 1); }
static int m_mul(lua_State *L) { return arith(L, 2); }
static int m_div(lua_State *L) { return arith(L, 3); }

static int m_pow(lua_State *L) {
  Tensor *a = lt_check(L, 1);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    lt_push(L, t_pow_scalar(a, lua_tonumber(L, 2)));
    return 1;
  }
  Tensor *b = lt_test(L, 2);
  if (!b) return luaL_typeerror(L, 2, "tensor or number");
  lt_push(L, t_pow(a, b));
  return 1;
}

#define UNARY(name, fn)                 \
  static int name(lua_State *L) {       \
    lt_push(L, fn(lt_check(L, 1)));     \
    return 1;                           \
  }
UNARY(m_neg, t_neg)
UNARY(m_exp, t_exp)
UNARY(m_log, t_log)
UNARY(m_sqrt, t_sqrt)
UNARY(m_abs, t_abs)
UNARY(m_sign, t_sign)
UNARY(m_relu, t_relu)
UNARY(m_sigmoid, t_sigmoid)
UNARY(m_tanh, t_tanh)

static int compare(lua_State *L, int op) {
  Tensor *a = lt_check(L, 1), *owned, *b = lt_check_tensor_or_number(L, 2, &owned);
  Tensor *out = t_compare(a, b, op);
  t_release(owned);
  lt_push(L, out);
  return 1;
}
static int m_eq(lua_State *L) { return compare(L, CMP_EQ); }
static int m_ne(lua_State *L) { return compare(L, CMP_NE); }
static int m_lt(lua_State *L) { return compare(L, CMP_LT); }
static int m_le(lua_State *L) { return compare(L, CMP_LE); }
static int m_gt(lua_State *L) { return compare(L, CMP_GT); }
static int m_ge(lua_State *L) { return compare(L, CMP_GE); }

/* ------------------------------------------------------------ reductions */

/* dims at index i: nil (all), a number, or a list; returns a bitmask */
static uint32_t check_dims(lua_State *L, int i, Tensor *t, const char *fn) {
  if (lua_isnoneornil(L, i)) return t->ndim ? (1u << t->ndim) - 1 : 0;
  if (lua_type(L, i) == LUA_TNUMBER) return 1u << lt_check_dim(L, i, t->ndim, fn);
  if (!lua_istable(L, i)) lt_argerror(L, i, fn, "expected dim or list of dims, got %s", lt_typename(L, i));
  uint32_t mask = 0;
  lua_Integer n = luaL_len(L, i);
  if (n > T_MAXDIM) /* (also bounds the loop when __len lies) */
    lt_argerror(L, i, fn, "expected at most %d dims, got a list of %lld", T_MAXDIM, (long long)n);
  for (lua_Integer k = 1; k <= n; k++) {
    lua_geti(L, i, k);
    mask |= 1u << check_dim_at(L, lua_gettop(L), i, t->ndim, fn);
    lua_pop(L, 1);
  }
  return mask;
}

static int m_sum(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  uint32_t dims = check_dims(L, 2, t, "sum");
  lt_push(L, t_sum(t, dims, lua_toboolean(L, 3)));
  return 1;
}

static int m_mean(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  uint32_t dims = check_dims(L, 2, t, "mean");
  lt_push(L, t_mean(t, dims, lua_toboolean(L, 3)));
  return 1;
}

static int m_var(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  uint32_t dims = check_dims(L, 2, t, "var");
  int unbiased = lua_isnoneornil(L, 4) ? 1 : lua_toboolean(L, 4);
  lt_push(L, t_var(t, dims, lua_toboolean(L, 3), unbiased));
  return 1;
}

static int m_max(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  if (lua_isnoneornil(L, 2)) {
    lt_push(L, t_max(t, -1, 0));
    return 1;
  }
  int d = lt_check_dim(L, 2, t->ndim, "max");
  int keep = lua_toboolean(L, 3);
  lt_push(L, t_max(t, d, keep));
  lt_push(L, t_argmax(t, d, keep));
  return 2;
}

static int m_argmax(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  int d = lua_isnoneornil(L, 2) ? -1 : lt_check_dim(L, 2, t->ndim, "argmax");
  lt_push(L, t_argmax(t, d, lua_toboolean(L, 3)));
  return 1;
}

static int m_matmul(lua_State *L) {
  Tensor *a = lt_check(L, 1), *b = lt_check(L, 2);
  lt_push(L, t_matmul(a, b));
  return 1;
}

/* ------------------------------------------------------------ shape ops */

/* shape at i, with one -1 inferred from numel */
static int check_view_shape(lua_State *L, int i, Tensor *t, int64_t *shape, const char *fn) {
  enter(L);
  if (lua_type(L, i) != LUA_TTABLE)
    return lt_argerror(L, i, fn, "expected shape table like {2, -1}, got %s", lt_typename(L, i));
  lua_Integer n = luaL_len(L, i);
  if (n > T_MAXDIM) return lt_argerror(L, i, fn, "expected at most %d dims", T_MAXDIM);
  int infer = -1;
  int64_t known = 1;
  for (lua_Integer k = 1; k <= n; k++) {
    lua_geti(L, i, k);
    int isnum = 0;
    lua_Integer v = lua_type(L, -1) == LUA_TNUMBER ? lua_tointegerx(L, -1, &isnum) : 0;
    lua_pop(L, 1);
    if (!isnum || v < -1 || (v == -1 && infer >= 0))
      return lt_argerror(L, i, fn, "expected sizes >= 0 and at most one -1, got entry %d", (int)k);
    shape[k - 1] = v;
    if (v == -1) infer = (int)k - 1;
    else if (v > 0) known = known > T_MAXNUMEL || v > T_MAXNUMEL ? T_MAXNUMEL + 1 : known * v; /* no overflow */
    else if (v == 0) known = 0;
  }
  char b1[160], b2[160];
  if (infer >= 0) {
    if (known == 0 || t->numel % known)
      return lt_argerror(L, i, fn, "cannot infer -1 reshaping %s", t_shape_str(t, b1, sizeof b1));
    shape[infer] = t->numel / known;
  }
  /* checked here so that the error names view or reshape, whichever was called */
  t_check_shape(fn, i, (int)n, shape);
  int64_t numel = 1;
  for (int k = 0; k < n; k++) numel *= shape[k];
  if (numel != t->numel)
    return lt_argerror(L, i, fn, "cannot reshape %s (%lld elements) to %s (%lld elements)",
                    t_shape_str(t, b1, sizeof b1), (long long)t->numel, t_shape_str2((int)n, shape, b2, sizeof b2),
                    (long long)numel);
  return (int)n;
}

static int m_reshape(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  int64_t shape[T_MAXDIM];
  int nd = check_view_shape(L, 2, t, shape, "reshape");
  lt_push(L, t_reshape(t, nd, shape));
  return 1;
}

static int m_view(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  int64_t shape[T_MAXDIM];
  int nd = check_view_shape(L, 2, t, shape, "view");
  lt_push(L, t_reshape(t, nd, shape));
  return 1;
}

static int m_transpose(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  int d0 = lt_check_dim(L, 2, t->ndim, "transpose"), d1 = lt_check_dim(L, 3, t->ndim, "transpose");
  lt_push(L, t_transpose(t, d0, d1));
  return 1;
}

static int m_permute(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  int perm[T_MAXDIM];
  luaL_checktype(L, 2, LUA_TTABLE);
  if (luaL_len(L, 2) != t->ndim)
    return lt_argerror(L, 2, "permute", "expected a permutation of %d dims, got %d entries", t->ndim,
                      (int)luaL_len(L, 2));
  for (int k = 0; k < t->ndim; k++) {
    lua_geti(L, 2, k + 1);
    perm[k] = check_dim_at(L, lua_gettop(L), 2, t->ndim, "permute");
    lua_pop(L, 1);
  }
  lt_push(L, t_permute(t, perm));
  return 1;
}

static int m_narrow(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  int d = lt_check_dim(L, 2, t->ndim, "narrow");
  lua_Integer start = luaL_checkinteger(L, 3), len = luaL_checkinteger(L, 4);
  if (start < 1 || len < 0 || start - 1 > t->shape[d] - len) /* (no overflow with a huge start or len) */
    return lt_argerror(L, 3, "narrow", "start %lld, length %lld: not within 1..%lld of dim %d",
                    (long long)start, (long long)len, (long long)t->shape[d], d + 1);
  lt_push(L, t_narrow(t, d, start - 1, len));
  return 1;
}

static int m_select(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  int d = lt_check_dim(L, 2, t->ndim, "select");
  lua_Integer i = luaL_checkinteger(L, 3);
  if (i < 0) i += t->shape[d] + 1;
  if (i < 1 || i > t->shape[d])
    return lt_argerror(L, 3, "select", "index %lld outside 1..%lld of dim %d", (long long)lua_tointeger(L, 3),
                      (long long)t->shape[d], d + 1);
  Tensor *n = t_narrow(t, d, i - 1, 1);
  int64_t shape[T_MAXDIM];
  int nd = 0;
  for (int k = 0; k < t->ndim; k++)
    if (k != d) shape[nd++] = t->shape[k];
  Tensor *r = t_reshape(n, nd, shape);
  t_release(n);
  lt_push(L, r);
  return 1;
}

static int m_flatten(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  int start = lua_isnoneornil(L, 2) ? 0 : (t->ndim ? lt_check_dim(L, 2, t->ndim, "flatten") : 0);
  int64_t shape[T_MAXDIM];
  int nd = 0;
  for (int k = 0; k < start; k++) shape[nd++] = t->shape[k];
  int64_t rest = 1;
  for (int k = start; k < t->ndim; k++) rest *= t->shape[k];
  shape[nd++] = rest;
  lt_push(L, t_reshape(t, nd, shape));
  return 1;
}

static int m_unsqueeze(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  if (t->ndim >= T_MAXDIM) return lt_argerror(L, 1, "unsqueeze", "already %d dims", T_MAXDIM);
  int d = lt_check_dim(L, 2, t->ndim + 1, "unsqueeze");
  int64_t shape[T_MAXDIM];
  for (int k = 0, j = 0; k <= t->ndim; k++) shape[k] = k == d ? 1 : t->shape[j++];
  lt_push(L, t_reshape(t, t->ndim + 1, shape));
  return 1;
}

static int m_squeeze(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  int only = lua_isnoneornil(L, 2) ? -1 : lt_check_dim(L, 2, t->ndim, "squeeze");
  int64_t shape[T_MAXDIM];
  int nd = 0;
  for (int k = 0; k < t->ndim; k++)
    if (!(t->shape[k] == 1 && (only < 0 || only == k))) shape[nd++] = t->shape[k];
  lt_push(L, t_reshape(t, nd, shape));
  return 1;
}

static int m_expand(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  int64_t shape[T_MAXDIM];
  int nd = lt_check_shape(L, 2, shape, "expand");
  lt_push(L, t_expand(t, nd, shape));
  return 1;
}

static int m_clone(lua_State *L) {
  lt_push(L, t_contiguous_copy(lt_check(L, 1)));
  return 1;
}

static int m_contiguous(lua_State *L) {
  lt_push(L, t_retain(lt_check(L, 1))); /* always contiguous */
  return 1;
}

/* a Lua list of tensors at index i into a malloc'd array (in a userdata) */
static Tensor **check_tensor_list(lua_State *L, int i, int *n, const char *fn) {
  enter(L);
  if (!lua_istable(L, i)) lt_argerror(L, i, fn, "expected a list of tensors, got %s", lt_typename(L, i));
  lua_Integer len = luaL_len(L, i);
  if (len < 1 || len > (1 << 24)) lt_argerror(L, i, fn, "expected a non-empty list of tensors");
  Tensor **ts = lua_newuserdatauv(L, (size_t)len * sizeof *ts, 0);
  for (lua_Integer k = 1; k <= len; k++) {
    lua_geti(L, i, k);
    ts[k - 1] = lt_test(L, -1);
    if (!ts[k - 1])
      lt_argerror(L, i, fn, "expected a tensor at position %d, got %s", (int)k, lt_typename(L, -1));
    lua_pop(L, 1);
  }
  *n = (int)len;
  return ts; /* kept alive by the userdata on the stack */
}

static int l_cat(lua_State *L) {
  int n;
  lua_settop(L, 2); /* the list's scratch userdata goes to 3, not into the dim's slot */
  Tensor **ts = check_tensor_list(L, 1, &n, "cat");
  int d = lua_isnoneornil(L, 2) ? 0 : lt_check_dim(L, 2, ts[0]->ndim, "cat");
  lt_push(L, t_cat(n, ts, d));
  return 1;
}

static int l_stack(lua_State *L) {
  int n;
  lua_settop(L, 2); /* the list's scratch userdata goes to 3, not into the dim's slot */
  Tensor **ts = check_tensor_list(L, 1, &n, "stack");
  int nd = ts[0]->ndim;
  if (nd >= T_MAXDIM) return lt_argerror(L, 1, "stack", "tensors already have %d dims", T_MAXDIM);
  int d = lua_isnoneornil(L, 2) ? 0 : lt_check_dim(L, 2, nd + 1, "stack");
  char b1[160], b2[160];
  for (int k = 1; k < n; k++)
    if (!t_same_shape(ts[k], ts[0]))
      return lt_argerror(L, 1, "stack", "tensor %d has shape %s, expected %s like tensor 1", k + 1,
                        t_shape_str(ts[k], b1, sizeof b1), t_shape_str(ts[0], b2, sizeof b2));
  int64_t shape[T_MAXDIM];
  for (int k = 0, j = 0; k <= nd; k++) shape[k] = k == d ? 1 : ts[0]->shape[j++];
  Tensor **us = lua_newuserdatauv(L, (size_t)n * sizeof *us, 0);
  for (int k = 0; k < n; k++) us[k] = t_reshape(ts[k], nd + 1, shape);
  Tensor *out = t_cat(n, us, d);
  for (int k = 0; k < n; k++) t_release(us[k]);
  lt_push(L, out);
  return 1;
}

/* ------------------------------------------------------------ in place */

static Tensor *check_inplace(lua_State *L, const char *fn) {
  Tensor *t = lt_check(L, 1);
  if (t->grad_fn)
    lt_argerror(L, 1, fn, "in-place change of a tensor computed by differentiable ops; detach() it first");
  return t;
}

static Tensor *check_same(lua_State *L, int i, Tensor *t, const char *fn) {
  Tensor *s = lt_check(L, i);
  char b1[160], b2[160];
  if (s->numel != t->numel || (!t_same_shape(s, t) && s->numel != 1))
    lt_argerror(L, i, fn, "expected shape %s, got %s", t_shape_str(t, b1, sizeof b1),
               t_shape_str(s, b2, sizeof b2));
  return s;
}

static int m_copy_(lua_State *L) {
  Tensor *t = check_inplace(L, "copy_"), *s = check_same(L, 2, t, "copy_");
  if (T_DATA(s) != T_DATA(t)) memmove(T_DATA(t), T_DATA(s), (size_t)t->numel * sizeof(float));
  lua_settop(L, 1);
  return 1;
}

static int m_fill_(lua_State *L) {
  Tensor *t = check_inplace(L, "fill_");
  float v = (float)luaL_checknumber(L, 2);
  float *d = T_DATA(t);
  for (int64_t i = 0; i < t->numel; i++) d[i] = v;
  lua_settop(L, 1);
  return 1;
}

static int m_zero_(lua_State *L) {
  Tensor *t = check_inplace(L, "zero_");
  memset(T_DATA(t), 0, (size_t)t->numel * sizeof(float));
  lua_settop(L, 1);
  return 1;
}

static int m_add_(lua_State *L) { /* t += alpha * y, y a tensor or a number */
  Tensor *t = check_inplace(L, "add_");
  float *d = T_DATA(t);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    float v = (float)lua_tonumber(L, 2);
    for (int64_t i = 0; i < t->numel; i++) d[i] += v;
  } else {
    Tensor *y = check_same(L, 2, t, "add_");
    float alpha = (float)luaL_optnumber(L, 3, 1.0);
    const float *s = T_DATA(y);
    for (int64_t i = 0; i < t->numel; i++) d[i] += alpha * s[i];
  }
  lua_settop(L, 1);
  return 1;
}

static int m_mul_(lua_State *L) {
  Tensor *t = check_inplace(L, "mul_");
  float *d = T_DATA(t);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    float v = (float)lua_tonumber(L, 2);
    for (int64_t i = 0; i < t->numel; i++) d[i] *= v;
  } else {
    const float *s = T_DATA(check_same(L, 2, t, "mul_"));
    for (int64_t i = 0; i < t->numel; i++) d[i] *= s[i];
  }
  lua_settop(L, 1);
  return 1;
}

static int m_addcmul_(lua_State *L) { /* t += v * a * b */
  Tensor *t = check_inplace(L, "addcmul_");
  const float *a = T_DATA(check_same(L, 2, t, "addcmul_")), *b = T_DATA(check_same(L, 3, t, "addcmul_"));
  float v = (float)luaL_optnumber(L, 4, 1.0);
  float *d = T_DATA(t);
  for (int64_t i = 0; i < t->numel; i++) d[i] += v * a[i] * b[i];
  lua_settop(L, 1);
  return 1;
}

static int m_addcdiv_(lua_State *L) { /* t += v * a / b */
  Tensor *t = check_inplace(L, "addcdiv_");
  const float *a = T_DATA(check_same(L, 2, t, "addcdiv_")), *b = T_DATA(check_same(L, 3, t, "addcdiv_"));
  float v = (float)luaL_optnumber(L, 4, 1.0);
  float *d = T_DATA(t);
  for (int64_t i = 0; i < t->numel; i++) d[i] += v * a[i] / b[i];
  lua_settop(L, 1);
  return 1;
}

/* ------------------------------------------------------------ autograd flags */

static int m_requires_grad(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  if (lua_isnone(L, 2)) {
    lua_pushboolean(L, t->requires_grad);
    return 1;
  }
  luaL_checktype(L, 2, LUA_TBOOLEAN);
  int on = lua_toboolean(L, 2);
  if (t->grad_fn && !on)
    return lt_argerror(L, 1, "requires_grad", "a tensor computed by differentiable ops cannot stop requiring grad; use detach()");
  if (!t->grad_fn) t->requires_grad = on;
  lua_settop(L, 1);
  return 1;
}

static int m_detach(lua_State *L) {
  lt_push(L, t_detach(lt_check(L, 1)));
  return 1;
}

static int m_is_leaf(lua_State *L) {
  lua_pushboolean(L, lt_check(L, 1)->grad_fn == NULL);
  return 1;
}

static int m_grad_fn(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  if (t->grad_fn) lua_pushstring(L, t->grad_fn->name);
  else lua_pushnil(L);
  return 1;
}

/* ------------------------------------------------------------ network pieces */

/* labels at index i: a tensor of 1-based classes or a Lua list of at most
** `most` (a longer list is an error before allocating, even when its __len
** lies); the array lives in a userdata left on the stack */
static int64_t *check_labels(lua_State *L, int i, int64_t most, int64_t *n, const char *fn) {
  Tensor *t = lt_test(L, i);
  if (t) {
    *n = t->numel;
    int64_t *out = lua_newuserdatauv(L, (size_t)(*n ? *n : 1) * sizeof *out, 0);
    const float *d = T_DATA(t);
    for (int64_t k = 0; k < *n; k++) {
      if (!(fabsf(d[k]) <= 1e15f) || d[k] != floorf(d[k])) /* (also NaN; no undefined cast to int64) */
        lt_argerror(L, i, fn, "label %g at position %lld is not an integer class",
                 isnan(d[k]) ? (double)NAN : (double)d[k], (long long)k + 1);
      out[k] = (int64_t)d[k];
    }
    return out;
  }
  if (!lua_istable(L, i)) lt_argerror(L, i, fn, "expected labels as a tensor or a list, got %s", lt_typename(L, i));
  *n = luaL_len(L, i);
  if (*n > most)
    lt_argerror(L, i, fn, "expected at most %lld labels, got a list of %lld", (long long)most,
             (long long)*n);
  int64_t *out = lua_newuserdatauv(L, (size_t)(*n > 0 ? *n : 1) * sizeof *out, 0);
  for (int64_t k = 0; k < *n; k++) {
    lua_geti(L, i, k + 1);
    int isnum = 0;
    lua_Integer v = lua_type(L, -1) == LUA_TNUMBER ? lua_tointegerx(L, -1, &isnum) : 0;
    if (!isnum && lua_type(L, -1) == LUA_TNUMBER)
      lt_argerror(L, i, fn, "expected integer labels, got %g at position %lld", lua_tonumber(L, -1),
               (long long)k + 1);
    if (!isnum) lt_argerror(L, i, fn, "expected integer labels, got %s at position %lld", lt_typename(L, -1), (long long)k + 1);
    out[k] = v;
    lua_pop(L, 1);
  }
  return out;
}

/* at most one label per logit (at least 65536, so that the op itself says
** what is wrong with empty or tiny logits) */
static int64_t most_labels(const Tensor *logits) { return logits->numel > 65536 ? logits->numel : 65536; }

static int l_cross_entropy(lua_State *L) {
  Tensor *x = lt_check(L, 1);
  int64_t n;
  int64_t *labels = check_labels(L, 2, most_labels(x), &n, "cross_entropy");
  lt_push(L, t_cross_entropy(x, labels, n));
  return 1;
}

static int l_accuracy(lua_State *L) {
  Tensor *x = lt_check(L, 1);
  int64_t n;
  int64_t *labels = check_labels(L, 2, most_labels(x), &n, "accuracy");
  lua_pushnumber(L, t_accuracy(x, labels, n));
  return 1;
}

static Tensor *opt_tensor(lua_State *L, int i, const char *fn) {
  if (lua_isnoneornil(L, i)) return NULL;
  Tensor *t = lt_test(L, i);
  if (!t) lt_argerror(L, i, fn, "expected tensor or nil, got %s", lt_typename(L, i));
  return t;
}

static int l_linear(lua_State *L) {
  Tensor *x = lt_check(L, 1), *w = lt_check(L, 2), *b = opt_tensor(L, 3, "linear");
  lt_push(L, t_linear(x, w, b));
  return 1;
}

static int l_log_softmax(lua_State *L) {
  Tensor *x = lt_check(L, 1);
  lt_push(L, t_log_softmax(x, lt_check_dim(L, 2, x->ndim, "log_softmax")));
  return 1;
}

static int l_softmax(lua_State *L) {
  Tensor *x = lt_check(L, 1);
  lt_push(L, t_softmax(x, lt_check_dim(L, 2, x->ndim, "softmax")));
  return 1;
}

static int l_mse_loss(lua_State *L) {
  Tensor *a = lt_check(L, 1), *b = lt_check(L, 2);
  lt_push(L, t_mse_loss(a, b));
  return 1;
}

static const char *const batch_norm_options[] = {"running_mean", "running_var", "training", "momentum", "eps", NULL};

static int l_batch_norm(lua_State *L) {
  Tensor *x = lt_check(L, 1), *w = opt_tensor(L, 2, "batch_norm"), *b = opt_tensor(L, 3, "batch_norm");
  BatchNormOpts o = {NULL, NULL, 1, 0.1, 1e-5};
  if (lt_check_options(L, 4, "batch_norm", batch_norm_options)) {
    o.running_mean = lt_opt_tensor(L, 4, "batch_norm", "running_mean"); /* the options table keeps them alive */
    o.running_var = lt_opt_tensor(L, 4, "batch_norm", "running_var");
    o.training = lt_opt_boolean(L, 4, "batch_norm", "training", 1);
    if (!o.running_mean != !o.running_var)
      return lt_argerror(L, 4, "batch_norm", "give both running_mean and running_var, or neither");
    o.momentum = lt_opt_number(L, 4, "batch_norm", "momentum", 0.1, 0.0, 1.0);
    o.eps = lt_opt_number(L, 4, "batch_norm", "eps", 1e-5, 0.0, 1.0);
  }
  lt_push(L, t_batch_norm(x, w, b, &o));
  return 1;
}

/* ------------------------------------------------------------ serialisation */

static const char TENSOR_MAGIC[4] = {'M', 'R', 'T', '1'};

static int l_serialize(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addlstring(&b, TENSOR_MAGIC, 4);
  uint32_t nd = (uint32_t)t->ndim;
  luaL_addlstring(&b, (const char *)&nd, sizeof nd);
  luaL_addlstring(&b, (const char *)t->shape, (size_t)t->ndim * sizeof(int64_t));
  luaL_addlstring(&b, (const char *)T_DATA(t), (size_t)t->numel * sizeof(float));
  luaL_pushresult(&b);
  return 1;
}

static int l_deserialize(lua_State *L) {
  enter(L);
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  uint32_t nd;
  if (len < 8 || memcmp(s, TENSOR_MAGIC, 4))
    return lt_argerror(L, 1, "deserialize", "not a serialized tensor: bad magic");
  memcpy(&nd, s + 4, sizeof nd);
  if (nd > T_MAXDIM) return lt_argerror(L, 1, "deserialize", "corrupt: %u dims", nd);
  if (len < 8 + nd * sizeof(int64_t)) return lt_argerror(L, 1, "deserialize", "truncated header");
  int64_t shape[T_MAXDIM];
  memcpy(shape, s + 8, nd * sizeof(int64_t));
  for (uint32_t i = 0; i < nd; i++)
    if (shape[i] < 0 || shape[i] > T_MAXNUMEL) return lt_argerror(L, 1, "deserialize", "corrupt shape");
  t_check_shape("deserialize", 1, (int)nd, shape);
  int64_t numel = 1;
  for (uint32_t i = 0; i < nd; i++) numel *= shape[i];
  size_t need = 8 + nd * sizeof(int64_t) + (size_t)numel * sizeof(float);
  if (len != need)
    return lt_argerror(L, 1, "deserialize", "expected %zu bytes for shape, got %zu", need, len);
  Tensor *t = t_new((int)nd, shape);
  memcpy(T_DATA(t), s + 8 + nd * sizeof(int64_t), (size_t)numel * sizeof(float));
  lt_push(L, t);
  return 1;
}

static int l_crc32(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_pushinteger(L, crc32_ieee(0, s, len));
  return 1;
}

/* T.mkdir_p(folder): mkdir -p (sys_mkdir_p) */
static int l_mkdir_p(lua_State *L) {
  const char *folder = luaL_checkstring(L, 1);
  if (sys_mkdir_p(folder) != 0) return lt_error(L, "cannot create the folder %s: %s", folder, strerror(errno));
  return 0;
}

/* T.write_atomic(path, data): see sys_write_atomic */
static int l_write_atomic(lua_State *L) {
  size_t len;
  const char *path = luaL_checkstring(L, 1);
  const void *data = luaL_checklstring(L, 2, &len);
  char err[PATH_MAX + 128];
  if (sys_write_atomic(path, 1, &data, &len, err, sizeof err) != 0)
    return lt_error(L, "write_atomic: %s (the previous file is unchanged)", err);
  return 0;
}

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

/* ------------------------------------------------------------ registration */

static const luaL_Reg tensor_methods[] = {
    {"shape", m_shape},         {"size", m_size},           {"dim", m_dim},
    {"numel", m_numel},         {"item", m_item},           {"totable", m_totable},
    {"add", m_add},             {"sub", m_sub},             {"mul", m_mul},
    {"div", m_div},             {"pow", m_pow},             {"neg", m_neg},
    {"exp", m_exp},             {"log", m_log},             {"sqrt", m_sqrt},
    {"abs", m_abs},             {"sign", m_sign},           {"relu", m_relu},
    {"sigmoid", m_sigmoid},     {"tanh", m_tanh},           {"eq", m_eq},
    {"ne", m_ne},               {"lt", m_lt},               {"le", m_le},
    {"gt", m_gt},               {"ge", m_ge},               {"sum", m_sum},
    {"mean", m_mean},           {"var", m_var},             {"max", m_max},
    {"argmax", m_argmax},       {"matmul", m_matmul},       {"reshape", m_reshape},
    {"view", m_view},           {"transpose", m_transpose}, {"permute", m_permute},
    {"narrow", m_narrow},       {"select", m_select},       {"flatten", m_flatten},
    {"unsqueeze", m_unsqueeze}, {"squeeze", m_squeeze},     {"expand", m_expand},
    {"clone", m_clone},         {"contiguous", m_contiguous}, {"copy_", m_copy_},
    {"fill_", m_fill_},         {"zero_", m_zero_},         {"add_", m_add_},
    {"mul_", m_mul_},           {"addcmul_", m_addcmul_},   {"addcdiv_", m_addcdiv_},
    {"requires_grad", m_requires_grad}, {"detach", m_detach}, {"is_leaf", m_is_leaf},
    {"grad_fn", m_grad_fn},     {"get", m_get},             {"set", m_set},
    {NULL, NULL}};

static const luaL_Reg tensor_functions[] = {
    {"tensor", l_tensor},         {"zeros", l_zeros},         {"ones", l_ones},
    {"full", l_full},             {"arange", l_arange},       {"randn", l_randn},
    {"rand", l_rand},             {"generator", l_generator}, {"manual_seed", l_manual_seed},
    {"default_generator", l_default_generator}, {"is_tensor", l_is_tensor}, {"cat", l_cat},
    {"stack", l_stack},           {"cross_entropy", l_cross_entropy}, {"accuracy", l_accuracy},
    {"linear", l_linear},         {"log_softmax", l_log_softmax}, {"softmax", l_softmax},
    {"mse_loss", l_mse_loss},     {"batch_norm", l_batch_norm}, {"serialize", l_serialize},
    {"deserialize", l_deserialize}, {"crc32", l_crc32},       {"write_atomic", l_write_atomic}, {"mkdir_p", l_mkdir_p},
    {"memory", l_memory},         {"flops", l_flops},         {"reset_peak_memory", l_reset_peak_memory}, {NULL, NULL}};

/* methods that are also module functions: T.exp(x) == x:exp() */
static const char *const method_functions[] = {"add", "sub", "mul", "div", "pow", "neg", "exp", "log", "sqrt", "abs",
                                               "sign", "relu", "sigmoid", "tanh", "sum", "mean", "var", "max",
                                               "argmax", "matmul", "reshape", "view", "transpose", "permute",
                                               "narrow", "select", "flatten", "unsqueeze", "squeeze", "expand",
                                               "clone", "detach", "eq", "ne", "lt", "le", "gt", "ge", NULL};

extern void openblas_set_num_threads(int);

int luaopen_tensor(lua_State *L) {
  enter(L);
  /* MAML's GEMMs are small: OpenBLAS threads only cost time, and the
  ** parallel module splits work by task. OPENBLAS_NUM_THREADS still wins. */
  if (!getenv("OPENBLAS_NUM_THREADS")) openblas_set_num_threads(1);
  luaL_newlib(L, tensor_functions); /* module */
  int module = lua_gettop(L);
  luaL_newlib(L, tensor_methods); /* methods */
  int methods = lua_gettop(L);
  lt_open_nn(L, module, methods);
  for (int i = 0; method_functions[i]; i++) {
    lua_getfield(L, methods, method_functions[i]);
    lua_setfield(L, module, method_functions[i]);
  }
  if (luaL_newmetatable(L, LT_TENSOR_MT)) {
    lua_pushvalue(L, methods);
    lua_setfield(L, -2, "__index");
    static const luaL_Reg meta[] = {{"__add", m_add},     {"__sub", m_sub}, {"__mul", m_mul},
                                    {"__div", m_div},     {"__unm", m_neg}, {"__pow", m_pow}, {"__tostring", m_tostring},
                                    {"__gc", m_gc},       {"__close", m_gc}, {NULL, NULL}};
    luaL_setfuncs(L, meta, 0);
    lua_pushliteral(L, "tensor");
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, LT_GENERATOR_MT)) {
    luaL_newlib(L, generator_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, g_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "generator");
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
  lua_pushvalue(L, methods);
  lua_setfield(L, module, "methods"); /* for Lua extensions of the tensor type */
  lua_settop(L, module);
  return 1;
}
