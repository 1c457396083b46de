#!/usr/bin/env bash
# bench/conv_bench.sh [threads=1]: GFLOP/s of conv2d, conv2d_backward_input and
# conv2d_backward_weight on the MAML conv4 layers at batch 5 and 80, mamlrun
# (bench/conv_bench.c) next to torch (bench/conv_bench_torch.py, if /usr/bin/python3
# has torch) in the same run. Builds $BUILD/libmamlrun.a first (BUILD=build).
# Takes about 30 s; run it on an otherwise idle machine.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
THREADS=${1:-1}
PKGS="lua5.4 openblas libpng"

make -s mamlrun "$BUILD/libmamlrun.a" || exit 1
. bench/openblas_core.sh
mkdir -p "$BUILD/bench"
# the libraries of a build with oneDNN (ops/conv_dnnl.c)
dnnl_libs=()
if nm "$BUILD/libmamlrun.a" 2>/dev/null | grep -q ' U dnnl_'; then dnnl_libs=(-ldnnl -lgomp); fi
# shellcheck disable=SC2046
cc -O2 -march=x86-64-v2 -mtune=generic -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Ivm -Iops \
  $(pkg-config --cflags $PKGS) -o "$BUILD/bench/conv_bench" bench/conv_bench.c "$BUILD/libmamlrun.a" \
  $(pkg-config --libs $PKGS) "${dnnl_libs[@]}" -lm -lpthread -ldl

ours=$(mktemp) theirs=$(mktemp)
trap 'rm -f "$ours" "$theirs"' EXIT
"$BUILD/bench/conv_bench" "$THREADS" >"$ours"
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
  /usr/bin/python3 bench/conv_bench_torch.py "$THREADS" >"$theirs"
fi
grep '^#' "$ours" "$theirs" --no-filename || true

# one line per (batch, layer, op): mamlrun and torch microseconds and GFLOP/s, and the speed-up
awk 'FNR == 1 { file++ }
     /^(mamlrun|torch) / {
       key = $2 " " $3 " " $4 " " $5 " " $6 " " $7
       if (file == 1) { order[++n] = key; us[key] = $8; gf[key] = $9 }
       else { tus[key] = $8; tgf[key] = $9 }
     }
     END {
       printf "%5s %-24s %-16s %10s %8s %10s %8s %8s\n", "batch", "layer (C x H x W)", "op",
              "mamlrun us", "GFLOP/s", "torch us", "GFLOP/s", "speed-up"
       for (i = 1; i <= n; i++) {
         k = order[i]; split(k, f, " ")
         layer = f[2] " " f[3] " " f[4] " " f[5]
         if (k in tus) printf "%5s %-24s %-16s %10.1f %8.2f %10.1f %8.2f %7.2fx\n", f[1], layer, f[6],
                              us[k], gf[k], tus[k], tgf[k], tus[k] / us[k]
         else printf "%5s %-24s %-16s %10.1f %8.2f\n", f[1], layer, f[6], us[k], gf[k]
       }
     }' "$ours" "$theirs"
