/*
** tests/fuzz/fuzz_png.c: libFuzzer target for the PNG reader (ops/image.c
** img_read_png_gray8, which omniglot.load and omniglot.read_png use), followed
** by what the loader does with a decoded image: Lanczos-3 resizes to 28x28 in
** float and in PIL's 8-bit path. A file must decode, or fail with a message;
** a decoded image has sides in 1..IMG_MAX_SIDE and every pixel is readable.
** The reader takes a path, so each input goes through a scratch file.
** With FUZZ_EXPECT_VALID=1 (tests/suites.d/fuzz.sh, on inputs known to be
** valid) a rejected file aborts: a reader that refused everything would
** otherwise pass.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "image.h"

static char path[4096];
static volatile unsigned sink; /* keeps the pixel sums */

static void remove_scratch(void) { unlink(path); }

static int expect_valid(void) {
  const char *e = getenv("FUZZ_EXPECT_VALID");
  return e && e[0] == '1';
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  const char *tmp = getenv("TMPDIR");
  snprintf(path, sizeof path, "%s/mamlrun-fuzz-png.%ld", tmp && *tmp ? tmp : "/tmp", (long)getpid());
  atexit(remove_scratch);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) abort();
  uint8_t *px = NULL;
  int h = 0, w = 0;
  char err[600] = "";
  if (img_read_png_gray8(path, &px, &h, &w, err, sizeof err) != 0) {
    if (px != NULL || err[0] == '\0') abort(); /* a failure frees everything and says why */
    if (expect_valid()) {
      fprintf(stderr, "fuzz_png: a valid PNG was rejected: %s\n", err);
      abort();
    }
    return 0;
  }
  if (h < 1 || w < 1 || h > IMG_MAX_SIDE || w > IMG_MAX_SIDE) abort();
  size_t n = (size_t)h * (size_t)w;
  unsigned sum = 0;
  for (size_t i = 0; i < n; i++) sum += px[i]; /* every pixel is inside the buffer */
  /* the loader's resizes (vm/omniglot_decode.c decode_worker), for images of reasonable size */
  if (n <= ((size_t)1 << 20)) {
    ImgResizer r;
    float *in = malloc(n * sizeof *in), out[28 * 28];
    uint8_t out8[28 * 28];
    if (in && img_resizer_init(&r, h, w, 28, 28) == 0) {
      for (size_t i = 0; i < n; i++) in[i] = (float)px[i] / 255.0f;
      img_resize_f32(&r, in, out);
      img_resize_u8(&r, px, out8);
      for (int i = 0; i < 28 * 28; i++)
        if (!(out[i] >= 0.0f && out[i] <= 1.0f)) abort(); /* each pass clamps to [0, 1] */
      img_resizer_free(&r);
    }
    free(in);
  }
  free(px);
  sink = sum;
  return 0;
}
