#!/usr/bin/env bash
# tests/sh/script_errors.sh: mistakes in experiment scripts and in key=value overrides are reported
# where they are. A syntax or runtime error names the file and the line: in the script, in a module
# beside it, in the base script an ablation extends, in a task source the training loop calls. A bad
# override is the user's mistake, not the script's: one message naming the key, no traceback, exit
# status 2 (as for a malformed command line); a bad key in a script keeps its traceback. The
# plain host cases (a script's own syntax and runtime errors, -e) are in host_cli.sh.
. "$(dirname "$0")/lib/setup.bash"
failures=0 checks=0

# expect WHAT RC STDERR-SUBSTRING CMD...: run CMD, check its exit status and its stderr
expect() {
  local what=$1 want_rc=$2 want_err=$3 rc=0
  shift 3
  checks=$((checks + 1))
  "$@" </dev/null >"$T/out" 2>"$T/err" || rc=$?
  if [ "$rc" -ne "$want_rc" ] || ! grep -qF -- "$want_err" "$T/err"; then
    failures=$((failures + 1))
    echo "FAIL: $what: exit status $rc (expected $want_rc), stderr should contain: $want_err"
    sed 's/^/  | /' "$T/err" | head -n 15
  fi
}

# expect_usage WHAT STDERR-SUBSTRING CMD...: a user's mistake: status 2, the message, no traceback
expect_usage() {
  local what=$1
  expect "$what" 2 "$2" "${@:3}"
  if grep -q "stack traceback" "$T/err"; then
    failures=$((failures + 1))
    echo "FAIL: $what: a mistake on the command line printed a traceback"
    sed 's/^/  | /' "$T/err" | head -n 15
  fi
}

# a tiny sinusoid experiment, for the overrides
SIN=(experiments/sinusoid.lua iterations=2 meta_batch=2 eval_every=0 test_tasks=2 progress=none out_dir="$T/runs")

# ---------------------------------------------------------------- errors in scripts
cat >"$T/syntax.lua" <<'EOF'
-- an experiment with a typo on line 4
return require("experiment").run{
  name = "syntax",
  task = "sinusoid" iterations = 2,
}
EOF
expect "syntax error in an experiment script" 1 "$T/syntax.lua:4: '}' expected (to close '{' at line 2) near 'iterations'" \
  "$MAMLRUN" "$T/syntax.lua"

cat >"$T/runtime.lua" <<'EOF'
local experiment = require "experiment"
local cfg = {name = "runtime", task = "sinusoid"}
cfg.iterations = cfg.steps * 2 -- line 3: steps is nil
return experiment.run(cfg)
EOF
expect "runtime error in an experiment script" 1 "$T/runtime.lua:3: attempt to perform arithmetic on a nil value (field 'steps')" \
  "$MAMLRUN" "$T/runtime.lua"

mkdir -p "$T/lib"
cat >"$T/lib/helpers.lua" <<'EOF'
local M = {}
function M.schedule(n)
  return n .. nil -- line 3
end
return M
EOF
cat >"$T/lib/uses_module.lua" <<'EOF'
local helpers = require "helpers"
return require("experiment").run{name = "m", task = "sinusoid", iterations = helpers.schedule(2)}
EOF
expect "runtime error in a module beside the script" 1 "$T/lib/helpers.lua:3: attempt to concatenate a nil value" \
  "$MAMLRUN" "$T/lib/uses_module.lua"

cat >"$T/base.lua" <<'EOF'
return require("experiment").run{
  name = "base",
  task = "sinusoid",
  iterations = = 2,
}
EOF
cat >"$T/ablation.lua" <<EOF
local experiment = require "experiment"
local base = experiment.config "$T/base.lua"
return experiment.run(experiment.extend(base, {name = "ablation"}))
EOF
expect "syntax error in the base of an ablation" 1 "$T/base.lua:4: unexpected symbol near '='" \
  "$MAMLRUN" "$T/ablation.lua"

# a task source whose sample function fails during training (line 6)
cat >"$T/source.lua" <<'EOF'
local T = require "tensor"
local source = {
  kind = "regression", loss = "mse", metric = "mse", input_size = 1, output_size = 1,
  sample = function(_, split, n_tasks, gen, shape)
    if split == "train" then
      error("the source has no training data")
    end
  end,
}
return require("experiment").run({name = "src", task = "custom", model = "mlp", iterations = 2, meta_batch = 2,
  progress = "none", out_dir = os.getenv("RUNS")}, {source = source})
