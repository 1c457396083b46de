/*
** omniglot.c: the Omniglot loader (directory walk, parallel PNG decode and
** resize, binary cache; see omniglot.h for the load order and the cache
** format) and the `omniglot` Lua module:
**
**   omniglot.load(root [, opts]) / omniglot.load{root=, cache=, size=, ...}
**   omniglot.gather(images, classes, indices [, rotations [, lead_shape]])
**   omniglot.read_png(path), omniglot.write_png(path, t), omniglot.resize(t, h [, w [, opts]])
**   omniglot.tile(images [, opts])
*/
#include "omniglot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#if defined(__SSE4_2__) && defined(__x86_64__)
#include <nmmintrin.h>
#endif

#include "image.h"
#include "lua_tensor.h"

const char *const om_set_names[2] = {"background", "evaluation"};
static const char *const set_dirs[2] = {"images_background", "images_evaluation"};

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ============================================================ checksums */

/* CRC-32C (Castagnoli, reflected 0x82F63B78): the SSE4.2 crc32 instruction
** when the build targets it (-march=x86-64-v2 does), else slicing-by-8 tables;
** both give the same values. */
static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? 0x82F63B78u ^ (c >> 1) : c >> 1;
    crc_table[0][i] = c;
  }
  for (int i = 0; i < 256; i++)
    for (int s = 1; s < 8; s++)
      crc_table[s][i] = (crc_table[s - 1][i] >> 8) ^ crc_table[0][crc_table[s - 1][i] & 0xff];
}

static int little_endian(void) {
  const uint16_t one = 1;
  uint8_t first;
  memcpy(&first, &one, 1);
  return first == 1;
}

uint32_t om_crc32c_soft(uint32_t crc, const void *data, size_t n) {
  pthread_once(&crc_once, crc_init);
  const uint8_t *p = data;
  crc = ~crc;
  if (little_endian()) {
    for (; n >= 8; n -= 8, p += 8) {
      uint32_t lo, hi;
      memcpy(&lo, p, 4);
      memcpy(&hi, p + 4, 4);
      lo ^= crc;
      crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
            crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xff] ^
            crc_table[2][(hi >> 8) & 0xff] ^ crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
    }
  }
  for (; n > 0; n--, p++) crc = crc_table[0][(crc ^ *p) & 0xff] ^ (crc >> 8);
  return ~crc;
}

uint32_t om_crc32c(uint32_t crc, const void *data, size_t n) {
#if defined(__SSE4_2__) && defined(__x86_64__)
  const uint8_t *p = data;
  uint64_t c = (uint32_t)~crc;
  for (; n > 0 && ((uintptr_t)p & 7) != 0; n--, p++) c = _mm_crc32_u8((uint32_t)c, *p);
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
  }
  for (; n > 0; n--, p++) c = _mm_crc32_u8((uint32_t)c, *p);
  return ~(uint32_t)c;
#else
  return om_crc32c_soft(crc, data, n);
#endif
}

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

/* ============================================================ directory walk */

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

typedef struct Walk {
  OmClass *classes;
  int nclasses, cap;
  char **files; /* nclasses * per_class paths, in load order */
  int nfiles, files_cap;
  int per_class;
  uint64_t fingerprint;
} Walk;

static void walk_free(Walk *w) {
  for (int i = 0; i < w->nclasses; i++) {
    free(w->classes[i].alphabet);
    free(w->classes[i].character);
  }
  free(w->classes);
  for (int i = 0; i < w->nfiles; i++) free(w->files[i]);
  free(w->files);
  memset(w, 0, sizeof *w);
}

static int is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int has_set_dirs(const char *root) {
  char path[PATH_MAX];
  for (int s = 0; s < 2; s++) {
    if ((size_t)snprintf(path, sizeof path, "%s/%s", root, set_dirs[s]) >= sizeof path) return 0;
    if (!is_dir(path)) return 0;
  }
  return 1;
}

