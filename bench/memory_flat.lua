-- bench/memory_flat.lua: memory over a long MAML run. Trains on random Omniglot-like tasks (28x28
-- images, the paper's conv4 net, 5-way 1-shot, meta-batch 32, exact second order) through the
-- experiment runner (metrics, validation, checkpoints, as a real run) and prints every `every`
-- iterations the resident set now and at its peak, the tensor memory and the Lua heap:
--
--   ./mamlrun bench/memory_flat.lua [iterations=1000] [every=100] [threads=1] [meta_batch=32] [ways=5]
--                                   [shots=1] [channels=64] [order=2]
--
-- A run whose memory is flat shows the same numbers from the first rows on (warm-up: the first
-- meta-batch, validation and checkpoint). Nothing is kept: the run folder is removed at the end.
local T = require "tensor"
local experiment = require "experiment"
local host = require "mamlrun"

local defaults = {iterations = 1000, every = 100, threads = 1, meta_batch = 32, ways = 5, shots = 1, channels = 64,
                  order = 2}
local cfg = require("options").script_keys("memory_flat", ..., defaults)



-- N-way tasks of random 28x28 images (labels 1..N in order)
local source = {
  kind = "classification", loss = "cross_entropy", metric = "accuracy", image_size = 28, channels = 1,
  sample = function(_, _, n_tasks, gen, shape)
    local function part(per)
      local n = shape.ways * per
      local labels = {}
      for j = 1, n do labels[j] = (j - 1) % shape.ways + 1 end
      local ys = {}
      for t = 1, n_tasks do ys[t] = T.tensor(labels) end
      return T.rand({n_tasks, n, 1, 28, 28}, gen), T.stack(ys, 1)
    end
    local sx, sy = part(shape.shots)
    local qx, qy = part(shape.queries)
    return {support_x = sx, support_y = sy, query_x = qx, query_y = qy}
  end,
}

local p = io.popen("mktemp -d /tmp/mamlrun-memory-flat.XXXXXX")
local dir = p:read("l")
p:close()

print(string.format("memory_flat: %d iterations of %d-way %d-shot %s MAML, meta-batch %d, conv4 with %d channels, "
  .. "%d thread%s", cfg.iterations, cfg.ways, cfg.shots, cfg.order == 2 and "second-order" or "first-order",
  cfg.meta_batch, cfg.channels, cfg.threads, cfg.threads == 1 and "" or "s"))
print(string.format("%9s  %12s  %12s  %12s  %10s  %8s", "iteration", "RSS now MB", "RSS peak MB", "tensors MB",
  "Lua KB", "s/iter"))
local t0, last = host.time(), 0
local ok, err = pcall(experiment.run, {
  name = "memory_flat", task = "custom", model = "conv4", channels = cfg.channels, ways = cfg.ways,
  shots = cfg.shots, queries = cfg.shots, queries_test = cfg.shots, meta_batch = cfg.meta_batch, steps = 1,
  steps_test = 1, steps_test_max = 1, first_order = cfg.order == 1, iterations = cfg.iterations,
  eval_every = 500, val_tasks = 20, test_tasks = 20, checkpoint_every = 250, log_every = 20, progress = "none",
}, {overrides = {out_dir = dir, threads = cfg.threads}, source = source,
    after_iteration = function(_, it)
      if it % cfg.every == 0 or it == 1 then
        local now = host.time()
        print(string.format("%9d  %12.1f  %12.1f  %12.1f  %10.0f  %8.3f", it, host.rss() / 2^20,
          host.rss_peak() / 2^20, T.memory().live_bytes / 2^20, collectgarbage("count"),
          (now - t0) / math.max(it - last, 1)))
        io.stdout:flush()
        t0, last = now, it
      end
    end})
os.execute("rm -rf '" .. dir .. "'")
if not ok then error(err, 0) end
