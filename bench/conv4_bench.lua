-- bench/conv4_bench.lua: nn.conv4 (the MAML paper's Omniglot network, 5 ways) on one 5-way 1-shot task
-- (5 support + 75 query images of 28x28): milliseconds per forward+backward and per double backward
-- (the gradient of a function of the gradient, as in second-order MAML), median of repeats.
-- bench/conv4_bench_torch.py is the same network and measurement in PyTorch.
--   ./mamlrun bench/conv4_bench.lua [repeats=20]
local T = require "tensor"
local ag = require "autograd"
local nn = require "nn"
local host = require "mamlrun"

local repeats = require("options").script_keys("conv4_bench", ..., {repeats = 20}).repeats
local gen = T.generator(1)
local net = nn.conv4{ways = 5}:init(gen)
local params = net:parameters()
for _, p in ipairs(params) do p:requires_grad(true) end

local function median(f)
  local times = {}
  f() -- warm-up
  for i = 1, repeats do
    local t0 = host.time()
    f()
    times[i] = host.time() - t0
  end
  table.sort(times)
  return times[(repeats + 1) // 2] * 1e3
end

print(("%-8s %6s %22s %22s"):format("images", "", "forward+backward ms", "double backward ms"))
for _, n in ipairs{5, 75, 80} do
  local x = T.rand({n, 1, 28, 28}, gen)
  local labels = {}
  for i = 1, n do labels[i] = (i - 1) % 5 + 1 end
  local loss = function() return T.cross_entropy(net:forward(x, params), labels) end
  local fb = median(function() ag.grad(loss(), params) end)
  local dd = median(function() -- d/dparams of |grad|^2
    local g = ag.grad(loss(), params, {create_graph = true})
    local s = (g[1] * g[1]):sum()
    for i = 2, #g do s = s + (g[i] * g[i]):sum() end
    ag.grad(s, params)
  end)
  print(("%-8d %6s %22.2f %22.2f"):format(n, "mamlrun", fb, dd))
end
