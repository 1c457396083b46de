/*
** image.c: PNG read/write with libpng, Lanczos-3 resize (PIL's algorithm),
** rotation by multiples of 90 degrees, and a small RGB canvas. See image.h.
*/
#include "image.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ============================================================ PNG */

/* libpng reports errors through this: keep its reason, then longjmp back */
typedef struct PngErr {
  char msg[200];
} PngErr;

static void png_on_error(png_structp png, png_const_charp msg) {
  PngErr *e = png_get_error_ptr(png);
  snprintf(e->msg, sizeof e->msg, "%s", msg);
  png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg; /* warnings (unknown chunks, bad ancillary CRCs) are not errors */
}

/* gray value of an 8-bit pixel with c channels (1 G, 2 GA, 3 RGB, 4 RGBA) */
static uint8_t to_gray8(const uint8_t *p, int c) {
  unsigned g = (c >= 3) ? (p[0] * 19595u + p[1] * 38470u + p[2] * 7471u + 0x8000u) >> 16 : p[0];
  if (c == 2 || c == 4) {
    unsigned a = p[c - 1];
    g = (g * a + 255u * (255u - a) + 127u) / 255u; /* over white */
  }
  return (uint8_t)g;
}

int img_read_png_gray8(const char *path, uint8_t **out, int *h, int *w, char *err, size_t errlen) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "%s: cannot open (%s)", path, strerror(errno));
    return -1;
  }
  unsigned char sig[8];
  size_t nsig = fread(sig, 1, sizeof sig, f);
  if (nsig < sizeof sig || png_sig_cmp(sig, 0, sizeof sig) != 0) {
    snprintf(err, errlen, "%s: not a PNG file (%s)", path, nsig == 0 ? "empty file" : "no PNG signature");
    fclose(f);
    return -1;
  }
  PngErr perr = {{0}};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &perr, png_on_error, png_on_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!info) {
    snprintf(err, errlen, "%s: out of memory for the PNG decoder", path);
    png_destroy_read_struct(&png, NULL, NULL);
    fclose(f);
    return -1;
  }
  /* written after setjmp and read after longjmp, hence volatile */
  uint8_t *volatile buf = NULL;
  png_bytep *volatile rows = NULL;
  if (setjmp(png_jmpbuf(png))) {
    snprintf(err, errlen, "%s: libpng: %s", path, perr.msg);
    free(rows);
    free(buf);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
    return -1;
  }
  png_init_io(png, f);
  png_set_sig_bytes(png, sizeof sig);
  png_set_user_limits(png, IMG_MAX_SIDE, IMG_MAX_SIDE);
  png_read_info(png, info);
  int width = (int)png_get_image_width(png, info);
  int height = (int)png_get_image_height(png, info);
  if (png_get_bit_depth(png, info) == 16) png_set_scale_16(png);
  png_set_expand(png); /* palette -> RGB, gray < 8 bits -> 8, tRNS -> alpha */
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  int channels = png_get_channels(png, info);
  size_t rowbytes = png_get_rowbytes(png, info);
  if (channels < 1 || channels > 4 || rowbytes != (size_t)width * (size_t)channels)
    png_error(png, "unexpected pixel layout after expansion");
  /* zlib inflates at most ~1032:1, and a pixel takes at least 1/8 byte before
  ** expansion: a header promising more pixels than the file can hold is
  ** refused before its buffer (up to 1 GB) is allocated */
  struct stat st;
  if (fstat(fileno(f), &st) == 0 && (double)width * height > 8.0 * 1100.0 * ((double)st.st_size + 1024.0))
    png_error(png, "the header promises more pixels than the file can hold");
  buf = malloc(rowbytes * (size_t)height);
  rows = malloc(sizeof(png_bytep) * (size_t)height);
  if (!buf || !rows) png_error(png, "out of memory");
  for (int y = 0; y < height; y++) rows[y] = buf + (size_t)y * rowbytes;
  png_read_image(png, rows);
  png_read_end(png, NULL);
  if (channels > 1) { /* to gray in place: pixel i reads from i*c >= i */
    for (size_t i = 0; i < (size_t)width * (size_t)height; i++) buf[i] = to_gray8(buf + i * (size_t)channels, channels);
  }
  *out = buf;
  *h = height;
  *w = width;
  free(rows);
  png_destroy_read_struct(&png, &info, NULL);
  fclose(f);
  return 0;
}

