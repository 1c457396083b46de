/*
** blas.h: which OpenBLAS kernels this process runs.
**
** A DYNAMIC_ARCH OpenBLAS picks its kernels ("core") from the CPU's family and
** model when it is loaded. A CPU newer than the library (Debian 12's 0.3.21 on an
** Emerald Rapids Xeon, family 6 model 207) gets the generic SSE3 "Prescott"
** kernels: sgemm at a quarter of the speed its AVX-512 kernels reach, and nothing
** says so. mamlrun's main() calls blas_ensure_core first: when OpenBLAS fell back
** to a core without AVX kernels on a CPU that has AVX2 or AVX-512, it sets
** OPENBLAS_CORETYPE to the core of the CPU's instruction set and runs itself again
** (the library reads that variable only when it is loaded). A user's own
** OPENBLAS_CORETYPE is always kept: that is also the way to opt out.
*/
#ifndef MAMLRUN_BLAS_H
#define MAMLRUN_BLAS_H

/* the instruction-set levels blas_pick_core knows */
enum { BLAS_ISA_BASE = 0, BLAS_ISA_AVX = 1, BLAS_ISA_AVX2 = 2, BLAS_ISA_AVX512 = 3 };

/* this CPU's level (AVX-512 means F, BW, DQ and VL, as OpenBLAS's SkylakeX kernels need) */
int blas_cpu_isa(void);

/* The core to set for a CPU of level isa on which OpenBLAS chose
** `current`, or NULL to keep it: only a core without AVX kernels is replaced
** (OpenBLAS did not know the CPU); a core it chose with AVX kernels (Zen on a
** Zen 4, say) is its own informed choice and stays. */
const char *blas_pick_core(const char *current, int isa);

/* Called first in main(): in a DYNAMIC_ARCH OpenBLAS (the others run the one core they were
** built for and ignore OPENBLAS_CORETYPE), replaces a fallback core as above by setting
** OPENBLAS_CORETYPE and MAMLRUN_BLAS_REPLACED (the core OpenBLAS had chosen) and
** exec'ing /proc/self/exe with the same argv. Returns only when nothing was to be
** done, or when the exec failed (then a warning on stderr says what to set).
** MAMLRUN_BLAS_PRETEND=CORE makes it act as if OpenBLAS had chosen CORE (tests). */
void blas_ensure_core(char **argv);

/* who chose the running core: "mamlrun" (blas_ensure_core replaced
** *replaced), "OPENBLAS_CORETYPE" (the user) or "openblas" */
const char *blas_core_source(const char **replaced);

#endif
