/*
** lua_image.c: the image functions of the `omniglot` module, on ops/image.c:
**
**   omniglot.read_png(path), omniglot.write_png(path, t)
**   omniglot.resize(t, h [, w [, {pil_exact=false}]])    Lanczos-3 as the loader
**   omniglot.tile(images [, opts])                       a picture of a task
*/
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image.h"
#include "lua_tensor.h"

/* an (H,W) or (1,H,W) tensor's H and W; 0 if it is neither */
static int gray_hw(const Tensor *t, int *h, int *w) {
  if (t->ndim == 2 || (t->ndim == 3 && t->shape[0] == 1)) {
    *h = (int)t->shape[t->ndim - 2];
    *w = (int)t->shape[t->ndim - 1];
    return 1;
  }
  return 0;
}

static uint8_t to_u8(float v) {
  if (!(v > 0.0f)) return 0; /* also NaN */
  if (v >= 1.0f) return 255;
  return (uint8_t)(v * 255.0f + 0.5f);
}

/* omniglot.read_png(path) -> (H, W) gray in [0,1], 1 = white, not inverted */
static int l_read_png(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  uint8_t *px;
  int h, w;
  char err[600];
  if (img_read_png_gray8(path, &px, &h, &w, err, sizeof err) != 0) return luaL_error(L, "read_png: %s", err);
  int64_t shape[2] = {h, w};
  uint8_t *copy = lt_scratch(L, (size_t)h * w); /* so that t_new failing leaks nothing */
  memcpy(copy, px, (size_t)h * w);
  free(px);
  Tensor *t = t_new(2, shape);
  float *d = T_DATA(t);
  for (size_t i = 0; i < (size_t)h * w; i++) d[i] = (float)copy[i] / 255.0f;
  lt_push(L, t);
  return 1;
}

/* omniglot.write_png(path, t): t (H,W) or (1,H,W) gray, (3,H,W) RGB; values
** in [0,1] (clamped), 1 = white */
static int l_write_png(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  Tensor *t = lt_check(L, 2);
  int h, w, c = 1;
  char buf[96];
  if (!gray_hw(t, &h, &w)) {
    if (t->ndim != 3 || t->shape[0] != 3)
      return luaL_argerror(L, 2,
                           lua_pushfstring(L, "expected tensor (H, W), (1, H, W) or (3, H, W), got %s",
                                           t_shape_str(t, buf, sizeof buf)));
    c = 3;
    h = (int)t->shape[1];
    w = (int)t->shape[2];
  }
  if (h < 1 || w < 1 || h > IMG_MAX_SIDE || w > IMG_MAX_SIDE)
    return luaL_argerror(
        L, 2, lua_pushfstring(L, "expected sides in 1..%d, got %s", IMG_MAX_SIDE, t_shape_str(t, buf, sizeof buf)));
  uint8_t *px = lt_scratch(L, (size_t)h * w * c);
  const float *d = T_DATA(t);
  size_t hw = (size_t)h * w;
  for (size_t i = 0; i < hw; i++)
    for (int k = 0; k < c; k++) px[i * c + k] = to_u8(d[k * hw + i]); /* planar -> interleaved */
  /* atomically: the PNG goes to a temporary file beside it, which is renamed over path (a picture that
  ** cannot be written whole leaves the previous file as it was) */
  char err[600], tmp[PATH_MAX];
  if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
    return luaL_error(L, "write_png: %s: path too long", path);
  if (img_write_png(tmp, px, h, w, c, err, sizeof err) != 0) {
    size_t n = strlen(tmp); /* (the message names the user's path, not the temporary one) */
    const char *why = strncmp(err, tmp, n) == 0 ? err + n : err;
    return luaL_error(L, "write_png: %s%s", why == err ? "" : path, why);
  }
  if (rename(tmp, path) != 0) {
    int e = errno;
    remove(tmp);
    return luaL_error(L, "write_png: %s: cannot rename %s over it (%s)", path, tmp, strerror(e));
  }
  return 0;
}

