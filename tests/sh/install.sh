#!/usr/bin/env bash
# tests/sh/install.sh: an installed mamlrun is a complete tool (make install, make uninstall,
# pkg/install.sh, lua/locate.lua). Installs the binary under test into a temporary prefix and, from an
# unrelated folder with its own HOME: lists the shipped experiments, asks them for help (by name, by
# path, help=true), runs a user script that extends a shipped experiment for a few iterations on a
# small generated Omniglot tree in the per-user data folder, checks that a user's own scripts come
# before the shipped ones and that what is not found names where it was looked for, runs mamlrun-data
# (for real when OMNIGLOT_ZIPS names the zips), reads the manual page; then uninstalls and compares
# the file lists: nothing left behind, and what was there before is still there. Also DESTDIR staging
# and an install over an older one.
set -u
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
MAMLRUN=${MAMLRUN:-$ROOT/mamlrun}
case $MAMLRUN in /*) ;; *) MAMLRUN=$ROOT/$MAMLRUN ;; esac
T=$(mktemp -d "${TMPDIR:-/tmp}/install_test.XXXXXX") || exit 2
trap 'rm -rf "$T"' EXIT
unset MAKEFLAGS MFLAGS MAKELEVEL OMNIGLOT_DIR XDG_DATA_HOME XDG_CACHE_HOME
export HOME=$T/home
mkdir -p "$HOME"

if [ ! -x "$MAMLRUN" ]; then echo "FAIL: $MAMLRUN is not built"; exit 1; fi

. "$(dirname "$0")/lib/checks.bash"
tree() { (cd "$1" && find . | LC_ALL=C sort); }

# ---------------------------------------------------------------- install into a fresh prefix
P=$T/inst # does not exist yet: make install creates it, make uninstall removes it
run make -s -C "$ROOT" install PREFIX="$P" INSTALL_BIN="$MAMLRUN"
expect "make install" 0 "into $P"
for f in bin/mamlrun bin/mamlrun-data share/mamlrun/lua/experiment.lua share/mamlrun/lua/locate.lua \
  share/mamlrun/experiments/omniglot5w1s.lua share/mamlrun/data/show_task.lua share/man/man1/mamlrun.1 \
  share/man/man1/mamlrun-data.1 share/doc/mamlrun/README.md share/doc/mamlrun/docs/experiments.md; do
  check "installed $f" test -f "$P/$f"
done
check "mamlrun is executable" test -x "$P/bin/mamlrun"
check "mamlrun-data is executable" test -x "$P/bin/mamlrun-data"
n_shipped=$(ls "$ROOT"/experiments/*.lua | wc -l)
n_installed=$(ls "$P"/share/mamlrun/experiments/*.lua | wc -l)
check "all $n_shipped experiments installed ($n_installed)" test "$n_shipped" -eq "$n_installed"
check "no file left half-written (*.part.*)" test -z "$(find "$P" -name '*.part.*')"

M=$P/bin/mamlrun
W=$T/work # an unrelated folder: no lua/, no experiments/, no data/
mkdir -p "$W"
cd "$W" || exit 2

# ---------------------------------------------------------------- --list
run "$M" --list
expect "--list" 0 "omniglot5w1s"
for f in "$ROOT"/experiments/*.lua; do
  name=$(basename "$f" .lua)
  first=$(sed -n '1s/^-- //p' "$f")
  check "--list names $name with its first comment line" grep -qF -- "  $first" "$T/out"
  check "--list: $name" grep -qE "^  $name +" "$T/out"
done
[[ "$out" == *"MAML, Omniglot 5-way 1-shot (Finn et al. 2017"* ]] || fail "--list describes omniglot5w1s"

# ---------------------------------------------------------------- help runs nothing
run "$M" omniglot5w1s --help
expect "omniglot5w1s --help" 0 "MAML, Omniglot 5-way 1-shot"
check "--help shows inner_lr, its value and meaning" grep -qE '^  inner_lr +0\.4 +inner-loop SGD step size' "$T/out"
check "--help shows ways" grep -qE '^  ways +5 +classes per task' "$T/out"
check "--help ran nothing (no runs/)" test ! -e "$W/runs"
run "$M" omniglot20w5s help=true meta_batch=4
expect "help=true with an override" 0 "omniglot20w5s"
check "help shows the script's value and the default" grep -qE '^  ways +20 .*default 5\)' "$T/out"
check "help shows the override's value" grep -qE '^  meta_batch +4 ' "$T/out"
run "$M" experiments/ablation_first_order.lua --help
expect "an ablation by its path under the install" 0 "first-order MAML"
check "the ablation's help shows first_order=true" grep -qE '^  first_order +true ' "$T/out"
run "$M" omniglot5w1s --help wayz=3
expect "help with an unknown key" 2 "" "unknown config key 'wayz'"
check "still nothing ran" test ! -e "$W/runs"

# ---------------------------------------------------------------- not found: where it looked
run "$M" nosuch
expect "a missing script" 1 "" "cannot open nosuch: no such script; looked for nosuch, nosuch.lua, $P/share/mamlrun/experiments/nosuch, $P/share/mamlrun/experiments/nosuch.lua"
cat >"$W/extends_missing.lua" <<'EOF'
local experiment = require "experiment"
return experiment.run(experiment.config "experiments/nosuch.lua")
EOF
run "$M" extends_missing.lua
expect "experiment.config of a missing base" 1 "" "experiment.config: cannot open experiments/nosuch.lua: no such script; looked for experiments/nosuch.lua, $P/share/mamlrun/experiments/nosuch.lua"

# ---------------------------------------------------------------- the dataset: where it is looked for
cat >"$W/my5w1s.lua" <<'EOF'
-- my5w1s.lua: the shipped 5-way 1-shot experiment, renamed and shortened
local experiment = require "experiment"
local base = experiment.config "experiments/omniglot5w1s.lua"
return experiment.run(experiment.extend(base, {name = "mine", iterations = 20}))
EOF
TINY=(split=lake val_classes=0 ways=3 meta_batch=2 test_tasks=3 eval_every=0 checkpoint_every=0
  log_every=1 channels=8 threads=1 progress=log steps_test=1 steps_test_max=1)
run "$M" my5w1s.lua "${TINY[@]}" iterations=3
expect "no dataset anywhere" 1 "" "no Omniglot dataset (images_background/ and images_evaluation/) in $HOME/.local/share/mamlrun/omniglot (the per-user folder: fill it with \`mamlrun-data\`)"
[[ "$err" != *"checkout"* ]] || fail "an installed mamlrun has no checkout to look in"

# a small Omniglot tree in the per-user folder: 6 background and 4 evaluation characters, 4 images each
export XDG_DATA_HOME=$T/xdg
DATA=$XDG_DATA_HOME/mamlrun/omniglot
DATA=$DATA "$M" -e "$(cat <<'EOF'
local T, omniglot = require "tensor", require "omniglot"
local root, c = os.getenv("DATA"), 0
for _, a in ipairs{{"images_background", "Alpha", 3}, {"images_background", "Beta", 3},
                   {"images_evaluation", "Gamma", 4}} do
  for ch = 1, a[3] do
    c = c + 1
    local dir = string.format("%s/%s/%s/character%02d", root, a[1], a[2], ch)
    assert(os.execute("mkdir -p " .. dir))
    local proto = T.rand({20, 20}, T.generator(c)):gt(0.6)
    for k = 1, 4 do
      local noise = T.rand({20, 20}, T.generator(100 * c + k)):gt(0.9)
      omniglot.write_png(string.format("%s/%04d_%02d.png", dir, c, k), (proto + noise):gt(0.5))
    end
  end
end
EOF
)" </dev/null >/dev/null 2>"$T/err" || { rc=$?; out=""; err=$(cat "$T/err"); fail "generating the small dataset"; }
check "the small dataset is in the per-user folder" test -f "$DATA/images_evaluation/Gamma/character04/0010_04.png"

# ---------------------------------------------------------------- a user script extending a shipped one
run "$M" my5w1s.lua "${TINY[@]}" iterations=3
expect "the user's script trains on the per-user dataset" 0 "run folder: runs/mine-"
run_dir=$(ls -d "$W"/runs/mine-* 2>/dev/null | head -n 1)
check "the run folder is under the current folder" test -n "$run_dir"
check "summary.txt written" test -f "$run_dir/summary.txt"
check "3 training records in metrics.jsonl" test "$(grep -c '"type":"train"' "$run_dir/metrics.jsonl" 2>/dev/null)" -eq 3
check "the config is the shipped one, extended" grep -q '"name":"mine"' "$run_dir/config.json"
check "the per-user folder got the image cache" test -f "$DATA/cache_28.bin"
# the same experiment by name, with OMNIGLOT_DIR naming the folder instead
OMNIGLOT_DIR=$DATA XDG_DATA_HOME=$T/elsewhere run "$M" omniglot5w1s "${TINY[@]}" iterations=1 name=by_name
expect "a shipped experiment by name, OMNIGLOT_DIR" 0 "run folder: runs/by_name-"
OMNIGLOT_DIR=$T/nothing-here run "$M" omniglot5w1s "${TINY[@]}"
expect "OMNIGLOT_DIR is used as is" 1 "" "tasks.load: no Omniglot under '$T/nothing-here'"
# a data= folder relative to the current one is kept as an absolute path: the run goes on from any folder
run "$M" omniglot5w1s "${TINY[@]}" iterations=1 name=relative_data data="../xdg/mamlrun/./omniglot"
expect "data= relative to the current folder" 0 "run folder: runs/relative_data-"
rel_dir=$(ls -d "$W"/runs/relative_data-* 2>/dev/null | head -n 1)
check "  ... config.json names it from the root" grep -qF "\"data\":\"$(cd "$DATA" && pwd -P)\"" "$rel_dir/config.json"
cd "$T" || exit 2
run "$M" omniglot5w1s resume="$rel_dir" iterations=2
expect "  ... and a resume= from another folder finds it" 0 "resuming $rel_dir at iteration 1 of 2"
cd "$W" || exit 2

# ---------------------------------------------------------------- a user's own scripts come first
U=$T/user
mkdir -p "$U/experiments" "$U/sub"
printf -- '-- my own copy\nreturn require("experiment").run{name = "users_own", ways = 7}\n' \
  >"$U/experiments/omniglot5w1s.lua"
printf -- '-- my own base\nreturn require("experiment").run{name = "users_base", ways = 9}\n' >"$U/omniglot5w1s.lua"
printf -- '-- beside\nlocal e = require "experiment"\nreturn e.run(e.config "omniglot5w1s")\n' >"$U/sub/ext.lua"
cd "$U" || exit 2
run "$M" experiments/omniglot5w1s.lua --help
expect "the user's experiments/omniglot5w1s.lua before the shipped one" 0 "my own copy"
check "  ... with its values" grep -qE '^  ways +7 ' "$T/out"
run "$M" omniglot5w1s --help
expect "the user's omniglot5w1s.lua before the shipped experiment of that name" 0 "my own base"
cd "$U/sub" || exit 2
run "$M" ext.lua --help
expect "experiment.config: the shipped one when none is here" 0 "beside"
check "  ... the shipped values" grep -qE '^  ways +5 ' "$T/out"
cd "$T" || exit 2
run "$M" user/sub/ext.lua --help
check "experiment.config: no base in the current folder or beside the script: the shipped one" \
  grep -qE '^  ways +5 ' "$T/out"
cp "$U/omniglot5w1s.lua" "$U/sub/omniglot5w1s.lua"
run "$M" user/sub/ext.lua --help
check "experiment.config: a base beside the running script" grep -qE '^  ways +9 ' "$T/out"
cd "$W" || exit 2

# ---------------------------------------------------------------- data/show_task.lua by its install path
run "$M" data/show_task.lua out="$T/task.png" ways=3 shots=1 queries=1 split=lake
expect "data/show_task.lua from the install, on the per-user dataset" 0 "wrote $T/task.png"
run "$M" data/show_task.lua --help out="$T/help.png"
expect "data/show_task.lua --help" 0 "show_task.lua: draw one sampled Omniglot task"
check "data/show_task.lua --help draws nothing" test ! -e "$T/help.png"
run "$M" data/show_task.lua out="$T/typo.png" wayz=3 split=lake
expect "data/show_task.lua: a mistyped key" 2 "" "show_task: unknown key 'wayz'; valid keys: help, out, queries,"
check "  ... draws nothing" test ! -e "$T/typo.png"
run "$M" data/show_task.lua out="$T/many.png" queries=30 split=lake
expect "data/show_task.lua: more queries than a class has images, without a traceback" 2 "" "show_task: tasks.sampler: 1 shots + 30 queries need 31 distinct images per class"
check "  ... no traceback" test "${err#*stack traceback}" = "$err"

# ---------------------------------------------------------------- mamlrun-data
run env XDG_DATA_HOME="$T/xdg-data" OMNIGLOT_ZIPS="$T/no-zips" "$P/bin/mamlrun-data"
expect "mamlrun-data without the zips" 1 "Omniglot into $T/xdg-data/mamlrun/omniglot" \
  "OMNIGLOT_ZIPS=$T/no-zips has no images_background.zip"
run "$P/bin/mamlrun-data" --help
expect "mamlrun-data --help" 0 "per-user folder"
if [ -n "${OMNIGLOT_ZIPS:-}" ]; then
  run env XDG_DATA_HOME="$T/xdg-data" "$P/bin/mamlrun-data"
  expect "mamlrun-data from OMNIGLOT_ZIPS into the per-user folder" 0 \
    "unpacked 13180 images into $T/xdg-data/mamlrun/omniglot/images_evaluation"
  check "both sets complete" test -f "$T/xdg-data/mamlrun/omniglot/.images_background.ok" \
    -a -f "$T/xdg-data/mamlrun/omniglot/.images_evaluation.ok"
  run env XDG_DATA_HOME="$T/xdg-data" "$P/bin/mamlrun-data"
  expect "mamlrun-data again" 0 "images_evaluation is already unpacked"
  rm -rf "$T/xdg-data"
else
  echo "note: OMNIGLOT_ZIPS is not set: mamlrun-data's unpacking of the real zips is not tested"
fi

# ---------------------------------------------------------------- the manual page
if command -v man >/dev/null 2>&1; then
  run env MANPATH="$P/share/man" MANWIDTH=80 man -P cat mamlrun
  expect "man mamlrun from the install" 0 "FINDING THE SCRIPT"
  run env MANPATH="$P/share/man" MANWIDTH=80 man -P cat mamlrun-data
  expect "man mamlrun-data from the install" 0 "OMNIGLOT_ZIPS"
else
  echo "note: man is not installed: the manual pages are not read"
fi

# ---------------------------------------------------------------- the checkout's mamlrun, from elsewhere
run "$MAMLRUN" omniglot5w1s -h
expect "a checkout's mamlrun finds its experiments by name from any folder; -h is --help" 0 \
  "$ROOT/experiments/omniglot5w1s.lua: MAML, Omniglot 5-way 1-shot"
printf 'print("arg0=" .. arg[0], "script=" .. require("mamlrun").script, "args=" .. table.concat(arg, ","))\n' \
  >"$W/show_args.lua"
run "$MAMLRUN" show_args -- --help
expect "arg[0] and mamlrun.script are the file found; --help after -- is a plain argument" 0 \
  "arg0=show_args.lua	script=show_args.lua	args=--help"
run "$MAMLRUN" show_args --help --help
expect "--help twice" 2 "" "duplicate override 'help'"
run "$MAMLRUN" --list omniglot5w1s
expect "--list takes no script" 2 "" "--list takes no SCRIPT"

# ---------------------------------------------------------------- uninstall leaves nothing
cd "$T" || exit 2
run make -s -C "$ROOT" uninstall PREFIX="$P"
expect "make uninstall" 0 "removed"
check "the prefix it created is gone" test ! -e "$P"
run make -s -C "$ROOT" uninstall PREFIX="$P"
expect "uninstall without an install (make's status 2)" 2 "" "nothing was installed under $P"

# into a prefix that has files and empty folders of its own: they stay, exactly
Q=$T/usr-local
mkdir -p "$Q/bin" "$Q/share/man/man1" "$Q/share/doc/other"
echo "#!/bin/sh" >"$Q/bin/other-tool"
tree "$Q" >"$T/before"
run make -s -C "$ROOT" install PREFIX="$Q" INSTALL_BIN="$MAMLRUN"
expect "install into a used prefix" 0
# an older install's file that this one does not have: a re-install removes it
echo "-- old" >"$Q/share/mamlrun/experiments/retired.lua"
echo "file $Q/share/mamlrun/experiments/retired.lua" >>"$Q/share/mamlrun/install-manifest"
run make -s -C "$ROOT" install PREFIX="$Q" INSTALL_BIN="$MAMLRUN"
expect "install again" 0
check "re-install removed a file of the old install it no longer has" test ! -e "$Q/share/mamlrun/experiments/retired.lua"
echo "mine" >"$Q/share/mamlrun/notes.txt" # a user's file in a folder make install created
run make -s -C "$ROOT" uninstall PREFIX="$Q"
expect "uninstall from a used prefix" 0 "" ""
[[ "$out" == *"left $Q/share/mamlrun: it holds files that make install did not put there"* ]] ||
  fail "uninstall names the folder it leaves"
rm "$Q/share/mamlrun/notes.txt"
rmdir "$Q/share/mamlrun"
tree "$Q" >"$T/after"
check "uninstall left the prefix as it was (diff before after)" diff "$T/before" "$T/after"

# DESTDIR staging: the files under DESTDIR/PREFIX, the manifest without DESTDIR
run make -s -C "$ROOT" install DESTDIR="$T/stage" PREFIX=/opt/mamlrun INSTALL_BIN="$MAMLRUN"
expect "install with DESTDIR" 0
check "staged binary" test -x "$T/stage/opt/mamlrun/bin/mamlrun"
check "the manifest names the final paths" grep -qx "file /opt/mamlrun/bin/mamlrun" \
  "$T/stage/opt/mamlrun/share/mamlrun/install-manifest"
run "$T/stage/opt/mamlrun/bin/mamlrun" --list
expect "the staged mamlrun finds its experiments" 0 "sinusoid"
run make -s -C "$ROOT" uninstall DESTDIR="$T/stage" PREFIX=/opt/mamlrun
expect "uninstall with DESTDIR" 0
check "nothing left under DESTDIR" test -z "$(ls -A "$T/stage")"

run make -s -C "$ROOT" install PREFIX=relative/path INSTALL_BIN="$MAMLRUN"
expect "a relative PREFIX" 2 "" "PREFIX must be an absolute path, got 'relative/path'"

echo "install: $checks checks, $failures failed"
[ "$failures" -eq 0 ]
