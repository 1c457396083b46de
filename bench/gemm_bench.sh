#!/usr/bin/env bash
# bench/gemm_bench.sh: the sgemm shapes MAML calls, timed on every GEMM library found (one thread).
#   1. shape logs: one meta-iteration of each Omniglot config (CONFIGS, default "5:1 5:5 20:1 20:5")
#      x network (NETS, default "peer conv4") x order (ORDERS, default "2 1") with
#      MAMLRUN_GEMM_LOG (ops/matmul.c), at threads=1, into $GEMM_LOGS (default bench/out/gemm_log/;
#      kept: REGEN=0 reuses the logs there). One line per distinct GEMM and site: calls per
#      meta-iteration, ta tb M N K beta, the op and layer.
#   2. every build/bench/gemm_bench_<lib> (make bench-tools builds one per library found: openblas,
#      libxsmm, dnnl, blis) on the distinct shapes, one thread;
#   3. tables: per shape family (op and layer, all configs) the GFLOP/s of each library weighted by
#      the calls of every config (and "alt conv forward ... as NN": the forward GEMMs as NN products
#      with a channels-last output, which libxsmm's JIT takes; measured, not what the kernels call); per config the GEMM seconds per meta-iteration each library would
#      take; per shape the GFLOP/s. A library's result whose checksum differs from OpenBLAS's by
#      more than 1e-3 (relative) is marked '!'; '-' where a library has no kernel for a shape
#      (libxsmm's JIT refuses some transposes; OpenBLAS's time is used for it in the sums, marked '*').
# ROUNDS (default 2): passes over the libraries, alternating their order; each shape keeps its
# fastest time per library. Output also in bench/out/gemm_results.txt (raw), bench/out/gemm_tables.txt,
# and bench/out/gemm_shapes_by_config.txt (each config's GEMMs: op, layer, shapes and calls).
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
GEMM_LOGS=${GEMM_LOGS:-bench/out/gemm_log}
CONFIGS=${CONFIGS:-"5:1 5:5 20:1 20:5"}
NETS=${NETS:-"peer conv4"}
ORDERS=${ORDERS:-"2 1"}
REGEN=${REGEN:-1}
ROUNDS=${ROUNDS:-2}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 BLIS_NUM_THREADS=1

