-- tests/lua/api_misuse_spec.lua: every function the C side registers, driven with wrong argument
-- types, wrong counts, nil, NaN and infinities, empty and huge shapes ({1e12, 1e12}, {-1}, {2^62}),
-- negative sizes, tensors of mismatched shapes, lying tables and bad option tables (the driver,
-- tests/lua/api_misuse.lua, finds the functions by walking the modules, so new ones are covered).
-- The driver runs in a child process in a scratch folder; each phase passes when the child exits
-- normally (no crash, no sanitizer report under `make sanitize`), every failing call gave a string
-- naming the function, the tensor memory peak stayed small (huge sizes are refused before
-- allocating; the child runs with MAMLRUN_MEMORY_LIMIT=1e9 besides) and no tensor memory leaked.
local mamlrun = require "mamlrun"

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local root = (mamlrun.root and mamlrun.root .. "/..") or "."
local binary = os.getenv("MAMLRUN") or (root .. "/mamlrun")
local driver = root .. "/tests/lua/api_misuse.lua"

local scratch
setup(function()
  scratch = require("tests.lua.helpers").tmpdir("misuse")
end)
teardown(function()
  if scratch then os.execute("rm -rf " .. sh_quote(scratch)) end
end)

local function run_phase(phase)
  local progress = scratch .. "/progress-" .. phase
  -- (with a memory limit: a call that would allocate gigabytes fails with a message)
  local cmd = string.format("cd %s && MAMLRUN_MEMORY_LIMIT=1e9 %s %s %s %s 2>&1; echo \"exit status $?\"", sh_quote(scratch),
    sh_quote(binary), sh_quote(driver), phase, sh_quote(progress))
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  local status = tonumber(out:match("exit status (%d+)\n$"))
  local summary = out:match("calls %d+ [^\n]*")
  if status ~= 0 or not summary then
    local f = io.open(progress)
    local last = f and f:read("l") or "?"
    if f then f:close() end
    error(string.format("the driver (phase %s) exited with status %s during the call %s:\n%s", phase,
      tostring(status), last, out:sub(-3000)), 0)
  end
  local fails = {}
  for line in out:gmatch("FAIL: [^\n]*") do fails[#fails + 1] = line end
  assert.same({}, fails)
  local calls, peak, leaked = summary:match("calls (%d+) peak_bytes (%d+) leaked_bytes (%-?%d+)")
  calls, peak, leaked = tonumber(calls), tonumber(peak), tonumber(leaked)
  assert.is_true(peak < 256 * 2^20, "tensor memory peak " .. peak .. " bytes: " .. summary)
  assert.equals(0, leaked, summary)
  return calls, summary
end

describe("every C function under misuse", function()
  it("finds the functions of every module", function()
    local p = io.popen(string.format("cd %s && %s %s list %s/progress-list 2>&1", sh_quote(scratch),
      sh_quote(binary), sh_quote(driver), sh_quote(scratch)))
    local names = {}
    for line in p:lines() do names[line] = true end
    p:close()
    for _, name in ipairs{"tensor.zeros", "tensor:narrow", "tensor.conv2d", "tensor:conv2d", "tensor.__gc",
      "tensor.write_atomic", "tensor.deserialize", "generator:permutation", "generator.__tostring",
      "autograd.grad", "parallel.map", "omniglot.gather", "omniglot.tile", "mamlrun.on_signal"} do
      assert.is_true(names[name], name)
    end
  end)

  it("no arguments, and each value alone", function()
    assert.is_true(run_phase("single") > 5000)
  end)

  it("each value after plausible leading arguments", function()
    assert.is_true(run_phase("leads") > 50000)
  end)

  it("random argument lists (fixed seed)", function()
    assert.is_true(run_phase("random") > 20000)
  end)

  it("tensors past MAMLRUN_MEMORY_LIMIT are refused with a message", function()
    local p = io.popen(string.format("MAMLRUN_MEMORY_LIMIT=1e6 %s -e %s 2>&1", sh_quote(binary),
      sh_quote("local T = require 'tensor'; local a = T.zeros{100000}; print(pcall(T.ones, {200000}))")))
    local out = p:read("a")
    p:close()
    assert.truthy(out:find("false\tout of memory: a tensor of 200000 elements (0.0008 GB) would bring the tensors "
      .. "to 0.0012 GB, more than the limit of 0.001 GB (MAMLRUN_MEMORY_LIMIT", 1, true), out)
  end)
end)
