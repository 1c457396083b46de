-- tests/lua/maml_spec.lua: the MAML learner (lua/maml.lua). The meta-gradient against finite
-- differences of the meta-loss, first order against second order in closed form, and evaluation
-- leaving the network untouched.
local T = require "tensor"
local ag = require "autograd"
local nn = require "nn"
local maml = require "maml"

-- a copy of t with element k (1-based, row-major) moved by delta
local function perturbed(t, k, delta)
  local flat = t:detach():reshape{-1}:totable()
  flat[k] = flat[k] + delta
  return T.tensor(flat):reshape(t:shape())
end

-- the meta-loss computed independently of maml.lua: for each task, `steps` plain gradient steps on
-- the support loss (no graph kept), then the query loss; averaged over tasks
local function meta_loss(net, params, adapted, batch, lr, steps, scale, loss_fn)
  local total, n = 0, batch.support_x:size(1)
  for t = 1, n do
    local sx, sy = batch.support_x:select(1, t), batch.support_y:select(1, t)
    local fast = {}
    for i, p in ipairs(params) do fast[i] = p:detach():requires_grad(true) end
    for _ = 1, steps do
      local g = ag.grad(loss_fn(net:forward(sx, fast), sy) * scale, fast, {allow_unused = true})
      local next_fast = {}
      for i, w in ipairs(fast) do
        next_fast[i] = w
        if adapted[i] and g[i] then
          next_fast[i] = ag.no_grad(function() return w - g[i] * lr end):requires_grad(true)
        end
      end
      fast = next_fast
    end
    total = total + ag.no_grad(function()
      return loss_fn(net:forward(batch.query_x:select(1, t), fast), batch.query_y:select(1, t)):item()
    end)
  end
  return total / n
end

-- central differences of meta_loss for the elements listed in probes {{param index, element}, ...}
local function check_meta_gradient(learner, batch, probes, eps, rtol, atol)
  local net, params = learner.net, learner.params
  -- on the calling thread: the specs' networks are built inline (no spec for the workers) and
  -- their learners edited in place, which threads refuse
  local parallel = require "parallel"
  local before = parallel.threads()
  parallel.set_threads(1)
  local ok, _, grads = pcall(learner.meta_gradient, learner, batch)
  parallel.set_threads(before)
  if not ok then error(_, 0) end
  local worst = 0
  for _, probe in ipairs(probes) do
    local i, k = probe[1], probe[2]
    local function at(delta)
      local ps = {}
      for j, p in ipairs(params) do ps[j] = (j == i) and perturbed(p, k, delta) or p end
      return meta_loss(net, ps, learner.adapted, batch, learner.inner_lr, learner.steps,
        learner.inner_loss_scale, learner.loss)
    end
    local numeric = (at(eps) - at(-eps)) / (2 * eps)
    local analytic = grads[i]:reshape{-1}:totable()[k]
    local err = math.abs(numeric - analytic)
    if not (err <= atol + rtol * math.abs(numeric)) then -- (a NaN fails)
      error(string.format("parameter %s element %d: finite differences %.6g, meta-gradient %.6g",
        learner.names[i], k, numeric, analytic), 2)
    end
    worst = math.max(worst, err)
  end
  return grads, worst
end

local random_batch = require("tests.lua.helpers").random_batch

