#!/usr/bin/env bash
# tests/run_all.sh: the one entry to every test suite (`make test` calls it
# after building). It builds nothing itself. Suites, in order:
#   C      every executable $BUILD/tests/test_* (prints TAP: ok N - name / not ok N - name)
#   Lua    each tests/lua/**/*_spec.lua, run by busted under ./mamlrun with TAP output
#   shell  each executable tests/sh/*.sh is one test (exit 0 = pass)
#   extra  each executable tests/suites.d/*.sh prints TAP (add a suite by dropping one in)
# A TAP suite that crashes, times out, exits non-zero without a failing test,
# prints no plan (1..N), runs a number of tests other than its plan or runs no
# test at all counts one extra failure; so does a suite that is missing (a
# tests/c/test_*.c without its binary) or not executable.
# The last check: the suites leave the checkout as they found it (no file or
# folder added, none changed); tests write under $TMPDIR.
# `ok ... # SKIP reason` lines count as skipped, not passed. A skip that names a
# requirement in brackets (`# SKIP [mpi] openmpi not installed`) is a failure
# when MAMLRUN_REQUIRE_SUITES lists that word (.ci/run: "fuzz mpi dataset", those
# its machine can run). Output: one line per suite (full output of failing ones,
# minus the "ok" lines), a summary per section, and as the very last line
# "N passed, N failed, N skipped". Exit status 0 only if nothing failed.
#
# Environment: BUILD (default build), MAMLRUN (default ./mamlrun), BUSTED
# (default: busted on PATH), TEST_TIMEOUT (seconds per suite, default 1200),
# VERBOSE=1 (print every suite's full output), MAMLRUN_REQUIRE_SUITES (words).
set -u
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
BUILD=${BUILD:-build}
MAMLRUN=${MAMLRUN:-$ROOT/mamlrun}
case $MAMLRUN in /*) ;; *) MAMLRUN=$ROOT/$MAMLRUN ;; esac
BUSTED=${BUSTED:-$(command -v busted || echo /usr/bin/busted)}
TEST_TIMEOUT=${TEST_TIMEOUT:-1200}
VERBOSE=${VERBOSE:-0}
REQUIRE=${MAMLRUN_REQUIRE_SUITES:-}
export ROOT MAMLRUN BUSTED

TIMEOUT=()
if command -v timeout >/dev/null; then TIMEOUT=(timeout --kill-after=10 "$TEST_TIMEOUT"); fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/mamlrun-tests.XXXXXX") || exit 2
trap 'rm -rf "$TMP"' EXIT
LOG=$TMP/log

# every path of the checkout but the build folders, the dataset and git's own,
# and git's view of the tracked files: what the suites must leave unchanged
checkout_state() {
  find . \( -path ./.git -o -path "./$BUILD" -o -path './build-*' -o -path ./data/omniglot -o -path ./bench/out \) \
    -prune -o -print | LC_ALL=C sort
  if [ -d .git ] && command -v git >/dev/null; then git status --porcelain 2>/dev/null; fi
}
checkout_state >"$TMP/checkout.before"

total_pass=0 total_fail=0 total_skip=0
section_pass=0 section_fail=0 section_skip=0

section() {
  section_pass=0 section_fail=0 section_skip=0
  echo "== $1"
}

end_section() {
  echo "   $1: $section_pass passed, $section_fail failed, $section_skip skipped"
  total_pass=$((total_pass + section_pass))
  total_fail=$((total_fail + section_fail))
  total_skip=$((total_skip + section_skip))
}

# a suite that should have run and cannot: one failure
missing() {
  section_fail=$((section_fail + 1))
  printf '   %-40s FAILED (%s)\n' "$1" "$2"
}

# how many skip lines of $LOG name a requirement of MAMLRUN_REQUIRE_SUITES ("# SKIP [word] ...")
required_skips() {
  local n=0 word
  for word in $REQUIRE; do
    n=$((n + $(grep -iE '^ok .*#[[:space:]]*skip' "$LOG" | grep -cF "[$word]")))
  done
  echo "$n"
}

# why a command with exit status $1 failed, for messages
describe_status() {
  if [ "$1" -eq 124 ]; then echo "timed out after ${TEST_TIMEOUT}s"
  elif [ "$1" -gt 128 ]; then echo "crashed (signal $(($1 - 128)))"
  else echo "exited with status $1"
  fi
}

# print a failing suite's log, without the passing lines
show_log() {
  if [ "$VERBOSE" = 1 ]; then sed 's/^/     | /' "$LOG"; return; fi
  grep -v '^ok ' "$LOG" | head -n 200 | sed 's/^/     | /'
  local n
  n=$(grep -vc '^ok ' "$LOG")
  if [ "$n" -gt 200 ]; then echo "     | ... ($((n - 200)) more lines in the output)"; fi
}

# run_tap LABEL CMD...: run a command that prints TAP, add its counts
run_tap() {
  local label=$1
  shift
  local rc=0 pass fail skip required ran plan note=""
  # (the braces keep bash's own "Segmentation fault" notice out of the output)
  { "${TIMEOUT[@]}" "$@" >"$LOG" 2>&1 </dev/null || rc=$?; } 2>/dev/null
  skip=$(grep -ciE '^ok .*#[[:space:]]*skip' "$LOG")
  pass=$(($(grep -c '^ok ' "$LOG") - skip))
  fail=$(grep '^not ok ' "$LOG" | grep -vc '# *TODO')
  ran=$(grep -cE '^(not )?ok ' "$LOG")
  plan=$(sed -n 's/^1\.\.\([0-9][0-9]*\).*/\1/p' "$LOG" | tail -n 1)
  required=$(required_skips)
  if [ "$rc" -eq 124 ] || [ "$rc" -gt 128 ]; then
    note=$(describe_status "$rc")
  elif [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then
    note="$(describe_status "$rc") without a failing test"
  elif [ -z "$plan" ] && [ "$rc" -ne 0 ] && grep -q '^stack traceback:' "$LOG"; then
    note="stopped by a Lua error"
  elif [ -z "$plan" ]; then
    note="no TAP plan (1..N)"
  elif [ "$ran" -ne "$plan" ]; then
    note="ran $ran tests, planned $plan"
  elif [ "$ran" -eq 0 ]; then
    note="no tests ran"
  fi
  if [ -n "$note" ]; then fail=$((fail + 1)); fi
  if [ "$required" -gt 0 ]; then # a required skip is a failure, not a skip
    note="${note:+$note; }$required skipped but required (MAMLRUN_REQUIRE_SUITES=\"$REQUIRE\")"
    skip=$((skip - required))
    fail=$((fail + required))
  fi
  section_pass=$((section_pass + pass))
  section_fail=$((section_fail + fail))
  section_skip=$((section_skip + skip))
  if [ "$fail" -eq 0 ]; then
    printf '   %-40s %d passed%s\n' "$label" "$pass" "$([ "$skip" -gt 0 ] && echo ", $skip skipped")"
    if [ "$VERBOSE" = 1 ]; then show_log; fi
    if [ "$skip" -gt 0 ] && [ "$VERBOSE" != 1 ]; then grep -iE '^ok .*#[[:space:]]*skip' "$LOG" | sed 's/^/     | /'; fi
  else
    printf '   %-40s %d passed, %d FAILED%s\n' "$label" "$pass" "$fail" "${note:+ ($note)}"
    show_log
    if [ "$required" -gt 0 ]; then grep -iE '^ok .*#[[:space:]]*skip' "$LOG" | sed 's/^/     | /'; fi
  fi
}

