/*
** test_image.c: PNG decoding of every format, Lanczos-3 resize against an
** independent double-precision version and against PIL's own output,
** rotation, the canvas, CRC-32C, and the Omniglot loader on small generated
** PNG trees: load order, inversion, the cache (round trip, invalidation,
** corruption, atomic writes) and every error path.
** Prints TAP lines; exits non-zero if any test fails.
*/
#define _XOPEN_SOURCE 700 /* nftw */
#define PATHBUF 2048
#define ROOTBUF 1024
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <png.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "checksum.h"
#include "image.h"
#include "omniglot.h"
#include "tap.h"
#include "tensor.h"


static void diag(const char *fmt, ...) T_PRINTF(1, 2);
static void diag(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("# ");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
}

static char tmpdir[256];

static char *path_in(char *buf, size_t n, const char *fmt, ...) T_PRINTF(3, 4);
static char *path_in(char *buf, size_t n, const char *fmt, ...) {
  char rel[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(rel, sizeof rel, fmt, ap);
  va_end(ap);
  snprintf(buf, n, "%s/%s", tmpdir, rel);
  return buf;
}
#define PATH_IN(buf, ...) path_in(buf, sizeof buf, __VA_ARGS__)

static void mkdirs(const char *path) {
  char buf[PATHBUF];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++)
    if (*p == '/') {
      *p = '\0';
      mkdir(buf, 0777);
      *p = '/';
    }
  mkdir(buf, 0777);
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(p);
}

static void rm_tree(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return;
  fwrite(data, 1, n, f);
  fclose(f);
}

static long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static int contains(const char *s, const char *part) { return s && strstr(s, part) != NULL; }

/* ------------------------------------------------------------ PNG writer for the tests */

enum {
  FMT_GRAY1,
  FMT_GRAY8,
  FMT_GRAY16,
  FMT_GRAY_ALPHA,
  FMT_RGB,
  FMT_RGBA,
  FMT_PALETTE,
  FMT_PALETTE_TRNS,
  FMT_GRAY8_INTERLACED,
  NFMT
};
static const char *fmt_names[NFMT] = {"1-bit gray", "8-bit gray", "16-bit gray",  "gray+alpha",     "RGB",
                                      "RGBA",       "palette",    "palette+tRNS", "interlaced gray"};

/* Pixel (i, j) of a test image as RGBA 0..255. */
typedef void (*pixel_fn)(int i, int j, uint8_t rgba[4], void *ctx);

/* write an h x w PNG in format fmt; a palette image gets one entry per
** distinct color (at most 256) */
static int write_test_png(const char *path, int fmt, int h, int w, pixel_fn px, void *ctx) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  uint8_t *volatile row = NULL;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    free(row);
    fclose(f);
    return -1;
  }
  png_init_io(png, f);
  int depth = 8, color = PNG_COLOR_TYPE_GRAY, interlace = PNG_INTERLACE_NONE, bpp = 1;
  switch (fmt) {
    case FMT_GRAY1: depth = 1; break;
    case FMT_GRAY16:
      depth = 16;
      bpp = 2;
      break;
    case FMT_GRAY_ALPHA:
      color = PNG_COLOR_TYPE_GRAY_ALPHA;
      bpp = 2;
      break;
    case FMT_RGB:
      color = PNG_COLOR_TYPE_RGB;
      bpp = 3;
      break;
    case FMT_RGBA:
      color = PNG_COLOR_TYPE_RGB_ALPHA;
      bpp = 4;
      break;
    case FMT_PALETTE:
    case FMT_PALETTE_TRNS: color = PNG_COLOR_TYPE_PALETTE; break;
    case FMT_GRAY8_INTERLACED: interlace = PNG_INTERLACE_ADAM7; break;
  }
  png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, color, interlace, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  /* palette: collect the colors */
  png_color pal[256];
  png_byte trans[256];
  int npal = 0;
  uint8_t *index = NULL;
  if (color == PNG_COLOR_TYPE_PALETTE) {
    index = malloc((size_t)h * w);
    for (int i = 0; i < h; i++)
      for (int j = 0; j < w; j++) {
        uint8_t c[4];
        px(i, j, c, ctx);
        int k = 0;
        while (k < npal && !(pal[k].red == c[0] && pal[k].green == c[1] && pal[k].blue == c[2] && trans[k] == c[3]))
          k++;
        if (k == npal && npal < 256) {
          pal[npal].red = c[0], pal[npal].green = c[1], pal[npal].blue = c[2];
          trans[npal++] = c[3];
        }
        index[i * w + j] = (uint8_t)k;
      }
    png_set_PLTE(png, info, pal, npal);
    if (fmt == FMT_PALETTE_TRNS) png_set_tRNS(png, info, trans, npal, NULL);
  }
  png_write_info(png, info);
  if (depth == 1) png_set_packing(png);
  int passes = png_set_interlace_handling(png);
  row = malloc((size_t)w * bpp);
  for (int pass = 0; pass < passes; pass++)
    for (int i = 0; i < h; i++) {
      for (int j = 0; j < w; j++) {
        uint8_t c[4];
        px(i, j, c, ctx);
        uint8_t *p = row + (size_t)j * bpp;
        switch (fmt) {
          case FMT_GRAY1: p[0] = c[0] >= 128; break;
          case FMT_GRAY16: p[0] = c[0], p[1] = c[0]; break; /* big-endian c * 257 */
          case FMT_GRAY_ALPHA: p[0] = c[0], p[1] = c[3]; break;
          case FMT_RGB: memcpy(p, c, 3); break;
          case FMT_RGBA: memcpy(p, c, 4); break;
          case FMT_PALETTE:
          case FMT_PALETTE_TRNS: p[0] = index[i * w + j]; break;
          default: p[0] = c[0];
        }
      }
      png_write_row(png, row);
    }
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  free(row);
  free(index);
  fclose(f);
  return 0;
}

