#!/usr/bin/env bash
# bench/profile.sh (make profile): where a MAML meta-iteration's time goes, per config and order, on
# one thread: `perf record` of bench/maml_bench.lua (random data, the peer's config) and the samples
# summed into the kinds of work the speed issue names, one table row per run:
#   onednn      oneDNN's convolution and reorder kernels (its generated code, [JIT], and libdnnl)
#   gemm        OpenBLAS's sgemm kernels (sgemm_kernel_*)
#   packing     OpenBLAS's packing and beta passes (sgemm_*copy_*, sgemm_beta_*)
#   transpose   NCHW <-> channels-last around the convolutions (transpose*, weight_*channels_last)
#   im2col      im2col/col2im, the copies and zero fills, and the conv kernels' own loops
#               (images_to_columns, columns_to_images, conv2d_*_kernel, *_nhwc, fill_bias_rows,
#               memcpy/memmove/memset)
#   conv c1     the first layer's direct kernels (image_taps, weighted_taps, tap_dots)
#   batchnorm   the fused batch-norm kernels (bn_*, channel_*, and row_* for channels-last)
#   elementwise broadcasting arithmetic, ReLU and its mask, sums (binary_*, unary_*, add_into, t_sum_to, ...)
#   autograd+lua the tape, tensors and their buffers, malloc/free, Lua (ag_*, node_*, t_new, ...)
#   other       the rest (the bench's random data, the kernel's page faults, ...)
# Environment: CONFIGS (default "5:1 5:5 20:1 20:5"), ORDERS ("2 1"), NET (peer or conv4; default
# peer), ITERS (3), WARMUP (1). Needs perf (Debian's linux-perf); run on an otherwise idle machine.
set -u
cd "$(dirname "$0")/.." || exit 1
CONFIGS=${CONFIGS:-"5:1 5:5 20:1 20:5"}
ORDERS=${ORDERS:-"2 1"}
NET=${NET:-peer}
ITERS=${ITERS:-3}
WARMUP=${WARMUP:-1}
command -v perf >/dev/null || { echo "bench/profile.sh: perf not found (apt-get install linux-perf)"; exit 1; }
make -s mamlrun || exit 1
. bench/openblas_core.sh
export OPENBLAS_NUM_THREADS=1
mkdir -p bench/out
echo "== $blas_line"
echo "== share of the samples (%), one thread, net=$NET, random data, 15 queries/class, 5 inner steps"
printf '%-7s %-5s %7s  %6s %6s %8s %10s %7s %8s %10s %12s %13s %6s\n' config order s/iter onednn gemm packing \
  transpose im2col "conv c1" batchnorm elementwise autograd+lua other
for cfg in $CONFIGS; do
  ways=${cfg%:*} shots=${cfg#*:}
  for order in $ORDERS; do
    data=bench/out/perf_${NET}_${ways}w${shots}s_o${order}.data
    res=$(perf record -q -o "$data" ./mamlrun bench/maml_bench.lua net="$NET" ways="$ways" shots="$shots" \
      order="$order" threads=1 iters="$ITERS" warmup="$WARMUP" 2>/dev/null | grep '^RESULT')
    secs=$(printf '%s' "$res" | sed -n 's/.*"median_s":\([0-9.]*\).*/\1/p')
    perf report -q -i "$data" --no-children --sort dso,symbol 2>/dev/null | awk -v cfg="${ways}w${shots}s" \
      -v order="$order" -v secs="$(printf "%.3f" "${secs:-0}")" '
      $1 ~ /%$/ {
        pct = $1; sub(/%$/, "", pct); dso = $2; sym = $4   # "12.3%  DSO  [.]  SYMBOL  -  -"
        if (dso ~ /JIT|dnnl/) k = "onednn"
        else if (sym ~ /^sgemm_kernel/) k = "gemm"
        else if (sym ~ /^sgemm_.*(copy|beta)/) k = "packing"
        else if (sym ~ /transpose|channels_last/) k = "transpose"
        else if (sym ~ /images_to_columns|columns_to_images|im2col|col2im|mem(move|cpy|set)|^conv2d_.*_kernel|_nhwc|fill_bias_rows/) k = "im2col"
        else if (sym ~ /image_taps|weighted_taps|tap_dots|_c1/) k = "c1"
        else if (sym ~ /^bn_|channel_|^row_(map|sums)/) k = "bn"
        else if (sym ~ /binary_|unary_|add_into|sum_to|t_expand|scale_|axpy|sub_scaled|t_sum|t_mean/) k = "elem"
        else if (sym ~ /^ag_|t_new|new_tensor|t_release|drop_tensor|node_|accumulate|buffer_|malloc|free|calloc|unlink_chunk|lua/ || dso ~ /lua/) k = "ag"
        else k = "other"
        share[k] += pct
      }
      END {
        printf "%-7s %-5s %7s  %6.1f %6.1f %8.1f %10.1f %7.1f %8.1f %10.1f %12.1f %13.1f %6.1f\n", cfg, \
          (order == 2 ? "2nd" : "1st"), secs, share["onednn"], share["gemm"], share["packing"], share["transpose"], \
          share["im2col"], share["c1"], share["bn"], share["elem"], share["ag"], share["other"]
      }'
  done
done