EOF
expect "error in a task source during training" 1 "$T/source.lua:6: the source has no training data" \
  env RUNS="$T/runs" "$MAMLRUN" "$T/source.lua"

# ---------------------------------------------------------------- errors in overrides
expect_usage "override of the wrong type" "config key 'seed' expects an integer, got string \"abc\" on the command line" \
  "$MAMLRUN" "${SIN[@]}" seed=abc
expect_usage "unknown override" "unknown config key 'inner_lrr' on the command line" "$MAMLRUN" "${SIN[@]}" inner_lrr=0.1
expect_usage "unknown algorithm on the command line" "config key 'algorithm' expects one of maml, meta_sgd, anil, reptile, mamlpp" \
  "$MAMLRUN" "${SIN[@]}" algorithm=mamll
expect_usage "unknown model on the command line" "config key 'model' expects one of conv4, peer_net, mlp" \
  "$MAMLRUN" "${SIN[@]}" model=conv5
expect_usage "a key of another algorithm on the command line" "unknown config key 'inner_batch' on the command line (task sinusoid, model mlp, algorithm maml)" \
  "$MAMLRUN" "${SIN[@]}" inner_batch=3
expect_usage "override out of range" "config key 'log_every' must be positive, got 0" "$MAMLRUN" "${SIN[@]}" log_every=0
expect_usage "size override out of range" "config key 'queries' must be positive, got 0" "$MAMLRUN" "${SIN[@]}" queries=0
# step sizes and constants out of range: refused before anything runs, not a run that climbs the loss,
# trains nothing or ends in NaN
expect_usage "meta_lr 0" "config key 'meta_lr' must be positive, got 0" "$MAMLRUN" "${SIN[@]}" meta_lr=0
expect_usage "a negative inner_lr" "config key 'inner_lr' must be >= 0, got -1" "$MAMLRUN" "${SIN[@]}" inner_lr=-1
expect_usage "Adam's beta1 of 1" "config key 'inner_momentum' must be in [0, 1)" \
  "$MAMLRUN" "${SIN[@]}" inner_optimizer=adam inner_momentum=1
expect_usage "a negative Reptile meta_step" "config key 'meta_step' must be >= 0, got -1" \
  "$MAMLRUN" "${SIN[@]}" algorithm=reptile meta_step=-1
expect_usage "MAML++ with no inner step" "config key 'steps' must be at least 1 with algorithm mamlpp" \
  "$MAMLRUN" "${SIN[@]}" algorithm=mamlpp steps=0
expect_usage "Reptile's sinusoid with shots, which it does not use" "config key 'shots' has no effect with algorithm reptile on task sinusoid" \
  "$MAMLRUN" "${SIN[@]}" algorithm=reptile shots=3
# inner_loss_scale="ways" (N x the mean loss) on a regression, which has no classes: refused where it was
# set; left at its default it is the mean loss, and the run says 1
expect_usage "inner_loss_scale=ways on the sinusoid" "config key 'inner_loss_scale' is \"ways\" (set on the command line), but task sinusoid is a regression" \
  "$MAMLRUN" "${SIN[@]}" inner_loss_scale=ways
cat >"$T/regression.lua" <<'EOF'
local source = {kind = "regression", loss = "mse", metric = "mse", input_size = 1, output_size = 1,
  sample = function() error("not sampled") end}
return require("experiment").run({name = "reg", task = "custom", model = "mlp", iterations = 2, meta_batch = 2,
  progress = "none", out_dir = os.getenv("RUNS"), inner_loss_scale = os.getenv("SCALE")}, {source = source})
EOF
expect_usage "inner_loss_scale=\"ways\" in a script of a regression source" "config key 'inner_loss_scale' is \"ways\" (set in the experiment script), but task custom is a regression" \
  env RUNS="$T/runs" SCALE=ways "$MAMLRUN" "$T/regression.lua"
checks=$((checks + 1))
if ! env RUNS="$T/runs" "$MAMLRUN" "$T/regression.lua" --check 2>&1 | grep -qF "inner_loss_scale 1,"; then
  failures=$((failures + 1))
  echo "FAIL: a regression source's default inner_loss_scale is not said as 1"
