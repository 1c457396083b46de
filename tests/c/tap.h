/* tap.h: the TAP output every C test prints (ok N - name / not ok N - name,
** then the plan 1..N); tests/run_all.sh counts the lines. Header-only: each
** test is one program. */
#ifndef MAMLRUN_TAP_H
#define MAMLRUN_TAP_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "tensor.h"

static int ntest, nfail;

/* one test line; counts a failure when cond is false */
static void ok(int cond, const char *fmt, ...) T_PRINTF(2, 3);
static void ok(int cond, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("%s %d - ", cond ? "ok" : "not ok", ++ntest);
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  if (!cond) nfail++;
}

/* the worse of two errors for a running maximum; a NaN sticks (fmax and `e > worst` would drop it,
** and a check of "worst < tol" would then pass a kernel that returns NaN) */
static inline double worse(double worst, double e) { return isnan(worst) || isnan(e) ? (double)NAN : e > worst ? e : worst; }

/* the plan line and the exit status; under `make sanitize` (MAMLRUN_EXPECT_ASAN=1) a test line first
** says whether this binary is really built with AddressSanitizer (T_ASAN, tensor.h) */
static int tap_done(void) {
  const char *expect = getenv("MAMLRUN_EXPECT_ASAN");
  if (expect && expect[0] == '1') ok(T_ASAN, "built with AddressSanitizer (make sanitize)");
  printf("1..%d\n", ntest);
  return nfail ? 1 : 0;
}

#endif
