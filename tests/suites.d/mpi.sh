#!/usr/bin/env bash
# tests/suites.d/mpi.sh: data-parallel MAML over Open MPI (vm/lua_mpi.c, lua/distributed.lua), TAP.
# Two and three ranks on this machine (--oversubscribe) must give the same bits as one process: the
# trained parameters, the test accuracies and every metrics record of tests/mpi/tiny_experiment.lua.
# Also: the mpi module's collectives, a Lua error on one rank ends every rank, a signal to one rank
# stops all at the same iteration. Skipped ([mpi]: MAMLRUN_REQUIRE_SUITES=mpi makes that a failure)
# when mpirun is not installed or mamlrun says it was built without Open MPI; any other answer of that
# probe (a crash, a warning, a non-zero exit) is a failure, not a skip.
set -u
cd "${ROOT:-$(dirname "$0")/../..}" || exit 2
MAMLRUN=${MAMLRUN:-./mamlrun}

if ! command -v mpirun >/dev/null 2>&1; then
  echo "ok 1 - mpi # SKIP [mpi] openmpi not installed"
  echo "1..1"
  exit 0
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mamlrun-mpi.XXXXXX") || exit 2
trap 'rm -rf "$TMP"' EXIT
# root needs --allow-run-as-root; no core binding (ranks may run threads); waiting ranks yield the core
MPIRUN=(mpirun --allow-run-as-root --oversubscribe --bind-to none --mca mpi_yield_when_idle 1)
# the sanitizer build: Open MPI's own allocations that live until exit are not leaks of ours. Matching
# them needs whole stacks (slow unwinding) and its plugins still loaded at exit (no dlclose).
if [ -n "${ASAN_OPTIONS:-}" ]; then
  # (intercept_tls_get_addr=0: ASan's tracking of dynamic TLS blocks goes wrong with Open MPI's
  # dlopen'ed plugins, and LeakSanitizer then crashes at exit: "Tracer caught signal 11", DTLS at a
  # garbage address; whether it happens depends on the heap layout)
  export ASAN_OPTIONS="$ASAN_OPTIONS:fast_unwind_on_malloc=0:intercept_tls_get_addr=0"
  # LeakSanitizer reads one suppressions file: Open MPI's and the project's (tests/lsan.supp) in one
  cat tests/mpi/lsan.supp tests/lsan.supp >"$TMP/lsan.supp" || exit 2
  export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$TMP/lsan.supp"
  export OMPI_MCA_mca_base_component_disable_dlclose=1
fi

probe_rc=0
# (the braces keep bash's own "Segmentation fault" notice out of the TAP output)
{ "$MAMLRUN" -e 'io.write(tostring(require("mpi").available))' >"$TMP/probe.out" 2>"$TMP/probe.err" || probe_rc=$?; } 2>/dev/null
probe=$(cat "$TMP/probe.out")
if [ "$probe_rc" -eq 0 ] && [ "$probe" = false ] && [ ! -s "$TMP/probe.err" ]; then
  echo "ok 1 - mpi # SKIP [mpi] mamlrun built without Open MPI (install libopenmpi-dev, rebuild)"
  echo "1..1"
  exit 0
fi
if [ "$probe_rc" -ne 0 ] || [ "$probe" != true ]; then
  echo "not ok 1 - mpi probe: $MAMLRUN -e 'require(\"mpi\").available' exited $probe_rc, printed '$probe'"
  sed 's/^/# /' "$TMP/probe.err" | tail -n 20
  echo "1..1"
  exit 1
fi
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
  n=$((n + 1)); failed=1
  echo "not ok $n - $1"
  shift
  for f in "$@"; do [ -f "$f" ] && sed 's/^/# /' "$f" | tail -n 40; done
}

# 1: the collectives
cat >"$TMP/collectives.lua" <<'LUA'
local T, mpi = require "tensor", require "mpi"
local r, n = mpi.rank(), mpi.size()
local s = mpi.allgather(("x"):rep(r + 1))
local t = mpi.allgather(T.full({r + 2, 1}, r))
local sum = mpi.allreduce_sum{T.full({2, 2}, r + 1), T.tensor{0.1 * (r + 1)}}
if r == 0 then
  mpi.send("hello", 1)
  mpi.send(T.tensor{{1, 2}, {3, 4}}, 1)
