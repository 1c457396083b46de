-- tests/lua/error_leaks_spec.lua: an error raised in the middle of an op leaks nothing. A composite op
-- (log_softmax, softmax, cross_entropy, mse_loss, linear, batch_norm) or a backward rule
-- that hits the memory limit (MAMLRUN_MEMORY_LIMIT) after some of its temporaries exist releases them
-- (the scoped pool of vm/tensor.c) and leaves grad mode as it was; the Omniglot cache reader that cannot allocate its
-- tensor closes its file and frees its names. Each case runs in a child process (the limit is read
-- once), which prints the tensor bytes still live after the error and a full collection; under
-- `make sanitize` LeakSanitizer also checks the child's malloc'd memory at exit.
local mamlrun = require "mamlrun"

local root = (mamlrun.root and mamlrun.root .. "/..") or "."
local binary = os.getenv("MAMLRUN") or (root .. "/mamlrun")
local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local prelude = [[
local T, ag = require "tensor", require "autograd"
local function live() collectgarbage(); collectgarbage(); return T.memory().live_bytes end
local function check(f, ...)
  local before = live()
  local ok, err = pcall(f, ...)
  assert(not ok, "expected the memory limit to stop the op")
  assert(tostring(err):find("out of memory", 1, true), tostring(err))
  print("leaked " .. (live() - before) .. " grad " .. tostring(ag.enabled()))
end
]]

local function run(limit, code)
  local p = io.popen(string.format("MAMLRUN_MEMORY_LIMIT=%s %s -e %s 2>&1; echo \"exit status $?\"", limit,
    sh_quote(binary), sh_quote(prelude .. code)))
  local out = p:read("a")
  p:close()
  return out
end

describe("an error in the middle of an op", function()
  local cases = {
    -- x of 400 KB under a 1 MB limit: the op fails at its second or third full-size temporary
    {"log_softmax", "local x = T.zeros{100000}; check(T.log_softmax, x, 1)"},
    {"softmax", "local x = T.zeros{100000}; check(T.softmax, x, 1)"},
    {"log_softmax with grad", "local x = T.zeros{100000}:requires_grad(true); check(T.log_softmax, x, 1)"},
    {"cross_entropy", "local l = T.zeros{20000, 5}; local y = {}; for i = 1, 20000 do y[i] = 1 end; "
      .. "check(T.cross_entropy, l, y)"},
    {"mse_loss", "local x = T.zeros{100000}; check(T.mse_loss, x, x)"},
    {"linear", "local x, w, b = T.zeros{1000, 100}, T.zeros{100, 100}, T.zeros{100}; check(T.linear, x, w, b)"},
    {"batch_norm in eval mode", "local x = T.zeros{3, 40000}; check(T.batch_norm, x, T.ones{40000}, nil, "
      .. "{training = false, running_mean = T.zeros{40000}, running_var = T.ones{40000}})"},
  }
  -- training mode with running statistics: its mean, rstd and variance (160 KB each) exist when the
  -- output (480 KB) no longer fits under the 1.6 MB limit
  cases[#cases + 1] = {"batch_norm in training mode with running statistics", "local x = T.zeros{3, 40000}; "
    .. "check(T.batch_norm, x, T.ones{40000}, nil, {training = true, running_mean = T.zeros{40000}, "
    .. "running_var = T.ones{40000}})", "1.6e6"}
  for _, c in ipairs(cases) do
    it(c[1] .. " releases its temporaries and restores grad mode", function()
      local out = run(c[3] or "1e6", c[2])
      assert.truthy(out:find("leaked 0 grad true\nexit status 0\n", 1, true), out)
    end)
  end

  it("ag.grad stopped by the memory limit in a backward rule leaves grad mode on", function()
    -- (the engine switches grad mode to create_graph while it runs; the error path restores it)
    local out = run("2e6", "local x = T.zeros{100000}:requires_grad(true); local y = (x * x):sum(); "
      .. "local ok, err = pcall(ag.grad, y, {x}); print(ok, tostring(err):find('out of memory', 1, true) ~= nil, "
      .. "ag.enabled(), (T.ones{1}:requires_grad(true) * 2):requires_grad())")
    assert.truthy(out:find("false\ttrue\ttrue\ttrue\nexit status 0\n"), out)
  end)

  it("ag.grad stopped in a backward rule (tanh's) releases the rule's temporaries, its gradient and the seed",
    function()
    local out = run("2.2e6", "local x = T.zeros{100000}:requires_grad(true); "
      .. "check(function() local y = x:tanh():sum(); local g = ag.grad(y, {x}); return g end)")
    assert.truthy(out:find("leaked 0 grad true\nexit status 0\n", 1, true), out)
  end)

  it("the Omniglot cache reader that cannot allocate its tensor frees what it holds", function()
    local cache = root .. "/tests/fuzz/regressions/omniglot_cache/valid-1x1.bin"
    local code = "local o = require 'omniglot'; local ok, err = pcall(o.load, {cache = " .. string.format("%q", cache)
      .. ", size = 1, pil_exact = true}); print(ok, err); local ok2 = pcall(o.load, {cache = " .. string.format("%q", cache)
      .. ", size = 1, pil_exact = true}); print(T.memory().live_bytes)"
    local out = run("1", code)
    assert.truthy(out:find("false\t.*unusable: out of memory"), out)
    assert.truthy(out:find("\n0\nexit status 0\n", 1, true), out)
    -- and with memory to spare it loads
    out = run("1e6", "local ds = require('omniglot').load{cache = " .. string.format("%q", cache) .. ", size = 1, pil_exact = true}; "
      .. "print(ds.images:numel())")
    assert.truthy(out:find("^1\nexit status 0\n"), out)
  end)
end)