fi
# settings of batch norm on a network without it (they change nothing), and MAML++'s per-step batch norm
# on a network that adapts its batch norm: refused naming the key (the first two ran, the third was a
# traceback); MAML++'s default per_step_bn=true on the sinusoid's MLP is no error
expect_usage "Reptile's transductive=true on an MLP" "config key 'transductive' is true, but network mlp has no batch norm" \
  "$MAMLRUN" "${SIN[@]}" algorithm=reptile transductive=true --check
expect_usage "MAML++'s per_step_bn=true on an MLP" "config key 'per_step_bn' is true, but network mlp has no batch-norm weights or biases" \
  "$MAMLRUN" "${SIN[@]}" algorithm=mamlpp per_step_bn=true --check
expect_usage "MAML++'s per_step_bn on a network that adapts its batch norm" "mamlpp: per_step_bn (true, MAML++'s default) keeps batch-norm weights and biases per step, which the inner loop must not adapt, and network peer_net adapts its batch norm" \
  "$MAMLRUN" experiments/mamlpp_omniglot5w1s.lua model=peer_net --check
checks=$((checks + 1))
if ! "$MAMLRUN" "${SIN[@]}" algorithm=mamlpp --check 2>&1 | grep -qF "per_step_bn true"; then
  failures=$((failures + 1))
  echo "FAIL: MAML++ with its defaults on the sinusoid is refused"
fi
expect_usage "a negative batch-norm epsilon" "config key 'bn_eps' must be positive, got -1" \
  "$MAMLRUN" experiments/omniglot5w1s.lua bn_eps=-1 --check
expect_usage "bn_mode=running on a network without batch norm" "config key 'bn_mode' is \"running\", but network mlp has no batch norm (no running statistics) and meta-tests the same either way: remove bn_mode" \
  "$MAMLRUN" "${SIN[@]}" bn_mode=running
expect_usage "more threads than parallel runs" "config key 'threads' must be at most 64, got 1000 (0: one per core)" \
  "$MAMLRUN" "${SIN[@]}" threads=1000
expect_usage "list override with a bad entry" "config key 'hidden' must list positive sizes, got -3 at position 2" \
  "$MAMLRUN" "${SIN[@]}" hidden=40,-3
expect_usage "list override that is not a list" "config key 'hidden' expects a list of integers" "$MAMLRUN" "${SIN[@]}" hidden=a,b
expect_usage "non-finite override" "config key 'inner_lr' must be a finite number, got inf" "$MAMLRUN" "${SIN[@]}" inner_lr=1e999
expect_usage "choice override" "config key 'on_nonfinite' expects one of stop, skip, got string \"maybe\"" \
  "$MAMLRUN" "${SIN[@]}" on_nonfinite=maybe
expect_usage "key of another model" "unknown config key 'channels' on the command line (task sinusoid, model mlp, algorithm maml)" \
  "$MAMLRUN" "${SIN[@]}" channels=32
# (a paper config at its smallest: were a check missing, the run it starts ends at once)
QUICK=(iterations=0 eval_every=0 test_tasks=1 progress=none out_dir="$T/runs")
expect_usage "a steps_test_max below steps_test" "config key 'steps_test_max' (set on the command line) is 3, below steps_test (10): the evaluation reports the metric after 0..max(steps_test, steps_test_max) inner steps, so it changes nothing" \
  "$MAMLRUN" "${SIN[@]}" steps_test_max=3
expect_usage "a key with no effect" "config key 'inner_momentum' (set on the command line) has no effect with inner_optimizer=sgd: it is used only with inner_optimizer=momentum|adam" \
  "$MAMLRUN" "${SIN[@]}" inner_momentum=0.5
expect_usage "an annealing's key with the annealing off" "config key 'min_meta_lr' (set on the command line) has no effect with cosine_lr=false" \
  "$MAMLRUN" "${SIN[@]}" algorithm=mamlpp cosine_lr=false min_meta_lr=0.001
expect_usage "MAML++'s epoch length with nothing annealed over epochs" "config key 'epoch_iterations' is 100, but it has no effect with multi_step_loss=false, cosine_lr=false and no derivative-order annealing (second_order_epoch=-1)" \
  "$MAMLRUN" "${SIN[@]}" algorithm=mamlpp cosine_lr=false multi_step_loss=false epoch_iterations=100 --check
checks=$((checks + 1))
if ! "$MAMLRUN" "${SIN[@]}" algorithm=mamlpp cosine_lr=false multi_step_loss=false second_order_epoch=2 epoch_iterations=100 --check 2>&1 | grep -qF "would train"; then
  failures=$((failures + 1))
  echo "FAIL: MAML++'s epoch length with derivative-order annealing on is refused"
