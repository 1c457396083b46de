#!/usr/bin/env bash
# bench/run_all.sh (make bench): every benchmark, mamlrun next to the PyTorch peer in the same run.
#   1. autograd recording overhead (bench/autograd_bench.lua)
#   2. conv2d kernels, GFLOP/s vs torch (bench/conv_bench.sh); nn.conv4 forward+backward and double
#      backward on a 5-way 1-shot task vs the same network in torch (bench/conv4_bench*)
#   3. MAML meta-iterations: 4 Omniglot configs x {second, first} order on the peer's network (and
#      5w1s on nn.conv4), at 1 and 2 threads; the peer ../shared/peers/maml_torch.py on the same
#      config when /usr/bin/python3 has torch; a table of s/iter, GFLOP/s, peak RSS and ratios.
# Environment: ITERS (timed iterations, default 5), WARMUP (default 2), CONFIGS (default
# "5:1 5:5 20:1 20:5"), ORDERS (default "2 1"), THREADS (default "1 2"), PEER (path of maml_torch.py),
# SKIP ("autograd conv conv4" to skip parts). Run on an otherwise idle machine: it takes 10-20 minutes.
set -u
cd "$(dirname "$0")/.."
ITERS=${ITERS:-5}
WARMUP=${WARMUP:-2}
CONFIGS=${CONFIGS:-"5:1 5:5 20:1 20:5"}
ORDERS=${ORDERS:-"2 1"}
THREADS=${THREADS:-"1 2"}
PEER=${PEER:-../shared/peers/maml_torch.py}
SKIP=${SKIP:-}
export OPENBLAS_NUM_THREADS=1

case " $SKIP " in *" autograd "*) ;; *)
  echo "== autograd recording overhead"
  [ -f bench/autograd_bench.lua ] && ./mamlrun bench/autograd_bench.lua ;;
esac
case " $SKIP " in *" conv "*) ;; *)
  echo "== conv2d kernels (1 thread)"
  bench/conv_bench.sh 1 ;;
esac

case " $SKIP " in *" conv4 "*) ;; *)
  echo "== nn.conv4 on one 5-way 1-shot task (1 thread): forward+backward and double backward"
  ./mamlrun bench/conv4_bench.lua
  if /usr/bin/python3 -c "import torch" 2>/dev/null; then /usr/bin/python3 bench/conv4_bench_torch.py | tail -n +2; fi ;;
esac

echo "== MAML meta-iterations (random data, 15 queries/class, 5 inner steps, meta-batch 32)"
mkdir -p bench/out
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
./mamlrun bench/report.lua "$results"
