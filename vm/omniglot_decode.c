/*
** omniglot_decode.c: decode and resize the images of a walk on a pool of
** threads (the calling thread works too). Each file goes to its own place in
** the output, so the result does not depend on the number of threads, and the
** error reported is the first failing file's in load order.
*/
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "omniglot.h"
#include "sys.h"

typedef struct DecodeJob {
  char **files;
  int nfiles, size, pil_exact;
  float *out; /* nfiles x size x size */
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

int om_decode_all(char **files, int nfiles, const OmOptions *opt, float *out, char *err, size_t errlen) {
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
  if (nthreads <= 0) nthreads = sys_default_threads();
  if (nthreads > OM_DECODE_MAX_THREADS) nthreads = OM_DECODE_MAX_THREADS;
  if (nthreads > nfiles) nthreads = nfiles;
  pthread_t tids[OM_DECODE_MAX_THREADS];
  int started = 0;
  for (int t = 1; t < nthreads; t++) {
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
