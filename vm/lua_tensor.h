/*
** lua_tensor.h: the bridge between Tensor and Lua userdata, for every
** binding file (tensor, autograd, nn ops, omniglot).
*/
#ifndef MAMLRUN_LUA_TENSOR_H
#define MAMLRUN_LUA_TENSOR_H

#include <lua.h>
#include <lauxlib.h>
#include "tensor.h"

#define LT_TENSOR_MT "mamlrun.Tensor"
#define LT_GENERATOR_MT "mamlrun.Generator"

/* push t as a Lua tensor, taking over the caller's reference */
void lt_push(lua_State *L, Tensor *t);
/* the tensor at index i, or a "bad argument #i (expected tensor, got X)" error */
Tensor *lt_check(lua_State *L, int i);
/* the type of the value at index i for messages: its metatable's __name if
** any ("tensor"), else luaL_typename ("userdata" would say nothing) */
const char *lt_typename(lua_State *L, int i);
/* the tensor at index i if it is one, else NULL */
Tensor *lt_test(lua_State *L, int i);
/* a tensor argument that may also be a number (converted to a 0-d tensor,
** a new reference stored in *owned, which the caller releases) */
Tensor *lt_check_tensor_or_number(lua_State *L, int i, Tensor **owned);
/* a shape given as a Lua table {d1, d2, ...} (or as numbers from i on when
** varargs is set); returns ndim */
int lt_check_shape(lua_State *L, int i, int64_t *shape, const char *fn);
/* a 1-based Lua dim (negative counts from the end) to a 0-based C dim */
int lt_check_dim(lua_State *L, int i, int ndim, const char *fn);
/* the generator at index i, or the default one when i is none/nil */
Generator *lt_opt_generator(lua_State *L, int i);
/* set the field name of the table at the top to a C function table */
void lt_register(lua_State *L, const luaL_Reg *funcs);

/* module openers (package.preload entries, see vm/main.c) */
int luaopen_tensor(lua_State *L);
int luaopen_autograd(lua_State *L);
int luaopen_omniglot(lua_State *L);
int luaopen_parallel(lua_State *L);
int luaopen_mpi(lua_State *L); /* vm/lua_mpi.c */

/* end MPI at exit (vm/lua_mpi.c): finalize after status 0, else abort every
** rank; nothing when MPI was not started */
void mpi_shutdown(int status);

/* extra op families register their functions into the tensor module table
** at the top of the stack, and methods into the tensor metatable's method
** table (second argument index) */
void lt_open_nn(lua_State *L, int module, int methods);

#endif
