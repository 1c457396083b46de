#!/usr/bin/env bash
# tests/suites.d/fuzz.sh: short libFuzzer runs of every reader of a file format (tests/fuzz/fuzz_*.c:
# PNG, the Omniglot cache, checkpoints, command-line overrides), TAP. For each target: its committed
# regression inputs (tests/fuzz/regressions/TARGET/*) must run clean, then a bounded run from seeds
# that tests/fuzz/make_seeds.lua makes from scratch (fixed -seed; FUZZ_SECONDS each, default 5, and
# at most FUZZ_RUNS inputs, default 200000). A crash fails the test and names the input libFuzzer
# saved: copy it to tests/fuzz/regressions/TARGET/ once fixed. Inputs known to be valid (the seeds of
# png, omniglot_cache and checkpoint, and regression files named valid-*) must be accepted: they run
# with FUZZ_EXPECT_VALID=1, under which a target aborts on a rejected input (so a reader that refused
# everything fails), and a rejected regression input under FUZZ_EXPECT_VALID=1 must fail (the check
# can fail). The binaries come from `make fuzz` (which `make test` runs when clang is installed);
# without clang every target is skipped ([fuzz]: MAMLRUN_REQUIRE_SUITES=fuzz makes that a failure).
set -u
cd "${ROOT:-$(dirname "$0")/../..}" || exit 2
MAMLRUN=${MAMLRUN:-./mamlrun}
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
SECONDS_EACH=${FUZZ_SECONDS:-5}
RUNS=${FUZZ_RUNS:-200000}

targets=()
for src in tests/fuzz/fuzz_*.c; do
  name=${src##*/fuzz_}
  targets+=("${name%.c}")
done

n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
  n=$((n + 1)); failed=1
  echo "not ok $n - $1"
  shift
  for line in "$@"; do echo "$line" | sed 's/^/# /'; done
}

if ! command -v "${FUZZ_CC:-clang}" >/dev/null 2>&1; then
  for t in "${targets[@]}"; do ok "fuzz $t # SKIP [fuzz] clang not installed"; done
  echo "1..$n"
  exit 0
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/mamlrun-fuzz.XXXXXX") || exit 2
trap 'rm -rf "$TMP"' EXIT
export TMPDIR=$TMP # the targets' scratch files

if ! "$MAMLRUN" tests/fuzz/make_seeds.lua "$TMP/seeds" >"$TMP/seeds.log" 2>&1; then
  not_ok "seed inputs (tests/fuzz/make_seeds.lua)" "$(tail -n 20 "$TMP/seeds.log")"
fi

# an input that runs 10 s is a hang, a process over 2 GB a runaway allocation (LeakSanitizer checks too)
OPTS=(-seed=1 -timeout=10 -rss_limit_mb=2048 -print_final_stats=0)
for t in "${targets[@]}"; do
  bin=$FUZZ_BUILD/tests/fuzz/fuzz_$t
  if [ ! -x "$bin" ]; then
    not_ok "fuzz $t: $bin is not built (make fuzz)"
    continue
  fi
  regressions=(tests/fuzz/regressions/"$t"/*)
  if [ -e "${regressions[0]}" ]; then
    if "$bin" "${OPTS[@]}" "${regressions[@]}" >"$TMP/$t.regressions.log" 2>&1; then
      ok "fuzz $t: ${#regressions[@]} regression inputs"
    else
      not_ok "fuzz $t: regression inputs" "$(grep -E 'Running|ERROR|SUMMARY|runtime error' "$TMP/$t.regressions.log" | tail -n 30)"
    fi
  fi
  # inputs known to be valid must be accepted (overrides: no seed is a valid config on its own)
  valid=()
  if [ "$t" != overrides ]; then
    for f in "$TMP/seeds/$t"/* tests/fuzz/regressions/"$t"/valid-*; do [ -f "$f" ] && valid+=("$f"); done
  fi
  if [ "${#valid[@]}" -gt 0 ]; then
    if FUZZ_EXPECT_VALID=1 "$bin" "${OPTS[@]}" "${valid[@]}" >"$TMP/$t.valid.log" 2>&1; then
      ok "fuzz $t: ${#valid[@]} valid inputs are accepted"
    else
      not_ok "fuzz $t: a valid input was rejected" "$(grep -E 'Running|refused|rejected|ERROR|SUMMARY' "$TMP/$t.valid.log" | tail -n 30)"
    fi
    # and the check can fail: a regression input the reader rejects, under the same setting
    case $t in
      png) rejected=tests/fuzz/regressions/png/huge-header-tiny-data.png ;;
      omniglot_cache) rejected=tests/fuzz/regressions/omniglot_cache/huge-header.bin ;;
      checkpoint) rejected=tests/fuzz/regressions/checkpoint/string-past-end.bin ;;
      *) rejected= ;;
    esac
    if [ -n "$rejected" ]; then
      if FUZZ_EXPECT_VALID=1 "$bin" "${OPTS[@]}" "$rejected" >"$TMP/$t.reject.log" 2>&1; then
        not_ok "fuzz $t: FUZZ_EXPECT_VALID=1 passed ${rejected##*/}, which the reader rejects" "$(tail -n 20 "$TMP/$t.reject.log")"
      else
        ok "fuzz $t: the valid-input check fails on ${rejected##*/}, which the reader rejects"
      fi
    fi
  fi
  mkdir -p "$TMP/corpus-$t" "$TMP/seeds/$t" "$TMP/artifacts"
  rc=0
  "$bin" "${OPTS[@]}" -max_total_time="$SECONDS_EACH" -runs="$RUNS" -artifact_prefix="$TMP/artifacts/$t-" \
    "$TMP/corpus-$t" "$TMP/seeds/$t" >"$TMP/$t.log" 2>&1 || rc=$?
  done_line=$(grep -E '^Done [0-9]+ runs' "$TMP/$t.log" | tail -n 1)
  if [ "$rc" -eq 0 ] && [ -n "$done_line" ]; then
    runs=$(echo "$done_line" | sed 's/^Done \([0-9]*\) runs in \([0-9]*\).*/\1 inputs in \2 s/')
    cov=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$TMP/$t.log" | sed 's/.*\(cov: [0-9]*\).*\(corp: [^ ]*\).*/\1, \2/')
    ok "fuzz $t: $runs ($cov)"
  else
    artifact=$(ls "$TMP/artifacts/$t-"* 2>/dev/null | head -n 1)
    saved=""
    if [ -n "$artifact" ]; then
      mkdir -p "${FUZZ_ARTIFACTS:-fuzz-artifacts}"
      cp "$artifact" "${FUZZ_ARTIFACTS:-fuzz-artifacts}/" && saved="input saved as ${FUZZ_ARTIFACTS:-fuzz-artifacts}/${artifact##*/}"
    fi
    not_ok "fuzz $t: exit status $rc${saved:+; $saved}" \
      "$(grep -vE '^#[0-9]+ |^INFO:|^MS:|^base64:|^0x' "$TMP/$t.log" | tail -n 40)"
  fi
done
echo "1..$n"
exit "$failed"
