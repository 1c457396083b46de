#!/usr/bin/env bash
# tests/sh/run_all_checks.sh: the test runner itself (tests/run_all.sh) on broken suites. A copy of it
# runs in a scratch tree that holds only the suites of one case (no C, Lua or shell tests of the
# project), and its last line and exit status must say what happened: a skip is counted as skipped,
# not passed; a required skip (MAMLRUN_REQUIRE_SUITES) fails; a suite without a TAP plan, with a plan
# its tests do not match, not executable, or a C test source without its binary fails; a suite that
# leaves a file or a folder in the checkout, or changes one, fails (the runner's last check, which
# counts one pass in every other case). And
# tests/suites.d/mpi.sh with a fake binary: only a clean "built without MPI" answer is a skip.
set -u
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$ROOT" || exit 2
T=$(mktemp -d "${TMPDIR:-/tmp}/run_all_checks.XXXXXX") || exit 2
trap 'rm -rf "$T"' EXIT
failures=0 checks=0

# a scratch tree for one case: tests/run_all.sh and an empty build folder
tree() {
  rm -rf "$T/tree"
  mkdir -p "$T/tree/tests/suites.d" "$T/tree/build/tests"
  cp tests/run_all.sh "$T/tree/tests/run_all.sh"
}

# suite NAME BODY: an executable tests/suites.d/NAME.sh that prints BODY (printf format) and exits 0
suite() {
  printf '#!/bin/sh\nprintf "%s"\n' "$2" >"$T/tree/tests/suites.d/$1.sh"
  chmod +x "$T/tree/tests/suites.d/$1.sh"
}

# expect WHAT RC LAST-LINE [ENV=VALUE ...]: run the scratch tree's runner
expect() {
  local what=$1 want_rc=$2 want_last=$3 rc=0 last
  shift 3
  checks=$((checks + 1))
  env -u MAMLRUN_REQUIRE_SUITES "$@" BUILD=build MAMLRUN=/bin/true "$T/tree/tests/run_all.sh" >"$T/out" 2>&1 || rc=$?
  last=$(tail -n 1 "$T/out")
  if [ "$rc" -ne "$want_rc" ] || [ "$last" != "$want_last" ]; then
    failures=$((failures + 1))
    echo "FAIL: $what: exit status $rc (expected $want_rc), last line '$last' (expected '$want_last')"
    sed 's/^/  | /' "$T/out" | head -n 30
  fi
}

tree
suite good 'ok 1 - one\nok 2 - two\n1..2\n'
expect "two passing tests" 0 "3 passed, 0 failed, 0 skipped"

tree
suite skipping 'ok 1 - mpi # SKIP [mpi] openmpi not installed\nok 2 - other\n1..2\n'
expect "a skip is counted as skipped, not passed" 0 "2 passed, 0 failed, 1 skipped"
expect "a required skip is a failure" 1 "2 passed, 1 failed, 0 skipped" MAMLRUN_REQUIRE_SUITES="fuzz mpi"
expect "a skip of a requirement not listed stays a skip" 0 "2 passed, 0 failed, 1 skipped" \
  MAMLRUN_REQUIRE_SUITES="fuzz dataset"

tree
suite no_plan 'ok 1 - one\n'
expect "a suite that exits 0 without a plan fails" 1 "2 passed, 1 failed, 0 skipped"

tree
suite short 'ok 1 - one\nok 2 - two\n1..3\n'
expect "a suite that runs fewer tests than its plan fails" 1 "3 passed, 1 failed, 0 skipped"

tree
suite long 'ok 1 - one\nok 2 - two\n1..1\n'
expect "a suite that runs more tests than its plan fails" 1 "3 passed, 1 failed, 0 skipped"

tree
suite good 'ok 1 - one\n1..1\n'
printf '#!/bin/sh\necho "ok 1 - x"\necho "1..1"\n' >"$T/tree/tests/suites.d/not_executable.sh"
expect "a suite that is not executable fails" 1 "2 passed, 1 failed, 0 skipped"

tree
mkdir -p "$T/tree/tests/c"
echo 'int main(void) { return 0; }' >"$T/tree/tests/c/test_missing.c"
suite good 'ok 1 - one\n1..1\n'
expect "a C test source without its binary fails" 1 "2 passed, 1 failed, 0 skipped"

# a suite that passes but leaves something in the checkout: the runner's last check fails
writer() { # writer NAME COMMAND: a passing suite that runs COMMAND in the tree's root first
  printf '#!/bin/sh\n%s\nprintf "ok 1 - one\\n1..1\\n"\n' "$2" >"$T/tree/tests/suites.d/$1.sh"
  chmod +x "$T/tree/tests/suites.d/$1.sh"
}
tree
writer stray_file 'echo x >stray.txt'
expect "a suite that leaves a file in the checkout fails" 1 "1 passed, 1 failed, 0 skipped"
grep -q '^     | > ./stray.txt$' "$T/out" || { failures=$((failures + 1)); echo "FAIL: the runner did not name ./stray.txt"; }
tree
writer empty_folder 'mkdir -- -nan'
expect "a suite that leaves an empty folder in the checkout fails" 1 "1 passed, 1 failed, 0 skipped"
tree
echo "before" >"$T/tree/tests/data.txt"
writer changes_file 'echo after >tests/data.txt'
( cd "$T/tree" && git init -q && git add -A && git -c user.email=t@t -c user.name=t commit -qm base )
expect "a suite that changes a tracked file fails" 1 "1 passed, 1 failed, 0 skipped"
tree
writer scratch 'd=$(mktemp -d) && echo x >"$d/f" && rm -rf "$d"'
expect "a suite that writes under TMPDIR passes" 0 "2 passed, 0 failed, 0 skipped"

# tests/suites.d/mpi.sh's probe of the binary: only a clean "false" is a skip; anything else it does not
# expect (a crash, a warning, garbage) is a failure, not a skip
probe() { # probe WHAT WANT-FIRST-LINE-PREFIX SCRIPT-BODY: mpi.sh with a fake mamlrun
  local what=$1 want=$2 first
  checks=$((checks + 1))
  printf '#!/bin/sh\n%s\n' "$3" >"$T/fake_mamlrun"
  chmod +x "$T/fake_mamlrun"
  first=$(env -u ASAN_OPTIONS MAMLRUN="$T/fake_mamlrun" tests/suites.d/mpi.sh 2>&1 | head -n 1)
  case $first in
    "$want"*) ;;
    *) failures=$((failures + 1)); echo "FAIL: mpi.sh probe, $what: first line '$first', expected '$want...'" ;;
  esac
}
if command -v mpirun >/dev/null 2>&1; then
  probe "built without MPI" "ok 1 - mpi # SKIP [mpi]" 'printf false'
  probe "a crash" "not ok 1 - mpi probe" 'kill -SEGV $$'
  probe "a warning on stderr" "not ok 1 - mpi probe" 'echo "warning: something" >&2; printf false'
  probe "unexpected output" "not ok 1 - mpi probe" 'printf "nil"'
fi

if [ "$failures" -eq 0 ]; then echo "all $checks runner checks passed"; fi
[ "$failures" -eq 0 ]
