/*
** lua_tensor.h: the bridge between Tensor and Lua userdata, for every
** binding file (tensor, autograd, nn ops, omniglot).
*/
#ifndef MAMLRUN_LUA_TENSOR_H
#define MAMLRUN_LUA_TENSOR_H

#include <lauxlib.h>
#include <lua.h>
#include "tensor.h"

#define LT_TENSOR_MT "mamlrun.Tensor"
#define LT_GENERATOR_MT "mamlrun.Generator"

/* make t_error raise in L: every binding that calls ops does it first (lt_check and lt_push do) */
void lt_enter(lua_State *L);
/* __gc and __close of a tensor: release its reference */
int lt_tensor_gc(lua_State *L);
/* __tostring of a tensor (vm/lua_print.c) */
int lt_tostring(lua_State *L);
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
/* the same for the value at stack index idx, reported as argument arg (an
** entry of a list of dims belongs to the list's argument) */
int lt_check_dim_at(lua_State *L, int idx, int arg, int ndim, const char *fn);
/* the generator at index i, or a "bad argument" error */
Generator *lt_check_generator(lua_State *L, int i);
/* the generator at index i, or the default one when i is none/nil */
Generator *lt_opt_generator(lua_State *L, int i);
/* luaL_setfuncs into the table at index table (which stays where it is) */
void lt_setfuncs(lua_State *L, int table, const luaL_Reg *funcs);
/* bytes of scratch memory owned by a userdata pushed on the stack, so that an
** error cannot leak them (at least 1 byte) */
void *lt_scratch(lua_State *L, size_t bytes);

/* ---- argument checking (vm/lua_check.c), one form for every binding */

/* luaL_error with C printf formats (%lld, %zu, %g: lua_pushfstring has none) */
int lt_error(lua_State *L, const char *fmt, ...) T_PRINTF(2, 3);
/* raise "bad argument #arg to 'fn' (detail)", detail with C printf formats */
int lt_argerror(lua_State *L, int arg, const char *fn, const char *fmt, ...) T_PRINTF(4, 5);
/* the options table at arg: 0 when none or nil, 1 when a table whose keys
** are all in valid[] (NULL-terminated); anything else is an error naming fn,
** the key and the valid keys, so a typo like {creat_graph=true} is refused */
int lt_check_options(lua_State *L, int arg, const char *fn, const char *const valid[]);
/* options[key] of the table at arg (checked by lt_check_options, or none/nil),
** def when absent; a value of another type or out of range is an error */
int lt_opt_boolean(lua_State *L, int arg, const char *fn, const char *key, int def);
lua_Integer lt_opt_integer(lua_State *L, int arg, const char *fn, const char *key, lua_Integer def, lua_Integer lo,
                           lua_Integer hi);
double lt_opt_number(lua_State *L, int arg, const char *fn, const char *key, double def, double lo, double hi);
Tensor *lt_opt_tensor(lua_State *L, int arg, const char *fn, const char *key); /* NULL when absent */
const char *lt_opt_string(lua_State *L, int arg, const char *fn, const char *key, const char *def);

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
/* the parts of the tensor module, each from its file: module functions into
** the table at module, methods into the table at methods */
void lt_open_construct(lua_State *L, int module); /* vm/lua_construct.c */
void lt_open_generator(lua_State *L, int module); /* vm/lua_generator.c, with its metatable */
void lt_open_inplace(lua_State *L, int methods); /* vm/lua_inplace.c */
void lt_open_io(lua_State *L, int module); /* vm/lua_io.c */
void lt_open_memory(lua_State *L, int module); /* vm/lua_memory.c */
/* the image functions of the omniglot module (vm/lua_image.c) into the table at module */
void lt_open_image(lua_State *L, int module);

#endif
