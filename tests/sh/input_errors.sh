#!/usr/bin/env bash
# tests/sh/input_errors.sh: a file or folder the user named that cannot serve (a dataset folder without
# Omniglot, a damaged image in it, a resume= folder that is not there or has no checkpoint, a folder
# given as checkpoint=, a file that is no checkpoint, a truncated one, one of another network, an
# out_dir that cannot be created) stops the run with one message naming the file and what was
# expected, exit status 1, and no traceback: the traceback of our Lua code says nothing about the
# user's file (options.input_error, vm/main.c). A bug of a script keeps its traceback. Run with
# MAMLRUN= a host that prints input errors like any other and each of those checks fails. None of
# this needs the dataset: the sinusoid, and a fake Omniglot tree.
. "$(dirname "$0")/lib/setup.bash"
. "$ROOT/tests/sh/lib/checks.bash"
out="" err="" rc=0

# input WHAT STDERR-SUBSTRING: the last run stopped on the user's file: status 1, the message (one
# line, "mamlrun: ..." ), no traceback
input() {
  expect "$1" 1 "" "$2"
  checks=$((checks + 1))
  if [[ "$err" == *"stack traceback"* ]]; then fail "$1: a traceback after the message"; return; fi
  if [[ "$err" != "mamlrun: "* ]]; then fail "$1: the message does not start with 'mamlrun: '"; fi
}

SIN=(experiments/sinusoid.lua iterations=2 meta_batch=2 eval_every=0 test_tasks=2 progress=none)
EVAL=(experiments/sinusoid.lua test_tasks=2 progress=none) # (no key of meta-training: eval_only refuses them)

# ---------------------------------------------------------------- the dataset
run "$MAMLRUN" experiments/omniglot5w1s.lua data="$T/nothing-here" --check
input "data= a folder without Omniglot" "tasks.load: no Omniglot under '$T/nothing-here' (expected $T/nothing-here/images_background/)"

mkdir -p "$T/om/images_background/Alphabet/character01" "$T/om/images_evaluation/Other/character01"
echo "not an image" >"$T/om/images_background/Alphabet/character01/0101_01.png"
cp "$T/om/images_background/Alphabet/character01/0101_01.png" "$T/om/images_evaluation/Other/character01/0201_01.png"
run "$MAMLRUN" experiments/omniglot5w1s.lua data="$T/om" --check
input "a damaged image in the dataset" "tasks.load: omniglot.load: $T/om/images_background/Alphabet/character01/0101_01.png: not a PNG file"

# ---------------------------------------------------------------- resume= and eval_only= checkpoints
run "$MAMLRUN" "${SIN[@]}" resume="$T/no-such-run"
input "resume= a folder that is not there" "resume: no such run folder: $T/no-such-run"

mkdir -p "$T/empty-run"
run "$MAMLRUN" "${SIN[@]}" resume="$T/empty-run"
input "resume= a folder without a checkpoint" "resume: $T/empty-run has no checkpoint.bin"

run "$MAMLRUN" "${EVAL[@]}" eval_only=true checkpoint="$T/missing.bin"
input "eval_only= a checkpoint that is not there" "cannot open checkpoint: $T/missing.bin: No such file or directory"

printf 'PK\3\4 a zip file' >"$T/zip.bin"
run "$MAMLRUN" "${EVAL[@]}" eval_only=true checkpoint="$T/zip.bin"
input "eval_only= a file that is no checkpoint" "$T/zip.bin is not a mamlrun checkpoint (no MAMLCKPT magic)"

