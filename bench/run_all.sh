#!/usr/bin/env bash
# bench/run_all.sh (make bench): every benchmark, mamlrun next to the PyTorch peer in the same run.
#   0. ceilings: OpenBLAS sgemm 1024^3 (median of 7), the FMA peak (independent FMA chains on the
#      widest vector width the CPU has) and the memory bandwidth on 16 MB arrays (a map: 2 reads and
#      a write; sums: 2 reads), on each thread count of THREADS (build/bench/ceilings)
#   1. autograd recording overhead (bench/autograd_bench.lua)
#   2. conv2d kernels, GFLOP/s vs torch (bench/conv_bench.sh); nn.conv4 forward+backward and double
#      backward on a 5-way 1-shot task vs the same network in torch (bench/conv4_bench*)
#   2b. batch norm (channels-last, fused ReLU) forward and backward in GB/s against the bandwidth
#      ceiling of part 0 (bench/bn_bench.lua), one thread
#   3. GEMM libraries on the sgemm shapes of the four Omniglot configs (bench/gemm_bench.sh: OpenBLAS,
#      and libxsmm, oneDNN, BLIS when installed), one thread
#   4. the paper's experiment scripts (experiments/omniglot*.lua) on the Omniglot data, a few
#      iterations each on every core: iterations/s and their 60,000-iteration schedules
#      (bench/script_speed.sh; needs make data)
#   5. MAML meta-iterations: 4 Omniglot configs x {second, first} order on the peer's network (and
#      5w1s on nn.conv4), at 1 and 2 threads; the peer ../shared/peers/maml_torch.py on the same
#      config when /usr/bin/python3 has torch; a table of s/iter, GFLOP/s, peak RSS and ratios, and
#      each line's GFLOP/s as a fraction of the sgemm ceiling on its thread count and of the FMA peak.
# Environment: ITERS (timed iterations, default 5), WARMUP (default 2), CONFIGS (default
# "5:1 5:5 20:1 20:5"), ORDERS (default "2 1"), THREADS (default "1 2"), PEER (path of maml_torch.py),
# SKIP (parts to leave out, any of "ceilings autograd conv conv4 bn gemm scripts maml"; e.g.
# SKIP="autograd conv conv4 bn gemm scripts maml" prints the ceilings alone). Run on an otherwise idle machine:
# it takes 10-20 minutes. The binaries of parts 0 and 3 come from `make bench-tools` (BUILD=build).
set -u
cd "$(dirname "$0")/.." || exit 1
ITERS=${ITERS:-5}
WARMUP=${WARMUP:-2}
CONFIGS=${CONFIGS:-"5:1 5:5 20:1 20:5"}
ORDERS=${ORDERS:-"2 1"}
THREADS=${THREADS:-"1 2"}
PEER=${PEER:-../shared/peers/maml_torch.py}
SKIP=${SKIP:-}
BUILD=${BUILD:-build}
export OPENBLAS_NUM_THREADS=1
. bench/openblas_core.sh
echo "== $blas_line"
mkdir -p bench/out
skip() { case " $SKIP " in *" $1 "*) return 0 ;; esac; return 1; }

ceilings=bench/out/ceilings.jsonl   # kept (git-ignored) beside the MAML results, for bench/report.lua
rm -f "$ceilings"                    # the fractions use this run's ceilings only
if ! skip ceilings; then
  echo "== ceilings (OpenBLAS sgemm 1024^3, FMA peak and memory bandwidth, on $THREADS threads)"
  # shellcheck disable=SC2086
  "$BUILD/bench/ceilings" $THREADS >bench/out/ceilings.out || echo "   (build/bench/ceilings failed: make bench-tools)"
  grep -v '^CEILING' bench/out/ceilings.out
  grep '^CEILING' bench/out/ceilings.out | sed 's/^CEILING //' >"$ceilings"
fi

if ! skip autograd; then
  echo "== autograd recording overhead"
  [ -f bench/autograd_bench.lua ] && ./mamlrun bench/autograd_bench.lua
fi
if ! skip conv; then
  echo "== conv2d kernels (1 thread)"
  bench/conv_bench.sh 1
fi

if ! skip conv4; then
  echo "== nn.conv4 on one 5-way 1-shot task (1 thread): forward+backward and double backward"
  ./mamlrun bench/conv4_bench.lua
  if /usr/bin/python3 -c "import torch" 2>/dev/null; then /usr/bin/python3 bench/conv4_bench_torch.py | tail -n +2; fi
fi

if ! skip bn; then
  echo "== batch norm against the memory bandwidth (1 thread)"
  ./mamlrun bench/bn_bench.lua ceilings="$ceilings" | grep -v '^RESULT'
fi

if ! skip gemm; then
  CONFIGS="$CONFIGS" bench/gemm_bench.sh
fi

if ! skip scripts; then
  echo "== the paper's experiment scripts on the Omniglot data, every core (bench/script_speed.sh)"
  bench/script_speed.sh
fi

skip maml && exit 0
echo "== MAML meta-iterations (random data, 15 queries/class, 5 inner steps, meta-batch 32)"
results=bench/out/maml_results.jsonl   # kept (git-ignored): bench/report.lua can print it again
: >"$results"
have_peer=0
if [ -f "$PEER" ] && /usr/bin/python3 -c "import torch" 2>/dev/null; then have_peer=1; else
  echo "   (no peer: $PEER with /usr/bin/python3 + python3-torch not found; ratios left out)"
fi
for cfg in $CONFIGS; do
  ways=${cfg%:*} shots=${cfg#*:}
  for order in $ORDERS; do
    for t in $THREADS; do
      ./mamlrun bench/maml_bench.lua ways="$ways" shots="$shots" order="$order" threads="$t" \
        iters="$ITERS" warmup="$WARMUP" 2>/dev/null | grep '^RESULT' >>"$results"
    done
    if [ "$ways:$shots" = 5:1 ]; then
      ./mamlrun bench/maml_bench.lua ways=5 shots=1 order="$order" threads=2 net=conv4 \
        iters="$ITERS" warmup="$WARMUP" 2>/dev/null | grep '^RESULT' >>"$results"
    fi
    if [ $have_peer = 1 ]; then
      fo=(); [ "$order" = 1 ] && fo=(--first-order)
      for t in 1 2; do
        /usr/bin/python3 "$PEER" --n-way "$ways" --k-shot "$shots" --threads "$t" --iters "$ITERS" \
          --warmup "$WARMUP" "${fo[@]}" 2>/dev/null | grep '^RESULT' >>"$results"
      done
    fi
  done
done
if [ -s "$ceilings" ]; then ./mamlrun bench/report.lua "$results" "$ceilings"; else ./mamlrun bench/report.lua "$results"; fi