/* omniglot.resize(t (H,W), out_h [, out_w [, {pil_exact=false}]]) -> (out_h, out_w)
** Lanczos-3 as the loader does it (no inversion, no clamping of the input) */
static int l_resize(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  int h, w;
  char buf[96];
  if (!gray_hw(t, &h, &w))
    return luaL_argerror(
        L, 1, lua_pushfstring(L, "expected tensor (H, W) or (1, H, W), got %s", t_shape_str(t, buf, sizeof buf)));
  lua_Integer oh = luaL_checkinteger(L, 2);
  lua_Integer ow = luaL_optinteger(L, 3, oh);
  int pil = 0;
  static const char *const resize_options[] = {"pil_exact", NULL};
  if (lt_check_options(L, 4, "resize", resize_options)) pil = lt_opt_boolean(L, 4, "resize", "pil_exact", 0);
  luaL_argcheck(L, oh >= 1 && oh <= IMG_MAX_SIDE, 2, "expected size in 1..16384");
  luaL_argcheck(L, ow >= 1 && ow <= IMG_MAX_SIDE, 3, "expected size in 1..16384");
  luaL_argcheck(L, h >= 1 && w >= 1, 1, "expected a non-empty image");
  int64_t shape[2] = {oh, ow};
  Tensor *out = t_new(2, shape);
  lt_push(L, out); /* owned by Lua from here on */
  ImgResizer r;
  if (img_resizer_init(&r, h, w, (int)oh, (int)ow) != 0) return luaL_error(L, "resize: out of memory");
  const float *in = T_DATA(t);
  float *o = T_DATA(out);
  if (pil) {
    uint8_t *a = malloc((size_t)h * w), *b = malloc((size_t)oh * ow);
    if (a && b) {
      for (size_t i = 0; i < (size_t)h * w; i++) a[i] = to_u8(in[i]);
      img_resize_u8(&r, a, b);
      for (size_t i = 0; i < (size_t)(oh * ow); i++) o[i] = (float)b[i] / 255.0f;
    }
    free(a);
    free(b);
    if (!a || !b) {
      img_resizer_free(&r);
      return luaL_error(L, "resize: out of memory");
    }
  } else {
    img_resize_f32(&r, in, o);
  }
  img_resizer_free(&r);
  return 1;
}

/* a distinct color per label, cycling after 10 */
static const uint8_t label_colors[10][3] = {
    {31, 119, 180}, {255, 127, 14},  {44, 160, 44},   {214, 39, 40},  {148, 103, 189},
    {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207},
};

