-- tests/lua/memory_spec.lua: memory stays flat over a long run. 300 meta-iterations of a tiny conv
-- net (the experiment runner with validation, checkpoints and metrics, random 8x8 images, one thread
-- and then two) while the tensor memory (T.memory().live_bytes after a full collection), the
-- resident set (/proc/self/statm) and the Lua heap are sampled: from iteration 100 on (caches, the
-- first checkpoint and validation warmed up) none may grow beyond a small bound. bench/memory_flat.lua
-- measures the same on a full-size Omniglot-like run.
local T = require "tensor"
local experiment = require "experiment"

-- experiment.run sets the global thread count (parallel.set_threads) and leaves it set: put it back
-- after each test, so that no test depends on which ran before it
local parallel = require "parallel"
local threads_before
before_each(function() threads_before = parallel.threads() end)
after_each(function() parallel.set_threads(threads_before) end)

local dir
setup(function()
  dir = require("tests.lua.helpers").tmpdir("memory-spec")
end)
teardown(function() os.execute("rm -rf '" .. dir .. "'") end)

local function rss_bytes() return require("mamlrun").rss() end

-- N-way tasks of random side x side images (labels 1..N in order)
local function random_source(side)
  return {
    kind = "classification", loss = "cross_entropy", metric = "accuracy", image_size = side, channels = 1,
    sample = function(_, _, n_tasks, gen, shape)
      local function part(per)
        local n = shape.ways * per
        local labels = {}
        for j = 1, n do labels[j] = (j - 1) % shape.ways + 1 end
        local ys = {}
        for t = 1, n_tasks do ys[t] = T.tensor(labels) end
        return T.rand({n_tasks, n, 1, side, side}, gen), T.stack(ys, 1)
      end
      local sx, sy = part(shape.shots)
      local qx, qy = part(shape.queries)
      return {support_x = sx, support_y = sy, query_x = qx, query_y = qy}
    end,
  }
end

local function run_and_sample(threads)
  local samples = {}
  experiment.run({
    name = "memory", task = "custom", model = "conv4", channels = 4, ways = 3, shots = 1, queries = 2,
    queries_test = 2, meta_batch = 4, steps = 1, steps_test = 1, steps_test_max = 1, iterations = 300,
    eval_every = 100, val_tasks = 4, test_tasks = 4, checkpoint_every = 50, log_every = 10, progress = "none",
  }, {overrides = {out_dir = dir, threads = threads}, source = random_source(8),
      after_iteration = function(_, it)
        if it % 50 == 0 then
          collectgarbage()
          collectgarbage()
          samples[#samples + 1] = {it = it, live = T.memory().live_bytes, rss = rss_bytes(),
            lua = collectgarbage("count") * 1024}
        end
      end})
  return samples
end

-- the sanitizer build keeps freed memory in quarantine: its resident set says nothing
local asan = os.getenv("ASAN_OPTIONS") ~= nil

local function check_flat(samples)
  local base = samples[2] -- iteration 100
  local lines = {}
  for _, s in ipairs(samples) do
    lines[#lines + 1] = string.format("iteration %d: tensors %d B, resident %.1f MB, Lua heap %.0f KB", s.it, s.live,
      s.rss / 2^20, s.lua / 1024)
  end
  local report = table.concat(lines, "\n")
  for i = 3, #samples do
    local s = samples[i]
    assert.is_true(s.live <= base.live + 64 * 1024, "tensor memory grows:\n" .. report)
    assert.is_true(s.lua <= base.lua + 256 * 1024, "the Lua heap grows:\n" .. report)
    if not asan then assert.is_true(s.rss <= base.rss + 2^20, "the resident set grows:\n" .. report) end
  end
end

describe("memory over a long run", function()
  it("stays flat over 300 meta-iterations on one thread", function()
    check_flat(run_and_sample(1))
  end)

  it("stays flat over 300 meta-iterations on two threads", function()
    check_flat(run_and_sample(2))
  end)
end)

-- First-order MAML on tasks whose query graph is tens of MB (20-way 5-shot, 15 queries per class, the
-- peer's network): every inner step's graph and the query graph are garbage as soon as their
-- gradients are taken, and the collection that tensor memory triggers (per thread, once the thread
-- has allocated 16 MB since the last one) frees them. With Lua's own collector stopped, the tensor
-- memory at its peak is then one task's footprint per thread (its query graph and backward pass)
-- plus at most 16 MB of garbage per thread: not one footprint per task, nor a multiple of the
-- process's live bytes (which include the other threads' graphs).
describe("memory of a meta-batch", function()
  local maml, nn, parallel, ag = require "maml", require "nn", require "parallel", require "autograd"
  local ways, tasks, MB = 20, 12, 2 ^ 20

  local function labels(per)
    local rows = {}
    for t = 1, tasks do
      rows[t] = {}
      for j = 1, ways * per do rows[t][j] = (j - 1) % ways + 1 end
    end
    return T.tensor(rows)
  end

  local gen = T.generator(5)
  local batch = {support_x = T.rand({tasks, ways * 5, 1, 28, 28}, gen), support_y = labels(5),
                 query_x = T.rand({tasks, ways * 15, 1, 28, 28}, gen), query_y = labels(15)}
  local net = nn.peer_net{ways = ways}:init(T.generator(6))
  local learner = maml.new{net = net, inner_lr = 0.4, steps = 3, first_order = true}

  local function settle()
    collectgarbage()
    collectgarbage()
    return T.memory().live_bytes
  end

  -- peak tensor bytes above the settled baseline while fn runs, with Lua's collector stopped
  local function peak_of(fn)
    local base = settle()
    T.reset_peak_memory()
    collectgarbage("stop")
    local ok, err = pcall(fn)
    collectgarbage("restart")
    assert.is_true(ok, err)
    return T.memory().peak_bytes - base
  end

  -- one task's footprint without garbage: the query loss's graph, then its backward pass on top
  local function footprint()
    local base = settle()
    local loss = T.cross_entropy(net:forward(batch.query_x:select(1, 1)), batch.query_y:select(1, 1))
    local graph = settle() - base
    return graph + peak_of(function() ag.grad(loss, learner.params) end)
  end

  for _, threads in ipairs{1, 2} do
    it(("holds one task's graph per thread, plus bounded garbage (%d thread%s)"):format(threads,
      threads > 1 and "s" or ""), function()
        local task = footprint()
        assert.is_true(task > 40 * MB, ("one task's graph is large (%.1f MB)"):format(task / MB))
        local saved = parallel.threads()
        parallel.set_threads(threads)
        local batch_peak = peak_of(function() learner:meta_gradient(batch) end)
        parallel.set_threads(saved)
        -- 16 MB of garbage and 2 MB of fast weights per thread; the gradients of every task, waiting
        -- to be summed in task order, on top
        local bound = threads * (task + 18 * MB) + 8 * MB
        assert.is_true(batch_peak < bound,
          ("%d tasks on %d threads: peak %.1f MB above the baseline, more than %.1f MB (one task: %.1f MB)"):format(
            tasks, threads, batch_peak / MB, bound / MB, task / MB))
      end)
  end
end)
