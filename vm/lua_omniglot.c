/*
** lua_omniglot.c: the `omniglot` Lua module: the loader (vm/omniglot.c) and
** the gather of task images; the image functions of the module (read_png,
** write_png, resize, tile) are vm/lua_image.c.
**
**   omniglot.load(root [, opts]) / omniglot.load{root=, cache=, size=, ...}
**   omniglot.gather(images, classes, indices [, rotations [, lead_shape]])
*/
#include <limits.h>
#include <string.h>

#include "image.h"
#include "lua_tensor.h"
#include "omniglot.h"

/* omniglot.load(root [, opts]) or omniglot.load(opts) with opts.root
** opts: size=28, cache=path|nil, pil_exact=false, images_per_class=0, threads=0 */
static const char *const load_options[] = {"root", "size", "cache", "pil_exact", "images_per_class", "threads", NULL};
static const char *const load_options_after_root[] = {"size",    "cache", "pil_exact", "images_per_class",
                                                      "threads", NULL};

static int l_load(lua_State *L) {
  int opts = lua_type(L, 1) == LUA_TTABLE ? 1 : 2;
  const char *root = opts == 1 ? NULL : luaL_checkstring(L, 1);
  OmOptions o;
  om_default_options(&o);
  if (lt_check_options(L, opts, "load", opts == 1 ? load_options : load_options_after_root)) {
    if (opts == 1) root = lt_opt_string(L, 1, "load", "root", NULL);
    o.size = (int)lt_opt_integer(L, opts, "load", "size", OM_DEFAULT_SIZE, 1, 4096);
    o.images_per_class = (int)lt_opt_integer(L, opts, "load", "images_per_class", 0, 0, INT_MAX);
    o.threads = (int)lt_opt_integer(L, opts, "load", "threads", 0, 0, INT_MAX);
    o.pil_exact = lt_opt_boolean(L, opts, "load", "pil_exact", 0);
    lua_getfield(L, opts, "cache");
    if (lua_type(L, -1) == LUA_TSTRING) o.cache = lua_tostring(L, -1); /* the options table keeps it alive */
    else if (!lua_isnil(L, -1) && !(lua_isboolean(L, -1) && !lua_toboolean(L, -1)))
      return lt_argerror(L, opts, "load", "option 'cache' must be a path or false, got %s", lt_typename(L, -1));
    lua_pop(L, 1);
  }
  if (!root && !o.cache) return lt_argerror(L, 1, "load", "expected root folder or {root=, cache=}, got neither");
  if (root && !om_has_set_dirs(root))
    return luaL_argerror(
        L, 1, lua_pushfstring(L, "expected directory with images_background/ and images_evaluation/, got '%s'", root));
  OmDataset ds;
  char err[700];
  if (om_load(root, &o, &ds, err, sizeof err) != 0) return luaL_error(L, "load: %s", err);

  lua_createtable(L, 0, 14);
  lt_push(L, ds.images);
  ds.images = NULL;
  lua_setfield(L, -2, "images");
  const char *fields[3] = {"alphabets", "characters", "sets"};
  for (int f = 0; f < 3; f++) {
    lua_createtable(L, ds.nclasses, 0);
    for (int i = 0; i < ds.nclasses; i++) {
      const OmClass *k = &ds.classes[i];
      lua_pushstring(L, f == 0 ? k->alphabet : f == 1 ? k->character : om_set_names[k->set]);
      lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, fields[f]);
  }
  lua_pushinteger(L, ds.nclasses);
  lua_setfield(L, -2, "num_classes");
  lua_pushinteger(L, ds.per_class);
  lua_setfield(L, -2, "images_per_class");
  lua_pushinteger(L, ds.size);
  lua_setfield(L, -2, "size");
  lua_pushboolean(L, ds.pil_exact);
  lua_setfield(L, -2, "pil_exact");
  if (root) {
    lua_pushstring(L, root);
    lua_setfield(L, -2, "root");
  }
  if (o.cache) {
    lua_pushstring(L, o.cache);
    lua_setfield(L, -2, "cache");
  }
  lua_pushstring(L, ds.cache_status);
  lua_setfield(L, -2, "cache_status");
  if (ds.cache_error[0]) {
    lua_pushstring(L, ds.cache_error);
    lua_setfield(L, -2, "cache_error");
  }
  char fp[20];
  snprintf(fp, sizeof fp, "%016llx", (unsigned long long)ds.fingerprint);
  lua_pushstring(L, fp);
  lua_setfield(L, -2, "fingerprint");
  lua_pushnumber(L, ds.seconds);
  lua_setfield(L, -2, "seconds");
  om_dataset_free(&ds);
  return 1;
}

