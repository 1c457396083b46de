# tests/sh/lib/checks.bash: the checking functions the shell tests share (sourced, not a test itself).
# Needs $T (a scratch folder); keeps the counts in $checks and $failures.
checks=0 failures=0

# run CMD...: sets $out, $err, $rc (stdin from $STDIN if set, else /dev/null)
run() {
  rc=0
  "$@" <"${STDIN:-/dev/null}" >"$T/out" 2>"$T/err" || rc=$?
  out=$(cat "$T/out")
  err=$(cat "$T/err")
}
fail() {
  failures=$((failures + 1))
  echo "FAIL: $1"
  echo "  stdout: $out" | head -n 20
  echo "  stderr: $err" | head -n 20
  echo "  status: $rc"
}
# expect WHAT RC [STDOUT-SUBSTRING [STDERR-SUBSTRING]]: check the last run
expect() {
  checks=$((checks + 1))
  local what=$1 want_rc=$2 want_out=${3:-} want_err=${4:-}
  if [ "$rc" -ne "$want_rc" ]; then fail "$what: exit status $rc, expected $want_rc"; return; fi
  if [ -n "$want_out" ] && [[ "$out" != *"$want_out"* ]]; then fail "$what: stdout lacks '$want_out'"; return; fi
  if [ -n "$want_err" ] && [[ "$err" != *"$want_err"* ]]; then fail "$what: stderr lacks '$want_err'"; fi
}
# check WHAT CONDITION...: one check of a command's success
check() {
  checks=$((checks + 1))
  local what=$1
  shift
  "$@" || fail "$what"
}