make -s mamlrun bench-tools || exit 1
. bench/openblas_core.sh
echo "== $blas_line"
mkdir -p "$GEMM_LOGS"
logs=()
for net in $NETS; do
  for cfg in $CONFIGS; do
    ways=${cfg%:*} shots=${cfg#*:}
    for order in $ORDERS; do
      f="$GEMM_LOGS/${net}_${ways}w${shots}s_o${order}.log"
      if [ "$REGEN" != 0 ] || [ ! -s "$f" ]; then
        rm -f "$f"
        MAMLRUN_CONV=gemm MAMLRUN_GEMM_LOG="$f" ./mamlrun bench/maml_bench.lua net="$net" ways="$ways" shots="$shots" \
          order="$order" iters=1 warmup=0 threads=1 >/dev/null 2>&1 || { echo "gemm_bench: $f failed" >&2; exit 1; }
      fi
      logs+=("$f")
    done
  done
done

shapes=bench/out/gemm_shapes.txt results=bench/out/gemm_results.txt tables=bench/out/gemm_tables.txt
# the logged shapes, and for each conv2d forward (O x nb*P x K, B transposed) the same product as
# a plain NN GEMM (nb*P x O x K: columns times the weight transposed once, output channels-last),
# the layout a channels-last forward would use; the tables show it as "alt conv forward NN"
grep -hv '^#' "${logs[@]}" |
  awk '{print $2, $3, $4, $5, $6, $7} $8 == "conv2d.forward" && $2 == 0 && $3 == 1 {print 0, 0, $5, $4, $6, $7}' |
  sort -u | sort -n -k3 -k4 -k5 -k1 -k2 -k6 >"$shapes"
echo "== GEMM libraries on the $(wc -l <"$shapes") distinct sgemm shapes of ${#logs[@]} MAML meta-iterations (1 thread)"
: >"$results"
bins=()
for bin in "$BUILD"/bench/gemm_bench_*; do [ -x "$bin" ] && bins+=("$bin"); done
# ROUNDS passes over the libraries, every other one in reverse order; the tables keep each shape's
# fastest time per library (another process slows a timing down, never speeds it up)
for ((round = 1; round <= ROUNDS; round++)); do
  order=("${bins[@]}")
  if ((round % 2 == 0)); then order=(); for ((i = ${#bins[@]} - 1; i >= 0; i--)); do order+=("${bins[i]}"); done; fi
  for bin in "${order[@]}"; do
    "$bin" <"$shapes" >>"$results" || echo "gemm_bench: $bin failed" >&2
  done
done

# the tables: results first (lib -> shape -> us, gflops, checksum), then the logs
awk '
  function fam(site,   f) {
    f = site
    if (f ~ /^conv2d/) { sub(/ N[0-9]+/, "", f); sub(/^conv2d\./, "conv ", f); return f }
    if (f ~ /^matmul/) { sub(/ .*/, "", f); sub(/^matmul$/, "matmul.forward", f); return "linear " substr(f, 8) }
    return f
  }
  FNR == 1 { file++ }
  file == 1 && $1 == "GEMM" {
    lib = $2; key = $3 " " $4 " " $5 " " $6 " " $7 " " $8
    if (!(lib in seen)) { seen[lib] = 1; libs[++nlib] = lib }
    if ((lib, key) in us && (us[lib, key] == "-" || $9 == "-" || $9 + 0 >= us[lib, key] + 0)) next
    us[lib, key] = $9; gf[lib, key] = $10; sum[lib, key] = $11
    next
  }
  file > 1 && !/^#/ {
    cfg = FILENAME; sub(/.*\//, "", cfg); sub(/\.log$/, "", cfg)
    if (!(cfg in cseen)) { cseen[cfg] = 1; cfgs[++ncfg] = cfg }
    key = $2 " " $3 " " $4 " " $5 " " $6 " " $7
    site = $8; for (i = 9; i <= NF; i++) site = site " " $i
    f = fam(site)
    if (!(f in fseen)) { fseen[f] = 1; fams[++nfam] = f }
    fl = 2.0 * $4 * $5 * $6 * $1
    cflops[cfg] += fl; ffl[f] += fl; calls[cfg, key] += $1
    if (!((key) in sfam)) sfam[key] = f
    for (l = 1; l <= nlib; l++) {
      lib = libs[l]; t = us[lib, key]
      if (t == "-" || t == "") { t = us["openblas", key]; if (lib != "openblas") { cmiss[cfg, lib] = 1; fmiss[f, lib] = 1 } }
      ctime[cfg, lib] += $1 * t; ftime[f, lib] += $1 * t
    }
    if (site ~ /^conv2d\.forward/ && $2 == 0 && $3 == 1) # the NN alternative, not in the per-config sums
      alt("alt " f " as NN", "0 0 " $5 " " $4 " " $6 " " $7, $1, fl)
    # the best library per shape
    best = us["openblas", key]
    for (l = 1; l <= nlib; l++) { t = us[libs[l], key]; if (t != "-" && t != "" && t + 0 < best + 0) best = t }
    ctime[cfg, "best"] += $1 * best; ftime[f, "best"] += $1 * best
  }
  function alt(f, key, n, fl,   l, lib, t, best) {
    if (!(f in fseen)) { fseen[f] = 1; fams[++nfam] = f }
    if (!(key in sfam)) sfam[key] = f
    ffl[f] += fl; best = us["openblas", key]
    for (l = 1; l <= nlib; l++) {
      lib = libs[l]; t = us[lib, key]
      if (t == "-" || t == "") { t = us["openblas", key]; if (lib != "openblas") fmiss[f, lib] = 1 }
      ftime[f, lib] += n * t
      if (t + 0 < best + 0) best = t
    }
    ftime[f, "best"] += n * best
  }
  function bad(lib, key,   a, b) {
    a = sum["openblas", key]; b = sum[lib, key]
    if (b == "-" || a == "") return 0
    return (a - b > 1e-3 * (a < 0 ? -a : a) + 1e-3 || b - a > 1e-3 * (a < 0 ? -a : a) + 1e-3)
  }
  END {
    printf "\nper shape family (op and layer; weighted by the calls of all %d logged meta-iterations): GFLOP/s, 1 thread\n", ncfg
    printf "%-52s %8s", "family", "GFLOP"
    for (l = 1; l <= nlib; l++) printf " %9s", libs[l]
    printf " %9s\n", "best-mix"
    for (i = 1; i <= nfam; i++) {
      f = fams[i]; printf "%-52s %8.1f", f, ffl[f] / 1e9
      for (l = 1; l <= nlib; l++) printf " %8.1f%s", ffl[f] / ftime[f, libs[l]] * 1e-3, fmiss[f, libs[l]] ? "*" : " "
      printf " %8.1f\n", ffl[f] / ftime[f, "best"] * 1e-3
    }
    printf "\nper config (net_config_order): GEMM GFLOP per meta-iteration, and GEMM seconds per meta-iteration on 1 thread\n"
    printf "%-18s %7s", "config", "GFLOP"
    for (l = 1; l <= nlib; l++) printf " %9s", libs[l]
    printf " %9s\n", "best-mix"
    for (i = 1; i <= ncfg; i++) {
      c = cfgs[i]; printf "%-18s %7.1f", c, cflops[c] / 1e9
      for (l = 1; l <= nlib; l++) printf " %8.3f%s", ctime[c, libs[l]] * 1e-6, cmiss[c, libs[l]] ? "*" : " "
      printf " %8.3f\n", ctime[c, "best"] * 1e-6
    }
    printf "\nper shape: GFLOP/s, 1 thread (C (MxN) = op(A) op(B) + beta C)\n"
    printf "%-2s %-2s %5s %5s %5s %4s  %-40s", "ta", "tb", "M", "N", "K", "beta", "family (first seen)"
    for (l = 1; l <= nlib; l++) printf " %9s", libs[l]
    printf "\n"
    while ((getline line < SHAPES) > 0) {
      split(line, s, " "); key = line
      printf "%-2s %-2s %5s %5s %5s %4s  %-40s", s[1], s[2], s[3], s[4], s[5], s[6], sfam[key]
      for (l = 1; l <= nlib; l++) printf " %8s%s", gf[libs[l], key], bad(libs[l], key) ? "!" : " "
      printf "\n"
    }
  }' SHAPES="$shapes" "$results" "${logs[@]}" | tee "$tables"

# each config's shapes: one line per op and layer, "NT MxNxK [b1] xcalls" (ta, tb; beta 1)
awk '
# per config: one line per op and layer, the shapes "MxNxK (ta tb, beta) xcalls"
function fam(site,   f) {
  f = site
  if (f ~ /^conv2d/) { sub(/^conv2d\./, "conv ", f); return f }
  if (f ~ /^matmul/) { sub(/ .*/, "", f); sub(/^matmul$/, "matmul.forward", f); return "linear " substr(f, 8) }
  return f
}
FNR == 1 { cfg = FILENAME; sub(/.*\//, "", cfg); sub(/\.log$/, "", cfg); cfgs[++ncfg] = cfg }
!/^#/ {
  site = $8; for (i = 9; i <= NF; i++) site = site " " $i
  f = fam(site); k = cfg SUBSEP f
  if (!(k in seen)) { seen[k] = 1; order[cfg, ++nf[cfg]] = f }
  t = ($2 ? "T" : "N") ($3 ? "T" : "N")
  list[k] = list[k] (list[k] == "" ? "" : ", ") sprintf("%s %dx%dx%d%s x%d", t, $4, $5, $6, $7 ? " b1" : "", $1)
  gfl[cfg] += 2.0 * $1 * $4 * $5 * $6
}
END {
  for (c = 1; c <= ncfg; c++) {
    cfg = cfgs[c]
    printf "\n%s (%.1f GEMM GFLOP per meta-iteration)\n", cfg, gfl[cfg] / 1e9
    for (i = 1; i <= nf[cfg]; i++) printf "  %-50s %s\n", order[cfg, i], list[cfg, order[cfg, i]]
  }
}
' "${logs[@]}" >bench/out/gemm_shapes_by_config.txt
echo "(each config's shapes and calls: bench/out/gemm_shapes_by_config.txt)"
