/*
** omniglot.c: the Omniglot loader (omniglot.h): walk the folders
** (omniglot_walk.c), use the cache when it matches (omniglot_cache.c), else
** decode every image (omniglot_decode.c) and write the cache. The Lua module
** is vm/lua_omniglot.c.
*/
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "omniglot.h"

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void om_default_options(OmOptions *o) {
  memset(o, 0, sizeof *o);
  o->size = OM_DEFAULT_SIZE;
}

void om_dataset_free(OmDataset *ds) {
  om_classes_free(ds->classes, ds->nclasses);
  t_release(ds->images);
  memset(ds, 0, sizeof *ds);
}

int om_load(const char *root, const OmOptions *opt, OmDataset *ds, char *err, size_t errlen) {
  double t0 = now_seconds();
  memset(ds, 0, sizeof *ds);
  if (opt->size < 1 || opt->size > 4096) {
    snprintf(err, errlen, "size must be in 1..4096, got %d", opt->size);
    return -1;
  }
  char why[256];
  if (!root) { /* the cache alone */
    if (!opt->cache) {
      snprintf(err, errlen, "neither a root folder nor a cache file given");
      return -1;
    }
    if (om_cache_read(opt->cache, opt, 0, ds, why, sizeof why) != 0) {
      snprintf(err, errlen, "cache '%s' is unusable: %s", opt->cache, why);
      return -1;
    }
    snprintf(ds->cache_status, sizeof ds->cache_status, "unchecked");
    ds->seconds = now_seconds() - t0;
    return 0;
  }
  if (!om_has_set_dirs(root)) {
    snprintf(err, errlen, "expected directory with images_background/ and images_evaluation/, got '%s'", root);
    return -1;
  }
  OmWalk w;
  if (om_walk_tree(root, opt, &w, err, errlen)) return -1;
  snprintf(ds->cache_status, sizeof ds->cache_status, "off");
  if (opt->cache) {
    if (om_cache_read(opt->cache, opt, w.fingerprint, ds, why, sizeof why) == 0) {
      om_walk_free(&w);
      snprintf(ds->cache_status, sizeof ds->cache_status, "hit");
      ds->seconds = now_seconds() - t0;
      return 0;
    }
    if (strcmp(why, "no cache file") == 0) snprintf(ds->cache_status, sizeof ds->cache_status, "built");
    else snprintf(ds->cache_status, sizeof ds->cache_status, "rebuilt: %s", why);
  }
  int64_t shape[5] = {w.nclasses, w.per_class, 1, opt->size, opt->size};
  Tensor *images = t_try_new(5, shape, err, errlen); /* not t_new: an error would leak the walk */
  if (!images) {
    om_walk_free(&w);
    return -1;
  }
  if (om_decode_all(w.files, w.nfiles, opt, T_DATA(images), err, errlen)) {
    t_release(images);
    om_walk_free(&w);
    return -1;
  }
  ds->nclasses = w.nclasses;
  ds->per_class = w.per_class;
  ds->size = opt->size;
  ds->pil_exact = !!opt->pil_exact;
  ds->classes = w.classes; /* taken over from the walk */
  w.classes = NULL;
  w.nclasses = 0;
  ds->images = images;
  ds->fingerprint = w.fingerprint;
  om_walk_free(&w);
  if (opt->cache && om_cache_write(opt->cache, ds, ds->cache_error, sizeof ds->cache_error) != 0) {
    /* loading worked; the caller decides whether a missing cache matters */
  }
  ds->seconds = now_seconds() - t0;
  return 0;
}
