/*
** image.h: the pure-C image pieces behind the omniglot module: PNG read and
** write (libpng), Lanczos-3 resize, rotation by multiples of 90 degrees, and
** a small RGB canvas for pictures of tasks. No Lua and no Tensor here.
**
** Images are row-major. Functions that can fail return 0 on success and -1
** on failure with a message in err ("<path>: <reason>"); they never exit or
** longjmp out, and free what they allocated.
*/
#ifndef MAMLRUN_IMAGE_H
#define MAMLRUN_IMAGE_H

#include <stddef.h>
#include <stdint.h>

/* largest PNG side we agree to decode (Omniglot is 105) */
#define IMG_MAX_SIDE 16384

/* ------------------------------------------------------------ PNG */
/* Decode any PNG to 8-bit gray, *out (h*w bytes, malloc'ed; caller frees).
** 1/2/4-bit gray is scaled to 0..255, 16-bit is rounded to 8 bits, palette
** and RGB become gray with PIL's weights L = (19595 R + 38470 G + 7471 B +
** 2^15) >> 16, and an alpha channel is composited over white (transparent
** = background). */
int img_read_png_gray8(const char *path, uint8_t **out, int *h, int *w, char *err, size_t errlen);
/* Write 8-bit gray (channels 1) or RGB (channels 3) pixels as a PNG file. A
** partly written file is removed on failure. */
int img_write_png(const char *path, const uint8_t *pixels, int h, int w, int channels, char *err, size_t errlen);

/* ------------------------------------------------------------ resize */
/* Lanczos-3 resampling the way PIL's ImagingResample does it: separable
** (horizontal pass, then vertical), the filter's support (3) scaled by the
** downscale factor, weights of each output pixel normalised to sum 1.
** Output pixel x is centred on input coordinate (x + 0.5) * in / out. */
typedef struct ImgFilter {
  int in_size, out_size;
  int ksize; /* coefficients per output pixel */
  int *bounds; /* out_size x {first input index, count} */
  double *coeffs; /* out_size x ksize, normalised */
  int32_t *fixed; /* the same as PIL's 8-bit fixed point (22 fraction bits) */
} ImgFilter;

typedef struct ImgResizer {
  int in_h, in_w, out_h, out_w;
  ImgFilter horiz, vert;
  int row_first, row_count; /* input rows the vertical pass reads */
  float *tmp_f32; /* row_count x out_w */
  uint8_t *tmp_u8;
} ImgResizer;

/* the Lanczos-3 kernel, sinc(x) sinc(x/3) on [-3, 3) */
double img_lanczos3(double x);
int img_filter_init(ImgFilter *f, int in_size, int out_size);
void img_filter_free(ImgFilter *f);
int img_resizer_init(ImgResizer *r, int in_h, int in_w, int out_h, int out_w);
void img_resizer_free(ImgResizer *r);
/* float path: both passes in float (double sums), each pass's result clamped
** to [0,1] as PIL's 8-bit passes clip to 0..255 (so it differs from PIL only
** by PIL's rounding to 8 bits). in is in_h x in_w, out is out_h x out_w. */
void img_resize_f32(ImgResizer *r, const float *in, float *out);
/* PIL's 8-bit path, bit-identical to Image.resize(..., LANCZOS) on an "L"
** image: fixed-point weights, rounding and clipping to 0..255 after each pass. */
void img_resize_u8(ImgResizer *r, const uint8_t *in, uint8_t *out);

/* ------------------------------------------------------------ rotation */
/* dst = src rotated by rot * 90 degrees counterclockwise (numpy.rot90(src, rot));
** rot is taken modulo 4; odd rot needs a square image (h == w). */
void img_rot90(const float *src, float *dst, int h, int w, int rot);

/* ------------------------------------------------------------ canvas */
typedef struct ImgCanvas {
  int h, w;
  uint8_t *rgb; /* h x w x 3 */
} ImgCanvas;

int img_canvas_init(ImgCanvas *c, int h, int w, const uint8_t bg[3]);
void img_canvas_free(ImgCanvas *c);
/* clipped to the canvas */
void img_canvas_fill(ImgCanvas *c, int y, int x, int h, int w, const uint8_t rgb[3]);
/* paste a gray float image (values clamped to [0,1], 1 = white), each pixel
** as a scale x scale block; invert maps v to 1 - v first */
void img_canvas_paste_gray(ImgCanvas *c, int y, int x, const float *img, int h, int w, int scale, int invert);
/* draw a non-negative integer with a 3x5 pixel font, each font pixel a
** scale x scale block; returns the width drawn */
int img_canvas_number(ImgCanvas *c, int y, int x, long number, int scale, const uint8_t rgb[3]);
/* width in pixels that img_canvas_number would draw */
int img_number_width(long number, int scale);

#endif
