#!/usr/bin/env bash
# bench/script_speed.sh (a part of make bench): the paper's experiment scripts themselves, their own
# configs on the Omniglot data (not bench/maml_bench.lua's random data), a few iterations each on
# THREADS_SCRIPTS threads (default: every core, as a user runs them), and what their 60,000-iteration
# schedules would take at that speed. The iterations per second are the run's own training time
# (summary.json's seconds_per_iteration: the data load and the test are outside it).
# Needs the dataset (make data); says so and stops otherwise. Environment: THREADS_SCRIPTS (default
# 0, every core; not make bench's THREADS, a list for the MAML part), SCRIPT_ITERS (a factor on the
# iterations below, default 1).
set -u
cd "$(dirname "$0")/.." || exit 1
threads=${THREADS_SCRIPTS:-0}
FACTOR=${SCRIPT_ITERS:-1}
if [ ! -d data/omniglot/images_background ] || [ ! -d data/omniglot/images_evaluation ]; then
  echo "   (no dataset in data/omniglot: make data, or OMNIGLOT_ZIPS=DIR make data; scripts not timed)"
  exit 0
fi
out=$(mktemp -d "${TMPDIR:-/tmp}/mamlrun-script-speed.XXXXXX") || exit 1
trap 'rm -rf "$out"' EXIT
printf '   %-16s %-6s %6s %10s %12s\n' script order iters "it/s" "60,000 its"
# script, first_order, iterations (enough for a steady rate past the first, slower, ones)
for spec in "omniglot5w1s false 40" "omniglot5w1s true 60" "omniglot5w5s false 12" \
  "omniglot20w1s false 12" "omniglot20w1s true 24" "omniglot20w5s false 4"; do
  set -- $spec
  iters=$(($3 * FACTOR))
  dir="$out/$1-$2"
  if ! ./mamlrun "experiments/$1.lua" iterations="$iters" first_order="$2" threads="$threads" \
    eval_every=100000 test_tasks=1 progress=none out_dir="$dir" >"$dir.log" 2>&1; then
    echo "   $1 first_order=$2: FAILED"
    sed 's/^/     | /' "$dir.log" | tail -5
    continue
  fi
  ./mamlrun -e '
    local json = require "json"
    local dir, name, fo, iters = arg[1], arg[2], arg[3], tonumber(arg[4])
    local path = io.popen("ls " .. dir .. "/*/summary.json"):read("l")
    local s = json.decode(assert(io.open(path)):read("a"))
    local rate = 1 / s.seconds_per_iteration
    print(("   %-16s %-6s %6d %10.2f %11.1fh"):format(name, fo == "true" and "1st" or "2nd", iters, rate,
      60000 / rate / 3600))' - "$dir" "$1" "$2" "$iters" </dev/null
done
