/*
** omniglot.h: the Omniglot loader behind `require "omniglot"`: vm/omniglot.c
** (load), omniglot_walk.c (folders in load order, fingerprint),
** omniglot_decode.c (the decode thread pool), omniglot_cache.c (the cache
** file); the Lua module is vm/lua_omniglot.c.
**
** Load order (documented, deterministic): images_background/ then
** images_evaluation/; in each, alphabet folders, then character folders, sorted
** by byte order (strcmp); in each character folder the *.png files sorted by
** name. Entries whose name starts with '.' are skipped, as are non-PNG files.
** Each image is decoded to gray (ops/image.h), resized from its size to
** size x size with Lanczos-3, scaled to [0,1] and inverted (strokes 1,
** background 0).
**
** Cache file (all integers and floats in the writer's byte order, which the
** byte-order mark lets a reader check):
**   0  "MAMLOMNI"  8-byte magic
**   8  u32 version (OM_CACHE_VERSION)
**  12  u32 byte-order mark 0x01020304
**  16  u32 classes, u32 images per class, u32 height, u32 width
**  32  u32 flags (bit 0: pil_exact)
**  36  u32 reserved (0)
**  40  u64 source fingerprint (FNV-1a 64 of the settings and of every image
**      file's path, size and mtime, in load order)
**  48  u64 bytes of the names section
**  56  u32 CRC-32C (Castagnoli) of the names section and the payload
**  60  u32 CRC-32C of bytes 0..59
**  64  names: per class u8 set (0 background, 1 evaluation), u16 length +
**      alphabet bytes, u16 length + character bytes
**  ..  payload: classes x images x height x width float32
** The file's size must be exactly the sum; anything else is rejected.
*/
#ifndef MAMLRUN_OMNIGLOT_H
#define MAMLRUN_OMNIGLOT_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

#define OM_CACHE_VERSION 2
#define OM_CACHE_HEADER 64
#define OM_DEFAULT_SIZE 28

typedef struct OmOptions {
  int size; /* output side in pixels (default 28) */
  int pil_exact; /* 8-bit resize bit-identical to PIL's LANCZOS */
  int images_per_class; /* 0: as many as the first class has; all must agree */
  const char *cache; /* cache file, or NULL for none */
  int threads; /* decoding threads, 0 = sys_default_threads(); at most OM_DECODE_MAX_THREADS */
} OmOptions;

typedef struct OmClass {
  char *alphabet;
  char *character;
  int set; /* 0 images_background, 1 images_evaluation */
} OmClass;

typedef struct OmDataset {
  int nclasses, per_class, size, pil_exact;
  OmClass *classes;
  Tensor *images; /* (nclasses, per_class, 1, size, size), strokes 1 */
  uint64_t fingerprint;
  /* "hit", "built" (no cache before), "rebuilt: <why>" (stale or invalid
  ** cache), "off" (no cache), "unchecked" (loaded from cache alone) */
  char cache_status[320];
  char cache_error[320]; /* a failed cache write, which is not fatal; "" if none */
  double seconds;
} OmDataset;

extern const char *const om_set_names[2]; /* "background", "evaluation" */

void om_default_options(OmOptions *o);
/* Load root (with images_background/ and images_evaluation/), through the
** cache when opt->cache is set. With root NULL, load opt->cache alone without
** checking it against a source tree. 0 on success, -1 with a message in err. */
int om_load(const char *root, const OmOptions *opt, OmDataset *ds, char *err, size_t errlen);
void om_dataset_free(OmDataset *ds);

/* The cache file on its own. om_cache_read: 0 on success; 1 when the file is
** missing, stale (other fingerprint or settings) or invalid, with why set and
** ds left empty. expect_fingerprint 0 skips the source check. */
int om_cache_read(const char *path, const OmOptions *opt, uint64_t expect_fingerprint, OmDataset *ds, char *why,
                  size_t whylen);
int om_cache_write(const char *path, const OmDataset *ds, char *err, size_t errlen);

/* ---- between the loader's files */

/* decoding threads at the most: the loader's cap on sys_default_threads() (the
** decoded images do not depend on the number of threads) */
#define OM_DECODE_MAX_THREADS 8

/* the folder tree in load order (omniglot_walk.c) */
typedef struct OmWalk {
  OmClass *classes;
  int nclasses, cap;
  char **files; /* nclasses * per_class paths, in load order */
  int nfiles, files_cap;
  int per_class;
  uint64_t fingerprint;
} OmWalk;

/* whether root has images_background/ and images_evaluation/ */
int om_has_set_dirs(const char *root);
/* 0, or -1 with a message in err (w is then empty) */
int om_walk_tree(const char *root, const OmOptions *opt, OmWalk *w, char *err, size_t errlen);
void om_walk_free(OmWalk *w);
/* decode and resize files[0..nfiles) into out (nfiles x size x size floats,
** strokes 1) on a pool of threads (omniglot_decode.c); 0 or -1 with err */
int om_decode_all(char **files, int nfiles, const OmOptions *opt, float *out, char *err, size_t errlen);
void om_classes_free(OmClass *c, int n);

#endif