run "$MAMLRUN" "${SIN[@]}" out_dir="$T/runs"
check "a small sinusoid run for its checkpoint" [ "$rc" -eq 0 ]
ck=$(ls -d "$T"/runs/sinusoid-*/checkpoint.bin 2>/dev/null | head -n 1)
if [ -n "$ck" ]; then
  head -c 100 "$ck" >"$T/short.bin"
  run "$MAMLRUN" "${EVAL[@]}" eval_only=true checkpoint="$T/short.bin"
  input "eval_only= a truncated checkpoint" "$T/short.bin is truncated"

  run "$MAMLRUN" "${SIN[@]}" resume="$ck"
  input "resume= a checkpoint file, not its folder" "resume: $ck is a file, not a run folder"

  run "$MAMLRUN" "${EVAL[@]}" eval_only=true checkpoint="$(dirname "$ck")"
  input "eval_only= a run folder, not its checkpoint" "cannot read checkpoint $(dirname "$ck"): Is a directory (a run folder: its checkpoint is $ck)"

  run "$MAMLRUN" "${EVAL[@]}" eval_only=true checkpoint="$T"
  input "eval_only= a folder" "cannot read checkpoint $T: Is a directory"

  run "$MAMLRUN" "${EVAL[@]}" eval_only=true checkpoint="$ck" hidden=20,20
  input "eval_only= a checkpoint of another network" "does not fit this experiment's network"

  run "$MAMLRUN" "${EVAL[@]}" eval_only=true checkpoint="$ck" out_dir=/proc/mamlrun-cannot-write-here
  input "an out_dir that cannot be created" "the run folder: cannot create the folder /proc/mamlrun-cannot-write-here"

  # --check finds the same problem without making anything (a file on the way: root may write anywhere)
  echo "a file" >"$T/a-file"
  run "$MAMLRUN" "${EVAL[@]}" eval_only=true checkpoint="$ck" out_dir="$T/a-file/runs" --check
  input "--check: an eval_only out_dir below a file" "the run folder: cannot create the folder $T/a-file/runs/sinusoid-eval-"
else
  fail "the small sinusoid run made no checkpoint under $T/runs"
fi
echo "a file" >"$T/a-file"
run "$MAMLRUN" "${SIN[@]}" out_dir="$T/a-file" --check
input "--check: an out_dir that is a file" "the run folder: cannot create the folder $T/a-file/sinusoid-"
checks=$((checks + 1))
[[ "$err" == *": Not a directory (set out_dir= to a folder you can write)"* ]] || fail "--check: the out_dir message gives no reason or remedy: $err"
run "$MAMLRUN" "${SIN[@]}" out_dir="$T/a-file/deeper/runs/" --check
input "--check: an out_dir below a file" "the run folder: cannot create the folder $T/a-file/deeper/runs/"
run "$MAMLRUN" "${SIN[@]}" out_dir="$T/not-yet/made" --check
check "--check: an out_dir that can be made passes" [ "$rc" -eq 0 ]
check "--check: and it makes no folder" [ ! -e "$T/not-yet" ]

# ---------------------------------------------------------------- a bug keeps its traceback
cat >"$T/bug.lua" <<'EOF'
local checkpoint = require "checkpoint"
checkpoint.save(nil, {}) -- a script's mistake: its traceback shows where
EOF
run "$MAMLRUN" "$T/bug.lua"
expect "a script's own error" 1 "" "mamlrun: "
check "a script's own error keeps its traceback" grep -q "stack traceback" "$T/err"

# a bug in an algorithm of the user's, met during training: the traceback goes through the user's line
# (the runner closes its metrics file as the error goes on, it does not catch it and raise it again)
mkdir -p "$T/alg"
cat >"$T/alg/boom_maml.lua" <<'EOF'
local algorithm = require "algorithm"
local maml = require "algorithms.maml"
local A = algorithm.define{name = "boom_maml", base = maml, keys = maml.keys}
function A.new(net, o) return maml.setup(algorithm.instance(A, net, o), o) end
function A.Learner:inner_step(i, w, g) local x = nil; return x.y end -- luacheck: ignore
return A
EOF
cat >"$T/alg/boom.lua" <<'EOF'
local experiment = require "experiment"
return experiment.run(experiment.extend(experiment.config "sinusoid", {name = "boom", algorithm = "boom_maml"}))
EOF
run "$MAMLRUN" "$T/alg/boom.lua" "${SIN[@]:1}" threads=1 out_dir="$T/runs-boom"
expect "a bug in the user's algorithm" 1 "" "boom_maml.lua:5: attempt to index a nil value"
check "its traceback names the user's line" grep -q "boom_maml.lua:5: in " "$T/err"

echo "$checks checks, $failures failed"
[ "$failures" -eq 0 ]
