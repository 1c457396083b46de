/*
** omniglot_walk.c: the Omniglot folder tree in load order (omniglot.h): the
** class folders and their *.png files, sorted by byte order, and the source
** fingerprint (FNV-1a 64 of the settings and of every file's name, size and
** mtime) that tells whether a cache still matches the images.
*/
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "omniglot.h"
#include "sys.h"

const char *const om_set_names[2] = {"background", "evaluation"};
static const char *const set_dirs[2] = {"images_background", "images_evaluation"};

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
  const uint8_t *p = data;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * FNV_PRIME;
  return h;
}

static uint64_t fnv1a_str(uint64_t h, const char *s) { return fnv1a(h, s, strlen(s) + 1); }

static uint64_t fnv1a_i64(uint64_t h, int64_t v) {
  uint8_t b[8];
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)v >> (8 * i));
  return fnv1a(h, b, 8);
}

typedef struct Entry {
  char *name;
  int64_t size, mtime_s, mtime_ns;
} Entry;

typedef struct EntryList {
  Entry *v;
  int n, cap;
} EntryList;

static void entries_free(EntryList *l) {
  for (int i = 0; i < l->n; i++) free(l->v[i].name);
  free(l->v);
  memset(l, 0, sizeof *l);
}

static int cmp_entry(const void *a, const void *b) {
  return strcmp(((const Entry *)a)->name, ((const Entry *)b)->name);
}

static int ends_with_png(const char *s) {
  size_t n = strlen(s);
  return n > 4 && strcmp(s + n - 4, ".png") == 0;
}

/* the sub-folders (want_dirs) or the *.png regular files of dir, sorted by
** strcmp; names starting with '.' are skipped */
static int list_dir(const char *dir, int want_dirs, EntryList *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  DIR *d = opendir(dir);
  if (!d) {
    snprintf(err, errlen, "cannot read folder '%s' (%s)", dir, strerror(errno));
    return -1;
  }
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.') continue;
    if (!want_dirs && !ends_with_png(de->d_name)) continue;
    if (strlen(dir) + 1 + strlen(de->d_name) >= PATH_MAX) {
      snprintf(err, errlen, "path too long in '%s'", dir);
      goto fail;
    }
    struct stat st; /* relative to the open folder: no path lookup from the root */
    if (fstatat(dirfd(d), de->d_name, &st, 0) != 0) {
      snprintf(err, errlen, "cannot stat '%s/%s' (%s)", dir, de->d_name, strerror(errno));
      goto fail;
    }
    if (want_dirs ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) continue;
    if (out->n == out->cap) {
      int cap = out->cap ? 2 * out->cap : 32;
      Entry *v = realloc(out->v, sizeof(Entry) * (size_t)cap);
      if (!v) goto oom;
      out->v = v;
      out->cap = cap;
    }
    Entry *e = &out->v[out->n];
    e->name = strdup(de->d_name);
    if (!e->name) goto oom;
    e->size = (int64_t)st.st_size;
    e->mtime_s = (int64_t)st.st_mtim.tv_sec;
    e->mtime_ns = (int64_t)st.st_mtim.tv_nsec;
    out->n++;
  }
  closedir(d);
  if (out->n > 1) qsort(out->v, (size_t)out->n, sizeof(Entry), cmp_entry);
  return 0;
oom:
  snprintf(err, errlen, "out of memory listing '%s'", dir);
fail:
  closedir(d);
  entries_free(out);
  return -1;
}

void om_walk_free(OmWalk *w) {
  for (int i = 0; i < w->nclasses; i++) {
    free(w->classes[i].alphabet);
    free(w->classes[i].character);
  }
  free(w->classes);
  for (int i = 0; i < w->nfiles; i++) free(w->files[i]);
  free(w->files);
  memset(w, 0, sizeof *w);
}

int om_has_set_dirs(const char *root) {
  char path[PATH_MAX];
  for (int s = 0; s < 2; s++) {
    if ((size_t)snprintf(path, sizeof path, "%s/%s", root, set_dirs[s]) >= sizeof path) return 0;
    if (!sys_is_dir(path)) return 0;
  }
  return 1;
}

