/*
** blas.c: keeping OpenBLAS off its generic kernels on CPUs it does not know
** (blas.h says why).
*/
#include "blas.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *openblas_get_corename(void);
char *openblas_get_config(void);

int blas_cpu_isa(void) {
  int isa = BLAS_ISA_BASE;
#if defined(__GNUC__) && defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl")) {
    isa = BLAS_ISA_AVX512;
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    isa = BLAS_ISA_AVX2;
  } else if (__builtin_cpu_supports("avx")) {
    isa = BLAS_ISA_AVX;
  }
#endif
  return isa;
}

/* OpenBLAS's x86-64 cores with AVX kernels (the names openblas_get_corename
** returns, as OPENBLAS_CORETYPE takes them); every other core is SSE-only */
static const char *const avx_cores[] = {"Sandybridge",    "Haswell",   "SkylakeX",  "Cooperlake",
                                        "SapphireRapids", "Zen",       "Bulldozer", "Piledriver",
                                        "Steamroller",    "Excavator", NULL};

const char *blas_pick_core(const char *current, int isa) {
  if (current == NULL) return NULL;
  for (int i = 0; avx_cores[i] != NULL; i++)
    if (strcmp(current, avx_cores[i]) == 0) return NULL;
  switch (isa) {
    case BLAS_ISA_AVX512: return "SkylakeX"; /* Cooperlake and SapphireRapids: the same sgemm */
    case BLAS_ISA_AVX2: return "Haswell";
    case BLAS_ISA_AVX: return "Sandybridge";
    default: return NULL;
  }
}

void blas_ensure_core(char **argv) {
  if (getenv("OPENBLAS_CORETYPE") != NULL) return; /* the user's, or ours after the exec */
  /* only a DYNAMIC_ARCH build reads OPENBLAS_CORETYPE; one built for a single core runs that core */
  const char *config = openblas_get_config();
  if (config == NULL || strstr(config, "DYNAMIC_ARCH") == NULL) return;
  const char *pretend = getenv("MAMLRUN_BLAS_PRETEND");
  const char *current = pretend != NULL && *pretend ? pretend : openblas_get_corename();
  const char *core = blas_pick_core(current, blas_cpu_isa());
  if (core == NULL) return;
  setenv("OPENBLAS_CORETYPE", core, 1);
  setenv("MAMLRUN_BLAS_REPLACED", current, 1);
  /* the program's own file: /proc/self/exe resolved first (under valgrind the link, not the
  ** file the kernel runs, is the client program) */
  char self[4096];
  ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  if (len > 0) {
    self[len] = '\0';
    execv(self, argv);
  }
  execv("/proc/self/exe", argv);
  fprintf(stderr,
          "%s: warning: OpenBLAS runs its generic '%s' kernels on this CPU, and running again with "
          "OPENBLAS_CORETYPE=%s failed; set OPENBLAS_CORETYPE=%s yourself for its fast kernels\n",
          argv[0], current, core, core);
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv("MAMLRUN_BLAS_REPLACED");
}

const char *blas_core_source(const char **replaced) {
  const char *was = getenv("MAMLRUN_BLAS_REPLACED"), *set = getenv("OPENBLAS_CORETYPE");
  /* mamlrun's when the variable holds what mamlrun sets for that core (not, say, a user's own
  ** OPENBLAS_CORETYPE in a process that inherited the marker) */
  const char *ours = was != NULL && *was ? blas_pick_core(was, blas_cpu_isa()) : NULL;
  int by_mamlrun = ours != NULL && set != NULL && strcmp(set, ours) == 0;
  if (replaced != NULL) *replaced = by_mamlrun ? was : NULL;
  if (by_mamlrun) return "mamlrun";
  return set != NULL ? "OPENBLAS_CORETYPE" : "openblas";
}
