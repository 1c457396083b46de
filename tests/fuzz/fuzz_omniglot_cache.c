/*
** tests/fuzz/fuzz_omniglot_cache.c: libFuzzer target for the Omniglot cache
** reader (vm/omniglot_cache.c om_cache_read, behind omniglot.load{cache=}). Each
** input is read twice through a scratch file: as it is, and with its two
** CRC-32C fields recomputed, so that mutations also reach the checks behind
** the checksums (sizes, names section, payload). The reader's options take
** the image side and pil_exact flag from the header, so that the settings
** check does not stop every input either. A read succeeds with a consistent
** dataset, or fails with a reason; nothing leaks (LeakSanitizer). With
** FUZZ_EXPECT_VALID=1 (tests/suites.d/fuzz.sh, on caches known to be valid)
** an input read as it is must load: a reader that refused everything would
** otherwise pass.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checksum.h"
#include "omniglot.h"

static char path[4096];

static void remove_scratch(void) { unlink(path); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  const char *tmp = getenv("TMPDIR");
  snprintf(path, sizeof path, "%s/mamlrun-fuzz-cache.%ld", tmp && *tmp ? tmp : "/tmp", (long)getpid());
  atexit(remove_scratch);
  return 0;
}

static uint32_t get_u32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

static int expect_valid(void) {
  const char *e = getenv("FUZZ_EXPECT_VALID");
  return e && e[0] == '1';
}

/* 0 if the cache loaded, -1 if the reader refused it (with a reason) */
static int read_once(const uint8_t *data, size_t size) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) abort();
  OmOptions o;
  om_default_options(&o);
  if (size >= 36) {
    uint32_t side = get_u32(data + 24);
    o.size = side >= 1 && side <= 4096 ? (int)side : OM_DEFAULT_SIZE;
    o.pil_exact = data[32] & 1;
  }
  OmDataset ds;
  char why[256] = "";
  if (om_cache_read(path, &o, 0, &ds, why, sizeof why) != 0) {
    if (why[0] == '\0' || ds.images != NULL || ds.classes != NULL) abort();
    if (expect_valid()) fprintf(stderr, "fuzz_omniglot_cache: the reader refused the input: %s\n", why);
    return -1;
  }
  /* a dataset as the header describes it, every name readable */
  if (ds.images->ndim != 5 || ds.images->shape[0] != ds.nclasses || ds.images->shape[1] != ds.per_class ||
      ds.images->shape[3] != o.size || ds.images->shape[4] != o.size)
    abort();
  size_t total = 0;
  for (int i = 0; i < ds.nclasses; i++)
    total += strlen(ds.classes[i].alphabet) + strlen(ds.classes[i].character) + (size_t)ds.classes[i].set;
  om_dataset_free(&ds);
  if (total == (size_t)-1) abort();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (read_once(data, size) != 0 && expect_valid()) abort();
  if (size >= OM_CACHE_HEADER) {
    uint8_t *fixed = malloc(size);
    if (!fixed) abort();
    memcpy(fixed, data, size);
    uint32_t body = crc32c(0, fixed + OM_CACHE_HEADER, size - OM_CACHE_HEADER);
    memcpy(fixed + 56, &body, 4);
    uint32_t head = crc32c(0, fixed, 60);
    memcpy(fixed + 60, &head, 4);
    read_once(fixed, size);
    free(fixed);
  }
  return 0;
}
