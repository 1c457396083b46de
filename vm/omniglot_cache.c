/*
** omniglot_cache.c: the Omniglot cache file (its format is in omniglot.h):
** written atomically, read back only when every check passes (magic, byte
** order, checksums, version, settings, source fingerprint, exact size).
*/
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checksum.h"
#include "image.h"
#include "omniglot.h"
#include "sys.h"

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

void om_classes_free(OmClass *c, int n) {
  if (!c) return;
  for (int i = 0; i < n; i++) {
    free(c[i].alphabet);
    free(c[i].character);
  }
  free(c);
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
  uint32_t crc = crc32c(crc32c(0, names, names_bytes), payload, payload_bytes);
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
  put_u32(head + 60, crc32c(0, head, 60));

  /* atomically (the previous cache stays as it was on a failure), in the folder made for it */
  char folder[PATH_MAX];
  if ((size_t)snprintf(folder, sizeof folder, "%s", path) >= sizeof folder) {
    snprintf(err, errlen, "cache path too long: '%s'", path);
    free(head);
    return -1;
  }
  char *slash = strrchr(folder, '/');
  if (slash && slash != folder) {
    *slash = '\0';
    if (sys_mkdir_p(folder) != 0) {
      snprintf(err, errlen, "cannot create the folder of cache '%s' (%s)", path, strerror(errno));
      free(head);
      return -1;
    }
  }
  const void *parts[2] = {head, payload};
  size_t sizes[2] = {OM_CACHE_HEADER + names_bytes, payload_bytes};
  char why[PATH_MAX + 128];
  int rc = sys_write_atomic(path, 2, parts, sizes, why, sizeof why);
  free(head);
  if (rc != 0) snprintf(err, errlen, "cannot write cache: %s", why);
  return rc;
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
      if (which == 0) c[i].alphabet = s;
      else c[i].character = s;
    }
  }
  if (pos != n) goto bad;
  *out = c;
  return 0;
bad:
  om_classes_free(c, nclasses);
  return -1;
}

int om_cache_read(const char *path, const OmOptions *opt, uint64_t expect_fingerprint, OmDataset *ds, char *why,
                  size_t whylen) {
  memset(ds, 0, sizeof *ds);
  FILE *f = fopen(path, "rb");
  if (!f) {
    if (errno == ENOENT || errno == ENOTDIR) snprintf(why, whylen, "no cache file");
    else snprintf(why, whylen, "cannot open (%s)", strerror(errno));
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
  if (get_u32(h + 60) != crc32c(0, h, 60)) {
    snprintf(why, whylen, "header checksum mismatch (corrupt file)");
    goto invalid;
  }
  if (get_u32(h + 8) != OM_CACHE_VERSION) {
    snprintf(why, whylen, "cache format version %u, this build reads %d", get_u32(h + 8), OM_CACHE_VERSION);
    goto invalid;
  }
  nclasses = get_u32(h + 16);
  uint32_t per_class = get_u32(h + 20), height = get_u32(h + 24), width = get_u32(h + 28);
  uint32_t flags = get_u32(h + 32);
  uint64_t fingerprint = get_u64(h + 40), names_bytes = get_u64(h + 48);
  if (nclasses == 0 || nclasses > (1u << 20) || per_class == 0 || per_class > (1u << 16) || height == 0 || width == 0 ||
      height > IMG_MAX_SIDE || width > IMG_MAX_SIDE ||
      (uint64_t)nclasses * per_class * height * width > (uint64_t)T_MAXNUMEL ||
      names_bytes > (uint64_t)nclasses * (5 + 2 * 65535)) {
    snprintf(why, whylen, "implausible header (%u classes x %u images of %ux%u)", nclasses, per_class, height, width);
    goto invalid;
  }
  if ((int)height != opt->size || (int)width != opt->size || (int)(flags & 1) != !!opt->pil_exact ||
      (opt->images_per_class > 0 && (int)per_class != opt->images_per_class)) {
    snprintf(why, whylen, "made with other settings (%ux%u, pil_exact=%s, %u images per class)", height, width,
             (flags & 1) ? "true" : "false", per_class);
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
  uint32_t crc = crc32c(0, names, names_bytes);
  if (parse_names(names, names_bytes, (int)nclasses, &classes) != 0) {
    snprintf(why, whylen, "malformed names section");
    goto invalid;
  }
  int64_t shape[5] = {nclasses, per_class, 1, height, width};
  char oom[400];
  images = t_try_new(5, shape, oom, sizeof oom); /* not t_new: an error would leak f, names, classes */
  if (!images) {
    snprintf(why, whylen, "%s", oom);
    goto invalid;
  }
  /* read and check in chunks, while the data is still in the CPU cache */
  uint8_t *dst = (uint8_t *)T_DATA(images);
  for (uint64_t done = 0; done < payload_bytes;) {
    size_t chunk = payload_bytes - done > (4u << 20) ? (4u << 20) : (size_t)(payload_bytes - done);
    if (fread(dst + done, 1, chunk, f) != chunk) {
      snprintf(why, whylen, "read error in the payload");
      goto invalid;
    }
    crc = crc32c(crc, dst + done, chunk);
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
  om_classes_free(classes, (int)nclasses);
  t_release(images);
  return 1;
}