/* add one class folder's images to w */
static int walk_class(Walk *w, const char *cdir, int want, char *err, size_t errlen) {
  EntryList files;
  if (list_dir(cdir, 0, &files, err, errlen)) return -1;
  int rc = -1;
  if (files.n == 0) {
    snprintf(err, errlen, "class folder '%s' has no .png images", cdir);
    goto done;
  }
  if (w->per_class == 0) w->per_class = want > 0 ? want : files.n;
  if (files.n != w->per_class) {
    snprintf(err, errlen, "class folder '%s' has %d .png images, expected %d (%s)", cdir, files.n,
             w->per_class, want > 0 ? "images_per_class" : "as many as the first class");
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

static int walk_tree(const char *root, const OmOptions *opt, Walk *w, char *err, size_t errlen) {
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
  walk_free(w);
  return -1;
}

/* ============================================================ decoding */

typedef struct DecodeJob {
  char **files;
  int nfiles, size, pil_exact;
  float *out;      /* nfiles x size x size */
  atomic_int next; /* the next file to take */
  atomic_int fail_index;
  pthread_mutex_t lock;
  char err[600];
} DecodeJob;

/* Keep the error of the first failing file in load order: every file before
** fail_index is still decoded, so the reported one does not depend on timing. */
static void job_fail(DecodeJob *job, int i, const char *msg) {
  pthread_mutex_lock(&job->lock);
  if (i < atomic_load(&job->fail_index)) {
    atomic_store(&job->fail_index, i);
    snprintf(job->err, sizeof job->err, "%s", msg);
  }
  pthread_mutex_unlock(&job->lock);
}

static void *decode_worker(void *arg) {
  DecodeJob *job = arg;
  const int S = job->size;
  ImgResizer r;
  int rh = -1, rw = -1;
  float *fin = NULL;
  size_t fin_cap = 0;
  uint8_t *u8 = malloc((size_t)S * S);
  char err[560];
  memset(&r, 0, sizeof r);
  for (;;) {
    int i = atomic_fetch_add(&job->next, 1);
    if (i >= job->nfiles || i > atomic_load(&job->fail_index)) break;
    if (!u8) {
      job_fail(job, i, "out of memory decoding images");
      break;
    }
    uint8_t *px;
    int h, w;
    if (img_read_png_gray8(job->files[i], &px, &h, &w, err, sizeof err)) {
      job_fail(job, i, err);
      break;
    }
    if (h != rh || w != rw) {
      img_resizer_free(&r);
      rh = rw = -1;
      if (img_resizer_init(&r, h, w, S, S)) {
        free(px);
        job_fail(job, i, "out of memory for the resize filter");
        break;
      }
      rh = h;
      rw = w;
    }
    float *dst = job->out + (size_t)i * S * S;
    if (job->pil_exact) {
      img_resize_u8(&r, px, u8);
      for (int j = 0; j < S * S; j++) dst[j] = 1.0f - (float)u8[j] / 255.0f;
    } else {
      if ((size_t)h * w > fin_cap) {
        free(fin);
        fin_cap = (size_t)h * w;
        fin = malloc(sizeof(float) * fin_cap);
        if (!fin) {
          fin_cap = 0;
          free(px);
          job_fail(job, i, "out of memory decoding images");
          break;
        }
      }
      for (size_t j = 0; j < (size_t)h * w; j++) fin[j] = (float)px[j] / 255.0f;
      img_resize_f32(&r, fin, dst);
      for (int j = 0; j < S * S; j++) dst[j] = 1.0f - dst[j];
    }
    free(px);
  }
  img_resizer_free(&r);
  free(fin);
  free(u8);
  return NULL;
}

static int decode_all(char **files, int nfiles, const OmOptions *opt, float *out, char *err,
                      size_t errlen) {
  DecodeJob job;
  memset(&job, 0, sizeof job);
  job.files = files;
  job.nfiles = nfiles;
  job.size = opt->size;
  job.pil_exact = opt->pil_exact;
  job.out = out;
  atomic_init(&job.next, 0);
  atomic_init(&job.fail_index, INT_MAX);
  pthread_mutex_init(&job.lock, NULL);
  int nthreads = opt->threads;
  if (nthreads <= 0) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    nthreads = cores < 1 ? 1 : (cores > 8 ? 8 : (int)cores);
  }
  if (nthreads > nfiles) nthreads = nfiles;
  pthread_t tids[64];
  int started = 0;
  for (int t = 1; t < nthreads && t < 64; t++) {
    if (pthread_create(&tids[started], NULL, decode_worker, &job) != 0) break;
    started++;
  }
  decode_worker(&job); /* this thread works too */
  for (int t = 0; t < started; t++) pthread_join(tids[t], NULL);
  pthread_mutex_destroy(&job.lock);
  if (atomic_load(&job.fail_index) != INT_MAX) {
    snprintf(err, errlen, "%s", job.err);
    return -1;
  }
  return 0;
}

/* ============================================================ cache */

void om_default_options(OmOptions *o) {
  memset(o, 0, sizeof *o);
  o->size = OM_DEFAULT_SIZE;
}

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get_u32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
static uint64_t get_u64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

static void classes_free(OmClass *c, int n) {
  if (!c) return;
  for (int i = 0; i < n; i++) {
    free(c[i].alphabet);
    free(c[i].character);
  }
  free(c);
}

void om_dataset_free(OmDataset *ds) {
  classes_free(ds->classes, ds->nclasses);
  t_release(ds->images);
  memset(ds, 0, sizeof *ds);
}

/* mkdir -p of path's parent folder */
static int make_parent_dirs(const char *path) {
  char buf[PATH_MAX];
  if ((size_t)snprintf(buf, sizeof buf, "%s", path) >= sizeof buf) return -1;
  char *slash = strrchr(buf, '/');
  if (!slash || slash == buf) return 0;
  *slash = '\0';
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
  return 0;
}

int om_cache_write(const char *path, const OmDataset *ds, char *err, size_t errlen) {
  size_t names_bytes = 0;
  for (int i = 0; i < ds->nclasses; i++) {
    size_t a = strlen(ds->classes[i].alphabet), c = strlen(ds->classes[i].character);
    if (a > 65535 || c > 65535) {
      snprintf(err, errlen, "cannot cache '%s': a class name is longer than 65535 bytes", path);
      return -1;
    }
    names_bytes += 5 + a + c;
  }
  uint8_t *head = malloc(OM_CACHE_HEADER + names_bytes);
  if (!head) {
    snprintf(err, errlen, "out of memory writing cache '%s'", path);
    return -1;
  }
  uint8_t *names = head + OM_CACHE_HEADER;
  size_t pos = 0;
  for (int i = 0; i < ds->nclasses; i++) {
    const OmClass *k = &ds->classes[i];
    uint16_t a = (uint16_t)strlen(k->alphabet), c = (uint16_t)strlen(k->character);
    names[pos++] = (uint8_t)k->set;
    memcpy(names + pos, &a, 2);
    memcpy(names + pos + 2, k->alphabet, a);
    pos += 2 + (size_t)a;
    memcpy(names + pos, &c, 2);
    memcpy(names + pos + 2, k->character, c);
    pos += 2 + (size_t)c;
  }
  const float *payload = T_DATA(ds->images);
  size_t payload_bytes = sizeof(float) * (size_t)ds->images->numel;
  uint32_t crc = om_crc32c(om_crc32c(0, names, names_bytes), payload, payload_bytes);
  memset(head, 0, OM_CACHE_HEADER);
  memcpy(head, "MAMLOMNI", 8);
  put_u32(head + 8, OM_CACHE_VERSION);
  put_u32(head + 12, 0x01020304u);
  put_u32(head + 16, (uint32_t)ds->nclasses);
  put_u32(head + 20, (uint32_t)ds->per_class);
  put_u32(head + 24, (uint32_t)ds->size);
  put_u32(head + 28, (uint32_t)ds->size);
  put_u32(head + 32, ds->pil_exact ? 1u : 0u);
  put_u64(head + 40, ds->fingerprint);
  put_u64(head + 48, (uint64_t)names_bytes);
  put_u32(head + 56, crc);
  put_u32(head + 60, om_crc32c(0, head, 60));

  /* atomically: a temporary file in the same folder, fsync, rename */
  char tmp[PATH_MAX];
  if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp) {
    snprintf(err, errlen, "cache path too long: '%s'", path);
    free(head);
    return -1;
  }
  if (make_parent_dirs(path) != 0) {
    snprintf(err, errlen, "cannot create the folder of cache '%s' (%s)", path, strerror(errno));
    free(head);
    return -1;
  }
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    snprintf(err, errlen, "cannot write cache '%s' (%s)", tmp, strerror(errno));
    free(head);
    return -1;
  }
  int ok = fwrite(head, 1, OM_CACHE_HEADER + names_bytes, f) == OM_CACHE_HEADER + names_bytes &&
           fwrite(payload, 1, payload_bytes, f) == payload_bytes && fflush(f) == 0 &&
           fsync(fileno(f)) == 0;
  int saved = errno;
  free(head);
  if (fclose(f) != 0 && ok) {
    ok = 0;
    saved = errno;
  }
  if (ok && rename(tmp, path) != 0) {
    ok = 0;
    saved = errno;
  }
  if (!ok) {
    unlink(tmp);
    snprintf(err, errlen, "cannot write cache '%s' (%s)", path, strerror(saved));
    return -1;
  }
  /* make the rename itself durable */
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = '\0';
  int dfd = open(slash ? (dir[0] ? dir : "/") : ".", O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return 0;
}

