-- tests/lua/api_misuse.lua: the driver behind api_misuse_spec.lua (run in a child process, in a
-- scratch folder: a valid call may write a file named by one of the strings below).
--
--   mamlrun tests/lua/api_misuse.lua PHASE PROGRESS_FILE
--
-- Every function the C side registers is found by walking the modules (each C module in
-- package.preload: tensor, autograd, omniglot, parallel, mpi...; the mamlrun module; tensor methods
-- and metamethods; generator methods and metamethods), so a new C function or module is covered
-- without touching this file, and called with wrong argument types, wrong
-- counts, nil, NaN and infinities, empty and huge shapes, negative sizes, tensors of mismatched
-- shapes, tables whose __len lies, and option tables with bad values. PHASE: "single" (no arguments,
-- then each value alone), "leads" (each value after plausible leading arguments) or "random" (random
-- argument lists, fixed seed). Each call runs under pcall; it must return, or fail with a string that
-- names the function. Before each call its description goes to PROGRESS_FILE, so that the spec can
-- name the call that crashed the process. Prints "FAIL: ..." lines, then a "calls N peak_bytes N
-- leaked_bytes N slowest S call" line.
local T = require "tensor"
local ag = require "autograd"
local mamlrun = require "mamlrun"

local NOWHERE = "/nonexistent-mamlrun-misuse/x" -- a path in a folder that does not exist

-- ------------------------------------------------------------------ the C functions

