/*
** lua_io.c: what checkpoints need of the tensor module: the bytes of a tensor
** (T.serialize, T.deserialize), their checksum (T.crc32, CRC-32 of
** vm/checksum.c), atomic file writes (T.write_atomic) and folders (T.mkdir_p, T.dir_creatable),
** on vm/sys.c.
*/
#include <errno.h>
#include <limits.h>
#include <string.h>

#include "checksum.h"
#include "lua_tensor.h"
#include "sys.h"

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
  lt_enter(L);
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
  if (len != need) return lt_argerror(L, 1, "deserialize", "expected %zu bytes for shape, got %zu", need, len);
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

/* T.dir_creatable(folder): true, or false and "cannot create the folder <folder>: <why>" (sys_dir_creatable) */
static int l_dir_creatable(lua_State *L) {
  const char *folder = luaL_checkstring(L, 1);
  if (sys_dir_creatable(folder) == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_pushfstring(L, "cannot create the folder %s: %s", folder, strerror(errno));
  return 2;
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

static const luaL_Reg io_functions[] = {{"serialize", l_serialize}, {"deserialize", l_deserialize},
                                        {"crc32", l_crc32},         {"write_atomic", l_write_atomic},
                                        {"mkdir_p", l_mkdir_p},     {"dir_creatable", l_dir_creatable},
                                        {NULL, NULL}};

void lt_open_io(lua_State *L, int module) { lt_setfuncs(L, module, io_functions); }
