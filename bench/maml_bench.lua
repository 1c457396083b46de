-- bench/maml_bench.lua: seconds per meta-iteration of MAML on random data, for one config.
--
--   ./mamlrun bench/maml_bench.lua ways=5 shots=1 net=peer order=2 threads=2 iters=7 warmup=2
--
-- Same work as ../shared/peers/maml_torch.py: 28x28 inputs, `steps` inner SGD steps at lr 0.4
-- on the support set, `queries` query images per class, `meta_batch` tasks, Adam 1e-3; order=2 is
-- exact second-order MAML, order=1 first-order. net=peer is the peer's network (its docstring:
-- conv 3x3/2 pad 0 -> ReLU -> BN, x3, conv 2x2 -> ReLU -> BN, linear), built with nn.sequential;
-- net=conv4 is the MAML paper's network (nn.conv4). layout=nhwc (default) or nchw: the networks'
-- activation layout.
-- Prints one line `RESULT {json}`: median/min/max seconds per iteration after `warmup`, GFLOP per
-- iteration (GEMM FLOPs counted by T.flops()), GFLOP/s, peak RSS.
local T = require "tensor"
local nn = require "nn"
local maml = require "maml"
local optim = require "optim"
local json = require "json"
local host = require "mamlrun"
local parallel = require "parallel"

local defaults = {ways = 5, shots = 1, queries = 15, meta_batch = 32, steps = 5, order = 2, net = "peer",
                  threads = 1, iters = 7, warmup = 2, seed = 222, inner_lr = 0.4, layout = "nhwc"}
local cfg = require("options").script_keys("maml_bench", ..., defaults)

parallel.set_threads(cfg.threads)
local gen = T.generator(cfg.seed)
local net
if cfg.net == "peer" then
  net = nn.peer_net{ways = cfg.ways, layout = cfg.layout}
elseif cfg.net == "conv4" then
  net = nn.conv4{ways = cfg.ways, layout = cfg.layout}
else
  error("maml_bench: net must be peer or conv4", 0)
end
net:init(gen)
local learner = maml.new{net = net, inner_lr = cfg.inner_lr, steps = cfg.steps, first_order = cfg.order == 1}
local opt = optim.adam{lr = 1e-3}

local function labels(k)
  local rows = {}
  for b = 1, cfg.meta_batch do
    local row = {}
    for c = 1, cfg.ways do
      for _ = 1, k do row[#row + 1] = c end
    end
    rows[b] = row
  end
  return T.tensor(rows)
end

local function random_batch()
  return {support_x = T.rand({cfg.meta_batch, cfg.ways * cfg.shots, 1, 28, 28}, gen), support_y = labels(cfg.shots),
          query_x = T.rand({cfg.meta_batch, cfg.ways * cfg.queries, 1, 28, 28}, gen), query_y = labels(cfg.queries)}
end

local times, flops = {}, {}
for it = 1, cfg.warmup + cfg.iters do
  local batch = random_batch()
  local f0, t0 = T.flops(), host.time()
  local _, grads = learner:meta_gradient(batch)
  opt:step(learner.params, grads)
  local dt = host.time() - t0
  if it > cfg.warmup then
    times[#times + 1] = dt
    flops[#flops + 1] = T.flops() - f0
  end
  io.stderr:write(("iter %d  %.3f s\n"):format(it, dt))
end
table.sort(times)
local median = times[(#times + 1) // 2]
if #times % 2 == 0 then median = (times[#times // 2] + times[#times // 2 + 1]) / 2 end
local gflop = flops[1] / 1e9
print("RESULT " .. json.encode{
  impl = "mamlrun", net = cfg.net, ways = cfg.ways, shots = cfg.shots, queries = cfg.queries,
  meta_batch = cfg.meta_batch, steps = cfg.steps, order = cfg.order, threads = parallel.threads(),
  iters_timed = #times, median_s = median, min_s = times[1], max_s = times[#times],
  gflop_per_iter = gflop, gflops = gflop / median, peak_rss_mib = host.rss_peak() / 2 ^ 20,
})