-- {name = "tensor.zeros", short = "zeros", call = function(...)}: a call the way a script writes it
-- (M.name(...) or x:name(...)), so that Lua names the function in argument errors
local function collect()
  local out, seen = {}, {}
  local function add(qualified, short, f, code, env)
    if type(f) ~= "function" or debug.getinfo(f, "S").what ~= "C" then return end
    if seen[qualified] then return end
    seen[qualified] = true
    out[#out + 1] = {name = qualified, short = short, call = assert(load(code, "=" .. qualified, "t", env))()}
  end
  local function module(modname, M)
    local names = {}
    for k in pairs(M) do if type(k) == "string" and k:match("^[%a_][%w_]*$") then names[#names + 1] = k end end
    table.sort(names)
    for _, k in ipairs(names) do
      add(modname .. "." .. k, k, M[k], "return function(...) return M." .. k .. "(...) end", {M = M})
    end
  end
  -- the host's C modules (package.preload: tensor, autograd, omniglot, parallel, mpi, ...) and mamlrun
  local modules = {}
  for name, loader in pairs(package.preload) do
    if type(loader) == "function" and debug.getinfo(loader, "S").what == "C" then modules[#modules + 1] = name end
  end
  table.sort(modules)
  modules[#modules + 1] = "mamlrun"
  for _, name in ipairs(modules) do
    local M = require(name)
    if type(M) == "table" then module(name, M) end
  end
  -- methods: self first, as x:name(...)
  local function methods(kind, tbl)
    local names = {}
    for k in pairs(tbl) do if type(k) == "string" and k:match("^[%a_][%w_]*$") then names[#names + 1] = k end end
    table.sort(names)
    for _, k in ipairs(names) do
      add(kind .. ":" .. k, k, tbl[k], "return function(x, ...) return x:" .. k .. "(...) end", {})
    end
  end
  methods("tensor", T.methods)
  methods("generator", getmetatable(T.generator(1)).__index)
  -- metamethods, called directly (a + b names no function: only the process must survive)
  for _, mt in ipairs{getmetatable(T.zeros{1}), getmetatable(T.generator(1))} do
    local names = {}
    for k, f in pairs(mt) do if type(f) == "function" then names[#names + 1] = k end end
    table.sort(names)
    for _, k in ipairs(names) do
      add(tostring(mt.__name) .. "." .. k, nil, mt[k], "return function(...) return F(...) end", {F = mt[k]})
    end
  end
  return out
end

-- ------------------------------------------------------------------ the argument pool

local function liar(len, index)
  return setmetatable({}, {__len = function() return len end,
    __index = index or function() return 1 end})
end

-- every entry makes a fresh value, so that calls that close or change their arguments (__gc,
-- fill_, set) do not affect the next call
local pool = {
  {"nil", function() return nil end},
  {"true", function() return true end},
  {"false", function() return false end},
  {"0", function() return 0 end},
  {"1", function() return 1 end},
  {"2", function() return 2 end},
  {"3", function() return 3 end},
  {"-1", function() return -1 end},
  {"-2", function() return -2 end},
  {"0.5", function() return 0.5 end},
  {"-0.0", function() return -0.0 end},
  {"nan", function() return 0 / 0 end},
  {"inf", function() return math.huge end},
  {"-inf", function() return -math.huge end},
  {"1e12", function() return 1e12 end},
  {"2^62 float", function() return 2.0 ^ 62 end},
  {"2^62", function() return 1 << 62 end},
  {"2^40", function() return 1 << 40 end},
  {"maxinteger", function() return math.maxinteger end},
  {"mininteger", function() return math.mininteger end},
  {"-1e12", function() return -1e12 end},
  {"empty string", function() return "" end},
  {"path", function() return NOWHERE end},
  {"format string", function() return "%s%n%d%%%999999999s" end},
  {"long string", function() return string.rep("x", 100000) end},
  {"NUL string", function() return "a\0b" end},
  {"numeric string", function() return "3" end},
  {"empty table", function() return {} end},
  {"list", function() return {1, 2} end},
  {"shape {2, 3}", function() return {2, 3} end},
  {"shape {0}", function() return {0} end},
  {"shape {-1}", function() return {-1} end},
  {"shape {1e12, 1e12}", function() return {1e12, 1e12} end},
  {"shape {2^62}", function() return {1 << 62} end},
  {"shape {2^62 float}", function() return {2.0 ^ 62} end},
  {"shape {0, maxinteger}", function() return {0, math.maxinteger} end},
  {"shape 9 dims", function() return {1, 1, 1, 1, 1, 1, 1, 1, 1} end},
  {"shape {1.5}", function() return {1.5} end},
  {"shape {nan}", function() return {0 / 0} end},
  {"shape {'a'}", function() return {"a"} end},
  {"nested table", function() return {{1, 2}, {3}} end},
  {"deep table", function()
    local t = {}
    for _ = 1, 100 do t = {t, x = 1} end
    return t
  end},
  {"labels maxinteger", function() return {math.maxinteger, math.mininteger} end},
  {"liar len 2^40", function() return liar(1 << 40) end},
  {"liar len 2^62", function() return liar(1 << 62) end},
  {"liar len -1", function() return liar(-1) end},
  {"liar erroring index", function() return liar(3, function() error("misuse-injected", 0) end) end},
  {"options stride 0", function() return {stride = 0} end},
  {"options padding -5", function() return {padding = -5} end},
  {"options huge", function() return {stride = 1 << 40, padding = 1 << 40} end},
  {"options int-edge", function() return {stride = 2147483647, padding = 2147483647} end},
  {"options padding > kernel", function() return {stride = 11, padding = 4} end},
  {"options bn", function() return {running_mean = T.zeros{3}, running_var = T.ones{3}, momentum = 0 / 0} end},
  {"options bn bad", function() return {running_mean = T.zeros{7}, running_var = "x", training = 1, eps = -1} end},
  {"options grad", function() return {create_graph = true, allow_unused = true, grad_output = T.ones{5}} end},
  {"options load", function() return {root = NOWHERE, cache = NOWHERE, size = 1 << 40, threads = -1} end},
  {"options tile", function() return {cols = 1 << 40, scale = 16, pad = 64, labels = {math.maxinteger},
    captions = {-1}, separators = {1e12, -1}} end},
  {"options tile max", function() return {cols = 2147483647, scale = 16, pad = 64, labels = {math.maxinteger, 1}} end},
  {"options unknown", function() return {pading = 1, [1] = 2} end},
  {"function", function() return function() end end},
  {"erroring function", function() return function() error("misuse-injected", 0) end end},
  {"coroutine", function() return coroutine.create(function() end) end},
  {"file", function() return io.stderr end},
  {"generator", function() return T.generator(7) end},
  {"0-d tensor", function() return T.tensor(2.5) end},
  {"tensor (2, 3)", function() return T.randn({2, 3}, T.generator(1)) end},
  {"tensor (3, 2)", function() return T.randn({3, 2}, T.generator(2)) end},
  {"tensor (3)", function() return T.tensor{1, 2, 3} end},
  {"tensor (0)", function() return T.zeros{0} end},
  {"tensor (0, 3)", function() return T.zeros{0, 3} end},
  {"tensor (2, 3) nan/inf", function() return T.tensor{{0 / 0, math.huge, -math.huge}, {1e38, -1e38, 0}} end},
  {"tensor requiring grad", function() return T.randn({2, 3}, T.generator(3)):requires_grad(true) end},
  {"tensor with grad_fn", function() return T.randn({2, 3}, T.generator(4)):requires_grad(true) * 2 end},
  {"tensor (2, 1, 5, 5)", function() return T.randn({2, 1, 5, 5}, T.generator(5)) end},
  {"tensor (4, 1, 3, 3)", function() return T.randn({4, 1, 3, 3}, T.generator(6)) end},
  {"tensor (2, 3, 1, 4, 4)", function() return T.rand({2, 3, 1, 4, 4}, T.generator(7)) end},
  {"tensor (3, 4, 4)", function() return T.rand({3, 4, 4}, T.generator(8)) end},
  {"tensor (1, 1, 1, 1, 1, 1, 1, 1)", function() return T.ones{1, 1, 1, 1, 1, 1, 1, 1} end},
  {"labels tensor", function() return T.tensor{1, 3} end},
  {"bad labels tensor", function() return T.tensor{0 / 0, 1e30} end},
  {"closed tensor", function()
    local x = T.zeros{2}
    getmetatable(x).__close(x)
    return x
  end},
}

-- ------------------------------------------------------------------ driving

local functions = collect()

local function find(name)
  for i, p in ipairs(pool) do if p[1] == name then return i end end
  error("no pool entry " .. name)
end

local _, phase, progress_path = ... -- (the first is the overrides table)
local progress = assert(io.open(assert(progress_path, "usage: api_misuse.lua PHASE PROGRESS_FILE"), "w"))
local failures, calls, slowest = {}, 0, {0, ""}

local function describe_args(idx)
  local names = {}
  for k, i in ipairs(idx) do names[k] = pool[i][1] end
  return "(" .. table.concat(names, ", ") .. ")"
end

-- call fn with fresh values of the pool entries idx
local function try(fn, idx)
  local args, n = {}, #idx
  for k, i in ipairs(idx) do args[k] = pool[i][2]() end
  local what = fn.name .. describe_args(idx)
  progress:seek("set")
  progress:write(what, "\n")
  progress:flush()
  calls = calls + 1
  local t0 = mamlrun.time()
  local ok, err = pcall(fn.call, table.unpack(args, 1, n))
  local dt = mamlrun.time() - t0
  ag.set_enabled(true) -- (set_enabled(false) is a valid call)
  if dt > slowest[1] then slowest = {dt, what} end
  if ok then return end
  if type(err) ~= "string" then
    failures[#failures + 1] = string.format("%s raised a %s, not a string", what, type(err))
  elseif fn.short and not err:find(fn.short, 1, true) and not err:find("misuse-injected", 1, true) then
    failures[#failures + 1] = string.format("%s: the error does not name '%s': %s", what, fn.short, err)
  end
end

collectgarbage()
collectgarbage()
local live_before = T.memory().live_bytes
T.reset_peak_memory()

if phase == "single" then
  for _, fn in ipairs(functions) do
    try(fn, {})
    for i = 1, #pool do try(fn, {i}) end
  end
elseif phase == "leads" then
  local leads = {
    {"tensor (2, 3)"}, {"tensor (2, 3)", "tensor (3, 2)"}, {"tensor (2, 3)", "1"}, {"tensor (2, 3)", "1", "1"},
    {"tensor (2, 1, 5, 5)", "tensor (4, 1, 3, 3)"}, {"tensor (2, 1, 5, 5)", "tensor (4, 1, 3, 3)", "nil"},
    {"tensor (2, 1, 5, 5)", "2"}, {"tensor (2, 3, 1, 4, 4)", "list", "list"},
    {"tensor requiring grad", "shape {2, 3}"}, {"generator", "2"}, {"path", "tensor (3, 4, 4)"},
    {"tensor (3, 4, 4)"},
  }
  for _, lead in ipairs(leads) do
    for k, name in ipairs(lead) do lead[k] = find(name) end
  end
  for _, fn in ipairs(functions) do
    for _, lead in ipairs(leads) do
      for i = 1, #pool do
        local idx = {table.unpack(lead)}
        idx[#idx + 1] = i
        try(fn, idx)
      end
    end
  end
elseif phase == "random" then
  local rng = T.generator(20240601)
  for _, fn in ipairs(functions) do
    for _ = 1, 150 do
      local idx = {}
      for k = 1, rng:random(6) - 1 do idx[k] = rng:random(#pool) end
      try(fn, idx)
    end
  end
elseif phase == "list" then
  for _, fn in ipairs(functions) do print(fn.name) end
  os.exit(0)
else
  error("unknown phase " .. tostring(phase))
end

mamlrun.on_signal(false)
require("parallel").set_threads(1)
collectgarbage()
collectgarbage()
local mem = T.memory()
for _, f in ipairs(failures) do print("FAIL: " .. f) end
print(string.format("calls %d peak_bytes %d leaked_bytes %d slowest %.3f %s", calls, mem.peak_bytes,
  mem.live_bytes - live_before, slowest[1], slowest[2]))
progress:close()