/* expected gray of an RGBA pixel, as image.h documents it */
static uint8_t expect_gray(const uint8_t c[4], int fmt) {
  unsigned g = c[0];
  if (fmt == FMT_RGB || fmt == FMT_RGBA || fmt == FMT_PALETTE || fmt == FMT_PALETTE_TRNS)
    g = (c[0] * 19595u + c[1] * 38470u + c[2] * 7471u + 0x8000u) >> 16;
  if (fmt == FMT_GRAY1) g = c[0] >= 128 ? 255 : 0;
  if (fmt == FMT_GRAY_ALPHA || fmt == FMT_RGBA || fmt == FMT_PALETTE_TRNS)
    g = (g * c[3] + 255u * (255u - c[3]) + 127u) / 255u;
  return (uint8_t)g;
}

/* a varied pattern: gray formats use c[0]; colors and alpha vary too */
static void pattern_px(int i, int j, uint8_t c[4], void *ctx) {
  int colored = ctx != NULL;
  c[0] = (uint8_t)(i * 53 + j * 31);
  c[1] = colored ? (uint8_t)(i * 17 + j * 90) : c[0];
  c[2] = colored ? (uint8_t)(200 - i * 11 - j * 7) : c[0];
  c[3] = (uint8_t)(255 - ((i + j) % 3) * 100);
}

/* constant gray g (ctx points to an int) */
static void const_px(int i, int j, uint8_t c[4], void *ctx) {
  (void)i;
  (void)j;
  int g = *(int *)ctx;
  c[0] = c[1] = c[2] = (uint8_t)g;
  c[3] = 255;
}

/* left half black, right half white */
static void half_px(int i, int j, uint8_t c[4], void *ctx) {
  (void)i;
  int w = *(int *)ctx;
  c[0] = c[1] = c[2] = j < w / 2 ? 0 : 255;
  c[3] = 255;
}

/* ------------------------------------------------------------ PNG tests */

static void test_png_formats(void) {
  char path[PATHBUF];
  const int h = 6, w = 5;
  for (int fmt = 0; fmt < NFMT; fmt++) {
    void *ctx = (fmt == FMT_RGB || fmt == FMT_RGBA || fmt == FMT_PALETTE || fmt == FMT_PALETTE_TRNS) ? (void *)1 : NULL;
    PATH_IN(path, "fmt%d.png", fmt);
    if (write_test_png(path, fmt, h, w, pattern_px, ctx) != 0) {
      ok(0, "write %s test PNG", fmt_names[fmt]);
      continue;
    }
    uint8_t *px = NULL;
    int gh = 0, gw = 0;
    char err[600];
    int rc = img_read_png_gray8(path, &px, &gh, &gw, err, sizeof err);
    int same = rc == 0 && gh == h && gw == w;
    int first_bad = -1;
    for (int i = 0; same && i < h; i++)
      for (int j = 0; j < w; j++) {
        uint8_t c[4];
        pattern_px(i, j, c, ctx);
        int want = expect_gray(c, fmt);
        if (fmt != FMT_GRAY_ALPHA && fmt != FMT_RGBA && fmt != FMT_PALETTE_TRNS) c[3] = 255;
        want = expect_gray(c, fmt);
        if (px[i * w + j] != want && first_bad < 0) {
          first_bad = i * w + j;
          diag("%s: pixel (%d,%d) = %d, want %d", fmt_names[fmt], i, j, px[i * w + j], want);
        }
      }
    ok(same && first_bad < 0, "decode %s PNG to the documented gray values%s%s", fmt_names[fmt], rc ? ": " : "",
       rc ? err : "");
    free(px);
  }
}

static void test_png_errors(void) {
  char path[PATHBUF], err[600];
  uint8_t *px = (uint8_t *)1;
  int h, w;

  PATH_IN(path, "missing.png");
  int rc = img_read_png_gray8(path, &px, &h, &w, err, sizeof err);
  ok(rc == -1 && px == NULL && contains(err, path) && contains(err, "cannot open"), "missing file: error names it (%s)",
     err);

  PATH_IN(path, "empty.png");
  write_bytes(path, "", 0);
  rc = img_read_png_gray8(path, &px, &h, &w, err, sizeof err);
  ok(rc == -1 && contains(err, path) && contains(err, "empty file"), "empty file: %s", err);

  PATH_IN(path, "text.png");
  write_bytes(path, "this is not a PNG file at all\n", 30);
  rc = img_read_png_gray8(path, &px, &h, &w, err, sizeof err);
  ok(rc == -1 && contains(err, path) && contains(err, "not a PNG file"), "non-PNG with a .png name: %s", err);

  /* a valid PNG cut in half: libpng's reason, no crash, nothing leaked */
  char good[PATHBUF];
  int g = 90;
  PATH_IN(good, "good.png");
  write_test_png(good, FMT_GRAY8, 40, 40, pattern_px, NULL);
  long n = file_size(good);
  FILE *f = fopen(good, "rb");
  uint8_t *bytes = malloc((size_t)n);
  size_t got = f ? fread(bytes, 1, (size_t)n, f) : 0;
  if (f) fclose(f);
  PATH_IN(path, "truncated.png");
  write_bytes(path, bytes, got / 2);
  rc = img_read_png_gray8(path, &px, &h, &w, err, sizeof err);
  ok(rc == -1 && px == NULL && contains(err, path) && contains(err, "libpng"),
     "truncated PNG: file and libpng's reason (%s)", err);

  /* only the signature */
  write_bytes(path, bytes, 8);
  rc = img_read_png_gray8(path, &px, &h, &w, err, sizeof err);
  ok(rc == -1 && contains(err, "libpng"), "PNG signature only: %s", err);

  /* a flipped byte inside the image data: CRC error */
  for (size_t i = 8; i + 4 < got; i++)
    if (memcmp(bytes + i, "IDAT", 4) == 0) {
      bytes[i + 10] ^= 0x55;
      break;
    }
  write_bytes(path, bytes, got);
  rc = img_read_png_gray8(path, &px, &h, &w, err, sizeof err);
  ok(rc == -1 && contains(err, "libpng"), "corrupt image data: %s", err);
  free(bytes);

  /* write errors */
  uint8_t pixels[4] = {0, 64, 128, 255};
  PATH_IN(path, "no/such/dir/out.png");
  rc = img_write_png(path, pixels, 2, 2, 1, err, sizeof err);
  ok(rc == -1 && contains(err, "cannot create"), "write_png into a missing folder: %s", err);
  rc = img_write_png(good, pixels, 2, 2, 2, err, sizeof err);
  ok(rc == -1 && contains(err, "2 channels"), "write_png with 2 channels refused: %s", err);
  (void)g;
}

