#!/usr/bin/env bash
# tests/sh/doc_commands_checks.sh: the docs' command check (tests/suites.d/doc_commands.sh) fails when a
# doc shows a broken command, and `mamlrun SCRIPT --check` itself refuses what it cannot check.
# A doc with a misspelt key, a script that does not exist, a combination the algorithm refuses and a
# bad value must give exactly those four `not ok` lines (with the doc's line) and a non-zero exit; a
# doc whose commands the parser cannot find fails its count; a good doc passes. None of these commands
# needs the dataset (they fail before it loads, or are the sinusoid). A checked resume= or eval_only=
# leaves its run folder as it was.
. "$(dirname "$0")/lib/setup.bash"
. "$ROOT/tests/sh/lib/checks.bash"
out="" err="" rc=0
suite() { # suite DOC MIN: run the suite on DOC alone; its output in $T/out, its status in $rc
  rc=0
  DOCS=$1 MIN_CHECKED=$2 MAMLRUN=$MAMLRUN ROOT=$ROOT tests/suites.d/doc_commands.sh >"$T/out" 2>&1 || rc=$?
}

cat >"$T/broken.md" <<'EOF'
A doc with one good command and four broken ones:

    ./mamlrun experiments/sinusoid.lua iterations=10          # good
    ./mamlrun experiments/omniglot5w1s.lua firstorder=true     # misspelt key
    ./mamlrun experiments/omniglot5w1z.lua                     # no such script
    ./mamlrun experiments/omniglot5w1s.lua algorithm=reptile bn_mode=running
    ./mamlrun experiments/sinusoid.lua inner_lr=fast
EOF
suite "$T/broken.md" 1
check "the suite fails on a broken doc (exit status $rc)" test "$rc" -ne 0
check "the good command passes" grep -q "^ok 1 - $T/broken.md:3: ./mamlrun experiments/sinusoid.lua iterations=10$" "$T/out"
for l in 4 5 6 7; do
  check "line $l of the broken doc is a failure" grep -q "^not ok [0-9]* - $T/broken.md:$l: " "$T/out"
done
check "exactly four failures" test "$(grep -c '^not ok' "$T/out")" -eq 4
check "the misspelt key is named" grep -q "unknown config key 'firstorder'" "$T/out"
check "the missing script is named" grep -q "no script experiments/omniglot5w1z.lua" "$T/out"
check "the refused combination is named" grep -q "bn_mode" "$T/out"

printf 'No commands here.\n\n    make test\n' >"$T/empty.md"
suite "$T/empty.md" 1
check "a doc without commands fails the count (exit status $rc)" test "$rc" -ne 0
check "the count says why" grep -q "^not ok 1 - the docs' commands checked: 0, fewer than 1" "$T/out"

printf '    ./mamlrun experiments/sinusoid.lua meta_batch=5\n    mamlrun sinusoid --help\n' >"$T/good.md"
suite "$T/good.md" 2
check "a good doc passes (exit status $rc)" test "$rc" -eq 0

# --check itself: a plain script is not an experiment (it ran, and the host says nothing was checked),
# --check with --help is two requests, and a checked run writes nothing
printf -- '-- a plain script: it builds no experiment\nprint("plain")\n' >"$T/plain.lua"
run "$MAMLRUN" "$T/plain.lua" --check
expect "--check on a plain script is a usage error naming it" 2 "" "$T/plain.lua ran as a plain script"
# a plain script that reads its own keys (options.script_keys) refuses the check it does not know, drawing nothing
run "$MAMLRUN" data/show_task.lua out="$T/task.png" --check
expect "--check on data/show_task.lua: its unknown key" 2 "" "show_task: unknown key 'check'"
check "... and it drew nothing" test ! -e "$T/task.png"
run "$MAMLRUN" experiments/sinusoid.lua progress=none --check
expect "--check answers under progress=none (the answer was asked for)" 0 "check: sinusoid: maml"
run "$MAMLRUN" experiments/sinusoid.lua --check --help
expect "--check with --help is a usage error" 2 "" "are two requests"
run "$MAMLRUN" experiments/sinusoid.lua out_dir="$T/runs" --check
expect "a checked sinusoid run says what it would do" 0 "would train 70000 iterations into a new run folder under $T/runs. Nothing was run or written"
check "... and writes no run folder" test ! -e "$T/runs"
run "$MAMLRUN" experiments/sinusoid.lua out_dir="$T/runs" max_minutes=20 --check
expect "a checked run with a time limit says so" 0 "would train 70000 iterations (for at most 20 minutes: max_minutes) into a new run folder"

# --check on a run folder: resume= and eval_only= load and check its checkpoint, and leave the folder as
# it was (a resumed run rewrites its metrics; a checked one must not)
SIN=(experiments/sinusoid.lua meta_batch=2 eval_every=0 test_tasks=3 steps_test=1 steps_test_max=1 threads=1
  progress=log out_dir="$T/runs2")
EVAL=(experiments/sinusoid.lua test_tasks=3 steps_test=1 steps_test_max=1 threads=1 progress=log out_dir="$T/runs2")
run "$MAMLRUN" "${SIN[@]}" iterations=10
expect "a small sinusoid run trains" 0
dir=$(ls -d "$T"/runs2/sinusoid-* 2>/dev/null | head -n 1)
if [ -n "$dir" ]; then
  (cd "$dir" && ls -l --time-style=full-iso && md5sum ./*) >"$T/before"
  run "$MAMLRUN" experiments/sinusoid.lua resume="$dir" iterations=20 --check
  expect "resume= --check says where the run would go on" 0 "would resume $dir at iteration 10 of 20; changed on the command line: iterations 10 -> 20. Nothing was run or written"
  run "$MAMLRUN" experiments/omniglot5w1s.lua resume="$dir" --check
  expect "resume= --check with another script is the run's own usage error" 2 "" "is a run of sinusoid.lua"
  run "$MAMLRUN" "${EVAL[@]}" eval_only=true checkpoint="$dir/checkpoint.bin" --check
  expect "eval_only=true --check says what it would test" 0 "would test $dir/checkpoint.bin (iteration 10) on 3 tasks"
  (cd "$dir" && ls -l --time-style=full-iso && md5sum ./*) >"$T/after"
  check "the checked run folder is unchanged" cmp -s "$T/before" "$T/after"
  check "... and no eval folder was made" test "$(ls -d "$T"/runs2/* | wc -l)" -eq 1
  printf 'not a checkpoint' >"$T/bad.bin"
  run "$MAMLRUN" "${EVAL[@]}" eval_only=true checkpoint="$T/bad.bin" --check
  expect "eval_only=true --check on a file that is no checkpoint is the run's own error" 1 "" "is not a mamlrun checkpoint"
else
  fail "the small sinusoid run made no run folder under $T/runs2"
fi

echo "$checks checks, $failures failed"
[ "$failures" -eq 0 ]
