-- tests/lua/memory_spec.lua: memory stays flat over a long run. 300 meta-iterations of a tiny conv
-- net (the experiment runner with validation, checkpoints and metrics, random 8x8 images, one thread
-- and then two) while the tensor memory (T.memory().live_bytes after a full collection), the
-- resident set (/proc/self/statm) and the Lua heap are sampled: from iteration 100 on (caches, the
-- first checkpoint and validation warmed up) none may grow beyond a small bound. bench/memory_flat.lua
-- measures the same on a full-size Omniglot-like run.
local T = require "tensor"
local experiment = require "experiment"

local dir
setup(function()
  local p = io.popen("mktemp -d /tmp/mamlrun-memory-spec.XXXXXX")
  dir = p:read("l")
  p:close()
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