local function all_probes(params)
  local probes = {}
  for i, p in ipairs(params) do
    for k = 1, p:numel() do probes[#probes + 1] = {i, k} end
  end
  return probes
end

describe("maml meta-gradient", function()
  it("equals finite differences of the meta-loss (tanh MLP, 2 inner steps, 2 tasks)", function()
    local gen = T.generator(11)
    local net = nn.sequential{nn.linear(2, 4), nn.tanh(), nn.linear(4, 3)} -- no spec: threads=1
    net:init(gen)
    local learner = maml.new{net = net, inner_lr = 0.5, steps = 2, inner_loss_scale = 3}
    local batch = random_batch(gen, 2, 3, 2, {2})
    local parallel = require "parallel"
    local before = parallel.threads()
    parallel.set_threads(1)
    local ok, grads = pcall(check_meta_gradient, learner, batch, all_probes(learner.params), 1e-2, 2e-2, 1e-3)
    -- and it is not the first-order gradient
    local fo = maml.new{net = net, inner_lr = 0.5, steps = 2, inner_loss_scale = 3, first_order = true}
    local _, fo_grads = fo:meta_gradient(batch)
    parallel.set_threads(before)
    assert(ok, grads)
    local diff = (grads[1] - fo_grads[1]):abs():max():item()
    assert.is_true(diff > 1e-2, "second and first order should differ, max difference " .. diff)
  end)

  it("equals finite differences on a tiny conv4 with batch norm (BN shift meta-learned only)", function()
    local gen = T.generator(12)
    local net = nn.conv4{ways = 3, channels = 2, image = 8}
    net:init(gen)
    ag.no_grad(function()
      for i, name in ipairs(net:parameter_names()) do
        if name:match("^bn") then net:parameters()[i]:copy_(T.randn({2}, gen) * 0.3) end
        if name == "fc.weight" then net:parameters()[i]:mul_(0.3) end
      end
    end)
    local learner = maml.new{net = net, inner_lr = 0.1, steps = 1, inner_loss_scale = 3}
    local batch = random_batch(gen, 2, 3, 2, {1, 8, 8})
    local probes = {}
    for i, p in ipairs(learner.params) do
      for _, k in ipairs{1, p:numel()} do probes[#probes + 1] = {i, k} end
    end
    local grads = check_meta_gradient(learner, batch, probes, 1e-3, 5e-2, 2e-3)
    -- the BN shifts are not adapted but do get a meta-gradient
    assert.is_false(learner.adapted[3])
    assert.is_true(grads[3]:abs():sum():item() > 0)
  end)

  -- Several inner steps through convolution and batch norm, every element checked. The network is
  -- smooth (tanh): with ReLU, central differences fail wherever a pre-activation crosses 0 within
  -- eps (on nn.conv4 over 3 steps, conv2.weight[36]: one-sided differences of 0.0603 and 0.0773 at
  -- 1e-3, the analytic 0.0604 on the side without the kink), which is no test of the gradient.
  it("equals finite differences through conv and batch norm over 3 inner steps, every element", function()
    local gen = T.generator(13)
    local net = nn.sequential{
      nn.conv2d(1, 2, 3, {stride = 2, padding = 1}), nn.batchnorm2d(2), nn.tanh(),
      nn.conv2d(2, 2, 3, {stride = 2, padding = 1}), nn.batchnorm2d(2, {adapt = false}), nn.tanh(),
      nn.flatten(), nn.linear(8, 3),
    }
    net:init(gen)
    local learner = maml.new{net = net, inner_lr = 0.1, steps = 3, inner_loss_scale = 3}
    local batch = random_batch(gen, 2, 3, 2, {1, 8, 8})
    local grads = check_meta_gradient(learner, batch, all_probes(learner.params), 1e-3, 5e-2, 2e-3)
    local parallel = require "parallel"
    local before = parallel.threads()
    parallel.set_threads(1) -- (an inline network: no spec for the workers)
    local fo = maml.new{net = net, inner_lr = 0.1, steps = 3, inner_loss_scale = 3, first_order = true}
    local _, fo_grads = fo:meta_gradient(batch)
    parallel.set_threads(before)
    local diff = 0
    for i = 1, #grads do diff = math.max(diff, (grads[i] - fo_grads[i]):abs():max():item()) end
    assert.is_true(diff > 1e-3, "second and first order should differ, max difference " .. diff)
  end)
end)

describe("the spec's meta-gradient check", function()
  local function setup()
    local gen = T.generator(11)
    local net = nn.sequential{nn.linear(2, 4), nn.tanh(), nn.linear(4, 3)}
    net:init(gen)
    return net, random_batch(gen, 2, 3, 2, {2})
  end

  it("fails on a learner that silently computes the first-order gradient", function()
    local net, batch = setup()
    local fo = maml.new{net = net, inner_lr = 0.5, steps = 2, inner_loss_scale = 3, first_order = true}
    local ok, err = pcall(check_meta_gradient, fo, batch, all_probes(fo.params), 1e-2, 2e-2, 1e-3)
    assert.is_false(ok)
    assert.matches("finite differences .*, meta%-gradient", err)
  end)

  it("fails on a meta-gradient that is NaN", function()
    local net, batch = setup()
    local learner = maml.new{net = net, inner_lr = 0.5, steps = 2, inner_loss_scale = 3}
    local meta_gradient = learner.meta_gradient
    function learner.meta_gradient(self, b)
      local stats, grads = meta_gradient(self, b)
      for i, g in ipairs(grads) do grads[i] = g * (0 / 0) end
      return stats, grads
    end
    local ok, err = pcall(check_meta_gradient, learner, batch, {{1, 1}}, 1e-2, 2e-2, 1e-3)
    assert.is_false(ok)
    assert.matches("meta%-gradient %-?nan", err)
  end)
end)

describe("maml first order vs second order", function()
  -- one weight w, prediction w x, MSE: L(w) = mean((w x - y)^2), L' = 2 mean(x (w x - y)),
  -- L'' = 2 mean(x^2). After one step w' = w - a Ls'(w):
  --   second order: d/dw Lq(w') = (1 - a Ls'') Lq'(w');   first order: Lq'(w')
  local sx, sy = {0.5, -1.0, 2.0}, {1.0, 0.3, -0.7}
  local qx, qy = {1.5, -0.2}, {0.4, 2.0}
  local w0, a = 0.7, 0.05
  local function mean(t, f) local s = 0; for i = 1, #t do s = s + f(i) end; return s / #t end
  local function d1(xs, ys, w) return mean(xs, function(i) return 2 * xs[i] * (w * xs[i] - ys[i]) end) end
  local function d2(xs) return mean(xs, function(i) return 2 * xs[i] ^ 2 end) end
  local function batch()
    local function col(t) return T.tensor(t):reshape{1, #t, 1} end
    return {support_x = col(sx), support_y = col(sy), query_x = col(qx), query_y = col(qy)}
  end
  local function learner(first_order, steps)
    local net = nn.linear(1, 1, {bias = false})
    ag.no_grad(function() net:parameters()[1]:fill_(w0) end)
    return maml.new{net = net, inner_lr = a, steps = steps or 1, loss = "mse", first_order = first_order}
  end

  it("one step: the two differ exactly by the factor (1 - a L'')", function()
    local w1 = w0 - a * d1(sx, sy, w0)
    local fo_expected = d1(qx, qy, w1)
    local so_expected = (1 - a * d2(sx)) * fo_expected
    local _, so = learner(false):meta_gradient(batch())
    local _, fo = learner(true):meta_gradient(batch())
    assert.near(so_expected, so[1]:item(), 1e-5)
    assert.near(fo_expected, fo[1]:item(), 1e-5)
    assert.near(-a * d2(sx) * fo_expected, so[1]:item() - fo[1]:item(), 1e-5)
  end)

  it("two steps: second order carries (1 - a L'')^2", function()
    local w1 = w0 - a * d1(sx, sy, w0)
    local w2 = w1 - a * d1(sx, sy, w1)
    local _, so = learner(false, 2):meta_gradient(batch())
    local _, fo = learner(true, 2):meta_gradient(batch())
    assert.near((1 - a * d2(sx)) ^ 2 * d1(qx, qy, w2), so[1]:item(), 1e-5)
    assert.near(d1(qx, qy, w2), fo[1]:item(), 1e-5)
  end)

  it("a variant's own meta-parameter gets its gradient: Meta-SGD d/da Lq(w - a Ls'(w)) = -Ls'(w) Lq'(w')", function()
    local l = learner(false)
    local step = l:add_meta_parameter("w.step_size", T.full({1, 1}, a))
    function l:inner_step(_, w, g) return w - g * step end -- luacheck: ignore self
    local stats, grads = l:meta_gradient(batch())
    assert.equals(2, #grads)
    local w1 = w0 - a * d1(sx, sy, w0)
    assert.near(-d1(sx, sy, w0) * d1(qx, qy, w1), grads[2]:item(), 1e-5)
    assert.near((1 - a * d2(sx)) * d1(qx, qy, w1), grads[1]:item(), 1e-5)
    assert.is_number(stats.loss)
  end)

  it("reports the mean query loss after adaptation", function()
    local w1 = w0 - a * d1(sx, sy, w0)
    local expected = mean(qx, function(i) return (w1 * qx[i] - qy[i]) ^ 2 end)
    local stats = learner(false):meta_gradient(batch())
    assert.near(expected, stats.loss, 1e-5)
  end)
end)

describe("maml on threads", function()
  it("meta_gradient on the parallel module's threads equals the serial one, bit for bit", function()
    local parallel = require "parallel"
    local before = parallel.threads()
    local net = nn.conv4{ways = 3, channels = 4, image = 8}
    net:init(T.generator(31))
    local learner = maml.new{net = net, inner_lr = 0.4, inner_loss_scale = 3, steps = 2}
    assert.is_true(learner:can_run_parallel())
    local batch = random_batch(T.generator(32), 4, 3, 2, {1, 8, 8})
    parallel.set_threads(1)
    parallel.reset_stats()
    local s1, g1 = learner:meta_gradient(batch)
    local serial = parallel.stats()
    parallel.set_threads(2)
    parallel.reset_stats()
    local s2, g2 = learner:meta_gradient(batch)
    local threaded = parallel.stats()
    parallel.set_threads(before)
    assert.equals(0, serial.threaded_maps)
    -- the two-thread call did go through the pool, one job per task, and the learner's first threaded
    -- call sent task 1 once more, to a worker alone (its check against this thread, lua/algorithm.lua)
    assert.is_true(threaded.threaded_maps >= 1, "no parallel.map with worker threads")
    assert.equals(4 + 1, threaded.jobs)
    assert.equals(s1.loss, s2.loss)
    assert.equals(s1.metric, s2.metric)
    assert.equals(#g1, #g2)
    for i = 1, #g1 do assert.same(g1[i]:totable(), g2[i]:totable()) end
    -- a learner with a replaced inner step cannot be rebuilt by the workers: refused, not run as MAML
    function learner:inner_step(_, w, g) return w - g * 0.1 end -- luacheck: ignore self
    assert.is_false(learner:can_run_parallel())
    parallel.set_threads(2)
    local ok, err = pcall(learner.meta_gradient, learner, batch)
    parallel.set_threads(before)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("learner.inner_step of the maml learner was added after it was built", 1, true))
  end)

  it("each learner setting reaches the workers: 2 threads give 1 thread's bits, and the settings' bits differ", function()
    -- a worker that ignored its job's setting (computing the default learner's gradient) would give the
    -- default's bits on 2 threads: the comparison catches it because every variant's bits differ from it
    local parallel = require "parallel"
    local before = parallel.threads()
    local net = nn.conv4{ways = 3, channels = 4, image = 8}
    net:init(T.generator(33))
    local batch = random_batch(T.generator(34), 4, 3, 2, {1, 8, 8})
    local base = {net = net, inner_lr = 0.4, inner_loss_scale = 3, steps = 2}
    local variants = {{}, {first_order = true}, {steps = 1}, {inner_lr = 0.2}, {inner_loss_scale = 1}}
    local serial_bits = {}
    for v, changes in ipairs(variants) do
      local opts = {}
      for k, x in pairs(base) do opts[k] = x end
      for k, x in pairs(changes) do opts[k] = x end
      local learner = maml.new(opts)
      assert.is_true(learner:can_run_parallel())
      parallel.set_threads(1)
      local _, g1 = learner:meta_gradient(batch)
      parallel.set_threads(2)
      parallel.reset_stats()
      local _, g2 = learner:meta_gradient(batch)
      local stats = parallel.stats()
      parallel.set_threads(before)
      -- (4 tasks, and task 1 once more on a worker: the new learner's check against this thread)
      assert.is_true(stats.threaded_maps >= 1 and stats.jobs == 4 + 1, "variant " .. v .. " did not use the pool")
      for i = 1, #g1 do assert.same(g1[i]:totable(), g2[i]:totable()) end
      serial_bits[v] = g1[1]:totable()
      if v > 1 then assert.are_not.same(serial_bits[1], serial_bits[v], "variant " .. v .. " = the default") end
    end
  end)
end)

describe("maml inner loop", function()
  it("leaves parameters that are not adapted as the same tensors", function()
    local net = nn.conv4{ways = 2, channels = 2, image = 8}
    net:init(T.generator(1))
    local learner = maml.new{net = net, inner_lr = 0.4, inner_loss_scale = 2}
    local b = random_batch(T.generator(2), 1, 2, 1, {1, 8, 8})
    local fast = learner:adapt(learner.params, b.support_x:select(1, 1), b.support_y:select(1, 1), 1, false)
    for i, p in ipairs(learner.params) do
      if learner.adapted[i] then
        assert.are_not.equal(p, fast[i])
      else
        assert.equal(p, fast[i])
      end
    end
  end)

  it("inner_loss_scale multiplies the inner step (lr 0.4 on N x mean = lr 2.0 on the mean, N = 5)", function()
    local net = nn.sequential{nn.linear(3, 5)}
    net:init(T.generator(3))
    local b = random_batch(T.generator(4), 1, 5, 1, {3})
    local x, y = b.support_x:select(1, 1), b.support_y:select(1, 1)
    local scaled = maml.new{net = net, inner_lr = 0.4, inner_loss_scale = 5}:adapt(net:parameters(), x, y, 1, false)
    local plain = maml.new{net = net, inner_lr = 2.0}:adapt(net:parameters(), x, y, 1, false)
    for i = 1, #scaled do
      assert.is_true((scaled[i] - plain[i]):abs():max():item() < 1e-6)
    end
  end)
end)

describe("maml evaluation", function()
  local function setup(bn_mode)
    local net = nn.conv4{ways = 3, channels = 4, image = 8}
    net:init(T.generator(21))
    local learner = maml.new{net = net, inner_lr = 0.4, inner_loss_scale = 3, bn_mode = bn_mode}
    local b = random_batch(T.generator(22), 1, 3, 2, {1, 8, 8})
    return net, learner, b.support_x:select(1, 1), b.support_y:select(1, 1), b.query_x:select(1, 1),
      b.query_y:select(1, 1)
  end

  it("finetune reports step 0 as the unadapted accuracy and changes neither parameters nor buffers", function()
    local net, learner, sx, sy, qx, qy = setup("batch")
    local before = {}
    for i, p in ipairs(net:parameters()) do before[i] = p:clone() end
    local buffers = {}
    for i, b in ipairs(net:buffers()) do buffers[i] = b:clone() end
    local acc0 = ag.no_grad(function() return T.accuracy(net:forward(qx), qy) end)
    -- that forward updated the running statistics; take them as the reference now
    for i, b in ipairs(net:buffers()) do buffers[i] = b:clone() end
    local accs = learner:finetune(learner.params, sx, sy, qx, qy, 5)
    assert.equals(6, #accs)
    assert.equals(acc0, accs[1])
    for i, p in ipairs(net:parameters()) do assert.same(before[i]:totable(), p:totable()) end
    for i, b in ipairs(net:buffers()) do assert.same(buffers[i]:totable(), b:totable()) end
    -- adapting on the support set fits it: 10 steps reach full support accuracy
    local fit = learner:finetune(learner.params, sx, sy, sx, sy, 10)
    assert.equals(1, fit[11])
  end)

  it("bn_mode=running evaluates with the running statistics", function()
    local net, learner, sx, sy, qx, qy = setup("running")
    local accs = learner:finetune(learner.params, sx, sy, qx, qy, 0)
    net:train(false)
    local expected = ag.no_grad(function() return T.accuracy(net:forward(qx), qy) end)
    net:train(true)
    assert.equals(expected, accs[1])
    assert.is_true(net.is_training)
  end)

  it("evaluate on the parallel module's threads gives the serial table, bit for bit", function()
    local parallel = require "parallel"
    local before = parallel.threads()
    local net = nn.conv4{ways = 3, channels = 4, image = 8}
    net:init(T.generator(41))
    local learner = maml.new{net = net, inner_lr = 0.4, inner_loss_scale = 3}
    local b = random_batch(T.generator(42), 11, 3, 2, {1, 8, 8}) -- 11 tasks: not a multiple of a batch
    local function next_task(t)
      return b.support_x:select(1, t), b.support_y:select(1, t), b.query_x:select(1, t), b.query_y:select(1, t)
    end
    parallel.set_threads(1)
    local serial = learner:evaluate(nil, 11, next_task, 3)
    parallel.set_threads(2)
    parallel.reset_stats()
    local ok, threaded = pcall(learner.evaluate, learner, nil, 11, next_task, 3)
    local stats = parallel.stats()
    parallel.set_threads(before)
    assert.is_true(ok, tostring(threaded))
    -- 8 tasks, then 3, each batch through the pool with its worker thread, and before them task 1 on a
    -- worker alone (the learner's first threaded evaluate, checked against this thread)
    assert.same({3, 3, 12}, {stats.maps, stats.threaded_maps, stats.jobs})
    assert.equals(11, threaded.n)
    assert.same(serial, threaded)
    -- stopping early keeps the tasks drawn before the stop
    local n = 0
    parallel.set_threads(2)
    local part = learner:evaluate(nil, 11, next_task, 3, function() n = n + 1 return n > 5 end)
    parallel.set_threads(before)
    assert.equals(5, part.n)
  end)

  it("summarize gives mean, population std and 1.96 std / sqrt(n)", function()
    local s = maml.summarize{{1, 0.5}, {0, 0.5}, {1, 0.5}, {0, 0.5}}
    assert.same({0.5, 0.5}, s.mean)
    assert.near(0.5, s.std[1], 1e-12)
    assert.near(1.96 * 0.5 / 2, s.ci95[1], 1e-12)
    assert.equals(0, s.ci95[2])
    assert.equals(4, s.n)
  end)
end)