/* parse the names section into classes; 0 or -1 when malformed */
static int parse_names(const uint8_t *p, size_t n, int nclasses, OmClass **out) {
  OmClass *c = calloc((size_t)nclasses, sizeof(OmClass));
  if (!c) return -1;
  size_t pos = 0;
  for (int i = 0; i < nclasses; i++) {
    if (pos + 1 > n || p[pos] > 1) goto bad;
    c[i].set = p[pos++];
    for (int which = 0; which < 2; which++) {
      uint16_t len;
      if (pos + 2 > n) goto bad;
      memcpy(&len, p + pos, 2);
      pos += 2;
      if (pos + len > n) goto bad;
      char *s = malloc((size_t)len + 1);
      if (!s) goto bad;
      memcpy(s, p + pos, len);
      s[len] = '\0';
      pos += len;
      if (which == 0)
        c[i].alphabet = s;
      else
        c[i].character = s;
    }
  }
  if (pos != n) goto bad;
  *out = c;
  return 0;
bad:
  classes_free(c, nclasses);
  return -1;
}

int om_cache_read(const char *path, const OmOptions *opt, uint64_t expect_fingerprint, OmDataset *ds,
                  char *why, size_t whylen) {
  memset(ds, 0, sizeof *ds);
  FILE *f = fopen(path, "rb");
  if (!f) {
    if (errno == ENOENT || errno == ENOTDIR)
      snprintf(why, whylen, "no cache file");
    else
      snprintf(why, whylen, "cannot open (%s)", strerror(errno));
    return 1;
  }
  uint8_t *names = NULL;
  OmClass *classes = NULL;
  Tensor *images = NULL;
  uint32_t nclasses = 0;
  struct stat st;
  uint8_t h[OM_CACHE_HEADER];
  if (fstat(fileno(f), &st) != 0) {
    snprintf(why, whylen, "cannot stat (%s)", strerror(errno));
    goto invalid;
  }
  if (st.st_size < OM_CACHE_HEADER || fread(h, 1, OM_CACHE_HEADER, f) != OM_CACHE_HEADER) {
    snprintf(why, whylen, "truncated (%lld bytes, shorter than the header)", (long long)st.st_size);
    goto invalid;
  }
  if (memcmp(h, "MAMLOMNI", 8) != 0) {
    snprintf(why, whylen, "not a mamlrun Omniglot cache (no MAMLOMNI magic)");
    goto invalid;
  }
  if (get_u32(h + 12) != 0x01020304u) {
    snprintf(why, whylen, "written on a machine with another byte order");
    goto invalid;
  }
  if (get_u32(h + 60) != om_crc32c(0, h, 60)) {
    snprintf(why, whylen, "header checksum mismatch (corrupt file)");
    goto invalid;
  }
  if (get_u32(h + 8) != OM_CACHE_VERSION) {
    snprintf(why, whylen, "cache format version %u, this build reads %d", get_u32(h + 8),
             OM_CACHE_VERSION);
    goto invalid;
  }
  nclasses = get_u32(h + 16);
  uint32_t per_class = get_u32(h + 20), height = get_u32(h + 24), width = get_u32(h + 28);
  uint32_t flags = get_u32(h + 32);
  uint64_t fingerprint = get_u64(h + 40), names_bytes = get_u64(h + 48);
  if (nclasses == 0 || nclasses > (1u << 20) || per_class == 0 || per_class > (1u << 16) ||
      height == 0 || width == 0 || height > IMG_MAX_SIDE || width > IMG_MAX_SIDE ||
      (uint64_t)nclasses * per_class * height * width > (uint64_t)T_MAXNUMEL ||
      names_bytes > (uint64_t)nclasses * (5 + 2 * 65535)) {
    snprintf(why, whylen, "implausible header (%u classes x %u images of %ux%u)", nclasses, per_class,
             height, width);
    goto invalid;
  }
  if ((int)height != opt->size || (int)width != opt->size || (int)(flags & 1) != !!opt->pil_exact ||
      (opt->images_per_class > 0 && (int)per_class != opt->images_per_class)) {
    snprintf(why, whylen, "made with other settings (%ux%u, pil_exact=%s, %u images per class)", height,
             width, (flags & 1) ? "true" : "false", per_class);
    goto invalid;
  }
  if (expect_fingerprint != 0 && fingerprint != expect_fingerprint) {
    snprintf(why, whylen, "the source images changed since it was written");
    goto invalid;
  }
  uint64_t payload_bytes = (uint64_t)nclasses * per_class * height * width * sizeof(float);
  uint64_t want = OM_CACHE_HEADER + names_bytes + payload_bytes;
  if ((uint64_t)st.st_size != want) {
    snprintf(why, whylen, "%s (%lld bytes, expected %llu)",
             (uint64_t)st.st_size < want ? "truncated" : "has trailing bytes", (long long)st.st_size,
             (unsigned long long)want);
    goto invalid;
  }
  names = malloc(names_bytes ? names_bytes : 1);
  if (!names || fread(names, 1, names_bytes, f) != names_bytes) {
    snprintf(why, whylen, "cannot read the names section");
    goto invalid;
  }
  uint32_t crc = om_crc32c(0, names, names_bytes);
  if (parse_names(names, names_bytes, (int)nclasses, &classes) != 0) {
    snprintf(why, whylen, "malformed names section");
    goto invalid;
  }
  int64_t shape[5] = {nclasses, per_class, 1, height, width};
  images = t_new(5, shape);
  /* read and check in chunks, while the data is still in the CPU cache */
  uint8_t *dst = (uint8_t *)T_DATA(images);
  for (uint64_t done = 0; done < payload_bytes;) {
    size_t chunk = payload_bytes - done > (4u << 20) ? (4u << 20) : (size_t)(payload_bytes - done);
    if (fread(dst + done, 1, chunk, f) != chunk) {
      snprintf(why, whylen, "read error in the payload");
      goto invalid;
    }
    crc = om_crc32c(crc, dst + done, chunk);
    done += chunk;
  }
  if (crc != get_u32(h + 56)) {
    snprintf(why, whylen, "payload checksum mismatch (corrupt file)");
    goto invalid;
  }
  fclose(f);
  free(names);
  ds->nclasses = (int)nclasses;
  ds->per_class = (int)per_class;
  ds->size = (int)height;
  ds->pil_exact = (int)(flags & 1);
  ds->classes = classes;
  ds->images = images;
  ds->fingerprint = fingerprint;
  return 0;
invalid:
  fclose(f);
  free(names);
  classes_free(classes, (int)nclasses);
  t_release(images);
  return 1;
}

