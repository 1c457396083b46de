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

/* under `make sanitize` (MAMLRUN_EXPECT_ASAN=1), the first test line says whether this binary is
** really built with AddressSanitizer (GCC and clang spell the macro apart) */
#if defined(__SANITIZE_ADDRESS__)
#define TAP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TAP_ASAN 1
#endif
#endif
#ifndef TAP_ASAN
#define TAP_ASAN 0
#endif

/* the plan line and the exit status */
static int tap_done(void) {
  const char *expect = getenv("MAMLRUN_EXPECT_ASAN");
  if (expect && expect[0] == '1') ok(TAP_ASAN, "built with AddressSanitizer (make sanitize)");
  printf("1..%d\n", ntest);
  return nfail ? 1 : 0;
}

#endif