/* element i (1-based) of the integer list at idx */
static lua_Integer list_int(lua_State *L, int idx, lua_Integer i, int arg, const char *what) {
  lua_geti(L, idx, i);
  int ok;
  lua_Integer v = lua_tointegerx(L, -1, &ok);
  if (!ok) {
    const char *tn = luaL_typename(L, -1);
    luaL_argerror(L, arg, lua_pushfstring(L, "expected list of %s, got %s at [%d]", what, tn, (int)i));
  }
  lua_pop(L, 1);
  return v;
}

/* omniglot.gather(images (C,P,1,H,W), classes, indices [, rotations [, lead_shape]])
**   -> (n, 1, H, W), or lead_shape .. {1, H, W}
** classes[i] in 1..C, indices[i] in 1..P, rotations[i] in 0..3 quarter turns
** counterclockwise (numpy.rot90). */
static int l_gather(lua_State *L) {
  Tensor *img = lt_check(L, 1);
  char buf[96];
  if (img->ndim != 5 || img->shape[2] != 1)
    return luaL_argerror(
        L, 1,
        lua_pushfstring(L, "expected tensor (classes, images, 1, H, W), got %s", t_shape_str(img, buf, sizeof buf)));
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  int has_rot = !lua_isnoneornil(L, 4);
  if (has_rot) luaL_checktype(L, 4, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 2);
  if (luaL_len(L, 3) != n)
    return luaL_argerror(
        L, 3, lua_pushfstring(L, "expected %d indices (as many as classes), got %d", (int)n, (int)luaL_len(L, 3)));
  if (has_rot && luaL_len(L, 4) != n)
    return luaL_argerror(
        L, 4, lua_pushfstring(L, "expected %d rotations (as many as classes), got %d", (int)n, (int)luaL_len(L, 4)));
  int64_t C = img->shape[0], P = img->shape[1], H = img->shape[3], W = img->shape[4];
  int64_t most = T_MAXNUMEL / (H * W > 0 ? H * W : 1); /* checked before allocating, even when __len lies */
  if (n < 0 || n > most)
    return luaL_argerror(
        L, 2, lua_pushfstring(L, "expected at most %I class numbers, got a list of %I", (lua_Integer)most, n));
  int64_t out_shape[T_MAXDIM];
  int lead = 1;
  out_shape[0] = n;
  if (!lua_isnoneornil(L, 5)) {
    lead = lt_check_shape(L, 5, out_shape, "gather");
    int64_t prod = 1;
    for (int d = 0; d < lead; d++) prod *= out_shape[d];
    if (prod != n || lead + 3 > T_MAXDIM)
      return luaL_argerror(L, 5,
                           lua_pushfstring(L, "expected a shape with %d elements in at most %d dims, got %s", (int)n,
                                           T_MAXDIM - 3, t_shape_str2(lead, out_shape, buf, sizeof buf)));
  }
  out_shape[lead] = 1;
  out_shape[lead + 1] = H;
  out_shape[lead + 2] = W;
  int64_t *src = lt_scratch(L, sizeof(int64_t) * (size_t)n);
  int *rot = lt_scratch(L, sizeof(int) * (size_t)n);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_Integer c = list_int(L, 2, i, 2, "class numbers");
    lua_Integer k = list_int(L, 3, i, 3, "image numbers");
    lua_Integer r = has_rot ? list_int(L, 4, i, 4, "rotations") : 0;
    if (c < 1 || c > C)
      return luaL_argerror(
          L, 2, lua_pushfstring(L, "expected class numbers in 1..%d, got %d at [%d]", (int)C, (int)c, (int)i));
    if (k < 1 || k > P)
      return luaL_argerror(
          L, 3, lua_pushfstring(L, "expected image numbers in 1..%d, got %d at [%d]", (int)P, (int)k, (int)i));
    if (r < 0 || r > 3 || (r % 2 == 1 && H != W))
      return luaL_argerror(L, 4,
                           lua_pushfstring(L, "expected rotations 0..3 (quarter turns%s), got %d at [%d]",
                                           H != W ? "; odd ones need square images" : "", (int)r, (int)i));
    src[i - 1] = (c - 1) * P + (k - 1);
    rot[i - 1] = (int)r;
  }
  Tensor *out = t_new(lead + 3, out_shape);
  const float *in = T_DATA(img);
  float *o = T_DATA(out);
  size_t hw = (size_t)(H * W);
  for (lua_Integer i = 0; i < n; i++) img_rot90(in + (size_t)src[i] * hw, o + (size_t)i * hw, (int)H, (int)W, rot[i]);
  lt_push(L, out);
  return 1;
}

static const luaL_Reg omniglot_funcs[] = {{"load", l_load}, {"gather", l_gather}, {NULL, NULL}};

int luaopen_omniglot(lua_State *L) {
  luaL_newlib(L, omniglot_funcs);
  lt_open_image(L, lua_gettop(L));
  lua_pushinteger(L, OM_DEFAULT_SIZE);
  lua_setfield(L, -2, "default_size");
  lua_pushinteger(L, OM_CACHE_VERSION);
  lua_setfield(L, -2, "cache_version");
  return 1;
}
