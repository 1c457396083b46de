-- tests/lua/algorithms_spec.lua: the algorithms of lua/algorithms/ and networks of the user's own on
-- worker threads (lua/algorithm.lua, nn.from_module): every algorithm gives the same bits on 1 and 2
-- threads; what a worker could not rebuild (an edited learner or network, a replaced method, a
-- network without a spec) is refused, never run as plain MAML; a worker that ignores its job is
-- stopped at its first task (the learner's check against this thread), and one that goes wrong later
-- is caught by the 1-vs-2 comparison; per algorithm, its gradient against finite differences (Reptile:
-- against a hand computation); Meta-SGD's step sizes are learned, checkpointed and resumed exactly.
local T = require "tensor"
local ag = require "autograd"
local nn = require "nn"
local algorithm = require "algorithm"
local experiment = require "experiment"
local parallel = require "parallel"
local helpers = require "tests.lua.helpers"

-- the fixtures are modules "beside the script": on package.path of this state and of the workers
-- (which copy it when they start)
package.path = "tests/lua/fixtures/?.lua;" .. package.path
local threads_before = parallel.threads()
parallel.set_threads(1)
parallel.set_threads(2)
teardown(function() parallel.set_threads(threads_before) end)

local function with_threads(n, f, ...)
  parallel.set_threads(n)
  local out = table.pack(pcall(f, ...))
  parallel.set_threads(2)
  if not out[1] then error(out[2], 0) end
  return table.unpack(out, 2, out.n)
end

-- a meta-batch of n random 3-way tasks with `per` support and query examples per class
local function random_batch(gen, n, per, shape) return helpers.random_batch(gen, n, 3, per, shape) end

local function conv_net(seed)
  return nn.conv4{ways = 3, channels = 4, image = 8, bn_scale = true}:init(T.generator(seed))
end

local options = {
  maml = {inner_lr = 0.4, steps = 2, inner_loss_scale = 3},
  meta_sgd = {inner_lr = 0.4, steps = 2, inner_loss_scale = 3},
  anil = {inner_lr = 0.4, steps = 2, inner_loss_scale = 3},
  reptile = {inner_lr = 0.01, steps = 3, inner_batch = 2, eval_batch = 3, meta_step = 1, meta_step_final = 0},
  half_lr_maml = {inner_lr = 0.4, steps = 2, inner_loss_scale = 3},
  mamlpp = {inner_lr = 0.1, steps = 3, epoch_iterations = 1, msl_epochs = 2, second_order_epoch = 0},
}

-- `iterations` outer steps of algorithm `name` from the same start; the meta-parameters as tables
local function train(name, iterations, threads)
  return with_threads(threads, function()
    local learner = algorithm.build(name, conv_net(5), options[name])
    local opt = learner:outer_optimizer{meta_lr = 1e-2}
    local gen = T.generator(6)
    for it = 1, iterations do
      local batch = random_batch(gen, 4, 1, {1, 8, 8})
      local _, grads = learner:meta_gradient(batch, {iteration = it, iterations = iterations, seed = 100 + it})
      local lr = learner:outer_lr(it, iterations, 1e-2)
      if lr then opt.lr = lr end
      opt:step(learner.meta_params, grads)
    end
    local out = {}
    for i, p in ipairs(learner.meta_params) do out[i] = p:totable() end
    local eval_batch = random_batch(gen, 1, 1, {1, 8, 8})
    out.finetune = learner:finetune(learner.meta_params, eval_batch.support_x:select(1, 1),
      eval_batch.support_y:select(1, 1), eval_batch.query_x:select(1, 1), eval_batch.query_y:select(1, 1), 2)
    return out
  end)
end

describe("every algorithm on 1 and 2 threads", function()
  for _, name in ipairs{"maml", "meta_sgd", "anil", "reptile", "mamlpp", "half_lr_maml"} do
    it(name .. ": the same meta-parameters, bit for bit, after 3 meta-iterations", function()
      local one, two = train(name, 3, 1), train(name, 3, 2)
      assert.same(one, two)
      -- and the training did something (the comparison is not of two untouched initialisations)
      local start = algorithm.build(name, conv_net(5), options[name]).meta_params
      assert.are_not.same(start[1]:totable(), one[1])
    end)
  end

  it("a worker that ignores its job is stopped at the first task it is sent (fixtures/broken_worker_maml.lua)", function()
    options.broken_worker_maml = options.maml
    _G.MAMLRUN_MAIN_STATE = true
    local ok1, one = pcall(train, "broken_worker_maml", 2, 1)
    local ok2, err = pcall(train, "broken_worker_maml", 2, 2)
    _G.MAMLRUN_MAIN_STATE = nil
    assert(ok1, one) -- (on one thread it runs as written)
    assert.is_false(ok2)
    assert.is_true(require("options").is_usage_error(err), tostring(err))
    assert.matches("^meta_gradient on 2 threads: a worker thread computed task 1 of the meta%-batch of iteration 1 "
      .. "otherwise than this thread: the query loss is [%d.]+ on the worker, [%d.]+ here%. The broken_worker_maml "
      .. "learner or its network depends on something a worker thread does not rebuild", tostring(err))
  end)

  it("evaluate stops as well at the first task a worker fine-tunes otherwise (fixtures/broken_worker_maml.lua)", function()
    -- a regression, whose metric (the mean squared error) shows any difference of the adapted weights
    local learner = algorithm.build("broken_worker_maml", nn.mlp{sizes = {1, 8, 1}}:init(T.generator(3)),
      {inner_lr = 0.1, steps = 2, loss = "mse", metric = "mse"})
    local gen = T.generator(4)
    local function next_task()
      local sx, qx = T.randn({5, 1}, gen), T.randn({5, 1}, gen)
      return sx, sx:tanh(), qx, qx:tanh()
    end
    _G.MAMLRUN_MAIN_STATE = true
    local ok1, serial = pcall(with_threads, 1, learner.evaluate, learner, nil, 3, next_task, 2)
    local ok2, err = pcall(learner.evaluate, learner, nil, 3, next_task, 2)
    _G.MAMLRUN_MAIN_STATE = nil
    assert(ok1, serial)
    assert.is_false(ok2)
    assert.matches("^evaluate on 2 threads: a worker thread computed the first task's fine%-tuning otherwise than "
      .. "this thread: the metric after 1 inner step is [%d.e-]+ on the worker, [%d.e-]+ here", tostring(err))
  end)

  it("the 1-vs-2 comparison fails for a worker that goes wrong after its first task (fixtures/late_broken_worker_maml.lua)", function()
    options.late_broken_worker_maml = options.maml
    _G.MAMLRUN_MAIN_STATE = true
    local ok, one, two = pcall(function()
      return train("late_broken_worker_maml", 3, 1), train("late_broken_worker_maml", 3, 2)
    end)
    _G.MAMLRUN_MAIN_STATE = nil
    assert(ok, one)
    assert.are_not.same(one, two)
  end)

  it("an option an algorithm does not know is an error listing the valid ones", function()
    assert.has_error(function() algorithm.build("reptile", conv_net(1), {first_order = true}) end,
      "reptile: unknown option 'first_order'; valid options: bn_mode, eval_batch, inner_batch, inner_lr, loss, "
      .. "meta_step, meta_step_final, metric, steps, train_shots, transductive, ways")
  end)

  it("an unknown algorithm is an error listing the shipped ones", function()
    assert.has_error(function() algorithm.build("mamll", conv_net(1), {}) end,
      "unknown algorithm 'mamll': the shipped ones are maml, meta_sgd, anil, reptile, mamlpp; an algorithm of your "
      .. "own is a module mamll.lua beside the experiment script (see docs/algorithms.md)")
  end)
end)

describe("what a worker cannot rebuild is refused on 2 threads", function()
  local batch = random_batch(T.generator(9), 4, 1, {1, 8, 8})

  local function refused(learner, fragment)
    local ok, err = pcall(learner.meta_gradient, learner, batch)
    assert.is_false(ok)
    assert.truthy(tostring(err):find(fragment, 1, true), tostring(err))
    -- and on one thread it runs as written
    with_threads(1, learner.meta_gradient, learner, batch)
  end

  it("ANIL written by editing learner.adapted after maml.new", function()
    local learner = require("maml").new{net = conv_net(1), inner_lr = 0.4, steps = 1}
    for i = 1, #learner.adapted do learner.adapted[i] = (i >= #learner.adapted - 1) end
    refused(learner, "learner.adapted of the maml learner was changed after it was built")
  end)

  for _, method in ipairs{"adapt", "task_meta_gradient", "finetune", "inner_step", "inner_loss"} do
    it("a learner whose " .. method .. " is replaced on the instance", function()
      local learner = require("maml").new{net = conv_net(1), inner_lr = 0.4, steps = 1}
      local original = learner[method]
      learner[method] = function(...) return original(...) end
      refused(learner, "learner." .. method .. " of the maml learner was added after it was built")
    end)
  end

  it("a method replaced in the algorithm's class after its module was loaded", function()
    local A = algorithm.load("maml")
    local learner = algorithm.build("maml", conv_net(1), {inner_lr = 0.4})
    local original = A.Learner.inner_step
    A.Learner.inner_step = function(self, i, w, g) return w - g * (self.inner_lr * 2) end -- luacheck: ignore i
    local ok, err = pcall(learner.meta_gradient, learner, batch)
    A.Learner.inner_step = original
    assert.is_false(ok)
    assert.truthy(tostring(err):find("the method inner_step of algorithm maml was replaced", 1, true), tostring(err))
  end)

  it("an option that is a function (a custom loss)", function()
    local learner = algorithm.build("maml", conv_net(1), {inner_lr = 0.4,
      loss = function(a, b) return T.cross_entropy(a, b) end})
    refused(learner, "the maml learner's option.loss is a function")
  end)

  it("an nn.conv4 whose forward is wrapped after construction", function()
    local net = conv_net(1)
    local forward = net.forward
    function net:forward(x, p) return forward(self, x * 0.5, p) end
    refused(algorithm.build("maml", net, {inner_lr = 0.4}),
      "the network's layer '<top>' (field forward) was changed after the network was built")
  end)

  it("a layer inside a network edited after construction", function()
    local net = conv_net(1)
    net.children[2].stride = 1 -- conv1 (after nn.channels_last)
    refused(algorithm.build("maml", net, {inner_lr = 0.4}), "the network's layer 'conv1' (field stride) was changed")
  end)

  it("a network built inline with nn.sequential (no spec)", function()
    local net = nn.sequential{nn.flatten(), nn.linear(64, 3)}:init(T.generator(1))
    refused(algorithm.build("maml", net, {inner_lr = 0.4}), "the network has no spec")
  end)

  it("a network module or an algorithm module the script made (package.loaded), in no file", function()
    package.loaded.inline_net = function() return nn.sequential{nn.flatten(), nn.linear(64, 3)} end
    local net = nn.from_module("inline_net", {})
    net:init(T.generator(1))
    refused(algorithm.build("maml", net, {inner_lr = 0.4}), "the network module 'inline_net' is in no file on "
      .. "package.path (the script made it, in package.loaded or package.preload), so worker threads, which load "
      .. "modules from files, cannot build it; put it in inline_net.lua beside the script, or run with threads=1")
    package.loaded.inline_net = nil
    local maml = require "algorithms.maml"
    local A = algorithm.define{name = "inline_maml", base = maml, keys = maml.keys}
    function A.new(n, o) return maml.setup(algorithm.instance(A, n, o), o) end
    package.loaded.inline_maml = A
    local ok, learner = pcall(algorithm.build, "inline_maml", conv_net(1), {inner_lr = 0.4})
    assert(ok, learner)
    refused(learner, "the algorithm module 'inline_maml' is in no file on package.path")
    package.loaded.inline_maml = nil
  end)
end)

describe("a network of the user's own (fixtures/tanh_net.lua, with a custom layer)", function()
  it("is rebuilt by name in the workers: the same bits on 1 and 2 threads", function()
    local function run(threads)
      return with_threads(threads, function()
        local net = nn.from_module("tanh_net", {inputs = 4, hidden = 5, ways = 3}):init(T.generator(2))
        assert.is_nil(nn.reproducible(net))
        local learner = algorithm.build("maml", net, {inner_lr = 0.3, steps = 2})
        local stats, grads = learner:meta_gradient(random_batch(T.generator(3), 4, 2, {4}))
        local out = {stats.loss}
        for i, g in ipairs(grads) do out[i + 1] = g:totable() end
        return out
      end)
    end
    assert.same(run(1), run(2))
  end)

  it("experiment's model key takes its name, and a wrong module is a clear error", function()
    local cfg = experiment.resolve({task = "custom", model = "tanh_net", ways = 3}, {})
    assert.equals("tanh_net", cfg.model)
    assert.has_error(function() nn.from_module("helpers", {}) end)
    local ok, err = pcall(experiment.resolve, {task = "custom", model = "no_such_net"}, {})
    assert.is_false(ok)
    assert.truthy(err:find("config key 'model' expects one of conv4, peer_net, mlp, or the name of a network", 1, true))
  end)
end)

-- ------------------------------------------------------------------ gradients per algorithm

-- the meta-loss of a learner at meta (mean query loss after adaptation), computed without
-- differentiating through anything: what finite differences of the meta-gradient are taken of
-- (weights: MAML++'s multi-step loss, a weight per inner step; nil: the last step's loss)
local function meta_loss(learner, meta, batch, weights)
  local total, n = 0, batch.support_x:size(1)
  for t = 1, n do
    for s = 1, learner.steps do
      if (weights and weights[s]) or s == learner.steps then
        local fast = learner:adapt(meta, batch.support_x:select(1, t), batch.support_y:select(1, t), s, false)
        total = total + (weights and weights[s] or 1) * ag.no_grad(function()
          return learner.loss(learner:forward_at(meta, fast, batch.query_x:select(1, t), s),
            batch.query_y:select(1, t)):item()
        end)
      end
    end
  end
  return total / n
end

local function check_against_differences(learner, batch, eps, tol, ctx, weights, only)
  local _, grads = with_threads(1, learner.meta_gradient, learner, batch, ctx)
  for i, p in ipairs(learner.meta_params) do
    if only and not learner.meta_names[i]:match(only) then goto next end
    local flat = p:reshape{-1}:totable()
    for k = 1, #flat do
      local function at(delta)
        local meta = {}
        for j, q in ipairs(learner.meta_params) do meta[j] = q end
        local v = {}
        for m = 1, #flat do v[m] = flat[m] + (m == k and delta or 0) end
        meta[i] = T.tensor(v):reshape(p:shape()):requires_grad(true)
        return meta_loss(learner, meta, batch, weights)
      end
      local numeric = (at(eps) - at(-eps)) / (2 * eps)
      local analytic = grads[i]:reshape{-1}:totable()[k]
      helpers.near(analytic, numeric, tol, learner.meta_names[i] .. "[" .. k .. "]")
    end
    ::next::
  end
  return grads
end

local function tanh_learner(name, o)
  local net = nn.from_module("tanh_net", {inputs = 3, hidden = 4, ways = 3}):init(T.generator(7))
  return algorithm.build(name, net, o)
end

describe("meta-gradients against finite differences (tanh network, 2 inner steps)", function()
  local batch = random_batch(T.generator(8), 2, 2, {3})
  T.manual_seed(1)

  it("maml", function()
    check_against_differences(tanh_learner("maml", {inner_lr = 0.3, steps = 2, inner_loss_scale = 2}), batch, 1e-3, 2e-2)
  end)

  for _, kind in ipairs{"momentum", "adam"} do
    it("maml with the " .. kind .. " inner optimizer (second order through its moments)", function()
      local learner = tanh_learner("maml", {inner_lr = 0.1, steps = 3, inner_optimizer = kind, inner_momentum = 0.8})
      local grads = check_against_differences(learner, batch, 1e-3, 2e-2)
      local sgd = tanh_learner("maml", {inner_lr = 0.1, steps = 3})
      local _, sgd_grads = with_threads(1, sgd.meta_gradient, sgd, batch)
      assert.are_not.same(sgd_grads[1]:totable(), grads[1]:totable())
      -- and on threads: the same bits
      local function on(threads)
        return with_threads(threads, function()
          local l = algorithm.build("maml", conv_net(5), {inner_lr = 0.05, steps = 2, inner_optimizer = kind})
          local b = random_batch(T.generator(6), 4, 1, {1, 8, 8})
          local _, g = l:meta_gradient(b)
          return {g[1]:totable(), l:finetune(nil, b.support_x:select(1, 1), b.support_y:select(1, 1),
            b.query_x:select(1, 1), b.query_y:select(1, 1), 2)}
        end)
      end
      assert.same(on(1), on(2))
    end)
  end

  it("meta_sgd, including the step sizes, which receive gradients", function()
    local learner = tanh_learner("meta_sgd", {inner_lr = 0.3, steps = 2})
    assert.equals(2 * #learner.params, #learner.meta_params)
    assert.equals("fc1.weight.step_size", learner.meta_names[#learner.params + 1])
    local grads = check_against_differences(learner, batch, 1e-3, 2e-2)
    assert.is_true(grads[#grads]:abs():max():item() > 1e-4)
  end)

  it("anil; its body receives no inner update and its gradient is MAML's with a frozen body", function()
    local learner = tanh_learner("anil", {inner_lr = 0.3, steps = 2})
    assert.same({false, false, false, true, true}, learner.adapted)
    local fast = learner:adapt(learner.meta_params, batch.support_x:select(1, 1), batch.support_y:select(1, 1), 2, false)
    for i = 1, 3 do assert.equals(learner.meta_params[i], fast[i]) end
    assert.are_not.same(learner.meta_params[4]:totable(), fast[4]:totable())
    local grads = check_against_differences(learner, batch, 1e-3, 2e-2)
    local frozen = tanh_learner("maml", {inner_lr = 0.3, steps = 2})
    for i = 1, 3 do frozen.adapted[i] = false end
    local _, maml_grads = with_threads(1, frozen.meta_gradient, frozen, batch)
    for i, g in ipairs(grads) do helpers.near(g, maml_grads[i], 1e-5, learner.meta_names[i]) end
    assert.is_true(grads[1]:abs():max():item() > 1e-4) -- the body is learned by the outer loop
  end)

  it("mamlpp with the multi-step loss: every meta-parameter, the learned step sizes included", function()
    local learner = tanh_learner("mamlpp", {inner_lr = 0.2, steps = 3, epoch_iterations = 10, msl_epochs = 3})
    local weights = learner:step_weights(1)
    assert.equals(3, #weights)
    helpers.near(weights[1] + weights[2] + weights[3], 1, 1e-12, "the weights' sum")
    assert.is_true(weights[3] > weights[1])
    local grads = check_against_differences(learner, batch, 1e-3, 2e-2, {iteration = 11, iterations = 100}, weights)
    assert.equals("fc1.weight.lr", learner.meta_names[#learner.params + 1])
    assert.is_true(grads[#learner.params + 1]:abs():max():item() > 1e-5)
    assert.is_nil(learner:step_weights(3)) -- after msl_epochs: the last step alone
  end)

  it("mamlpp's per-step batch-norm weights on a tiny conv4, and more test steps than trained", function()
    local net = nn.conv4{ways = 3, channels = 2, image = 8, bn_scale = true}:init(T.generator(4))
    local learner = algorithm.build("mamlpp", net, {inner_lr = 0.1, steps = 2, multi_step_loss = false})
    assert.equals("bn1.weight.step2", learner.meta_names[learner.bn_index[2][3]])
    local b = random_batch(T.generator(5), 2, 2, {1, 8, 8})
    check_against_differences(learner, b, 1e-2, 5e-2, {iteration = 1, iterations = 10}, nil, "step2$")
    local accs = learner:finetune(nil, b.support_x:select(1, 1), b.support_y:select(1, 1), b.query_x:select(1, 1),
      b.query_y:select(1, 1), 4)
    assert.equals(5, #accs)
  end)

  it("mamlpp's annealings: first order up to second_order_epoch, a cosine meta learning rate", function()
    local learner = tanh_learner("mamlpp", {inner_lr = 0.2, steps = 2, epoch_iterations = 10, second_order_epoch = 1})
    assert.is_true(learner:is_first_order{iteration = 20})
    assert.is_false(learner:is_first_order{iteration = 21})
    helpers.near(learner:outer_lr(1, 100, 1e-3), 1e-3, 1e-12, "lr at the start")
    helpers.near(learner:outer_lr(51, 100, 1e-3), 1e-5 + (1e-3 - 1e-5) / 2, 1e-12, "lr half way")
    assert.has_error(function() tanh_learner("mamlpp", {bn_mode = "running"}) end)
  end)

  it("the checker fails on a detached meta-gradient (first order passed off as second)", function()
    local learner = tanh_learner("maml", {inner_lr = 0.3, steps = 2, first_order = true})
    learner.steps = 2
    assert.has_error(function() check_against_differences(learner, batch, 1e-3, 2e-2) end)
  end)
end)

describe("reptile's outer step", function()
  it("equals a hand computation: one inner Adam step, then theta <- theta + eps (W - theta)", function()
    local net = nn.linear(1, 1, {bias = false})
    local w0, lr, xs, ys = 0.7, 0.05, {1.0, -2.0}, {0.5, 1.5}
    ag.no_grad(function() net:parameters()[1]:fill_(w0) end)
    local learner = algorithm.build("reptile", net, {inner_lr = lr, steps = 1, inner_batch = 2, loss = "mse",
      metric = "mse", meta_step = 0.6, meta_step_final = 0.2})
    local col = function(t) return T.tensor(t):reshape{1, #t, 1} end
    local batch = {support_x = col(xs), support_y = col(ys), query_x = col(xs), query_y = col(ys)}
    local g = 0
    for i = 1, 2 do g = g + 2 * xs[i] * (w0 * xs[i] - ys[i]) / 2 end
    local v = 0.001 * g * g
    local w1 = w0 - lr * math.sqrt(1 - 0.999) * g / (math.sqrt(v) + 1e-8)
    local _, grads = with_threads(1, learner.meta_gradient, learner, batch, {iteration = 1, iterations = 10, seed = 3})
    helpers.near(grads[1]:item(), w0 - w1, 1e-5, "theta - W")
    local opt = learner:outer_optimizer()
    opt.lr = learner:outer_lr(1, 10)
    assert.equals(0.6, opt.lr)
    opt:step(learner.meta_params, grads)
    helpers.near(learner.meta_params[1]:item(), w0 + 0.6 * (w1 - w0), 1e-6, "theta after the outer step")
    helpers.near(learner:outer_lr(6, 10), 0.4, 1e-12, "epsilon half way")
  end)

  it("draws minibatches of inner_batch and eval_batch even above the task's examples, as the reference", function()
    -- (it used to cut a batch down to the task's examples without a word: eval_batch=10 on 5 support
    -- examples stepped on 5)
    local net = nn.mlp{sizes = {1, 4, 1}}
    net:init(T.generator(2))
    local learner = algorithm.build("reptile", net, {inner_lr = 0.01, steps = 2, inner_batch = 7, eval_batch = 9,
      loss = "mse", metric = "mse"})
    local sizes, forward = {}, net.forward
    net.forward = function(self, x, w)
      sizes[#sizes + 1] = x:size(1)
      return forward(self, x, w)
    end
    local col = function(t) return T.tensor(t):reshape{1, #t, 1} end
    local xs = {0.1, -0.4, 0.9}
    local batch = {support_x = col(xs), support_y = col(xs), query_x = col(xs), query_y = col(xs)}
    learner:meta_gradient(batch, {iteration = 1, iterations = 10, seed = 3})
    assert.same({7, 7, 3}, sizes) -- two inner steps on 7 of the 3 examples, then the queries
    sizes = {}
    learner.transductive = true
    local x = T.tensor(xs):reshape{3, 1}
    learner:finetune(learner.meta_params, x, x, x, x, 2)
    assert.same({3, 9, 3, 9, 3}, sizes)
    net.forward = nil
  end)

  it("refuses bn_mode=running and needs the per-meta-batch seed", function()
    assert.has_error(function() algorithm.build("reptile", conv_net(1), {bn_mode = "running"}) end,
      "reptile: bn_mode=running is not supported (Reptile's network normalises with batch statistics at "
      .. "meta-training and meta-test); use bn_mode=batch")
    local learner = algorithm.build("reptile", conv_net(1), {})
    local batch = random_batch(T.generator(1), 1, 1, {1, 8, 8})
    assert.has_error(function() learner:meta_gradient(batch) end,
      "reptile: meta_gradient needs ctx.seed (the run draws one per meta-batch)")
  end)
end)

-- ------------------------------------------------------------------ in the experiment runner

describe("algorithms in the experiment runner", function()
  local dirs = {}
  teardown(function() for _, d in ipairs(dirs) do os.execute("rm -rf '" .. d .. "'") end end)
  local tiny = {name = "tiny", task = "custom", model = "conv4", channels = 4, ways = 3, shots = 1, queries = 2,
    queries_test = 2, meta_batch = 2, steps_test = 1, steps_test_max = 1, iterations = 6, eval_every = 0,
    test_tasks = 2, checkpoint_every = 3, log_every = 1, progress = "none", threads = 2}
  local function run(overrides, host)
    return experiment.run(tiny, {overrides = overrides, source = helpers.synthetic_source(), host = host})
  end

  for _, case in ipairs{{"meta_sgd", "conv1.weight.step_size", "step_size$"}, {"mamlpp", "conv1.weight.lr", "%.lr$"}} do
    local name, first, pattern = case[1], case[2], case[3]
    it(name .. ": its step sizes are learned, checkpointed, and a resumed run equals an uninterrupted one", function()
      local dir = helpers.tmpdir("algorithms-spec")
      dirs[#dirs + 1] = dir
      local o = {out_dir = dir, algorithm = name, inner_lr = 0.3, steps = 2, epoch_iterations = 2}
      if name == "meta_sgd" then o.epoch_iterations = nil end
      local full = run(o)
      -- stopped after iteration 3 as by Ctrl-C (the schedules depend on the run's length: same length)
      local iteration = 0
      local half = run(o, {on_signal = function() end, signal_pending = function()
        iteration = iteration + 1
        return iteration == 3 and "SIGINT" or nil
      end})
      assert.equals(3, half.iteration)
      local resumed = run{resume = half.dir}
      assert.equals(6, resumed.iteration)
      local a = experiment.load_tree(full.dir .. "/checkpoint.bin")
      local b = experiment.load_tree(resumed.dir .. "/checkpoint.bin")
      local names = {}
      for i, entry in ipairs(a.shapes.params) do names[i] = entry[1] end
      assert.truthy(table.concat(names, " "):find(first, 1, true))
      local moved = false
      for i, p in ipairs(a.params) do
        assert.same(p:totable(), b.params[i]:totable())
        if names[i]:match(pattern) and math.abs(p:max():item() - 0.3) > 1e-6 then moved = true end
      end
      assert.is_true(moved, "the step sizes were not learned")
      local summary = require("json").decode(io.open(full.dir .. "/summary.json"):read("a"))
      assert.equals(name, summary.algorithm)
      assert.equals(0.3, summary.algorithm_options.inner_lr)
    end)
  end

  it("an algorithm key of another algorithm on the command line is an error; an unknown algorithm too", function()
    local ok, err = pcall(experiment.resolve, tiny, {algorithm = "reptile", first_order = true})
    assert.is_false(ok)
    assert.is_true(require("options").is_usage_error(err)) -- one message, exit status 2 (vm/main.c)
    err = tostring(err)
    assert.truthy(err:find("unknown config key 'first_order' on the command line (task custom, model conv4, "
      .. "algorithm reptile)", 1, true), err)
    ok, err = pcall(experiment.resolve, tiny, {algorithm = "mamlpp2"})
    assert.is_false(ok)
    err = tostring(err)
    assert.truthy(err:find("config key 'algorithm' expects one of maml, meta_sgd, anil, reptile, mamlpp", 1, true), err)
  end)

  it("an edited learner from build_learner is refused before training starts", function()
    local dir = helpers.tmpdir("algorithms-spec")
    dirs[#dirs + 1] = dir
    local ok, err = pcall(experiment.run, tiny, {overrides = {out_dir = dir}, source = helpers.synthetic_source(),
      build_learner = function(cfg, net, source)
        local learner = experiment.build_learner(cfg, net, source)
        learner.adapted[1] = false
        return learner
      end})
    assert.is_false(ok)
    assert.truthy(tostring(err):find("tiny (algorithm maml) on 2 threads: learner.adapted", 1, true), tostring(err))
  end)
end)

describe("an algorithm module is refused where it is not what it says (before anything runs)", function()
  local options_lib = require "options"
  local maml = require "algorithms.maml"
  local n = 0
  -- a module of the user's own, by a new name each time (algorithm.load checks a module once)
  local function module_named(prefix, make)
    n = n + 1
    local name = prefix .. n
    package.loaded[name] = make(name)
    return name
  end
  local function input_error_of(f, ...)
    local ok, err = pcall(f, ...)
    assert.is_false(ok)
    assert.is_true(options_lib.is_input_error(err), tostring(err))
    return err.message
  end

  it("algorithm.define refuses a field it does not know, naming the one meant, at the caller's line", function()
    local msg = input_error_of(function()
      local A = algorithm.define{name = "cc_typo", base = maml, keys = maml.keys, check_confg = function() end}
      return A -- (not a tail call: that frame would have no line)
    end)
    assert.matches("^.*algorithms_spec%.lua:%d+: algorithm%.define %(cc_typo%): unknown field 'check_confg' %(did "
      .. "you mean check_config%?%); the fields are name, base, doc, keys, check_config, check_learner$", msg)
    assert.matches("keys must be a list", input_error_of(algorithm.define, {name = "k", keys = 3}))
    assert.matches("check_learner must be a function, got string",
      input_error_of(algorithm.define, {name = "k", check_learner = "yes"}))
  end)

  it("a hook spelt wrong (inner_stp) would never be called: refused, naming the hook", function()
    local name = module_named("typo_hook", function(name)
      local A = algorithm.define{name = name, base = maml, keys = maml.keys}
      function A.new(net, o) return maml.setup(algorithm.instance(A, net, o), o) end
      function A.Learner:inner_stp(i, w, g) return w - g end -- luacheck: ignore self i
      function A.Learner:my_own_helper() end -- (a name far from every hook's is fine)
      return A
    end)
    assert.equals("algorithm " .. name .. " (module " .. name .. ") defines Learner:inner_stp, which nothing calls: did "
      .. "you mean Learner:inner_step, which maml calls? (a helper method of your own needs a name further from the "
      .. "hooks')", input_error_of(algorithm.load, name))
  end)

  it("an algorithm without task_meta_gradient or finetune is refused when loaded, not after training", function()
    local name = module_named("no_finetune", function(name)
      local A = algorithm.define{name = name}
      function A.new(net, o) return algorithm.instance(A, net, o) end
      function A.Learner:task_meta_gradient() end
      function A.Learner:fine_tune() end
      return A
    end)
    assert.equals("algorithm " .. name .. " (module " .. name .. ") has no method Learner:finetune, which every "
      .. "algorithm needs (docs/algorithms.md); did you mean it by Learner:fine_tune?", input_error_of(algorithm.load, name))
  end)

  it("a hook that returns the wrong kind of value is named, with what it should return", function()
    local function variant(method, f)
      local name = module_named("bad_" .. method, function(name)
        local A = algorithm.define{name = name, base = maml, keys = maml.keys}
        function A.new(net, o) return maml.setup(algorithm.instance(A, net, o), o) end
        A.Learner[method] = f
        return A
      end)
      return algorithm.build(name, conv_net(1), options.maml), name
    end
    local batch = random_batch(T.generator(9), 2, 1, {1, 8, 8})
    local function fails(learner, call, fragment)
      local ok, err = pcall(with_threads, 1, call, learner)
      assert.is_false(ok)
      assert.truthy(tostring(err):find(fragment, 1, true), tostring(err))
    end
    local learner, name = variant("inner_step", function() end)
    fails(learner, function(l) return l:meta_gradient(batch) end,
      name .. ": Learner:inner_step returned a nil for conv1.weight at inner step 1, not a tensor")
    learner, name = variant("query_loss", function(self, meta, fast, qx, qy)
      return self.loss(self:forward_at(meta, fast, qx, self.steps), qy)
    end)
    fails(learner, function(l) return l:meta_gradient(batch) end, name .. ": Learner:query_loss returned (a tensor, nil)")
    learner, name = variant("task_meta_gradient", function(self, ...)
      local loss, metric, grads = maml.Learner.task_meta_gradient(self, ...)
      return T.tensor{loss}, metric, grads
    end)
    fails(learner, function(l) return l:meta_gradient(batch) end,
      name .. ": Learner:task_meta_gradient returned (a tensor, number, table) for task 1")
    learner, name = variant("finetune", function() return 0.5 end)
    fails(learner, function(l)
      return l:evaluate(nil, 1, function()
        return batch.support_x:select(1, 1), batch.support_y:select(1, 1), batch.query_x:select(1, 1),
          batch.query_y:select(1, 1)
      end, 2)
    end, name .. ": Learner:finetune returned a number for task 1; expected a list of steps + 1 = 3 numbers")
  end)

  it("a key declared with a default of another type, an unknown field or type, twice, or as another's", function()
    local function with_keys(keys)
      return module_named("keyed", function(name)
        local A = algorithm.define{name = name, base = maml, keys = keys}
        function A.new(net, o) return maml.setup(algorithm.instance(A, net, o), o) end
        return A
      end)
    end
    local function refused(keys, fragment)
      local name = with_keys(keys)
      local msg = input_error_of(experiment.algorithm_keys, name)
      assert.truthy(msg:find("algorithm " .. name .. ": " .. fragment, 1, true), msg)
    end
    refused({{name = "lr_decay", type = "integer", default = 0.5, doc = "d"}},
      "key 'lr_decay' is declared an integer, but its default is 0.5 (a number)")
    refused({{name = "lr_decay", type = "number", default = "0.5", doc = "d"}},
      "key 'lr_decay' is declared a number, but its default is \"0.5\" (a string)")
    refused({{name = "lr_decay", type = {"a", "b"}, default = "c", doc = "d"}},
      "key 'lr_decay' is declared one of a, b, but its default is \"c\" (a string)")
    refused({{name = "lr_decay", type = "number", defualt = 0.5, doc = "d"}},
      "key 'lr_decay' has an unknown field 'defualt' (did you mean default?)")
    refused({{name = "lr_decay", type = "number", doc = "d"}}, "key 'lr_decay' has no default")
    refused({{name = "lr_decay", type = "float", default = 0.5, doc = "d"}},
      "key 'lr_decay' has an unknown type \"float\"; the types are \"integer\", \"number\", \"boolean\", \"string\", "
      .. "\"number_or_ways\" or a list of choices")
    refused({{name = "a", type = "number", default = 1}, {name = "a", type = "number", default = 2}},
      "key 'a' is declared twice (keys[1] and keys[2])")
    refused({{name = "lr-decay", type = "number", default = 1}}, "keys[1] has the name \"lr-decay\", but a key's name")
    -- a key of every experiment declared again would replace its default and meaning without a word
    local name = with_keys({{name = "meta_batch", type = "integer", default = 2, doc = "mine"}})
    local msg = input_error_of(experiment.resolve, {algorithm = name}, {})
    assert.equals("algorithm " .. name .. " declares the key 'meta_batch', which is a key of every experiment "
      .. "already: give it a name of its own", msg)
    -- and one declared as it should be is fine
    local fine = with_keys({{name = "lr_decay", type = "number", default = 0.5, doc = "d"},
      {name = "k", type = "integer", default = 2}, {name = "c", type = {"a", "b"}, default = "a"}})
    assert.equals(0.5, experiment.resolve({algorithm = fine}, {}).lr_decay)
  end)
end)