static void test_png_roundtrip(void) {
  char path[PATHBUF], err[600];
  uint8_t gray[12], rgb[36];
  for (int i = 0; i < 12; i++) gray[i] = (uint8_t)(i * 23);
  for (int i = 0; i < 36; i++) rgb[i] = (uint8_t)(i * 7);
  PATH_IN(path, "rt_gray.png");
  int rc = img_write_png(path, gray, 3, 4, 1, err, sizeof err);
  uint8_t *px = NULL;
  int h = 0, w = 0;
  rc = rc ? rc : img_read_png_gray8(path, &px, &h, &w, err, sizeof err);
  ok(rc == 0 && h == 3 && w == 4 && memcmp(px, gray, 12) == 0, "gray PNG write/read round trip");
  free(px);
  px = NULL;
  PATH_IN(path, "rt_rgb.png");
  rc = img_write_png(path, rgb, 3, 4, 3, err, sizeof err);
  rc = rc ? rc : img_read_png_gray8(path, &px, &h, &w, err, sizeof err);
  int same = rc == 0 && h == 3 && w == 4;
  for (int i = 0; same && i < 12; i++) {
    uint8_t c[4] = {rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2], 255};
    same = px[i] == expect_gray(c, FMT_RGB);
  }
  ok(same, "RGB PNG write, read back as gray");
  free(px);
}

/* ------------------------------------------------------------ resize */

/* the textbook Lanczos-3, written independently of image.c */
static double ref_kernel(double x) {
  if (x == 0.0) return 1.0;
  if (fabs(x) >= 3.0) return 0.0;
  double px = M_PI * x;
  return 3.0 * sin(px) * sin(px / 3.0) / (px * px);
}

/* one axis: out[o] = sum_i w(i) in[i] / sum_i w(i), w(i) = L((i + 0.5 - c) / s),
** c = (o + 0.5) n / m, s = max(n / m, 1); then clamp to [0,1] */
static void ref_axis(const double *in, int n, int stride_in, double *out, int m, int stride_out) {
  double scale = (double)n / m, s = scale > 1.0 ? scale : 1.0;
  for (int o = 0; o < m; o++) {
    double c = (o + 0.5) * scale, num = 0.0, den = 0.0;
    for (int i = 0; i < n; i++) {
      double wgt = ref_kernel((i + 0.5 - c) / s);
      num += wgt * in[(size_t)i * stride_in];
      den += wgt;
    }
    double v = num / den;
    out[(size_t)o * stride_out] = v < 0 ? 0 : (v > 1 ? 1 : v);
  }
}

static void ref_resize(const double *in, int h, int w, double *out, int oh, int ow) {
  double *tmp = malloc(sizeof(double) * (size_t)h * ow);
  for (int i = 0; i < h; i++) {
    if (w == ow) memcpy(tmp + (size_t)i * ow, in + (size_t)i * w, sizeof(double) * (size_t)w);
    else ref_axis(in + (size_t)i * w, w, 1, tmp + (size_t)i * ow, ow, 1);
  }
  for (int j = 0; j < ow; j++) {
    if (h == oh)
      for (int i = 0; i < h; i++) out[(size_t)i * ow + j] = tmp[(size_t)i * ow + j];
    else ref_axis(tmp + j, h, ow, out + j, oh, ow);
  }
  free(tmp);
}

static uint32_t lcg = 12345;
static double urand(void) {
  lcg = lcg * 1664525u + 1013904223u;
  return (lcg >> 8) / 16777216.0;
}