fi
# the script's epoch length, with the command line turning the switches off: what was asked for, and runs
printf -- 'local e = require "experiment"\nreturn e.run(e.extend(e.config "sinusoid", {algorithm = "mamlpp", epoch_iterations = 200}))\n' \
  >"$T/mamlpp_epochs.lua"
checks=$((checks + 1))
if ! "$MAMLRUN" "$T/mamlpp_epochs.lua" "${SIN[@]:1}" cosine_lr=false multi_step_loss=false --check 2>&1 | grep -qF "would train"; then
  failures=$((failures + 1))
  echo "FAIL: the script's epoch_iterations with the switches turned off on the command line is refused"
fi
expect_usage "a key the algorithm cannot honour" "config key 'bn_adapt' has no effect with algorithm anil" \
  "$MAMLRUN" experiments/anil_omniglot5w1s.lua bn_adapt=true "${QUICK[@]}"
expect_usage "split=vinyals under a script's val_classes" "config key 'val_classes' (set in the experiment script) must be 0 with split=vinyals" \
  "$MAMLRUN" experiments/omniglot5w1s.lua split=vinyals "${QUICK[@]}"
# a task a split cannot give: usage errors naming the keys before anything runs (--check too); they were
# a traceback from the sampler at the first meta-batch, or the first validation, or from tasks.split
expect_usage "val_classes as many as the training classes" "config key 'val_classes' is 1200, but split paper has 1200 training classes" \
  "$MAMLRUN" experiments/omniglot5w1s.lua val_classes=1200 --check
expect_usage "val_classes leaving fewer training classes than ways" "config key 'ways' is 5, but split paper has 4 training classes (rotation task) (val_classes=1196 took the rest)" \
  "$MAMLRUN" experiments/omniglot5w1s.lua val_classes=1196 --check
expect_usage "fewer validation classes than ways" "config key 'ways' is 5, but split paper has 3 validation classes (rotation task): give val_classes at least 5, or eval_every=0" \
  "$MAMLRUN" experiments/omniglot5w1s.lua val_classes=3 --check
expect_usage "more shots and queries than a class's images" "config keys 'shots' (15) and 'queries' (10) need 25 distinct images of each class, but the dataset has 20 per class" \
  "$MAMLRUN" experiments/omniglot5w1s.lua shots=15 queries=10 --check
expect_usage "more shots and test queries than a class's images" "config keys 'shots' (15) and 'queries_test' (6) need 21 distinct images" \
  "$MAMLRUN" experiments/omniglot5w1s.lua shots=15 queries=5 queries_test=6 --check
expect_usage "Reptile's training shots and queries, named as such" "config keys 'train_shots' (10) and 'queries' (15) need 25 distinct images of each class" \
  "$MAMLRUN" experiments/omniglot5w1s.lua algorithm=reptile queries=15 --check
checks=$((checks + 1))
if ! "$MAMLRUN" experiments/omniglot5w1s.lua val_classes=3 eval_every=0 --check 2>&1 | grep -qF "would train"; then
  failures=$((failures + 1))
  echo "FAIL: 3 validation classes with no validation (eval_every=0) are refused"
fi
expect_usage "a 1-way classification" "config key 'ways' must be at least 2 (a task of 1 class has nothing to tell apart" \
  "$MAMLRUN" experiments/omniglot5w1s.lua ways=1 --check
expect_usage "a run name with a '/'" "config key 'name' must be a file name, not empty and with no '/'" \
  "$MAMLRUN" "${SIN[@]}" name=a/b
expect_usage "an empty run name" "config key 'name' must be a file name, not empty and with no '/' (the run folder is <out_dir>/<name>-<timestamp>; out_dir chooses the folder), got \"\"" \
  "$MAMLRUN" "${SIN[@]}" name=
cat >"$T/extra.lua" <<'EOF'
return require("experiment").run{name = "extra", task = "sinusoid", iterations = 2, extra = {alpha = 0.5}}
EOF
expect_usage "extra.* override of the wrong type" "config key 'extra.alpha' expects a number (like its value 0.5), got boolean true" \
  "$MAMLRUN" "$T/extra.lua" extra.alpha=true
