#!/usr/bin/env bash
# tests/sh/host_cli.sh: the mamlrun command line (vm/main.c): overrides, arg,
# -e, -i, -, --help/--version, exit statuses, error messages, package.path
# (build tree, installed layout, script directory) and busted under mamlrun.
# Run from anywhere; MAMLRUN defaults to the repo's ./mamlrun.
set -u
ROOT=${ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
MAMLRUN=${MAMLRUN:-$ROOT/mamlrun}
BUSTED=${BUSTED:-$(command -v busted || echo /usr/bin/busted)}
T=$(mktemp -d "${TMPDIR:-/tmp}/host_cli.XXXXXX") || exit 2
trap 'rm -rf "$T"' EXIT

if [ ! -x "$MAMLRUN" ]; then echo "FAIL: $MAMLRUN is not built"; exit 1; fi

. "$(dirname "$0")/lib/checks.bash"

# a script that prints its overrides (sorted, with types), arg and varargs
cat >"$T/show.lua" <<'EOF'
local overrides = ...
local function dump(t, prefix, lines)
  for k, v in pairs(t) do
    if type(v) == "table" then dump(v, prefix .. k .. ".", lines)
    else lines[#lines + 1] = prefix .. k .. "=" .. tostring(v) .. ":" .. (math.type(v) or type(v)) end
  end
  return lines
end
local lines = dump(overrides, "", {})
table.sort(lines)
print("overrides " .. table.concat(lines, " "))
print("same " .. tostring(overrides == require("mamlrun").overrides))
print("arg0 " .. tostring(arg[0]) .. " argm1 " .. tostring(arg[-1]))
print("args " .. #arg .. " [" .. table.concat(arg, "|") .. "]")
local n = select("#", ...)
print("varargs " .. (n - 1) .. " [" .. table.concat({select(2, ...)}, "|") .. "]")
EOF

# ---------------------------------------------------------------- overrides
run "$MAMLRUN" "$T/show.lua" a=1 b=2.5 c=1e-3 d=true e=false f=hello g="'1'" h='"x y"' \
  inner.lr=0.1 inner.deep.k=3 empty= hex=0x10 neg=-2
expect "overrides" 0 \
  "overrides a=1:integer b=2.5:float c=0.001:float d=true:boolean e=false:boolean empty=:string f=hello:string g=1:string h=x y:string hex=16:integer inner.deep.k=3:integer inner.lr=0.1:float neg=-2:integer"
expect "overrides table is mamlrun.overrides" 0 "same true"
expect "overrides are not in arg" 0 "args 0 []"

run "$MAMLRUN" "$T/show.lua" lr=0.1 lr=0.2
expect "duplicate key" 2 "" "duplicate override 'lr'"
run "$MAMLRUN" "$T/show.lua" inner.lr=0.1 inner.lr=0.2
expect "duplicate dotted key" 2 "" "'inner.lr'"
run "$MAMLRUN" "$T/show.lua" inner=1 inner.lr=0.2
expect "value then table" 2 "" "'inner.lr'"
run "$MAMLRUN" "$T/show.lua" inner.lr=1 inner=2
expect "table then value" 2 "" "'inner'"

# ---------------------------------------------------------------- arg
# only key=value with a Lua-name key is an override; the first '--' is
# dropped and everything after it is plain
run "$MAMLRUN" "$T/show.lua" x a=1 --pattern=y=z -o TAP 1a=2 a-b=3 .c=4 -- b=5 -- y
expect "plain args" 0 "args 10 [x|--pattern=y=z|-o|TAP|1a=2|a-b=3|.c=4|b=5|--|y]"
expect "plain args as varargs" 0 "varargs 10 [x|--pattern=y=z|-o|TAP|1a=2|a-b=3|.c=4|b=5|--|y]"
expect "overrides beside plain args" 0 "overrides a=1:integer"
expect "arg[0] and arg[-1]" 0 "arg0 $T/show.lua argm1 $MAMLRUN"

# ---------------------------------------------------------------- options
run "$MAMLRUN" -e 'io.write("one ")' -e'io.write("two ")' "$T/show.lua" k=v
expect "-e runs before the script, in order" 0 "one two overrides k=v:string"
run "$MAMLRUN" -e 'print(require("mamlrun").script, arg[0] ~= nil)'
expect "-e without a script" 0 "nil	true"
run "$MAMLRUN" --help
expect "--help" 0 "usage: mamlrun"
[[ "$out" == *"key=value"* && "$out" == *"-e CODE"* && "$out" == *"-i"* ]] || fail "--help lists key=value, -e, -i"
run "$MAMLRUN" -h
expect "-h" 0 "usage: mamlrun"
run "$MAMLRUN" --version
expect "--version" 0 "mamlrun 0.1.0 (Lua 5.4."
[[ "$out" == *"OpenBLAS"* ]] || fail "--version names OpenBLAS"
# OpenBLAS's generic fallback kernels (vm/blas.h): MAMLRUN_BLAS_PRETEND makes mamlrun act as if OpenBLAS
# had chosen that core; the core it then sets is the one of the CPU's instruction set
flags=$(grep -m1 '^flags' /proc/cpuinfo)
has() { [[ " $flags " == *" $1 "* ]]; }
if has avx512f && has avx512bw && has avx512dq && has avx512vl; then want_core=SkylakeX
elif has avx2 && has fma; then want_core=Haswell
elif has avx; then want_core=Sandybridge
else want_core=""; fi
blas_info='local b = require("mamlrun").blas; print(b.set_by, b.openblas_chose, b.core)'
if [ -n "$want_core" ]; then
  run env -u OPENBLAS_CORETYPE MAMLRUN_BLAS_PRETEND=Prescott "$MAMLRUN" -e "$blas_info"
  expect "a generic OpenBLAS core is replaced by the CPU's" 0 "mamlrun	Prescott	$want_core"
  run env -u OPENBLAS_CORETYPE MAMLRUN_BLAS_PRETEND=Prescott "$MAMLRUN" --version
  expect "--version says mamlrun set the core" 0 "OpenBLAS core $want_core, set by mamlrun: OpenBLAS had chosen its generic Prescott kernels"
  printf 'print(require("mamlrun").overrides.k, arg[1], io.read("l"))\n' >"$T/args_stdin.lua"
  printf 'line two\n' >"$T/stdin_line"
  STDIN="$T/stdin_line" run env -u OPENBLAS_CORETYPE MAMLRUN_BLAS_PRETEND=Prescott "$MAMLRUN" "$T/args_stdin.lua" k=v plain
  expect "running again keeps the arguments and standard input" 0 "v	plain	line two"
fi
run env -u OPENBLAS_CORETYPE MAMLRUN_BLAS_PRETEND=Haswell "$MAMLRUN" -e "$blas_info"
expect "a core with AVX kernels is OpenBLAS's choice and stays" 0 "openblas	nil"
run env OPENBLAS_CORETYPE=Prescott MAMLRUN_BLAS_PRETEND=Prescott "$MAMLRUN" -e "$blas_info"
expect "the user's OPENBLAS_CORETYPE is kept" 0 "OPENBLAS_CORETYPE	nil	Prescott"
run env OPENBLAS_CORETYPE=Prescott MAMLRUN_BLAS_REPLACED=Prescott "$MAMLRUN" -e "$blas_info"
expect "a user's OPENBLAS_CORETYPE beside an inherited marker is the user's" 0 "OPENBLAS_CORETYPE	nil	Prescott"
run "$MAMLRUN" --frobnicate
expect "unknown option" 2 "" "unrecognized option '--frobnicate'"
[[ "$err" == *"usage: mamlrun"* ]] || fail "unknown option prints the usage to stderr"
run "$MAMLRUN"
expect "no script" 2 "" "usage: mamlrun"
run "$MAMLRUN" -e
expect "-e without code" 2 "" "'-e' needs an argument"
run "$MAMLRUN" "$T/no_such_script.lua"
expect "missing script file" 1 "" "cannot open $T/no_such_script.lua"

# ---------------------------------------------------------------- errors
printf 'local function f()\n  error("boom")\nend\nf()\n' >"$T/runtime_error.lua"
run "$MAMLRUN" "$T/runtime_error.lua"
expect "runtime error" 1 "" "mamlrun: $T/runtime_error.lua:2: boom"
[[ "$err" == *"stack traceback:"* ]] || fail "runtime error prints a traceback"
printf 'local x = 1\nlocal y = = 2\n' >"$T/syntax_error.lua"
run "$MAMLRUN" "$T/syntax_error.lua"
expect "syntax error" 1 "" "mamlrun: $T/syntax_error.lua:2:"
run "$MAMLRUN" -e 'error("in -e")' "$T/show.lua"
expect "error in -e stops before the script" 1 "" "(command line):1: in -e"
[[ "$out" != *overrides* ]] || fail "script must not run after a failing -e"
run "$MAMLRUN" -e 'error(setmetatable({}, {__tostring = function() return "custom error" end}))'
expect "error object with __tostring" 1 "" "mamlrun: custom error"
run "$MAMLRUN" -e 'error({})'
expect "error object without __tostring" 1 "" "(error object is a table value)"
run "$MAMLRUN" -e 'os.exit(3)'
expect "os.exit(3)" 3
run "$MAMLRUN" -e 'os.exit(false)'
expect "os.exit(false)" 1
run "$MAMLRUN" -e 'io.write("x") os.exit(true, true)'
expect "os.exit(true, true)" 0 "x"

# ---------------------------------------------------------------- stdin and REPL
STDIN=<(echo 'print(1+1)') run "$MAMLRUN" -i
expect "-i from a pipe" 0 "2"
STDIN=<(printf 'x = 20\nx + 1\nfor i = 1, 2 do\n  io.write(i, ";")\nend\nerror("oops")\nprint("still here")\n') \
  run "$MAMLRUN" -i
expect "-i: expressions" 0 "21"
expect "-i: multi-line statement" 0 "1;2;"
expect "-i: goes on after an error" 0 "still here" "oops"
STDIN=<(echo 'print("from stdin", (...).lr, select(2, ...))') run "$MAMLRUN" - lr=0.5 plain
expect "script from stdin" 0 "from stdin	0.5	plain"
run "$MAMLRUN" -e 'x = 7' -i
expect "-e then -i" 0

# ---------------------------------------------------------------- package.path
mkdir -p "$T/proj/sub" "$T/elsewhere"
echo 'return { name = "beside" }' >"$T/proj/sub/beside_mod.lua"
echo 'print(require("beside_mod").name)' >"$T/proj/sub/main.lua"
cd "$T/elsewhere" || exit 2
run "$MAMLRUN" ../proj/sub/main.lua
expect "require beside the script (relative path)" 0 "beside"
cd / || exit 2
run "$MAMLRUN" "$T/proj/sub/main.lua"
expect "require beside the script (absolute path)" 0 "beside"
run "$MAMLRUN" -e 'assert(package.path:find("/usr/share/lua/5.4/?.lua", 1, true)) print("default kept")'
expect "default package.path kept" 0 "default kept"
if [ -d "$ROOT/lua" ]; then
  run "$MAMLRUN" -e 'print(require("mamlrun").root)'
  expect "root of the build tree, from /" 0 "$ROOT/lua"
fi
# build-tree layout: <dir>/mamlrun finds <dir>/lua
mkdir -p "$T/tree/lua/pkg"
cp "$MAMLRUN" "$T/tree/mamlrun"
echo 'return "tree module"' >"$T/tree/lua/probe_mod.lua"
echo 'return "tree package"' >"$T/tree/lua/pkg/init.lua"
cd "$T/elsewhere" || exit 2
run "$T/tree/mamlrun" -e 'print(require("probe_mod"), require("pkg"), require("mamlrun").root)'
expect "build tree: lua/?.lua, lua/?/init.lua" 0 "tree module	tree package	$T/tree/lua"
# installed layout: <prefix>/bin/mamlrun finds <prefix>/share/mamlrun/lua
mkdir -p "$T/prefix/bin" "$T/prefix/share/mamlrun/lua"
cp "$MAMLRUN" "$T/prefix/bin/mamlrun"
echo 'return "installed module"' >"$T/prefix/share/mamlrun/lua/probe_mod.lua"
ln -s "$T/prefix/bin/mamlrun" "$T/elsewhere/mr-link"
cd / || exit 2
run "$T/elsewhere/mr-link" -e 'print(require("probe_mod"), require("mamlrun").root)'
expect "installed layout (through a symlink)" 0 "installed module	$T/prefix/share/mamlrun/lua"
# no library dir: root is nil, system modules still load
mkdir -p "$T/bare"
cp "$MAMLRUN" "$T/bare/mamlrun"
run "$T/bare/mamlrun" -e 'print(require("mamlrun").root, type(require("busted.core")))'
expect "no lua dir" 0 "nil	function"
cd "$ROOT" || exit 2

# ---------------------------------------------------------------- preloads
run "$MAMLRUN" -e 'for _, m in ipairs{"tensor", "autograd", "omniglot"} do assert(package.preload[m], m) end print("preloaded")'
expect "tensor, autograd, omniglot are preloaded" 0 "preloaded"

# ---------------------------------------------------------------- signals
# without on_signal, SIGTERM terminates as usual (128 + 15)
# (the braces send bash's "Terminated" notice to /dev/null)
{ run "$MAMLRUN" -e 'local pid = io.open("/proc/self/stat"):read("n") os.execute("kill -TERM " .. pid) local t = os.time() while os.time() < t + 5 do end print("survived")'; } 2>/dev/null
expect "default SIGTERM terminates" 143
[[ "$out" != *survived* ]] || fail "default SIGTERM terminates"

# with on_signal, a script that polled the signal and ended normally exits with 128 + it
# (io.popen: os.execute, like system(3), ignores SIGINT while its child runs);
# on_signal(false) takes that back
run "$MAMLRUN" -e 'local m = require "mamlrun" m.on_signal() io.popen("kill -INT " .. io.open("/proc/self/stat"):read("n")):close() local t = os.time() while not m.signal_pending() and os.time() < t + 5 do end print("saved")'
expect "a run SIGINT stopped exits 130" 130 "saved"
run "$MAMLRUN" -e 'local m = require "mamlrun" m.on_signal() os.execute("kill -TERM " .. io.open("/proc/self/stat"):read("n")) local t = os.time() while not m.signal_pending() and os.time() < t + 5 do end print("saved")'
expect "a run SIGTERM stopped exits 143" 143 "saved"
run "$MAMLRUN" -e 'local m = require "mamlrun" m.on_signal() io.popen("kill -INT " .. io.open("/proc/self/stat"):read("n")):close() local t = os.time() while not m.signal_pending() and os.time() < t + 5 do end m.on_signal(false) print("handled")'
expect "on_signal(false) after the signal: exit 0" 0 "handled"

# ---------------------------------------------------------------- busted under mamlrun
if [ -f "$BUSTED" ]; then
  mkdir -p "$T/specs"
  cat >"$T/specs/probe_check.lua" <<'EOF'
describe("busted under mamlrun", function()
  it("sees the mamlrun module", function() assert.equals("0.1.0", require("mamlrun").version) end)
  it("fails when asked", function() assert.is_nil(os.getenv("PROBE_FAIL")) end)
end)
EOF
  run "$MAMLRUN" "$BUSTED" -o TAP --pattern=_check "$T/specs"
  expect "busted without --" 0 "ok 2 - busted under mamlrun fails when asked"
  run "$MAMLRUN" "$BUSTED" -- -o TAP --pattern=_check "$T/specs"
  expect "busted with --" 0 "ok 1 - busted under mamlrun sees the mamlrun module"
  PROBE_FAIL=1 run "$MAMLRUN" "$BUSTED" -- -o TAP --pattern=_check "$T/specs"
  expect "busted failure gives exit 1" 1 "not ok 2 - busted under mamlrun fails when asked"
fi

# MAMLRUN_GEMM_LOG (ops/matmul.c): each distinct sgemm shape and site with its calls, appended at
# exit; nothing written when unset
cat >"$T/gemm.lua" <<'EOF'
local T = require "tensor"
local x, w = T.rand({2, 3, 6, 6}), T.rand({4, 3, 3, 3})
for _ = 1, 3 do T.conv2d(x, w, nil, {stride = 1, padding = 1}) end
T.matmul(T.rand({5, 7}), T.rand({7, 2}))
print("done")
EOF
run env MAMLRUN_GEMM_LOG="$T/gemm.log" "$MAMLRUN" "$T/gemm.lua"
expect "MAMLRUN_GEMM_LOG run" 0 "done"
checks=$((checks + 1))
if ! grep -q '^3 0 1 4 72 27 0 conv2d.forward N2 C3 H6xW6 O4 k3x3 s1 p1$' "$T/gemm.log" 2>/dev/null ||
  ! grep -q '^1 0 0 5 2 7 0 matmul (5, 7) @ (7, 2)$' "$T/gemm.log"; then
  fail "MAMLRUN_GEMM_LOG: shapes not logged: $(cat "$T/gemm.log" 2>/dev/null)"
fi
run env MAMLRUN_GEMM_LOG="$T/no-such-folder/gemm.log" "$MAMLRUN" "$T/gemm.lua"
expect "MAMLRUN_GEMM_LOG that cannot be written says so" 0 "done" \
  "MAMLRUN_GEMM_LOG: cannot open '$T/no-such-folder/gemm.log': No such file or directory"
run env -u MAMLRUN_GEMM_LOG "$MAMLRUN" "$T/gemm.lua"
checks=$((checks + 1))
if [ "$(grep -c . "$T/gemm.log")" -ne 3 ]; then fail "MAMLRUN_GEMM_LOG unset still wrote the log"; fi

# ---------------------------------------------------------------- MAMLRUN_THREADS, MAMLRUN_MEMORY_LIMIT
# refused VAR MESSAGE VALUE...: each value of VAR stops mamlrun before it runs a line, with status 2 and
# MESSAGE ending in "got '<value>'" (a bad value is not a silent default)
refused() {
  local var=$1 message=$2 bad
  shift 2
  for bad in "$@"; do
    run env "$var=$bad" "$MAMLRUN" -e 'print("ran")'
    expect "$var=$bad is a usage error" 2 "" "$message, got '$bad'"
    checks=$((checks + 1))
    [[ "$out" != *ran* ]] || fail "$var=$bad: the script ran"
  done
}
# a whole number from 1 to 64 sets parallel's default size; 0 or empty is one per core
run env MAMLRUN_THREADS=3 "$MAMLRUN" -e 'print(require("parallel").threads())'
expect "MAMLRUN_THREADS=3" 0 "3"
cores=$(env -u MAMLRUN_THREADS "$MAMLRUN" -e 'io.write(require("parallel").threads())')
run env MAMLRUN_THREADS=0 "$MAMLRUN" -e 'print(require("parallel").threads())'
expect "MAMLRUN_THREADS=0 is one per core" 0 "$cores"
refused MAMLRUN_THREADS "MAMLRUN_THREADS must be a whole number of threads from 1 to 64 (0 or unset: one per core)" \
  abc 2x 65 -1 1.5
# a number of bytes
run env MAMLRUN_MEMORY_LIMIT=1e6 "$MAMLRUN" -e 'print(pcall(require("tensor").zeros, {1000, 1000}))'
expect "MAMLRUN_MEMORY_LIMIT=1e6 refuses 4 MB of tensors" 0 "false"
refused MAMLRUN_MEMORY_LIMIT "MAMLRUN_MEMORY_LIMIT must be a number of bytes (such as 4e9)" 4GB abc 0 -1e9
run "$MAMLRUN" -e 'require("parallel").set_threads(65)'
expect "parallel.set_threads(65)" 1 "" "bad argument #1 to 'set_threads' (expected 1..64 threads, got 65)"

echo "host_cli: $checks checks, $failures failed"
[ "$failures" -eq 0 ]