/* ============================================================ load */

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
  if (!has_set_dirs(root)) {
    snprintf(err, errlen, "expected directory with images_background/ and images_evaluation/, got '%s'",
             root);
    return -1;
  }
  Walk w;
  if (walk_tree(root, opt, &w, err, errlen)) return -1;
  snprintf(ds->cache_status, sizeof ds->cache_status, "off");
  if (opt->cache) {
    if (om_cache_read(opt->cache, opt, w.fingerprint, ds, why, sizeof why) == 0) {
      walk_free(&w);
      snprintf(ds->cache_status, sizeof ds->cache_status, "hit");
      ds->seconds = now_seconds() - t0;
      return 0;
    }
    if (strcmp(why, "no cache file") == 0)
      snprintf(ds->cache_status, sizeof ds->cache_status, "built");
    else
      snprintf(ds->cache_status, sizeof ds->cache_status, "rebuilt: %s", why);
  }
  int64_t shape[5] = {w.nclasses, w.per_class, 1, opt->size, opt->size};
  Tensor *images = t_new(5, shape);
  if (decode_all(w.files, w.nfiles, opt, T_DATA(images), err, errlen)) {
    t_release(images);
    walk_free(&w);
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
  walk_free(&w);
  if (opt->cache && om_cache_write(opt->cache, ds, ds->cache_error, sizeof ds->cache_error) != 0) {
    /* loading worked; the caller decides whether a missing cache matters */
  }
  ds->seconds = now_seconds() - t0;
  return 0;
}