static void test_resize(void) {
  ok(img_lanczos3(0.0) == 1.0 && fabs(img_lanczos3(1.0)) < 1e-15 && fabs(img_lanczos3(2.0)) < 1e-15 &&
         img_lanczos3(3.0) == 0.0 && img_lanczos3(-3.5) == 0.0 && fabs(img_lanczos3(0.5) - ref_kernel(0.5)) < 1e-15,
     "Lanczos-3 kernel: 1 at 0, 0 at the integers and outside [-3, 3)");

  const int sizes[][4] = {{105, 105, 28, 28}, {12, 7, 5, 4}, {4, 5, 7, 9}, {28, 28, 28, 28}, {30, 20, 30, 9}};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    int h = sizes[s][0], w = sizes[s][1], oh = sizes[s][2], ow = sizes[s][3];
    ImgResizer r;
    if (img_resizer_init(&r, h, w, oh, ow) != 0) {
      ok(0, "resizer %dx%d -> %dx%d", h, w, oh, ow);
      continue;
    }
    float *in = malloc(sizeof(float) * (size_t)h * w), *out = malloc(sizeof(float) * (size_t)oh * ow);
    double *din = malloc(sizeof(double) * (size_t)h * w), *dout = malloc(sizeof(double) * (size_t)oh * ow);
    /* constant images stay constant */
    double worst = 0;
    for (int k = 0; k < 3; k++) {
      float c = k == 0 ? 0.0f : (k == 1 ? 1.0f : 0.3f);
      for (int i = 0; i < h * w; i++) in[i] = c;
      img_resize_f32(&r, in, out);
      for (int i = 0; i < oh * ow; i++) worst = worse(worst, fabs(out[i] - c));
    }
    ok(worst < 1e-6, "%dx%d -> %dx%d: constant images stay constant (max error %.2g)", h, w, oh, ow, worst);
    /* random images (and strokes: runs of 0s) against the double-precision reference */
    worst = 0;
    for (int k = 0; k < 3; k++) {
      for (int i = 0; i < h * w; i++) {
        double v = k == 2 ? ((i / 3) % 4 == 0 ? 0.0 : 1.0) : urand();
        in[i] = (float)v;
        din[i] = in[i];
      }
      img_resize_f32(&r, in, out);
      ref_resize(din, h, w, dout, oh, ow);
      for (int i = 0; i < oh * ow; i++) worst = worse(worst, fabs(out[i] - dout[i]));
    }
    ok(worst < 1e-5, "%dx%d -> %dx%d: matches an independent double-precision Lanczos-3 (max error %.2g)", h, w, oh, ow,
       worst);
    free(in);
    free(out);
    free(din);
    free(dout);
    img_resizer_free(&r);
  }

  /* PIL 9.4's Image.fromarray(a, "L").resize((ow, oh), Image.LANCZOS) on the pattern below */
  struct {
    int h, w, oh, ow;
    uint8_t want[63];
  } pil[] = {
      {8, 8, 3, 3, {84, 130, 154, 114, 124, 156, 148, 141, 90}},
      {12, 7, 5, 4, {79, 107, 147, 129, 98, 114, 115, 175, 157, 143, 133, 124, 92, 118, 152, 130, 99, 111, 102, 187}},
      {4, 5, 7, 9, {0,   10,  66,  175, 205, 95,  4,   55,  111, 4,   31,  88,  136, 124, 61,  43,
                    107, 158, 17,  73,  138, 92,  12,  30,  122, 194, 227, 29,  115, 212, 127, 5,
                    68,  203, 247, 251, 60,  118, 190, 152, 90,  147, 218, 206, 184, 109, 88,  68,
                    90,  143, 189, 179, 126, 89,  136, 65,  0,   40,  163, 200, 145, 75,  35}},
  };
  for (size_t s = 0; s < sizeof pil / sizeof pil[0]; s++) {
    int h = pil[s].h, w = pil[s].w, oh = pil[s].oh, ow = pil[s].ow;
    uint8_t in[105 * 105], out[28 * 28];
    for (int i = 0; i < h; i++)
      for (int j = 0; j < w; j++) in[i * w + j] = (uint8_t)((i * 37 + j * 91 + (i * j) % 7 * 20) % 256);
    ImgResizer r;
    img_resizer_init(&r, h, w, oh, ow);
    img_resize_u8(&r, in, out);
    img_resizer_free(&r);
    ok(memcmp(out, pil[s].want, (size_t)oh * ow) == 0, "8-bit path bit-identical to PIL's LANCZOS, %dx%d -> %dx%d", h,
       w, oh, ow);
  }
  {
    uint8_t in[105 * 105], out[28 * 28];
    for (int i = 0; i < 105; i++)
      for (int j = 0; j < 105; j++) in[i * 105 + j] = (uint8_t)((i * 37 + j * 91 + (i * j) % 7 * 20) % 256);
    ImgResizer r;
    img_resizer_init(&r, 105, 105, 28, 28);
    img_resize_u8(&r, in, out);
    img_resizer_free(&r);
    long sum = 0;
    for (int i = 0; i < 784; i++) sum += out[i];
    ok(sum == 101833 && out[0] == 97 && out[1] == 146 && out[5] == 142 && out[14 * 28 + 14] == 114,
       "8-bit path matches PIL on 105x105 -> 28x28 (sum %ld)", sum);
  }
  ImgFilter f;
  ok(img_filter_init(&f, 0, 3) == -1 && img_filter_init(&f, 5, IMG_MAX_SIDE + 1) == -1,
     "filter refuses empty and oversized sides");
}

/* ------------------------------------------------------------ rotation, canvas, CRC-32C */

