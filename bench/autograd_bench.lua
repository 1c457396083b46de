-- bench/autograd_bench.lua: what recording the graph costs. A chain of `ops`
-- small ops (x * w, x + b, tanh, x * 0.9, repeated) on tensors of a few
-- sizes, timed without recording (ag.no_grad), with recording, with recording
-- and a backward pass, and with a create_graph backward (what second-order
-- MAML does); the median of `repeats` runs, in microseconds per op.
--
--   ./mamlrun bench/autograd_bench.lua [ops=1000] [repeats=21] [sizes=1,64,4096]
local T = require "tensor"
local ag = require "autograd"
local host = require "mamlrun"

local defaults = { ops = 1000, repeats = 21, sizes = "1,64,4096", seed = 1 }
local cfg = require("options").script_keys("autograd_bench", ..., defaults)
local sizes = {}
for n in tostring(cfg.sizes):gmatch("%d+") do sizes[#sizes + 1] = tonumber(n) end

-- the chain: op i of ops, applied to y with parameters w and b
local function chain(x, w, b)
  local y = x
  for i = 1, cfg.ops do
    local k = i % 4
    if k == 1 then y = y * w
    elseif k == 2 then y = y + b
    elseif k == 3 then y = y:tanh()
    else y = y * 0.9 end
  end
  return y
end

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

-- seconds per run of each function, the median over the repeats; the
-- functions take turns within a round, so a busy machine slows them alike;
-- a full collection before each run (not timed) starts each from the same heap
local function time_all(fns)
  local runs = {}
  for i, fn in ipairs(fns) do
    fn() -- warm-up
    runs[i] = {}
  end
  for r = 1, cfg.repeats do
    for i, fn in ipairs(fns) do
      collectgarbage()
      collectgarbage()
      local t0 = host.time()
      fn()
      runs[i][r] = host.time() - t0
    end
  end
  local medians = {}
  for i = 1, #fns do medians[i] = median(runs[i]) end
  return table.unpack(medians)
end

local gen = T.generator(cfg.seed)
local rows = {}
for _, n in ipairs(sizes) do
  local x = T.randn({ n }, gen)
  local w = (T.rand({ n }, gen) + 0.5):requires_grad(true)
  local b = (T.randn({ n }, gen) * 0.1):requires_grad(true)
  local plain, recorded, backward, second = time_all {
    function() ag.no_grad(chain, x, w, b) end,
    function() return chain(x, w, b) end,
    function() ag.grad(chain(x, w, b):sum(), { w, b }) end,
    function()
      local g = ag.grad(chain(x, w, b):sum(), { w, b }, { create_graph = true })
      ag.grad((g[1] + g[2]):sum(), { w, b }) -- a gradient of the gradient
    end,
  }
  local per_op = 1e6 / cfg.ops
  rows[#rows + 1] = { n, plain * per_op, recorded * per_op, recorded / plain, backward * per_op, second * per_op }
end

print(("autograd: a chain of %d ops (x*w, x+b, tanh, x*0.9), median of %d runs, microseconds per op")
  :format(cfg.ops, cfg.repeats))
local header = { "elements", "no grad", "recording", "overhead", "+ backward", "2nd order" }
local widths = { 9, 10, 10, 9, 11, 10 }
local function line(cells)
  local out = {}
  for i, c in ipairs(cells) do out[i] = ("%" .. widths[i] .. "s"):format(c) end
  print(table.concat(out, " "))
end
line(header)
for _, r in ipairs(rows) do
  line { r[1], ("%.3f"):format(r[2]), ("%.3f"):format(r[3]), ("%.2fx"):format(r[4]), ("%.3f"):format(r[5]),
    ("%.3f"):format(r[6]) }
end
print("(recording: forward with inputs requiring grad; + backward: forward and ag.grad; 2nd order: forward,")
print(" create_graph backward, and the backward of that gradient, as in second-order MAML)")
