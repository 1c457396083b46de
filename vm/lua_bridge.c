/*
** lua_bridge.c: tensors as Lua values. A tensor is a full userdata holding one
** reference to a C Tensor (LT_TENSOR_MT); the collector releases it, and
** tensor memory paces the collections. t_error in a C op raises the Lua error
** of the state whose binding is running (lt_enter).
*/
#include "lua_tensor.h"

/* the state whose C function is running: t_error raises the Lua error there */
static _Thread_local lua_State *current_L;

static void lua_error_handler(const char *msg) {
  lua_State *L = current_L;
  lt_error(L, "%s", msg);
}

void lt_enter(lua_State *L) {
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
  lt_enter(L);
  int64_t allocated = t_thread_allocated_bytes();
  if (allocated - allocated_at_gc > GC_BUDGET && allocated - allocated_at_gc > (int64_t)lua_gc(L, LUA_GCCOUNT) * 1024) {
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
  lt_enter(L);
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

void lt_setfuncs(lua_State *L, int table, const luaL_Reg *funcs) {
  lua_pushvalue(L, table);
  luaL_setfuncs(L, funcs, 0);
  lua_pop(L, 1);
}

void *lt_scratch(lua_State *L, size_t bytes) { return lua_newuserdatauv(L, bytes ? bytes : 1, 0); }

int lt_tensor_gc(lua_State *L) {
  TensorBox *box = luaL_checkudata(L, 1, LT_TENSOR_MT);
  t_release(box->t);
  box->t = NULL;
  return 0;
}
