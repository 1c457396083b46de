-- tests/lua/sinusoid_spec.lua: the sinusoid task source (lua/sinusoid.lua) and a short MAML run on it
-- through experiments/sinusoid.lua: after meta-training, one inner step at K = 5 lowers the MSE well
-- below its value before adaptation.
local T = require "tensor"
local sinusoid = require "sinusoid"
local experiment = require "experiment"
local json = require "json"

-- experiment.run sets the global thread count (parallel.set_threads) and leaves it set: put it back
-- after each test, so that no test depends on which ran before it
local parallel = require "parallel"
local threads_before
before_each(function() threads_before = parallel.threads() end)
after_each(function() parallel.set_threads(threads_before) end)

describe("sinusoid tasks", function()
  it("have the requested shapes and lie on A sin(x - phase) with A, phase, x in range", function()
    local source = sinusoid.new()
    local b = source:sample("train", 4, T.generator(1), {shots = 10, queries = 7})
    assert.same({4, 10, 1}, b.support_x:shape())
    assert.same({4, 10, 1}, b.support_y:shape())
    assert.same({4, 7, 1}, b.query_x:shape())
    assert.is_true(b.support_x:abs():max():item() <= 5)
    assert.is_true(b.query_y:abs():max():item() <= 5 + 1e-6)
    -- recover a task's amplitude and phase from its generator and check the points
    local gen = T.generator(1)
    local amplitude, phase = source:task_parameters(gen)
    assert.is_true(amplitude >= 0.1 and amplitude <= 5 and phase >= 0 and phase <= math.pi)
    local x, y = b.support_x:select(1, 1):totable(), b.support_y:select(1, 1):totable()
    for i = 1, 10 do assert.near(amplitude * math.sin(x[i][1] - phase), y[i][1], 1e-5) end
  end)

  it("are reproducible from the generator", function()
    local source = sinusoid.new()
    local a = source:sample("train", 2, T.generator(5), {shots = 3, queries = 3})
    local b = source:sample("test", 2, T.generator(5), {shots = 3, queries = 3})
    assert.same(a.query_y:totable(), b.query_y:totable())
  end)
end)

describe("MAML on sinusoids", function()
  it("a short run lowers the post-adaptation MSE well below the pre-adaptation MSE", function()
    local dir = require("tests.lua.helpers").tmpdir("sinusoid-spec")
    -- the paper's sinusoid setting with a shorter, faster schedule: meta-batch 10, meta lr 0.01
    local result = experiment.run(experiment.config("experiments/sinusoid.lua"), {overrides = {
      out_dir = dir, iterations = 1500, meta_batch = 10, meta_lr = 0.01, eval_every = 0,
      checkpoint_every = 0, test_tasks = 200, steps_test = 1, steps_test_max = 1, progress = "none",
    }})
    local before, after = result.test.mean[1], result.test.mean[2]
    assert.is_true(after < 0.6 * before, string.format("MSE %.3f before, %.3f after one step", before, after))
    local summary = json.decode(io.open(result.dir .. "/summary.json"):read("a"))
    assert.equals("mse", summary.metric)
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)
