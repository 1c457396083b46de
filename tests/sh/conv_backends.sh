#!/usr/bin/env bash
# tests/sh/conv_backends.sh: the two backends of the channels-last convolutions (ops/conv_dnnl.c):
# oneDNN's kernels (the default when the build found libdnnl) and im2col + OpenBLAS
# (MAMLRUN_CONV=gemm). Both pass conv2d's specs (double-precision references, gradients to the
# second order, the weight caches); their results agree to float rounding on nn.conv4's shapes and
# on its first and second derivatives; MAMLRUN_CONV takes only its two values; --version and
# mamlrun.conv say which backend runs.
set -u
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
MAMLRUN=${MAMLRUN:-$ROOT/mamlrun}
BUSTED=${BUSTED:-$(command -v busted || echo /usr/bin/busted)}
T=$(mktemp -d "${TMPDIR:-/tmp}/conv_backends.XXXXXX") || exit 2
trap 'rm -rf "$T"' EXIT
if [ ! -x "$MAMLRUN" ]; then echo "FAIL: $MAMLRUN is not built"; exit 1; fi
. "$(dirname "$0")/lib/checks.bash"
cd "$ROOT" || exit 2

with_dnnl=0
if ldd "$MAMLRUN" 2>/dev/null | grep -q libdnnl; then with_dnnl=1; fi
# whether oneDNN has its own kernels for conv4's layers on this CPU (AVX2 or AVX-512; on an older
# core it declines them all and both runs below are im2col + OpenBLAS)
dnnl_runs=0
if [ $with_dnnl = 1 ] && MAMLRUN_CONV_VERBOSE=1 "$MAMLRUN" -e 'local T = require "tensor"
    T.conv2d(T.randn { 2, 7, 7, 64 }, T.randn { 64, 64, 3, 3 }, nil, { stride = 2, padding = 1, layout = "nhwc" })' 2>&1 |
    grep '^conv_dnnl: ' | grep -qv declined; then dnnl_runs=1; fi

run "$MAMLRUN" --version
if [ $with_dnnl = 1 ]; then expect "--version names oneDNN" 0 "convolutions: oneDNN "
else expect "--version names im2col + OpenBLAS" 0 "convolutions: im2col + OpenBLAS (built without oneDNN)"; fi
run env MAMLRUN_CONV=gemm "$MAMLRUN" -e 'print(require("mamlrun").conv)'
expect "mamlrun.conv under MAMLRUN_CONV=gemm" 0 "im2col + OpenBLAS (MAMLRUN_CONV=gemm)"

# a value it does not know stops the run before it starts, naming the variable and its values
run env MAMLRUN_CONV=onednn "$MAMLRUN" -e 'print("ran")'
expect "MAMLRUN_CONV=onednn is a usage error" 2 "" "MAMLRUN_CONV must be 'dnnl' (oneDNN) or 'gemm' (im2col + OpenBLAS), got 'onednn'"
[[ "$out" != *ran* ]] || fail "MAMLRUN_CONV=onednn: the script ran"
if [ $with_dnnl = 0 ]; then
  run env MAMLRUN_CONV=dnnl "$MAMLRUN" -e 'print("ran")'
  expect "MAMLRUN_CONV=dnnl without oneDNN is a usage error" 2 "" "this mamlrun was built without oneDNN"
fi

# conv2d's specs on each backend
for mode in gemm dnnl; do
  [ $mode = dnnl ] && [ $with_dnnl = 0 ] && continue
  for spec in conv gradcheck_ops; do
    run env MAMLRUN_CONV=$mode "$MAMLRUN" "$BUSTED" -- -o TAP "tests/lua/${spec}_spec.lua"
    checks=$((checks + 1))
    if [ "$rc" -ne 0 ] || [[ "$out" == *"not ok"* ]] || [[ "$out" != *"1.."* ]]; then
      fail "tests/lua/${spec}_spec.lua under MAMLRUN_CONV=$mode"
    fi
  done
done

# nn.conv4 (channels-last) and the peer's net: outputs, gradients and a second derivative
# (the gradient of the gradient's squared norm) on each backend, written as %.9g
cat >"$T/derivs.lua" <<'LUA'
local T, ag, nn = require "tensor", require "autograd", require "nn"
local out = assert(io.open(arg[1], "w"))
for _, make in ipairs { nn.conv4, nn.peer_net } do
  local g = T.generator(7)
  local net = make { ways = 5 }
  net:init(g)
  local x = T.randn({ 6, 1, 28, 28 }, g)
  local y = { 1, 2, 3, 4, 5, 1 }
  local params = net:parameters()
  local loss = T.cross_entropy(net:forward(x), y)
  local grads = ag.grad(loss, params, { create_graph = true })
  local sq = grads[1]:mul(grads[1]):sum()
  for i = 2, #grads do sq = sq:add(grads[i]:mul(grads[i]):sum()) end
  local second = ag.grad(sq, params)
  out:write(string.format("loss %.9g\n", loss:item()))
  for i = 1, #params do
    for _, v in ipairs(grads[i]:flatten():totable()) do out:write(string.format("g%d %.9g\n", i, v)) end
    for _, v in ipairs(second[i]:flatten():totable()) do out:write(string.format("h%d %.9g\n", i, v)) end
  end