# ---------------------------------------------------------------- C tests
section "C tests ($BUILD/tests)"
found=0
for src in tests/c/test_*.c; do # every test source must have its binary
  [ -f "$src" ] || continue
  found=1
  name=${src#tests/c/}
  name=${name%.c}
  t=$BUILD/tests/$name
  if [ ! -f "$t" ]; then missing "$name" "$t is not built (make ctests)"
  elif [ ! -x "$t" ]; then missing "$name" "$t is not executable"
  else run_tap "$name" "$t"
  fi
done
if [ "$found" = 0 ]; then echo "   (none)"; fi
end_section "C tests"

# ---------------------------------------------------------------- Lua tests
section "Lua tests (busted under mamlrun, tests/lua)"
specs=()
if [ -d tests/lua ]; then
  while IFS= read -r f; do specs+=("$f"); done < <(find tests/lua -name '*_spec.lua' | LC_ALL=C sort)
fi
if [ "${#specs[@]}" -eq 0 ]; then
  echo "   (none)"
elif [ ! -x "$MAMLRUN" ]; then
  echo "   $MAMLRUN is not built: FAILED"
  section_fail=$((section_fail + 1))
elif [ ! -f "$BUSTED" ]; then
  echo "   busted not found (install lua-busted): FAILED"
  section_fail=$((section_fail + 1))
else
  # one busted per spec file, so a crash in one file does not hide the others
  for f in "${specs[@]}"; do
    # busted's TAP output loses a spec's syntax error, so compile it first
    if ! echo 'local _, path = ... assert(loadfile(path))' | "$MAMLRUN" - "$f" >"$LOG" 2>&1; then
      section_fail=$((section_fail + 1))
      printf '   %-40s FAILED (does not compile)\n' "${f#tests/lua/}"
      sed 's/^/     | /' "$LOG"
      continue
    fi
    run_tap "${f#tests/lua/}" "$MAMLRUN" "$BUSTED" -- -o TAP "$f"
  done
fi
end_section "Lua tests"

# ---------------------------------------------------------------- shell tests
section "shell tests (tests/sh)"
found=0
for t in tests/sh/*.sh; do
  [ -f "$t" ] || continue
  found=1
  if [ ! -x "$t" ]; then missing "${t#tests/sh/}" "not executable (chmod +x)"; continue; fi
  rc=0
  { "${TIMEOUT[@]}" "$t" >"$LOG" 2>&1 </dev/null || rc=$?; } 2>/dev/null
  if [ "$rc" -eq 0 ]; then
    section_pass=$((section_pass + 1))
    printf '   %-40s ok\n' "${t#tests/sh/}"
    if [ "$VERBOSE" = 1 ]; then sed 's/^/     | /' "$LOG"; fi
  else
    section_fail=$((section_fail + 1))
    printf '   %-40s FAILED (%s)\n' "${t#tests/sh/}" "$(describe_status "$rc")"
    tail -n 200 "$LOG" | sed 's/^/     | /'
  fi
done
if [ "$found" = 0 ]; then echo "   (none)"; fi
end_section "shell tests"

# ---------------------------------------------------------------- extra suites
# Hook for later suites (gradient checks, data, benchmarks-as-tests...): an
# executable tests/suites.d/NAME.sh, run from the repo root, prints TAP.
section "extra suites (tests/suites.d)"
found=0
for s in tests/suites.d/*.sh; do
  [ -f "$s" ] || continue
  found=1
  if [ ! -x "$s" ]; then missing "${s#tests/suites.d/}" "not executable (chmod +x)"; continue; fi
  run_tap "${s#tests/suites.d/}" "$s"
done
if [ "$found" = 0 ]; then echo "   (none)"; fi
end_section "extra suites"

# ---------------------------------------------------------------- the checkout
section "the checkout after the tests"
checkout_state >"$TMP/checkout.after"
if cmp -s "$TMP/checkout.before" "$TMP/checkout.after"; then
  section_pass=1
  echo "   nothing added or changed                 ok"
else
  section_fail=1
  echo "   the tests changed the checkout: FAILED (a test should write under \$TMPDIR; < before, > after)"
  diff "$TMP/checkout.before" "$TMP/checkout.after" | grep '^[<>]' | head -n 40 | sed 's/^/     | /'
fi
end_section "the checkout"

echo "$total_pass passed, $total_fail failed, $total_skip skipped"
[ "$total_fail" -eq 0 ]
