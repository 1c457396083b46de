/* test_blas.c: blas_pick_core, the choice behind mamlrun's replacing OpenBLAS's generic
** fallback kernels (vm/blas.h); tests/sh/host_cli.sh checks the re-exec itself. */
#include <string.h>

#include "blas.h"
#include "tap.h"

static int same(const char *a, const char *b) { return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0; }

int main(void) {
  static const struct {
    const char *current;
    int isa;
    const char *want;
  } cases[] = {
      /* a core without AVX kernels on a CPU with AVX: OpenBLAS did not know the CPU */
      {"Prescott", BLAS_ISA_AVX512, "SkylakeX"},
      {"Prescott", BLAS_ISA_AVX2, "Haswell"},
      {"Nehalem", BLAS_ISA_AVX2, "Haswell"},
      {"Core2", BLAS_ISA_AVX, "Sandybridge"},
      {"Atom", BLAS_ISA_AVX512, "SkylakeX"},
      /* nothing better to run */
      {"Prescott", BLAS_ISA_BASE, NULL},
      {"Nehalem", BLAS_ISA_BASE, NULL},
      /* OpenBLAS's own choice with AVX kernels stays, even below the CPU's level */
      {"Haswell", BLAS_ISA_AVX2, NULL},
      {"Zen", BLAS_ISA_AVX512, NULL},
      {"Haswell", BLAS_ISA_AVX512, NULL},
      {"SkylakeX", BLAS_ISA_AVX512, NULL},
      {"Cooperlake", BLAS_ISA_AVX512, NULL},
      {"Sandybridge", BLAS_ISA_AVX2, NULL},
      {NULL, BLAS_ISA_AVX512, NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *got = blas_pick_core(cases[i].current, cases[i].isa);
    ok(same(got, cases[i].want), "blas_pick_core(%s, isa %d) = %s (expected %s)",
       cases[i].current ? cases[i].current : "NULL", cases[i].isa, got ? got : "NULL",
       cases[i].want ? cases[i].want : "NULL");
  }
  int isa = blas_cpu_isa();
  ok(isa >= BLAS_ISA_BASE && isa <= BLAS_ISA_AVX512, "blas_cpu_isa() = %d is a level", isa);
  return tap_done();
}