else
  local got_s, got_t = mpi.recv(0), mpi.recv(0)
  assert(got_s == "hello" and got_t:numel() == 4 and got_t:sum():item() == 10, "send/recv")
end
local b_s, b_t = mpi.bcast(r == 1 and "from 1" or nil, 1), mpi.bcast(r == 0 and T.ones{3} or nil, 0)
assert(b_s == "from 1" and b_t:numel() == 3, "bcast")
mpi.barrier()
assert(n == 2 and #s == 2 and s[1] == "x" and s[2] == "xx", "allgather(string)")
assert(#t == 2 and t[1]:numel() == 2 and t[2]:numel() == 3 and t[2]:sum():item() == 3, "allgather(tensor)")
assert(sum[1]:shape()[1] == 2 and sum[1]:sum():item() == 12, "allreduce_sum")
-- in rank order, in float: 0.1f + 0.2f
assert(sum[2]:item() == T.tensor{0.1}:add_(T.tensor{0.2}):item(), "allreduce_sum in rank order")
print("rank " .. r .. " ok")
LUA
if "${MPIRUN[@]}" -np 2 "$MAMLRUN" "$TMP/collectives.lua" >"$TMP/coll.out" 2>"$TMP/coll.err" \
  && [ "$(grep -c ' ok$' "$TMP/coll.out")" = 2 ]; then
  ok "mpi module: allgather, allreduce_sum, send/recv, bcast, barrier on 2 ranks"
else
  not_ok "mpi module: allgather, allreduce_sum, send/recv, bcast, barrier on 2 ranks" "$TMP/coll.out" "$TMP/coll.err"
fi

# 2-4: the same run on 1, 2 and 3 ranks
tiny=tests/mpi/tiny_experiment.lua
"$MAMLRUN" "$tiny" out_dir="$TMP/one" >"$TMP/one.out" 2>"$TMP/one.err"
if [ $? -eq 0 ] && grep -q '^params ' "$TMP/one.out"; then
  ok "tiny experiment in one process"
else
  not_ok "tiny experiment in one process" "$TMP/one.out" "$TMP/one.err"
fi
for ranks in 2 3; do
  extra=()
  if [ "$ranks" = 3 ]; then extra=(threads=2); fi # and threads within ranks
  name="$ranks ranks${extra[*]:+ (${extra[*]})}: parameters, test accuracy and metrics equal one process's"
  "${MPIRUN[@]}" -np "$ranks" "$MAMLRUN" "$tiny" out_dir="$TMP/r$ranks" "${extra[@]}" \
    >"$TMP/r$ranks.out" 2>"$TMP/r$ranks.err"
  rc=$?
  if [ $rc -eq 0 ] && cmp -s "$TMP/one.out" "$TMP/r$ranks.out" && [ "$(ls "$TMP/r$ranks" | wc -l)" = 1 ]; then
    ok "$name"
  else
    echo "exit status $rc; run folders: $(ls "$TMP/r$ranks" 2>/dev/null | wc -l) (expected 1: rank 0 only)" >"$TMP/why"
    diff "$TMP/one.out" "$TMP/r$ranks.out" >>"$TMP/why"
    not_ok "$name" "$TMP/why" "$TMP/r$ranks.err"
  fi
done

# 5: a Lua error on one rank while the other waits in a collective ends both (MPI_Abort)
# every shipped algorithm but maml (above): 2 ranks with 2 threads each give one process's bits
for alg in meta_sgd anil reptile mamlpp; do
  name="algorithm=$alg on 2 ranks x 2 threads: meta-parameters, test accuracy and metrics equal one process's"
  "$MAMLRUN" "$tiny" out_dir="$TMP/$alg-one" algorithm="$alg" threads=1 >"$TMP/$alg-one.out" 2>"$TMP/$alg-one.err"
  rc1=$?
  "${MPIRUN[@]}" -np 2 "$MAMLRUN" "$tiny" out_dir="$TMP/$alg-two" algorithm="$alg" threads=2 \
    >"$TMP/$alg-two.out" 2>"$TMP/$alg-two.err"
  rc2=$?
  if [ $rc1 -eq 0 ] && [ $rc2 -eq 0 ] && grep -q '^meta ' "$TMP/$alg-one.out" && cmp -s "$TMP/$alg-one.out" "$TMP/$alg-two.out"; then
    ok "$name"
  else
    echo "exit status $rc1 / $rc2" >"$TMP/why"
    diff "$TMP/$alg-one.out" "$TMP/$alg-two.out" >>"$TMP/why"
    not_ok "$name" "$TMP/why" "$TMP/$alg-one.err" "$TMP/$alg-two.err"
  fi
done

timeout 60 "${MPIRUN[@]}" -np 2 "$MAMLRUN" \
  -e 'local mpi = require "mpi"; if mpi.rank() == 1 then error("boom") end; mpi.barrier(); print("passed")' \
  >"$TMP/err.out" 2>"$TMP/err.err"
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $rc -ne 137 ] && grep -q boom "$TMP/err.err" && ! grep -q passed "$TMP/err.out"; then
  ok "a Lua error on rank 1 ends every rank"
else
  echo "exit status $rc (124/137: hung)" >"$TMP/why"
  not_ok "a Lua error on rank 1 ends every rank" "$TMP/why" "$TMP/err.err"
fi

# 6: ranks that give allreduce_sum different sizes get the message (its %lld formats once made
# Lua's formatter fail with "invalid conversion" instead)
timeout 60 "${MPIRUN[@]}" -np 2 "$MAMLRUN" \
  -e 'local T, mpi = require "tensor", require "mpi"; mpi.allreduce_sum(mpi.rank() == 0 and {T.ones{4}} or {T.ones{2}, T.ones{3}})' \
  >"$TMP/sizes.out" 2>"$TMP/sizes.err"
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q 'rank [01] gives [12] tensors of [45] elements, rank [01] [12] of [45]' "$TMP/sizes.err"; then
  ok "allreduce_sum with different sizes on the ranks says which"
else
  echo "exit status $rc" >"$TMP/why"
  not_ok "allreduce_sum with different sizes on the ranks says which" "$TMP/why" "$TMP/sizes.err"
fi

# 7: SIGINT to rank 1 alone: both ranks stop at the same iteration, rank 0 checkpoints
"${MPIRUN[@]}" -np 2 "$MAMLRUN" "$tiny" out_dir="$TMP/sig" iterations=1000000 eval_every=0 \
  progress=log log_every=10 >"$TMP/sig.out" 2>"$TMP/sig.err" &
mpirun_pid=$!
rank1=
for _ in $(seq 3000); do # up to 300 s to start and log 10 iterations (a bound for a hang, not a speed test)
  sleep 0.1
  grep -q '^iter 10/' "$TMP/sig.out" 2>/dev/null || continue
  for p in $(ps -o pid= --ppid "$mpirun_pid"); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then rank1=$p; fi
  done
  break
done
[ -n "$rank1" ] && kill -INT "$rank1"
for _ in $(seq 600); do kill -0 "$mpirun_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$mpirun_pid" 2>/dev/null; then kill -KILL "$mpirun_pid"; fi
wait "$mpirun_pid"
rc=$?
# (mpirun passes on rank 1's status: 130, 128 + SIGINT, for a run a signal stopped)
if [ -n "$rank1" ] && [ $rc -eq 130 ] && grep -q '^SIGINT: stopped at iteration' "$TMP/sig.out" \
  && grep -q '^interrupted at iteration' "$TMP/sig.out" && [ -f "$(ls -d "$TMP"/sig/*/)checkpoint.bin" ]; then
  ok "SIGINT to rank 1: every rank stops at the same iteration, rank 0 checkpoints"
else
  echo "rank 1 pid '${rank1}', exit status $rc" >"$TMP/why"
  not_ok "SIGINT to rank 1: every rank stops at the same iteration, rank 0 checkpoints" "$TMP/why" \
    "$TMP/sig.out" "$TMP/sig.err"
fi

echo "1..$n"
exit $failed