expect_usage "mistyped key of a paper config" "unknown config key 'out' on the command line" \
  "$MAMLRUN" experiments/omniglot5w1s.lua out=/tmp/x
expect_usage "ill-typed key of a paper config" "config key 'progress' expects one of auto, line, log, none, got boolean false on the command line" \
  "$MAMLRUN" experiments/omniglot5w1s.lua progress=false
cat >"$T/bad_key.lua" <<'EOF'
return require("experiment").run{name = "bad", task = "sinusoid", itterations = 2}
EOF
expect "unknown key in a script (the script's error: traceback, status 1)" 1 \
  "unknown config key 'itterations' in the experiment script" "$MAMLRUN" "$T/bad_key.lua"
if ! grep -q "stack traceback" "$T/err"; then
  failures=$((failures + 1))
  echo "FAIL: an unknown key in a script lost its traceback"
fi
expect "override given twice (usage error)" 2 "duplicate override 'steps' (key given twice)" "$MAMLRUN" "${SIN[@]}" steps=1 steps=2
# a plain argument after the script is no override: an experiment refuses it (each ran with the argument
# ignored: second-order MAML for `first-order=true`), naming the override it was probably meant as
expect_usage "a key with a hyphen" "'first-order=true' after the script is not a key=value override" \
  "$MAMLRUN" "${SIN[@]}" first-order=true --check
expect_usage "a hyphenated key's fix" "nothing was run; did you mean first_order=true?" \
  "$MAMLRUN" "${SIN[@]}" first-order=true
expect_usage "an override with dashes" "'--inner_lr=0.1' after the script is not a key=value override" \
  "$MAMLRUN" "${SIN[@]}" --inner_lr=0.1 --check
expect_usage "a key and its value as two arguments" "'inner_lr', '0.1' after the script are not key=value overrides (a key is a Lua name" \
  "$MAMLRUN" "${SIN[@]}" inner_lr 0.1 --check
expect_usage "an override with no key" "'=3' after the script is not a key=value override" \
  "$MAMLRUN" "${SIN[@]}" =3 --check
expect_usage "a plain argument after --" "'extra' after the script is not a key=value override" \
  "$MAMLRUN" "${SIN[@]}" --check -- extra
# a script that reads its own plain argument and removes it from arg still runs
cat >"$T/own_arg.lua" <<'EOF'
local steps = tonumber(table.remove(arg, 1))
return require("experiment").run{name = "own", task = "sinusoid", iterations = 2, meta_batch = 2,
  eval_every = 0, test_tasks = 2, steps = steps, progress = "none", out_dir = os.getenv("RUNS")}
EOF
checks=$((checks + 1))
if ! env RUNS="$T/runs" "$MAMLRUN" "$T/own_arg.lua" 3 --check 2>&1 | grep -qF "steps 3,"; then
  failures=$((failures + 1))
  echo "FAIL: a script that consumed its own plain argument was refused"
  env RUNS="$T/runs" "$MAMLRUN" "$T/own_arg.lua" 3 --check 2>&1 | sed 's/^/  | /' | head -5
fi
# resume= with iterations below the checkpoint's: refused (it tested the run again and recorded iterations=2
# for a run at 4); iterations above it trains on
"$MAMLRUN" experiments/sinusoid.lua iterations=4 meta_batch=2 eval_every=0 test_tasks=2 progress=none \
  out_dir="$T/resumed" >/dev/null 2>&1
res=$(ls -d "$T"/resumed/sinusoid-* | head -n 1)
expect_usage "resume= with iterations below the checkpoint's" "config key 'iterations' is 2, but the checkpoint of $res is at iteration 4: a resumed run only goes on; give iterations above 4 to train further, or test the checkpoint with eval_only=true checkpoint=$res/checkpoint.bin" \
  "$MAMLRUN" experiments/sinusoid.lua resume="$res" iterations=2 --check
checks=$((checks + 1))
if ! "$MAMLRUN" experiments/sinusoid.lua resume="$res" iterations=6 --check 2>&1 | grep -qF "at iteration 4 of 6"; then
  failures=$((failures + 1))
  echo "FAIL: resume= with iterations above the checkpoint's is refused"
fi
expect "override as value and table (usage error)" 2 "override 'inner.lr' conflicts with 'inner' (already a value)" \
  "$MAMLRUN" "${SIN[@]}" inner=1 inner.lr=2

echo "$checks checks, $failures failed"
[ "$failures" -eq 0 ]