int img_write_png(const char *path, const uint8_t *pixels, int h, int w, int channels, char *err, size_t errlen) {
  if (h <= 0 || w <= 0 || h > IMG_MAX_SIDE || w > IMG_MAX_SIDE || (channels != 1 && channels != 3)) {
    snprintf(err, errlen, "%s: cannot write a %dx%d image with %d channels", path, h, w, channels);
    return -1;
  }
  FILE *f = fopen(path, "wb");
  if (!f) {
    snprintf(err, errlen, "%s: cannot create (%s)", path, strerror(errno));
    return -1;
  }
  PngErr perr = {{0}};
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &perr, png_on_error, png_on_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!info) {
    snprintf(err, errlen, "%s: out of memory for the PNG encoder", path);
    png_destroy_write_struct(&png, NULL);
    fclose(f);
    remove(path);
    return -1;
  }
  if (setjmp(png_jmpbuf(png))) {
    snprintf(err, errlen, "%s: libpng: %s", path, perr.msg);
    png_destroy_write_struct(&png, &info);
    fclose(f);
    remove(path);
    return -1;
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < h; y++) png_write_row(png, (png_const_bytep)(pixels + (size_t)y * (size_t)w * (size_t)channels));
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  if (fclose(f) != 0) {
    snprintf(err, errlen, "%s: write failed (%s)", path, strerror(errno));
    remove(path);
    return -1;
  }
  return 0;
}

/* ============================================================ resize */

static double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= M_PI;
  return sin(x) / x;
}

double img_lanczos3(double x) {
  if (-3.0 <= x && x < 3.0) return sinc(x) * sinc(x / 3.0);
  return 0.0;
}

#define LANCZOS_SUPPORT 3.0
#define PIL_PRECISION_BITS (32 - 8 - 2)

