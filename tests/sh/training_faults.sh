#!/usr/bin/env bash
# tests/sh/training_faults.sh: an interrupted or failing training run loses nothing. Real processes
# of `mamlrun experiments/sinusoid.lua` (no dataset needed), small settings:
#   - SIGTERM and SIGINT: a checkpoint of the current iteration is saved atomically (no temporary
#     file left), the run says how to continue, and resuming from it finishes the run; resuming it
#     with another experiment script is an error naming the run's own
#   - a NaN/inf meta-loss stops the run (exit status 1, no traceback) naming the iteration and the
#     last good checkpoint; on_nonfinite=skip goes on
#   - a full disk (MAMLRUN_WRITE_LIMIT: T.write_atomic fails with ENOSPC past N bytes) while saving:
#     the previous checkpoint stays intact (same bytes) and the run says so; a signal that cannot be
#     saved ends the run with status 1 naming the checkpoint to continue from
#   - a run folder that becomes read-only: the same. As root chmod does not stop writes, so a
#     directory is put where the checkpoint's temporary file would go (open fails even for root).
set -u
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
MAMLRUN=${MAMLRUN:-$ROOT/mamlrun}
cd "$ROOT" || exit 2
T=$(mktemp -d "${TMPDIR:-/tmp}/training_faults.XXXXXX") || exit 2
children=()
cleanup() {
  for p in "${children[@]}"; do kill -9 "$p" 2>/dev/null; done
  chmod -R u+w "$T" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
failures=0 checks=0

if [ ! -x "$MAMLRUN" ]; then echo "FAIL: $MAMLRUN is not built"; exit 1; fi

fail() {
  failures=$((failures + 1))
  echo "FAIL: $1"
  if [ -n "${2:-}" ] && [ -f "$2" ]; then sed 's/^/  | /' "$2" | tail -n 30; fi
}
check() { # check WHAT COMMAND...: the command must succeed
  checks=$((checks + 1))
  local what=$1
  shift
  "$@" || fail "$what"
}
has() { grep -qF -- "$2" "$1"; } # has FILE TEXT
not_has() { ! grep -qF -- "$2" "$1"; } # not_has FILE TEXT

# the sinusoid experiment, made small
SIN=(experiments/sinusoid.lua meta_batch=2 eval_every=0 test_tasks=3 steps_test=1
  steps_test_max=1 threads=1 progress=log)
LOG5=log_every=5

# the iteration of a checkpoint file (an error if it does not load)
cat >"$T/iteration.lua" <<'EOF'
local _, path = ...
io.write(require("checkpoint").load(path).iteration)
EOF
iteration_of() { "$MAMLRUN" "$T/iteration.lua" "$1" 2>&1; }

# wait_for FILE TEXT: until FILE contains TEXT (at most 300 s: the sanitizer build is slow)
wait_for() {
  local i
  for ((i = 0; i < 3000; i++)); do
    if [ -f "$1" ] && grep -qF -- "$2" "$1"; then return 0; fi
    sleep 0.1
  done
  return 1
}

# the run folder named in a run's output
run_dir_of() { sed -n 's/.*run folder \([^ ]*\)$/\1/p' "$1" | head -n 1; }

no_temp_files() { ! ls "$1" | grep -q '\.tmp\.'; }

# ---------------------------------------------------------------- SIGTERM and SIGINT
for sig in TERM INT; do
  out=$T/sig$sig.out
  "$MAMLRUN" "${SIN[@]}" $LOG5 iterations=1000000 checkpoint_every=0 out_dir="$T/sig$sig" >"$out" 2>&1 &
  pid=$!
  children+=("$pid")
  if ! wait_for "$out" "iter 10/"; then
    fail "SIG$sig: the run did not start" "$out"
    continue
  fi
  kill -"$sig" "$pid"
  rc=0
  wait "$pid" || rc=$?
  dir=$(run_dir_of "$out")
  n=$(sed -n "s/^SIG$sig: stopped at iteration \([0-9]*\);.*/\1/p" "$out")
  want=$([ "$sig" = INT ] && echo 130 || echo 143)
  check "SIG$sig: exit status $rc, expected $want (128 + the signal)" test "$rc" -eq "$want"
  check "SIG$sig: the run says where it stopped and how to continue" \
    has "$out" "continue with: mamlrun experiments/sinusoid.lua resume=$dir"
  check "SIG$sig: the checkpoint holds the iteration it stopped at ($n)" \
    test -n "$n" -a "$(iteration_of "$dir/checkpoint.bin")" = "$n"
  check "SIG$sig: no temporary file is left" no_temp_files "$dir"
  if [ "$sig" = TERM ] && [ -n "$n" ]; then
    rc=0
    "$MAMLRUN" "${SIN[@]}" $LOG5 resume="$dir" iterations=$((n + 3)) >"$T/resume.out" 2>&1 || rc=$?
    check "resume after SIGTERM: exit status $rc" test "$rc" -eq 0
    check "resume after SIGTERM: continues at iteration $n" has "$T/resume.out" "resuming $dir at iteration $n of $((n + 3))"
    check "resume after SIGTERM: finishes at iteration $((n + 3))" \
      test "$(iteration_of "$dir/checkpoint.bin")" = "$((n + 3))"
    # another script's settings would be ignored on resume: that is an error naming the run's script
    rc=0
    "$MAMLRUN" experiments/omniglot5w1s.lua resume="$dir" >"$T/other.out" 2>&1 || rc=$?
    check "resume with another script: exit status $rc, expected 2" test "$rc" -eq 2
    check "resume with another script: names the run's script" has "$T/other.out" \
      "resume: $dir is a run of sinusoid.lua (experiment sinusoid), not of omniglot5w1s.lua; continue it with: mamlrun sinusoid resume=$dir"
    check "resume with another script: the run is untouched" \
      test "$(iteration_of "$dir/checkpoint.bin")" = "$((n + 3))"
  fi
done

# ---------------------------------------------------------------- non-finite meta-loss
# meta_lr=1e30: iteration 1 is finite, Adam's first step then makes every weight ~1e30
rc=0
"$MAMLRUN" "${SIN[@]}" iterations=5 log_every=1 checkpoint_every=1 meta_lr=1e30 out_dir="$T/nan" >"$T/nan.out" 2>&1 || rc=$?
dir=$(run_dir_of "$T/nan.out")
check "NaN: exit status $rc, expected 1" test "$rc" -eq 1
check "NaN: names the iteration and the last good checkpoint" \
  grep -qE "non-finite meta-[a-z -]+ \(-?(nan|inf)\) at iteration 2; the run stopped \(on_nonfinite=stop\); last good checkpoint: $dir/checkpoint.bin \(iteration 1\)" "$T/nan.out"
check "NaN: the last good checkpoint loads" test "$(iteration_of "$dir/checkpoint.bin")" = 1
check "NaN: a stop, not a fault of the code: no traceback" not_has "$T/nan.out" "stack traceback"
rc=0
"$MAMLRUN" "${SIN[@]}" iterations=5 log_every=1 meta_lr=1e30 on_nonfinite=skip out_dir="$T/skip" >"$T/skip.out" 2>&1 || rc=$?
check "on_nonfinite=skip: exit status $rc, expected 0" test "$rc" -eq 0
check "on_nonfinite=skip: says so" has "$T/skip.out" "meta-update skipped (on_nonfinite=skip)"
check "on_nonfinite=skip: the test's summary says how many updates were skipped" \
  grep -qE "^[0-9]+ of the 5 meta-updates were skipped \(a non-finite meta-gradient, on_nonfinite=skip\)" \
  "$(ls -d "$T"/skip/sinusoid-*/summary.txt | head -n 1)"
[ "$failures" -eq 0 ] || cat "$T/nan.out" "$T/skip.out" | tail -n 20

# ---------------------------------------------------------------- full disk
# a finished run of 10 iterations, then resumed to 20 with writes limited to 4000 bytes: the
# config files fit, the checkpoints (tens of KB) do not
rc=0
"$MAMLRUN" "${SIN[@]}" $LOG5 iterations=10 checkpoint_every=5 out_dir="$T/full" >"$T/full1.out" 2>&1 || rc=$?
dir=$(run_dir_of "$T/full1.out")
check "full disk: the first run (exit status $rc)" test "$rc" -eq 0 -a -n "$dir"
cp "$dir/checkpoint.bin" "$T/checkpoint-10.bin"
rc=0
MAMLRUN_WRITE_LIMIT=4000 "$MAMLRUN" "${SIN[@]}" $LOG5 resume="$dir" iterations=20 checkpoint_every=5 >"$T/full2.out" 2>&1 || rc=$?
check "full disk: the run goes on (exit status $rc)" test "$rc" -eq 0
check "full disk: says the checkpoint was not saved and the previous one is intact" \
  has "$T/full2.out" "checkpoint at iteration 15 not saved: write_atomic: cannot write '$dir/checkpoint.bin': No space left on device (the previous file is unchanged); the previous checkpoint $dir/checkpoint.bin (iteration 10) is intact"
check "full disk: the final save fails the same way" has "$T/full2.out" "checkpoint at iteration 20 not saved"
check "full disk: the previous checkpoint is unchanged" cmp -s "$dir/checkpoint.bin" "$T/checkpoint-10.bin"
check "full disk: no temporary file is left" no_temp_files "$dir"
check "full disk: the failures are in the metrics" has "$dir/metrics.jsonl" '"type":"checkpoint_failed"'
[ "$failures" -eq 0 ] || tail -n 20 "$T/full2.out"

# a signal that cannot be saved: status 1, naming the checkpoint to continue from
MAMLRUN_WRITE_LIMIT=4000 "$MAMLRUN" "${SIN[@]}" $LOG5 resume="$dir" iterations=1000000 checkpoint_every=0 >"$T/full3.out" 2>&1 &
pid=$!
children+=("$pid")
if wait_for "$T/full3.out" "iter 30/"; then
  kill -TERM "$pid"
  rc=0
  wait "$pid" || rc=$?
  check "full disk + SIGTERM: exit status $rc, expected 1" test "$rc" -eq 1
  check "full disk + SIGTERM: says the iteration was not saved and where to continue from" \
    grep -qE "SIGTERM: stopped at iteration [0-9]+ without saving it \(checkpoint at iteration [0-9]+ not saved: .*No space left on device.*the previous checkpoint $dir/checkpoint.bin \(iteration 10\) is intact\); continue from iteration 10 with: mamlrun experiments/sinusoid.lua resume=$dir" "$T/full3.out"
  check "full disk + SIGTERM: the previous checkpoint is unchanged" cmp -s "$dir/checkpoint.bin" "$T/checkpoint-10.bin"
  check "full disk + SIGTERM: a stop, not a fault of the code: no traceback" not_has "$T/full3.out" "stack traceback"
else
  fail "full disk + SIGTERM: the run did not start" "$T/full3.out"
fi

# ---------------------------------------------------------------- read-only run folder
out=$T/ro.out
"$MAMLRUN" "${SIN[@]}" $LOG5 iterations=1000000 checkpoint_every=5 out_dir="$T/ro" >"$out" 2>&1 &
pid=$!
children+=("$pid")
if wait_for "$out" "iter 10/"; then
  dir=$(run_dir_of "$out")
  if [ "$(id -u)" -eq 0 ]; then
    # root writes into read-only folders: block the temporary file (retried while one is being written)
    for ((i = 0; i < 1000; i++)); do mkdir "$dir/checkpoint.bin.tmp.$pid" 2>/dev/null && break; sleep 0.01; done
  else
    chmod a-w "$dir"
  fi
  # after the first failure no checkpoint can change (one being written when the folder was blocked
  # is finished by then)
  if wait_for "$out" "not saved"; then
    cp "$dir/checkpoint.bin" "$T/checkpoint-ro.bin"
    good=$(iteration_of "$T/checkpoint-ro.bin")
    n=$(sed -n 's/^iter \([0-9]*\)\/.*/\1/p' "$out" | tail -n 1)
    wait_for "$out" "iter $((n + 10))/"
    kill -TERM "$pid"
    rc=0
    wait "$pid" || rc=$?
    check "read-only folder: warns that a checkpoint was not saved and the previous one is intact" \
      grep -qE "checkpoint at iteration [0-9]+ not saved: write_atomic: cannot (create|write) .*the previous checkpoint $dir/checkpoint.bin \(iteration $good\) is intact" "$out"
    check "read-only folder + SIGTERM: exit status $rc, expected 1" test "$rc" -eq 1
    check "read-only folder: the previous checkpoint is unchanged" cmp -s "$dir/checkpoint.bin" "$T/checkpoint-ro.bin"
  else
    fail "read-only folder: no checkpoint failed" "$out"
  fi
else
  fail "read-only folder: the run did not start" "$out"
fi

# a signal during the final test: the run says that it is not tested and how to test it, and records it
out=$T/sigtest.out
"$MAMLRUN" experiments/sinusoid.lua meta_batch=2 eval_every=0 steps_test=1 steps_test_max=1 threads=1 progress=log \
  $LOG5 iterations=5 test_tasks=100000000 out_dir="$T/sigtest" >"$out" 2>&1 &
pid=$!
children+=("$pid")
if wait_for "$out" "iter 5/5"; then
  sleep 1 # (the last iteration's checks are done: the test has begun)
  kill -INT "$pid"
  rc=0
  wait "$pid" || rc=$?
  dir=$(run_dir_of "$out")
  check "SIGINT during the test: exit status $rc, expected 130" test "$rc" -eq 130
  check "SIGINT during the test: says so and how to test the run" has "$out" \
    "SIGINT: stopped during the final test at iteration 5, which is not tested; its checkpoint $dir/checkpoint.bin is saved: test it with: mamlrun experiments/sinusoid.lua resume=$dir"
  check "SIGINT during the test: a stopped record" grep -qF '"during":"test"' "$dir/metrics.jsonl"
else
  fail "SIGINT during the test: the run did not train" "$out"
fi

# a run of a script of the user's, resumed with another script from another folder: the command it
# names is the user's file by its path (by the name alone, it is found only beside the file)
mkdir -p "$T/mine" "$T/elsewhere"
printf -- 'local e = require "experiment"\nreturn e.run(e.extend(e.config "sinusoid", {name = "mine"}))\n' \
  >"$T/mine/sin_mine.lua"
(cd "$T/mine" && "$MAMLRUN" sin_mine.lua "${SIN[@]:1}" iterations=2 out_dir="$T/mine/runs" >"$T/mine.out" 2>&1)
mine_dir=$(ls -d "$T"/mine/runs/mine-* 2>/dev/null | head -n 1)
rc=0
(cd "$T/elsewhere" && "$MAMLRUN" sinusoid resume="$mine_dir" >"$T/mine-other.out" 2>&1) || rc=$?
check "resume of a user's script with another: exit status $rc, expected 2" test "$rc" -eq 2
check "resume of a user's script with another: the command names the script's file" has "$T/mine-other.out" \
  "continue it with: mamlrun $T/mine/sin_mine.lua resume=$mine_dir"

echo "$checks checks, $failures failed"
[ "$failures" -eq 0 ]