/* omniglot.tile(images (n,1,H,W) or (n,H,W) [, opts]) -> RGB tensor (3, H', W')
** opts: cols=n, scale=2 (pixels per image pixel), pad=4, invert=true (strokes
** 1 drawn black on white), labels={...} (a colored frame and the number per
** image), captions={...} (a gray number beside the label, e.g. a class id),
** separators={row, ...} (a thick line below those rows) */
static int l_tile(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  char buf[96];
  int n, H, W;
  if (t->ndim == 4 && t->shape[1] == 1) {
    n = (int)t->shape[0], H = (int)t->shape[2], W = (int)t->shape[3];
  } else if (t->ndim == 3) {
    n = (int)t->shape[0], H = (int)t->shape[1], W = (int)t->shape[2];
  } else {
    return luaL_argerror(
        L, 1, lua_pushfstring(L, "expected tensor (n, 1, H, W) or (n, H, W), got %s", t_shape_str(t, buf, sizeof buf)));
  }
  luaL_argcheck(L, n >= 1 && H >= 1 && W >= 1, 1, "expected at least one non-empty image");
  static const char *const tile_options[] = {"cols",   "scale",    "pad",        "invert",
                                             "labels", "captions", "separators", NULL};
  int opts = lt_check_options(L, 2, "tile", tile_options) ? 2 : 0;
  int cols = (int)lt_opt_integer(L, 2, "tile", "cols", n, 1, INT_MAX);
  int scale = (int)lt_opt_integer(L, 2, "tile", "scale", 2, 1, 16);
  int pad = (int)lt_opt_integer(L, 2, "tile", "pad", 4, 0, 64);
  int invert = lt_opt_boolean(L, 2, "tile", "invert", 1);
  int rows = (int)((n + (int64_t)cols - 1) / cols); /* (cols may be INT_MAX) */
  long *labels = NULL, *captions = NULL;
  unsigned char *sep_after = lt_scratch(L, (size_t)rows + 1);
  memset(sep_after, 0, (size_t)rows + 1);
  int nsep = 0;
  if (opts) {
    const char *lists[2] = {"labels", "captions"};
    for (int l = 0; l < 2; l++) {
      if (lua_getfield(L, opts, lists[l]) == LUA_TTABLE) {
        int idx = lua_gettop(L);
        if (luaL_len(L, idx) != n)
          return luaL_error(L, "bad option '%s' to 'tile' (expected %d numbers, got %d)", lists[l], n,
                            (int)luaL_len(L, idx));
        long *v = lt_scratch(L, sizeof(long) * (size_t)n);
        lua_insert(L, idx); /* keep the scratch below the list */
        for (int i = 1; i <= n; i++) {
          lua_geti(L, idx + 1, i);
          int ok;
          lua_Integer x = lua_tointegerx(L, -1, &ok);
          if (!ok || x < 0)
            return luaL_error(L, "bad option '%s' to 'tile' (expected non-negative integers, got %s at [%d])", lists[l],
                              luaL_typename(L, -1), i);
          v[i - 1] = (long)x;
          lua_pop(L, 1);
        }
        if (l == 0) labels = v;
        else captions = v;
      } else if (!lua_isnil(L, -1)) {
        return luaL_error(L, "bad option '%s' to 'tile' (expected list, got %s)", lists[l], luaL_typename(L, -1));
      }
      lua_pop(L, 1);
    }
    if (lua_getfield(L, opts, "separators") == LUA_TTABLE) {
      lua_Integer m = luaL_len(L, -1);
      if (m > IMG_MAX_SIDE) /* (also bounds the loop when __len lies) */
        return luaL_error(L, "bad option 'separators' to 'tile' (expected at most %d row numbers, got %I)",
                          IMG_MAX_SIDE, m);
      for (lua_Integer i = 1; i <= m; i++) {
        lua_geti(L, -1, i);
        lua_Integer r = lua_tointeger(L, -1);
        if (r >= 1 && r < rows && !sep_after[r]) {
          sep_after[r] = 1;
          nsep++;
        }
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  int fs = scale > 1 ? scale / 2 + 1 : 1; /* font scale */
  int frame = (labels || captions) ? (scale > 1 ? scale : 2) : 0;
  int strip = (labels || captions) ? 5 * fs + 3 : 0;
  int sep_gap = 4 * pad + 4;
  int cell_w = W * scale + 2 * frame, cell_h = strip + H * scale + 2 * frame;
  int64_t CH = (int64_t)pad + (int64_t)rows * (cell_h + pad) + (int64_t)nsep * sep_gap;
  int64_t CW = (int64_t)pad + (int64_t)cols * (cell_w + pad);
  if (CH > IMG_MAX_SIDE || CW > IMG_MAX_SIDE)
    return luaL_error(L, "tile: the picture would be %dx%d pixels, more than %d per side", (int)CH, (int)CW,
                      IMG_MAX_SIDE);
  int64_t shape[3] = {3, CH, CW};
  Tensor *out = t_new(3, shape);
  lt_push(L, out);
  ImgCanvas cv;
  const uint8_t white[3] = {255, 255, 255}, dark[3] = {60, 60, 60}, gray[3] = {110, 110, 110};
  if (img_canvas_init(&cv, (int)CH, (int)CW, white) != 0) return luaL_error(L, "tile: out of memory");
  const float *d = T_DATA(t);
  int y = pad;
  for (int r = 0; r < rows; r++) {
    for (int c = 0; c < cols && r * cols + c < n; c++) {
      int i = r * cols + c, x = pad + c * (cell_w + pad);
      const uint8_t *color = labels ? label_colors[(labels[i] % 10 + 9) % 10] : gray;
      if (labels) img_canvas_number(&cv, y, x, labels[i], fs, color);
      if (captions) {
        int off = labels ? img_number_width(labels[i], fs) + 3 * fs : 0;
        img_canvas_number(&cv, y, x + off, captions[i], fs, gray);
      }
      if (frame) img_canvas_fill(&cv, y + strip, x, cell_h - strip, cell_w, color);
      img_canvas_paste_gray(&cv, y + strip + frame, x + frame, d + (size_t)i * H * W, H, W, scale, invert);
    }
    y += cell_h + pad;
    if (r + 1 < rows && sep_after[r + 1]) { /* a line midway between the two rows */
      img_canvas_fill(&cv, y + (sep_gap - pad) / 2 - 2, 0, 4, (int)CW, dark);
      y += sep_gap;
    }
  }
  float *o = T_DATA(out);
  size_t hw = (size_t)CH * CW;
  for (size_t i = 0; i < hw; i++)
    for (int k = 0; k < 3; k++) o[k * hw + i] = cv.rgb[i * 3 + k] / 255.0f;
  img_canvas_free(&cv);
  return 1;
}

static const luaL_Reg image_funcs[] = {
    {"read_png", l_read_png}, {"write_png", l_write_png}, {"resize", l_resize}, {"tile", l_tile}, {NULL, NULL},
};

void lt_open_image(lua_State *L, int module) { lt_setfuncs(L, module, image_funcs); }