/* PIL's precompute_coeffs for the box [0, in_size) */
int img_filter_init(ImgFilter *f, int in_size, int out_size) {
  memset(f, 0, sizeof *f);
  if (in_size <= 0 || out_size <= 0 || in_size > IMG_MAX_SIDE || out_size > IMG_MAX_SIDE) return -1;
  double scale = (double)in_size / out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  double support = LANCZOS_SUPPORT * filterscale;
  int ksize = (int)ceil(support) * 2 + 1;
  f->in_size = in_size;
  f->out_size = out_size;
  f->ksize = ksize;
  f->bounds = malloc(sizeof(int) * 2 * (size_t)out_size);
  f->coeffs = calloc((size_t)out_size * (size_t)ksize, sizeof(double));
  f->fixed = calloc((size_t)out_size * (size_t)ksize, sizeof(int32_t));
  if (!f->bounds || !f->coeffs || !f->fixed) {
    img_filter_free(f);
    return -1;
  }
  for (int xx = 0; xx < out_size; xx++) {
    double center = (xx + 0.5) * scale;
    double ss = 1.0 / filterscale;
    int xmin = (int)(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = (int)(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double *k = f->coeffs + (size_t)xx * ksize;
    double ww = 0.0;
    for (int x = 0; x < xmax; x++) {
      k[x] = img_lanczos3((x + xmin - center + 0.5) * ss);
      ww += k[x];
    }
    for (int x = 0; x < xmax; x++) {
      if (ww != 0.0) k[x] /= ww;
      double v = k[x] * (1 << PIL_PRECISION_BITS);
      f->fixed[(size_t)xx * ksize + x] = (int32_t)(v < 0 ? v - 0.5 : v + 0.5);
    }
    f->bounds[2 * xx] = xmin;
    f->bounds[2 * xx + 1] = xmax;
  }
  return 0;
}

void img_filter_free(ImgFilter *f) {
  free(f->bounds);
  free(f->coeffs);
  free(f->fixed);
  memset(f, 0, sizeof *f);
}

int img_resizer_init(ImgResizer *r, int in_h, int in_w, int out_h, int out_w) {
  memset(r, 0, sizeof *r);
  r->in_h = in_h;
  r->in_w = in_w;
  r->out_h = out_h;
  r->out_w = out_w;
  if (img_filter_init(&r->horiz, in_w, out_w) || img_filter_init(&r->vert, in_h, out_h)) {
    img_resizer_free(r);
    return -1;
  }
  /* the rows the vertical pass reads; the horizontal pass computes only these */
  r->row_first = r->vert.bounds[0];
  r->row_count = r->vert.bounds[2 * (out_h - 1)] + r->vert.bounds[2 * (out_h - 1) + 1] - r->row_first;
  size_t tmp = (size_t)r->in_h * (size_t)out_w;
  r->tmp_f32 = malloc(tmp * sizeof(float));
  r->tmp_u8 = malloc(tmp);
  if (!r->tmp_f32 || !r->tmp_u8) {
    img_resizer_free(r);
    return -1;
  }
  return 0;
}

void img_resizer_free(ImgResizer *r) {
  img_filter_free(&r->horiz);
  img_filter_free(&r->vert);
  free(r->tmp_f32);
  free(r->tmp_u8);
  memset(r, 0, sizeof *r);
}

/* PIL skips a pass whose size does not change (the kernel is not exactly 0 at
** nonzero integers in floating point, so the pass would not be the identity) */
#define NEED_H(r) ((r)->in_w != (r)->out_w)
#define NEED_V(r) ((r)->in_h != (r)->out_h)

static float clampf(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }

void img_resize_f32(ImgResizer *r, const float *in, float *out) {
  const float *src = in;
  int src_w = r->in_w, row0 = 0, rows = r->in_h;
  if (NEED_H(r)) { /* in rows row_first.. -> tmp (row_count x out_w) */
    const ImgFilter *f = &r->horiz;
    for (int y = 0; y < r->row_count; y++) {
      const float *row = in + (size_t)(r->row_first + y) * r->in_w;
      float *dst = r->tmp_f32 + (size_t)y * r->out_w;
      for (int xx = 0; xx < r->out_w; xx++) {
        const double *k = f->coeffs + (size_t)xx * f->ksize;
        const float *p = row + f->bounds[2 * xx];
        double s = 0.0;
        for (int x = 0; x < f->bounds[2 * xx + 1]; x++) s += p[x] * k[x];
        dst[xx] = clampf((float)s);
      }
    }
    src = r->tmp_f32;
    src_w = r->out_w;
    row0 = r->row_first;
    rows = r->row_count;
  }
  if (NEED_V(r)) {
    const ImgFilter *f = &r->vert;
    for (int yy = 0; yy < r->out_h; yy++) {
      const double *k = f->coeffs + (size_t)yy * f->ksize;
      const float *p = src + (size_t)(f->bounds[2 * yy] - row0) * src_w;
      int n = f->bounds[2 * yy + 1];
      float *dst = out + (size_t)yy * r->out_w;
      for (int xx = 0; xx < src_w; xx++) {
        double s = 0.0;
        for (int y = 0; y < n; y++) s += p[(size_t)y * src_w + xx] * k[y];
        dst[xx] = (float)s;
      }
    }
  } else {
    memcpy(out, src, sizeof(float) * (size_t)rows * src_w);
  }
  for (size_t i = 0; i < (size_t)r->out_h * r->out_w; i++) out[i] = clampf(out[i]);
}

static uint8_t clip8(int32_t v) {
  if (v >= (1 << PIL_PRECISION_BITS << 8)) return 255;
  if (v <= 0) return 0;
  return (uint8_t)(v >> PIL_PRECISION_BITS);
}

void img_resize_u8(ImgResizer *r, const uint8_t *in, uint8_t *out) {
  const uint8_t *src = in;
  int src_w = r->in_w, row0 = 0, rows = r->in_h;
  if (NEED_H(r)) {
    const ImgFilter *f = &r->horiz;
    for (int y = 0; y < r->row_count; y++) {
      const uint8_t *row = in + (size_t)(r->row_first + y) * r->in_w;
      uint8_t *dst = r->tmp_u8 + (size_t)y * r->out_w;
      for (int xx = 0; xx < r->out_w; xx++) {
        const int32_t *k = f->fixed + (size_t)xx * f->ksize;
        const uint8_t *p = row + f->bounds[2 * xx];
        int32_t s = 1 << (PIL_PRECISION_BITS - 1);
        for (int x = 0; x < f->bounds[2 * xx + 1]; x++) s += p[x] * k[x];
        dst[xx] = clip8(s);
      }
    }
    src = r->tmp_u8;
    src_w = r->out_w;
    row0 = r->row_first;
    rows = r->row_count;
  }
  if (NEED_V(r)) {
    const ImgFilter *f = &r->vert;
    for (int yy = 0; yy < r->out_h; yy++) {
      const int32_t *k = f->fixed + (size_t)yy * f->ksize;
      const uint8_t *p = src + (size_t)(f->bounds[2 * yy] - row0) * src_w;
      int n = f->bounds[2 * yy + 1];
      uint8_t *dst = out + (size_t)yy * r->out_w;
      for (int xx = 0; xx < src_w; xx++) {
        int32_t s = 1 << (PIL_PRECISION_BITS - 1);
        for (int y = 0; y < n; y++) s += p[(size_t)y * src_w + xx] * k[y];
        dst[xx] = clip8(s);
      }
    }
  } else {
    memcpy(out, src, (size_t)rows * src_w);
  }
}

/* ============================================================ rotation */

void img_rot90(const float *src, float *dst, int h, int w, int rot) {
  rot = ((rot % 4) + 4) % 4;
  if (rot == 0) {
    memcpy(dst, src, sizeof(float) * (size_t)h * w);
  } else if (rot == 2) {
    size_t n = (size_t)h * w;
    for (size_t i = 0; i < n; i++) dst[i] = src[n - 1 - i];
  } else if (rot == 1) { /* dst[i][j] = src[j][w-1-i] */
    for (int i = 0; i < h; i++)
      for (int j = 0; j < w; j++) dst[(size_t)i * w + j] = src[(size_t)j * w + (w - 1 - i)];
  } else { /* dst[i][j] = src[h-1-j][i] */
    for (int i = 0; i < h; i++)
      for (int j = 0; j < w; j++) dst[(size_t)i * w + j] = src[(size_t)(h - 1 - j) * w + i];
  }
}

/* ============================================================ canvas */

int img_canvas_init(ImgCanvas *c, int h, int w, const uint8_t bg[3]) {
  c->h = h;
  c->w = w;
  c->rgb = NULL;
  if (h <= 0 || w <= 0 || h > IMG_MAX_SIDE || w > IMG_MAX_SIDE) return -1;
  c->rgb = malloc((size_t)h * w * 3);
  if (!c->rgb) return -1;
  img_canvas_fill(c, 0, 0, h, w, bg);
  return 0;
}

void img_canvas_free(ImgCanvas *c) {
  free(c->rgb);
  c->rgb = NULL;
}

void img_canvas_fill(ImgCanvas *c, int y, int x, int h, int w, const uint8_t rgb[3]) {
  int y1 = y + h, x1 = x + w;
  if (y < 0) y = 0;
  if (x < 0) x = 0;
  if (y1 > c->h) y1 = c->h;
  if (x1 > c->w) x1 = c->w;
  for (int i = y; i < y1; i++)
    for (int j = x; j < x1; j++) memcpy(c->rgb + ((size_t)i * c->w + j) * 3, rgb, 3);
}

void img_canvas_paste_gray(ImgCanvas *c, int y, int x, const float *img, int h, int w, int scale, int invert) {
  for (int i = 0; i < h; i++)
    for (int j = 0; j < w; j++) {
      float v = img[(size_t)i * w + j];
      v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
      if (invert) v = 1.0f - v;
      uint8_t g = (uint8_t)(v * 255.0f + 0.5f);
      uint8_t rgb[3] = {g, g, g};
      img_canvas_fill(c, y + i * scale, x + j * scale, scale, scale, rgb);
    }
}

/* 3x5 digits, one row per 3 bits, top row first */
static const uint8_t digit_font[10][5] = {
    {7, 5, 5, 5, 7}, {2, 6, 2, 2, 7}, {7, 1, 7, 4, 7}, {7, 1, 7, 1, 7}, {5, 5, 7, 1, 1},
    {7, 4, 7, 1, 7}, {7, 4, 7, 5, 7}, {7, 1, 1, 1, 1}, {7, 5, 7, 5, 7}, {7, 5, 7, 1, 7},
};

int img_number_width(long number, int scale) {
  int digits = 1;
  for (long n = number < 0 ? 0 : number; n >= 10; n /= 10) digits++;
  return (4 * digits - 1) * scale;
}

int img_canvas_number(ImgCanvas *c, int y, int x, long number, int scale, const uint8_t rgb[3]) {
  char s[24];
  snprintf(s, sizeof s, "%ld", number < 0 ? 0 : number);
  int x0 = x;
  for (const char *p = s; *p; p++, x += 4 * scale) {
    const uint8_t *g = digit_font[*p - '0'];
    for (int row = 0; row < 5; row++)
      for (int col = 0; col < 3; col++)
        if (g[row] & (4 >> col)) img_canvas_fill(c, y + row * scale, x + col * scale, scale, scale, rgb);
  }
  return x - scale - x0;
}