/* ============================================================ Lua bindings */

/* omniglot.load(root [, opts]) or omniglot.load(opts) with opts.root
** opts: size=28, cache=path|nil, pil_exact=false, images_per_class=0, threads=0 */
static const char *const load_options[] = {"root", "size", "cache", "pil_exact", "images_per_class", "threads", NULL};
static const char *const load_options_after_root[] = {"size", "cache", "pil_exact", "images_per_class", "threads", NULL};

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
    if (lua_type(L, -1) == LUA_TSTRING)
      o.cache = lua_tostring(L, -1); /* the options table keeps it alive */
    else if (!lua_isnil(L, -1) && !(lua_isboolean(L, -1) && !lua_toboolean(L, -1)))
      return lt_argerror(L, opts, "load", "option 'cache' must be a path or false, got %s", lt_typename(L, -1));
    lua_pop(L, 1);
  }
  if (!root && !o.cache)
    return lt_argerror(L, 1, "load", "expected root folder or {root=, cache=}, got neither");
  if (root && !has_set_dirs(root))
    return luaL_argerror(
        L, 1,
        lua_pushfstring(L, "expected directory with images_background/ and images_evaluation/, got '%s'",
                        root));
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

/* scratch memory owned by the Lua stack, so an error cannot leak it */
static void *scratch(lua_State *L, size_t bytes) { return lua_newuserdatauv(L, bytes ? bytes : 1, 0); }

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
    return luaL_argerror(L, 1, lua_pushfstring(L, "expected tensor (classes, images, 1, H, W), got %s",
                                               t_shape_str(img, buf, sizeof buf)));
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  int has_rot = !lua_isnoneornil(L, 4);
  if (has_rot) luaL_checktype(L, 4, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 2);
  if (luaL_len(L, 3) != n)
    return luaL_argerror(L, 3, lua_pushfstring(L, "expected %d indices (as many as classes), got %d",
                                               (int)n, (int)luaL_len(L, 3)));
  if (has_rot && luaL_len(L, 4) != n)
    return luaL_argerror(L, 4, lua_pushfstring(L, "expected %d rotations (as many as classes), got %d",
                                               (int)n, (int)luaL_len(L, 4)));
  int64_t C = img->shape[0], P = img->shape[1], H = img->shape[3], W = img->shape[4];
  int64_t most = T_MAXNUMEL / (H * W > 0 ? H * W : 1); /* checked before allocating, even when __len lies */
  if (n < 0 || n > most)
    return luaL_argerror(L, 2, lua_pushfstring(L, "expected at most %I class numbers, got a list of %I",
                                               (lua_Integer)most, n));
  int64_t out_shape[T_MAXDIM];
  int lead = 1;
  out_shape[0] = n;
  if (!lua_isnoneornil(L, 5)) {
    lead = lt_check_shape(L, 5, out_shape, "gather");
    int64_t prod = 1;
    for (int d = 0; d < lead; d++) prod *= out_shape[d];
    if (prod != n || lead + 3 > T_MAXDIM)
      return luaL_argerror(L, 5, lua_pushfstring(L, "expected a shape with %d elements in at most %d dims, got %s",
                                                 (int)n, T_MAXDIM - 3,
                                                 t_shape_str2(lead, out_shape, buf, sizeof buf)));
  }
  out_shape[lead] = 1;
  out_shape[lead + 1] = H;
  out_shape[lead + 2] = W;
  int64_t *src = scratch(L, sizeof(int64_t) * (size_t)n);
  int *rot = scratch(L, sizeof(int) * (size_t)n);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_Integer c = list_int(L, 2, i, 2, "class numbers");
    lua_Integer k = list_int(L, 3, i, 3, "image numbers");
    lua_Integer r = has_rot ? list_int(L, 4, i, 4, "rotations") : 0;
    if (c < 1 || c > C)
      return luaL_argerror(L, 2, lua_pushfstring(L, "expected class numbers in 1..%d, got %d at [%d]",
                                                 (int)C, (int)c, (int)i));
    if (k < 1 || k > P)
      return luaL_argerror(L, 3, lua_pushfstring(L, "expected image numbers in 1..%d, got %d at [%d]",
                                                 (int)P, (int)k, (int)i));
    if (r < 0 || r > 3 || (r % 2 == 1 && H != W))
      return luaL_argerror(L, 4, lua_pushfstring(L, "expected rotations 0..3 (quarter turns%s), got %d at [%d]",
                                                 H != W ? "; odd ones need square images" : "", (int)r, (int)i));
    src[i - 1] = (c - 1) * P + (k - 1);
    rot[i - 1] = (int)r;
  }
  Tensor *out = t_new(lead + 3, out_shape);
  const float *in = T_DATA(img);
  float *o = T_DATA(out);
  size_t hw = (size_t)(H * W);
  for (lua_Integer i = 0; i < n; i++)
    img_rot90(in + (size_t)src[i] * hw, o + (size_t)i * hw, (int)H, (int)W, rot[i]);
  lt_push(L, out);
  return 1;
}

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
  if (img_read_png_gray8(path, &px, &h, &w, err, sizeof err) != 0)
    return luaL_error(L, "read_png: %s", err);
  int64_t shape[2] = {h, w};
  uint8_t *copy = scratch(L, (size_t)h * w); /* so that t_new failing leaks nothing */
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
      return luaL_argerror(L, 2, lua_pushfstring(L, "expected tensor (H, W), (1, H, W) or (3, H, W), got %s",
                                                 t_shape_str(t, buf, sizeof buf)));
    c = 3;
    h = (int)t->shape[1];
    w = (int)t->shape[2];
  }
  if (h < 1 || w < 1 || h > IMG_MAX_SIDE || w > IMG_MAX_SIDE)
    return luaL_argerror(L, 2, lua_pushfstring(L, "expected sides in 1..%d, got %s", IMG_MAX_SIDE,
                                               t_shape_str(t, buf, sizeof buf)));
  uint8_t *px = scratch(L, (size_t)h * w * c);
  const float *d = T_DATA(t);
  size_t hw = (size_t)h * w;
  for (size_t i = 0; i < hw; i++)
    for (int k = 0; k < c; k++) px[i * c + k] = to_u8(d[k * hw + i]); /* planar -> interleaved */
  char err[600];
  if (img_write_png(path, px, h, w, c, err, sizeof err) != 0) return luaL_error(L, "write_png: %s", err);
  return 0;
}