/* add one class folder's images to w */
static int walk_class(OmWalk *w, const char *cdir, int want, char *err, size_t errlen) {
  EntryList files;
  if (list_dir(cdir, 0, &files, err, errlen)) return -1;
  int rc = -1;
  if (files.n == 0) {
    snprintf(err, errlen, "class folder '%s' has no .png images", cdir);
    goto done;
  }
  if (w->per_class == 0) w->per_class = want > 0 ? want : files.n;
  if (files.n != w->per_class) {
    snprintf(err, errlen, "class folder '%s' has %d .png images, expected %d (%s)", cdir, files.n, w->per_class,
             want > 0 ? "images_per_class" : "as many as the first class");
    goto done;
  }
  if (w->nfiles + files.n > w->files_cap) {
    int cap = w->files_cap ? 2 * w->files_cap : 1024;
    while (cap < w->nfiles + files.n) cap *= 2;
    char **v = realloc(w->files, sizeof(char *) * (size_t)cap);
    if (!v) goto oom;
    w->files = v;
    w->files_cap = cap;
  }
  for (int i = 0; i < files.n; i++) {
    size_t len = strlen(cdir) + 1 + strlen(files.v[i].name) + 1;
    char *p = malloc(len);
    if (!p) goto oom;
    snprintf(p, len, "%s/%s", cdir, files.v[i].name);
    w->files[w->nfiles++] = p;
    w->fingerprint = fnv1a_str(w->fingerprint, files.v[i].name);
    w->fingerprint = fnv1a_i64(w->fingerprint, files.v[i].size);
    w->fingerprint = fnv1a_i64(w->fingerprint, files.v[i].mtime_s);
    w->fingerprint = fnv1a_i64(w->fingerprint, files.v[i].mtime_ns);
  }
  rc = 0;
  goto done;
oom:
  snprintf(err, errlen, "out of memory walking '%s'", cdir);
done:
  entries_free(&files);
  return rc;
}

int om_walk_tree(const char *root, const OmOptions *opt, OmWalk *w, char *err, size_t errlen) {
  memset(w, 0, sizeof *w);
  w->fingerprint = FNV_OFFSET;
  /* the settings are part of the fingerprint: other settings, other cache */
  w->fingerprint = fnv1a_i64(w->fingerprint, OM_CACHE_VERSION);
  w->fingerprint = fnv1a_i64(w->fingerprint, opt->size);
  w->fingerprint = fnv1a_i64(w->fingerprint, opt->pil_exact);
  w->fingerprint = fnv1a_i64(w->fingerprint, opt->images_per_class);
  char sdir[PATH_MAX], adir[PATH_MAX], cdir[PATH_MAX];
  for (int s = 0; s < 2; s++) {
    snprintf(sdir, sizeof sdir, "%s/%s", root, set_dirs[s]);
    EntryList alphabets;
    if (list_dir(sdir, 1, &alphabets, err, errlen)) goto fail;
    for (int a = 0; a < alphabets.n; a++) {
      EntryList chars;
      if ((size_t)snprintf(adir, sizeof adir, "%s/%s", sdir, alphabets.v[a].name) >= sizeof adir ||
          list_dir(adir, 1, &chars, err, errlen)) {
        if (strlen(adir) >= sizeof adir - 1) snprintf(err, errlen, "path too long in '%s'", sdir);
        entries_free(&alphabets);
        goto fail;
      }
      for (int c = 0; c < chars.n; c++) {
        int bad = (size_t)snprintf(cdir, sizeof cdir, "%s/%s", adir, chars.v[c].name) >= sizeof cdir;
        if (bad) snprintf(err, errlen, "path too long in '%s'", adir);
        if (!bad && w->nclasses == w->cap) {
          int cap = w->cap ? 2 * w->cap : 256;
          OmClass *v = realloc(w->classes, sizeof(OmClass) * (size_t)cap);
          if (!v) {
            snprintf(err, errlen, "out of memory walking '%s'", adir);
            bad = 1;
          } else {
            w->classes = v;
            w->cap = cap;
          }
        }
        if (!bad) {
          OmClass *k = &w->classes[w->nclasses];
          k->alphabet = strdup(alphabets.v[a].name);
          k->character = strdup(chars.v[c].name);
          k->set = s;
          w->nclasses++;
          if (!k->alphabet || !k->character) {
            snprintf(err, errlen, "out of memory walking '%s'", adir);
            bad = 1;
          }
        }
        if (bad || walk_class(w, cdir, opt->images_per_class, err, errlen)) {
          entries_free(&chars);
          entries_free(&alphabets);
          goto fail;
        }
        w->fingerprint = fnv1a_i64(w->fingerprint, s);
        w->fingerprint = fnv1a_str(w->fingerprint, alphabets.v[a].name);
        w->fingerprint = fnv1a_str(w->fingerprint, chars.v[c].name);
      }
      entries_free(&chars);
    }
    entries_free(&alphabets);
  }
  if (w->nclasses == 0) {
    snprintf(err, errlen, "no class folders (<alphabet>/<character>/) under '%s'", root);
    goto fail;
  }
  return 0;
fail:
  om_walk_free(w);
  return -1;
}