static void test_rotation(void) {
  const float a[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const float want[4][9] = {{1, 2, 3, 4, 5, 6, 7, 8, 9},
                            {3, 6, 9, 2, 5, 8, 1, 4, 7},
                            {9, 8, 7, 6, 5, 4, 3, 2, 1},
                            {7, 4, 1, 8, 5, 2, 9, 6, 3}};
  for (int r = 0; r < 4; r++) {
    float out[9];
    img_rot90(a, out, 3, 3, r);
    ok(memcmp(out, want[r], sizeof out) == 0, "rot90 by %d quarter turns is numpy.rot90(a, %d)", r, r);
  }
  float out[9];
  img_rot90(a, out, 3, 3, 5);
  ok(memcmp(out, want[1], sizeof out) == 0, "rot90 takes rot modulo 4");
  const float b[6] = {1, 2, 3, 4, 5, 6}, b2[6] = {6, 5, 4, 3, 2, 1};
  img_rot90(b, out, 2, 3, 2);
  ok(memcmp(out, b2, sizeof b2) == 0, "rot90 by 180 degrees of a 2x3 image");
}

static void test_canvas(void) {
  ImgCanvas c;
  const uint8_t white[3] = {255, 255, 255}, red[3] = {255, 0, 0};
  ok(img_canvas_init(&c, 0, 5, white) == -1, "canvas refuses an empty size");
  img_canvas_init(&c, 10, 20, white);
  img_canvas_fill(&c, -5, -5, 7, 7, red); /* clipped at the top left */
  img_canvas_fill(&c, 8, 18, 50, 50, red); /* clipped at the bottom right */
  ok(c.rgb[1] == 0 && c.rgb[(1 * 20 + 1) * 3 + 1] == 0 && c.rgb[(2 * 20 + 2) * 3 + 1] == 255 &&
         c.rgb[(9 * 20 + 19) * 3 + 1] == 0,
     "canvas fill is clipped to the canvas");
  img_canvas_fill(&c, 0, 0, 10, 20, white);
  int w = img_canvas_number(&c, 0, 0, 17, 1, red);
  /* "1" is 010/110/010/010/111, "7" is 111/001/001/001/001 */
  ok(w == 7 && img_number_width(17, 1) == 7 && img_number_width(5, 2) == 6 && c.rgb[1 * 3 + 1] == 0 &&
         c.rgb[0 * 3 + 1] == 255 && c.rgb[(4 * 20 + 0) * 3 + 1] == 0 && c.rgb[(1 * 20 + 6) * 3 + 1] == 0 &&
         c.rgb[(1 * 20 + 4) * 3 + 1] == 255,
     "digits drawn with the 3x5 font");
  float g[4] = {0.0f, 1.0f, 0.5f, 2.0f};
  img_canvas_paste_gray(&c, 2, 2, g, 2, 2, 2, 1);
  ok(c.rgb[(2 * 20 + 2) * 3] == 255 && c.rgb[(3 * 20 + 3) * 3] == 255 && c.rgb[(2 * 20 + 4) * 3] == 0 &&
         c.rgb[(4 * 20 + 2) * 3] == 128 && c.rgb[(4 * 20 + 4) * 3] == 0,
     "paste gray: scaled, inverted, clamped");
  img_canvas_free(&c);
}

static void test_crc(void) {
  ok(crc32c(0, "123456789", 9) == 0xE3069283u && crc32c_soft(0, "123456789", 9) == 0xE3069283u,
     "CRC-32C check value of \"123456789\" (hardware and table versions)");
  uint8_t buf[1000];
  for (int i = 0; i < 1000; i++) buf[i] = (uint8_t)(i * 7 + 3);
  uint32_t whole = crc32c(0, buf, 1000);
  uint32_t parts = crc32c(crc32c(crc32c(0, buf, 3), buf + 3, 500), buf + 503, 497);
  uint32_t bytewise = 0;
  for (int i = 0; i < 1000; i++) bytewise = crc32c(bytewise, buf + i, 1);
  ok(whole == parts && whole == bytewise && crc32c(0, buf, 0) == 0 && whole == crc32c_soft(0, buf, 1000) &&
         crc32c(0, buf + 3, 997) == crc32c_soft(0, buf + 3, 997),
     "CRC-32C is the same in pieces, byte by byte, at odd offsets, hardware or not");
}

/* ------------------------------------------------------------ the loader */

/* gray level of image j (0-based, in name order) of class k */
static int level(int k, int j) { return 20 + 30 * k + 7 * j; }

/* a tree with 5 classes of 3 images: names chosen so that strcmp order differs
** from case-insensitive and numeric order, files written out of order, hidden
** and non-PNG entries to skip, and every PNG format */
static const char *tree_classes[5][3] = {
    {"images_background", "Alpha", "character10"}, {"images_background", "Alpha", "character2"},
    {"images_background", "Beta", "character01"},  {"images_background", "alpha", "character01"},
    {"images_evaluation", "Gamma", "character01"},
};

static void make_tree(const char *root) {
  char dir[1536], path[PATHBUF];
  const char *names[3] = {"c.png", "a.png", "b.png"}; /* written out of order */
  const int name_rank[3] = {2, 0, 1};
  int fmt = 0;
  for (int k = 0; k < 5; k++) {
    snprintf(dir, sizeof dir, "%s/%s/%s/%s", root, tree_classes[k][0], tree_classes[k][1], tree_classes[k][2]);
    mkdirs(dir);
    for (int n = 0; n < 3; n++) {
      snprintf(path, sizeof path, "%s/%s", dir, names[n]);
      int j = name_rank[n];
      if (k == 4) { /* 1-bit: white, black, half */
        int g = j == 0 ? 255 : 0, w = 105;
        write_test_png(path, FMT_GRAY1, 105, 105, j == 2 ? half_px : const_px, j == 2 ? (void *)&w : (void *)&g);
      } else {
        int g = level(k, j), f = fmt++ % NFMT;
        if (f == FMT_GRAY1) f = FMT_GRAY8;
        write_test_png(path, f, 105, 105, const_px, &g);
      }
    }
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    write_bytes(path, "not an image", 12);
    snprintf(path, sizeof path, "%s/.hidden.png", dir);
    write_bytes(path, "hidden", 6);
  }
  snprintf(path, sizeof path, "%s/images_background/.DS_Store", root);
  write_bytes(path, "x", 1);
  snprintf(path, sizeof path, "%s/images_background/Alpha/README", root);
  write_bytes(path, "a file among the characters", 27);
  snprintf(dir, sizeof dir, "%s/images_background/.git/character01", root);
  mkdirs(dir);
}

static double image_mean(const OmDataset *ds, int k, int j) {
  int S = ds->size;
  const float *p = T_DATA(ds->images) + ((size_t)k * ds->per_class + j) * S * S;
  double s = 0;
  for (int i = 0; i < S * S; i++) s += p[i];
  return s / (S * S);
}

static double image_spread(const OmDataset *ds, int k, int j) {
  int S = ds->size;
  const float *p = T_DATA(ds->images) + ((size_t)k * ds->per_class + j) * S * S;
  float lo = p[0], hi = p[0];
  for (int i = 0; i < S * S; i++) {
    if (isnan(p[i])) return NAN;
    lo = fminf(lo, p[i]), hi = fmaxf(hi, p[i]);
  }
  return hi - lo;
}

static void test_loader(void) {
  char root[ROOTBUF], cache[PATHBUF], err[700];
  PATH_IN(root, "tree");
  make_tree(root);
  OmOptions o;
  om_default_options(&o);
  OmDataset ds;
  int rc = om_load(root, &o, &ds, err, sizeof err);
  ok(rc == 0, "load a generated tree%s%s", rc ? ": " : "", rc ? err : "");
  if (rc) return;
  ok(ds.nclasses == 5 && ds.per_class == 3 && ds.size == 28 && ds.images->ndim == 5 && ds.images->shape[0] == 5 &&
         ds.images->shape[1] == 3 && ds.images->shape[2] == 1 && ds.images->shape[3] == 28 && ds.images->shape[4] == 28,
     "images tensor is (classes, images, 1, 28, 28)");
  int order = 1;
  for (int k = 0; k < 5; k++)
    order = order && strcmp(ds.classes[k].alphabet, tree_classes[k][1]) == 0 &&
            strcmp(ds.classes[k].character, tree_classes[k][2]) == 0 && ds.classes[k].set == (k == 4);
  ok(order, "classes in byte order: background then evaluation, Alpha < Beta < alpha, character10 < character2");
  double worst = 0;
  for (int k = 0; k < 4; k++)
    for (int j = 0; j < 3; j++) {
      worst = worse(worst, fabs(image_mean(&ds, k, j) - (1.0 - level(k, j) / 255.0)));
      worst = worse(worst, image_spread(&ds, k, j));
    }
  ok(worst < 1e-5, "images in name order, every format, constant, scaled to [0,1] and inverted (max error %.2g)",
     worst);
  double half = image_mean(&ds, 4, 2);
  ok(image_mean(&ds, 4, 0) == 0.0 && image_mean(&ds, 4, 1) == 1.0 && fabs(half - 0.5) < 0.02,
     "1-bit images: white background is 0, black strokes are 1 (half/half mean %.4f)", half);
  const float *p = T_DATA(ds.images);
  int in_range = 1;
  for (int64_t i = 0; i < ds.images->numel; i++) in_range = in_range && p[i] >= 0.0f && p[i] <= 1.0f;
  ok(in_range, "all values in [0, 1]");
  ok(strcmp(ds.cache_status, "off") == 0, "no cache asked: status 'off'");
  uint64_t fp = ds.fingerprint;
  om_dataset_free(&ds);

  /* threads do not change the result */
  OmDataset d1, d2;
  o.threads = 1;
  int r1 = om_load(root, &o, &d1, err, sizeof err);
  o.threads = 3;
  int r2 = om_load(root, &o, &d2, err, sizeof err);
  o.threads = 0;
  ok(r1 == 0 && r2 == 0 &&
         memcmp(T_DATA(d1.images), T_DATA(d2.images), sizeof(float) * (size_t)d1.images->numel) == 0 &&
         d1.fingerprint == fp,
     "1 and 3 decoding threads give the same images");
  if (r1 == 0) om_dataset_free(&d1);
  if (r2 == 0) om_dataset_free(&d2);

  /* other sizes and PIL's 8-bit path */
  o.size = 14;
  rc = om_load(root, &o, &ds, err, sizeof err);
  ok(rc == 0 && ds.size == 14 && ds.images->shape[4] == 14 &&
         fabs(image_mean(&ds, 0, 0) - (1 - level(0, 0) / 255.0)) < 1e-5,
     "size=14");
  if (rc == 0) om_dataset_free(&ds);
  o.size = 28;
  o.pil_exact = 1;
  rc = om_load(root, &o, &ds, err, sizeof err);
  ok(rc == 0 && ds.pil_exact && fabs(image_mean(&ds, 1, 2) - (1 - level(1, 2) / 255.0)) < 1e-6 && ds.fingerprint != fp,
     "pil_exact: constants exact, another fingerprint");
  if (rc == 0) om_dataset_free(&ds);
  o.pil_exact = 0;

  /* ---- cache */
  PATH_IN(cache, "cachedir/sub/omniglot.bin");
  o.cache = cache;
  rc = om_load(root, &o, &ds, err, sizeof err);
  ok(rc == 0 && strcmp(ds.cache_status, "built") == 0 && ds.cache_error[0] == 0 && file_size(cache) > 0,
     "first load with a cache: status 'built', cache written (folders created)");
  Tensor *first = rc == 0 ? t_retain(ds.images) : NULL;
  if (rc == 0) om_dataset_free(&ds);
  rc = om_load(root, &o, &ds, err, sizeof err);
  int same = rc == 0 && first && memcmp(T_DATA(first), T_DATA(ds.images), sizeof(float) * (size_t)first->numel) == 0;
  ok(rc == 0 && strcmp(ds.cache_status, "hit") == 0 && same && ds.nclasses == 5 &&
         strcmp(ds.classes[3].alphabet, "alpha") == 0 && strcmp(ds.classes[1].character, "character2") == 0 &&
         ds.classes[4].set == 1,
     "second load: cache 'hit', the same images, names and sets");
  if (rc == 0) om_dataset_free(&ds);
  {
    char dir[PATHBUF];
    PATH_IN(dir, "cachedir/sub");
    DIR *d = opendir(dir);
    int entries = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
      if (de->d_name[0] != '.') entries++;
    if (d) closedir(d);
    ok(entries == 1, "no temporary file left beside the cache (%d entries)", entries);
  }
  /* the cache alone */
  o.cache = cache;
  rc = om_load(NULL, &o, &ds, err, sizeof err);
  ok(rc == 0 && strcmp(ds.cache_status, "unchecked") == 0 && first &&
         memcmp(T_DATA(first), T_DATA(ds.images), sizeof(float) * (size_t)first->numel) == 0,
     "the cache alone loads without the tree");
  if (rc == 0) om_dataset_free(&ds);

  /* a changed source file: rebuilt */
  char png[PATHBUF];
  snprintf(png, sizeof png, "%s/images_background/Beta/character01/b.png", root);
  struct timeval tv[2] = {{1000000000, 0}, {1000000000, 0}};
  utimes(png, tv);
  rc = om_load(root, &o, &ds, err, sizeof err);
  ok(rc == 0 && contains(ds.cache_status, "rebuilt") && contains(ds.cache_status, "changed"),
     "a touched source image invalidates the cache (%s)", rc ? err : ds.cache_status);
  if (rc == 0) om_dataset_free(&ds);
  rc = om_load(root, &o, &ds, err, sizeof err);
  ok(rc == 0 && strcmp(ds.cache_status, "hit") == 0, "then the rebuilt cache hits");
  if (rc == 0) om_dataset_free(&ds);

  /* other settings: rebuilt */
  o.size = 20;
  rc = om_load(root, &o, &ds, err, sizeof err);
  ok(rc == 0 && contains(ds.cache_status, "rebuilt: made with other settings") && ds.size == 20,
     "another size rebuilds the cache (%s)", rc ? err : ds.cache_status);
  if (rc == 0) om_dataset_free(&ds);
  o.size = 28;
  rc = om_load(root, &o, &ds, err, sizeof err); /* back to 28 */
  if (rc == 0) om_dataset_free(&ds);

  /* corruptions, each detected and rebuilt */
  long size = file_size(cache);
  if (size <= OM_CACHE_HEADER) {
    ok(0, "cache file has a plausible size (%ld bytes)", size);
    t_release(first);
    return;
  }
  FILE *f = fopen(cache, "rb");
  uint8_t *bytes = malloc((size_t)size);
  size_t got = f ? fread(bytes, 1, (size_t)size, f) : 0;
  if (f) fclose(f);
  ok(got == (size_t)size && size > OM_CACHE_HEADER && memcmp(bytes, "MAMLOMNI", 8) == 0,
     "cache file starts with the MAMLOMNI magic");
  struct {
    const char *what, *expect;
    long offset; /* byte to flip, or -1 */
    long length; /* bytes to write */
  } cases[] = {
      {"a flipped payload byte", "payload checksum mismatch", size - 5, size},
      {"a flipped name byte", "checksum mismatch", OM_CACHE_HEADER + 3, size},
      {"a flipped header byte", "header checksum mismatch", 17, size},
      {"a truncated file", "truncated", -1, size - 100},
      {"a file shorter than the header", "truncated", -1, 20},
      {"an empty file", "truncated", -1, 0},
      {"trailing bytes", "trailing bytes", -1, size + 1},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    uint8_t *copy = malloc((size_t)size + 1);
    memcpy(copy, bytes, (size_t)size);
    copy[size] = 0;
    if (cases[c].offset >= 0) copy[cases[c].offset] ^= 0x40;
    write_bytes(cache, copy, (size_t)cases[c].length);
    free(copy);
    rc = om_load(root, &o, &ds, err, sizeof err);
    ok(rc == 0 && contains(ds.cache_status, "rebuilt") && contains(ds.cache_status, cases[c].expect) && first &&
           memcmp(T_DATA(first), T_DATA(ds.images), sizeof(float) * (size_t)first->numel) == 0,
       "cache with %s: detected and rebuilt (%s)", cases[c].what, rc ? err : ds.cache_status);
    if (rc == 0) om_dataset_free(&ds);
  }
  uint8_t foreign[200];
  for (int i = 0; i < 200; i++) foreign[i] = (uint8_t)(i * 13);
  write_bytes(cache, foreign, sizeof foreign);
  rc = om_load(root, &o, &ds, err, sizeof err);
  ok(rc == 0 && contains(ds.cache_status, "not a mamlrun Omniglot cache"), "a foreign file: detected (%s)",
     rc ? err : ds.cache_status);
  if (rc == 0) om_dataset_free(&ds);
  write_bytes(cache, foreign, sizeof foreign);
  rc = om_load(NULL, &o, &ds, err, sizeof err);
  ok(rc == -1 && contains(err, "unusable") && contains(err, "MAMLOMNI"), "the cache alone, invalid: an error (%s)",
     err);
  /* a wrong version number with a valid header checksum */
  memcpy(foreign, bytes, OM_CACHE_HEADER);
  uint32_t v = 99, crc;
  memcpy(foreign + 8, &v, 4);
  crc = crc32c(0, foreign, 60);
  memcpy(foreign + 60, &crc, 4);
  write_bytes(cache, foreign, OM_CACHE_HEADER);
  rc = om_load(root, &o, &ds, err, sizeof err);
  ok(rc == 0 && contains(ds.cache_status, "version 99"), "another cache version: rebuilt (%s)",
     rc ? err : ds.cache_status);
  if (rc == 0) om_dataset_free(&ds);
  free(bytes);

  /* a cache that cannot be written: loading still works */
  o.cache = "/dev/null/cannot/cache.bin";
  rc = om_load(root, &o, &ds, err, sizeof err);
  ok(rc == 0 && strcmp(ds.cache_status, "built") == 0 && contains(ds.cache_error, "cannot"),
     "an unwritable cache path: loaded anyway, cache_error says why (%s)", rc ? err : ds.cache_error);
  if (rc == 0) om_dataset_free(&ds);
  o.cache = NULL;
  t_release(first);
}

/* a fresh one-class-per-set tree under tmpdir/name, 2 images per class */
static void small_tree(char *root, const char *name, int classes) {
  char dir[1536], path[PATHBUF];
  path_in(root, ROOTBUF, "%s", name);
  for (int s = 0; s < 2; s++)
    for (int k = 0; k < classes; k++) {
      snprintf(dir, sizeof dir, "%s/%s/Alpha/character%02d", root, s ? "images_evaluation" : "images_background",
               k + 1);
      mkdirs(dir);
      for (int j = 0; j < 2; j++) {
        int g = 100 + j;
        snprintf(path, sizeof path, "%s/%02d.png", dir, j + 1);
        write_test_png(path, FMT_GRAY8, 20, 20, const_px, &g);
      }
    }
}

static void test_loader_errors(void) {
  char root[ROOTBUF], path[PATHBUF], err[700];
  OmOptions o;
  om_default_options(&o);
  OmDataset ds;

  PATH_IN(root, "nowhere");
  int rc = om_load(root, &o, &ds, err, sizeof err);
  ok(rc == -1 && contains(err, "expected directory with images_background/") && contains(err, root), "missing root: %s",
     err);
  PATH_IN(root, "only_background");
  snprintf(path, sizeof path, "%s/images_background", root);
  mkdirs(path);
  rc = om_load(root, &o, &ds, err, sizeof err);
  ok(rc == -1 && contains(err, "images_evaluation/"), "no images_evaluation/: %s", err);
  snprintf(path, sizeof path, "%s/images_evaluation", root);
  mkdirs(path);
  rc = om_load(root, &o, &ds, err, sizeof err);
  ok(rc == -1 && contains(err, "no class folders"), "no classes at all: %s", err);

  small_tree(root, "empty_class", 2);
  snprintf(path, sizeof path, "%s/images_background/Alpha/character02b", root);
  mkdirs(path);
  rc = om_load(root, &o, &ds, err, sizeof err);
  ok(rc == -1 && contains(err, "character02b") && contains(err, "has no .png images"), "an empty class folder: %s",
     err);

  small_tree(root, "uneven", 2);
  snprintf(path, sizeof path, "%s/images_evaluation/Alpha/character02/03.png", root);
  int g = 5;
  write_test_png(path, FMT_GRAY8, 20, 20, const_px, &g);
  rc = om_load(root, &o, &ds, err, sizeof err);
  ok(rc == -1 && contains(err, "character02") && contains(err, "has 3 .png images, expected 2"),
     "a class with more images than the others: %s", err);
  o.images_per_class = 3;
  rc = om_load(root, &o, &ds, err, sizeof err);
  ok(rc == -1 && contains(err, "has 2 .png images, expected 3 (images_per_class)"), "images_per_class=3: %s", err);
  o.images_per_class = 0;

  small_tree(root, "truncated", 3);
  snprintf(path, sizeof path, "%s/images_background/Alpha/character02/02.png", root);
  long n = file_size(path);
  if (n > 0) truncate(path, n / 2);
  rc = om_load(root, &o, &ds, err, sizeof err);
  ok(rc == -1 && contains(err, path) && contains(err, "libpng"), "a truncated PNG in the tree: %s", err);

  small_tree(root, "not_png", 3);
  snprintf(path, sizeof path, "%s/images_evaluation/Alpha/character03/01.png", root);
  write_bytes(path, "GIF89a....", 10);
  rc = om_load(root, &o, &ds, err, sizeof err);
  ok(rc == -1 && contains(err, path) && contains(err, "not a PNG file"), "a non-PNG file named .png: %s", err);

  /* two bad files: always the first one in load order, whatever the threads do */
  small_tree(root, "two_bad", 8);
  char first_bad[PATHBUF];
  snprintf(first_bad, sizeof first_bad, "%s/images_background/Alpha/character05/02.png", root);
  write_bytes(first_bad, "bad", 3);
  snprintf(path, sizeof path, "%s/images_evaluation/Alpha/character01/01.png", root);
  write_bytes(path, "bad", 3);
  int always = 1;
  for (int rep = 0; rep < 8; rep++) {
    o.threads = 1 + rep % 4;
    rc = om_load(root, &o, &ds, err, sizeof err);
    always = always && rc == -1 && contains(err, first_bad);
  }
  o.threads = 0;
  ok(always, "with two corrupt files the first in load order is reported, for 1 to 4 threads");

  o.size = 0;
  small_tree(root, "fine", 1);
  rc = om_load(root, &o, &ds, err, sizeof err);
  ok(rc == -1 && contains(err, "size"), "size 0 refused: %s", err);
  o.size = 28;
  rc = om_load(NULL, &o, &ds, err, sizeof err);
  ok(rc == -1 && contains(err, "neither"), "no root and no cache: %s", err);
  PATH_IN(path, "fine/missing_cache.bin");
  o.cache = path;
  rc = om_load(NULL, &o, &ds, err, sizeof err);
  ok(rc == -1 && contains(err, "no cache file"), "cache alone, missing: %s", err);
  o.cache = NULL;
}

int main(void) {
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/mamlrun-test-image.XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(tmpdir)) {
    printf("not ok 1 - cannot create a temporary folder (%s)\n1..1\n", strerror(errno));
    return 1;
  }
  test_crc();
  test_png_formats();
  test_png_errors();
  test_png_roundtrip();
  test_resize();
  test_rotation();
  test_canvas();
  test_loader();
  test_loader_errors();
  rm_tree(tmpdir);
  return tap_done();
}