/* omniglot.resize(t (H,W), out_h [, out_w [, {pil_exact=false}]]) -> (out_h, out_w)
** Lanczos-3 as the loader does it (no inversion, no clamping of the input) */
static int l_resize(lua_State *L) {
  Tensor *t = lt_check(L, 1);
  int h, w;
  char buf[96];
  if (!gray_hw(t, &h, &w))
    return luaL_argerror(L, 1, lua_pushfstring(L, "expected tensor (H, W) or (1, H, W), got %s",
                                               t_shape_str(t, buf, sizeof buf)));
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
    {31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
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
    return luaL_argerror(L, 1, lua_pushfstring(L, "expected tensor (n, 1, H, W) or (n, H, W), got %s",
                                               t_shape_str(t, buf, sizeof buf)));
  }
  luaL_argcheck(L, n >= 1 && H >= 1 && W >= 1, 1, "expected at least one non-empty image");
  static const char *const tile_options[] = {"cols", "scale", "pad", "invert", "labels", "captions", "separators", NULL};
  int opts = lt_check_options(L, 2, "tile", tile_options) ? 2 : 0;
  int cols = (int)lt_opt_integer(L, 2, "tile", "cols", n, 1, INT_MAX);
  int scale = (int)lt_opt_integer(L, 2, "tile", "scale", 2, 1, 16);
  int pad = (int)lt_opt_integer(L, 2, "tile", "pad", 4, 0, 64);
  int invert = lt_opt_boolean(L, 2, "tile", "invert", 1);
  int rows = (int)((n + (int64_t)cols - 1) / cols); /* (cols may be INT_MAX) */
  long *labels = NULL, *captions = NULL;
  unsigned char *sep_after = scratch(L, (size_t)rows + 1);
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
        long *v = scratch(L, sizeof(long) * (size_t)n);
        lua_insert(L, idx); /* keep the scratch below the list */
        for (int i = 1; i <= n; i++) {
          lua_geti(L, idx + 1, i);
          int ok;
          lua_Integer x = lua_tointegerx(L, -1, &ok);
          if (!ok || x < 0)
            return luaL_error(L, "bad option '%s' to 'tile' (expected non-negative integers, got %s at [%d])",
                              lists[l], luaL_typename(L, -1), i);
          v[i - 1] = (long)x;
          lua_pop(L, 1);
        }
        if (l == 0) labels = v; else captions = v;
      } else if (!lua_isnil(L, -1)) {
        return luaL_error(L, "bad option '%s' to 'tile' (expected list, got %s)", lists[l],
                          luaL_typename(L, -1));
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

static const luaL_Reg omniglot_funcs[] = {
    {"load", l_load},           {"gather", l_gather}, {"read_png", l_read_png},
    {"write_png", l_write_png}, {"resize", l_resize}, {"tile", l_tile},
    {NULL, NULL},
};

int luaopen_omniglot(lua_State *L) {
  luaL_newlib(L, omniglot_funcs);
  lua_pushinteger(L, OM_DEFAULT_SIZE);
  lua_setfield(L, -2, "default_size");
  lua_pushinteger(L, OM_CACHE_VERSION);
  lua_setfield(L, -2, "cache_version");
  return 1;
}