end
out:close()
LUA
if [ $with_dnnl = 1 ]; then
  run env MAMLRUN_CONV=gemm "$MAMLRUN" "$T/derivs.lua" "$T/gemm.txt"
  expect "derivatives on im2col + OpenBLAS" 0
  run env MAMLRUN_CONV=dnnl "$MAMLRUN" "$T/derivs.lua" "$T/dnnl.txt"
  expect "derivatives on oneDNN" 0
  # each value within 2e-3 of the other relative to the largest of its kind (float rounding of
  # sums over up to 576 terms, twice differentiated), and not all equal (two backends did run)
  run awk 'NR == FNR { k[FNR] = $1; a[FNR] = $2; n = FNR; next }
    { if ($1 != k[FNR]) { print "line " FNR ": " $1 " vs " k[FNR]; bad = 1 }
      b[FNR] = $2; m = (a[FNR] < 0 ? -a[FNR] : a[FNR]); if (m > big[$1]) big[$1] = m }
    END {
      if (FNR != n) { print "lengths " n " vs " FNR; bad = 1 }
      for (i = 1; i <= n; i++) { d = a[i] - b[i]; if (d < 0) d = -d; if (d != 0) differ++
        if (d > 2e-3 * big[k[i]] + 1e-30) { print "line " i " (" k[i] "): " a[i] " vs " b[i]; bad++; if (bad > 5) exit 1 } }
      if (!differ && dnnl_runs) { print "the two backends gave the same bits everywhere"; bad = 1 }
      print n " values, " differ + 0 " differ by rounding"; exit bad ? 1 : 0 }' dnnl_runs=$dnnl_runs "$T/gemm.txt" "$T/dnnl.txt"
  expect "oneDNN and im2col + OpenBLAS agree on nn.conv4 and nn.peer_net to second order" 0 "values"
fi

# more geometries than a thread keeps primitives for (60 batch sizes x 4 ops, RGB 21x21 maps): the
# primitives evicted and made again give what im2col + OpenBLAS gives
cat >"$T/evict.lua" <<'LUA'
local T = require "tensor"
local out = assert(io.open(arg[1], "w"))
local g = T.generator(3)
local w1, w2, b1 = T.randn({ 32, 3, 3, 3 }, g), T.randn({ 32, 32, 3, 3 }, g), T.randn({ 32 }, g)
local same, down = { stride = 1, padding = 1, layout = "nhwc" }, { stride = 2, padding = 0, layout = "nhwc" }
for n = 1, 60 do
  local x = T.randn({ n, 21, 21, 3 }, g)
  local y = T.conv2d(x, w1, b1, same)
  local z = T.conv2d(y, w2, nil, down)
  local gz = T.randn(z:shape(), g)
  local gy = T.conv2d_backward_input(gz, w2, { 21, 21 }, down)
  local gw = T.conv2d_backward_weight(y, gz, { 3, 3 }, down)
  for _, v in ipairs { y:sum():item(), z:abs():sum():item(), gy:abs():sum():item(), gw:abs():sum():item() } do
    out:write(string.format("%.9g\n", v))
  end
end
out:close()
LUA
if [ $with_dnnl = 1 ]; then
  run env MAMLRUN_CONV=gemm "$MAMLRUN" "$T/evict.lua" "$T/e_gemm.txt"
  expect "60 batch sizes on im2col + OpenBLAS" 0
  run env MAMLRUN_CONV=dnnl MAMLRUN_CONV_VERBOSE=1 "$MAMLRUN" "$T/evict.lua" "$T/e_dnnl.txt"
  expect "60 batch sizes on oneDNN" 0
  made=$(grep -c '^conv_dnnl: ' <<<"$err")
  check "oneDNN made a primitive for each of the 240 op and geometry pairs ($made)" test "$made" -ge 240
  run awk 'NR == FNR { a[FNR] = $1; next } { d = a[FNR] - $1; m = a[FNR] < 0 ? -a[FNR] : a[FNR]; if (d < 0) d = -d
    if (d > 1e-4 * m + 1e-6) { print "value " FNR ": " a[FNR] " vs " $1; bad = 1 } } END { exit bad }' \
    "$T/e_gemm.txt" "$T/e_dnnl.txt"
  expect "the two backends agree on every batch size" 0
fi

echo "$checks checks, $failures failed"
[ "$failures" -eq 0 ]
