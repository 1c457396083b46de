-- Reptile (Nichol, Achiam and Schulman 2018), Algorithm 2 (batched), as in openai/supervised-reptile:
--
--   for iteration = 1, 2, ...:
--     sample tasks tau_1 .. tau_n
--     for each task i: W_i = Adam^k(theta, tau_i)   (k = steps inner iterations on minibatches of
--                                                    inner_batch examples of the task's data)
--     theta <- theta + epsilon * mean_i (W_i - theta)
--   epsilon decays linearly from meta_step to meta_step_final over the iterations.
--
-- No gradient goes through the inner loop. The outer step is plain SGD at epsilon on the "gradient"
-- theta - mean_i W_i (what meta_gradient returns), so the outer optimizer's state is checkpointed
-- like MAML's Adam. Training tasks have train_shots examples per class (the run's train_shots key);
-- their queries are only used to report the loss and accuracy after adaptation.
-- Inner Adam: beta1 = 0, beta2 = 0.999, eps = 1e-8 and TensorFlow's update
-- w -= lr * sqrt(1 - beta2^t) * m / (sqrt(v) + eps), as the reference code's
-- AdamOptimizer(beta1=0). Differences from that code: the Adam state starts afresh for every task
-- (the reference keeps its moments from task to task, which makes a task's result depend on the
-- tasks before it, hence on the number of threads), and minibatches are drawn with a generator
-- seeded per task from the run's generator.
-- Evaluation: Adam for steps_test iterations on minibatches of eval_batch support examples, then
-- predictions on the queries: all at once (transductive=true: batch norm sees the whole query set),
-- or one query at a time together with the support set (transductive=false, the reference default).
local T = require "tensor"
local ag = require "autograd"
local algorithm = require "algorithm"

-- (a key of meta-training alone: with eval_only=true, set on the command line, it is an error)
local TRAINING = {key = "eval_only", values = {false}}

local A = algorithm.define{
  name = "reptile",
  doc = "Reptile (Nichol et al. 2018): Adam on each task, then a step toward the adapted weights",
  keys = {
    {name = "inner_lr", type = "number", default = 0.001, doc = "Adam step size of the inner loop"},
    {name = "steps", type = "integer", default = 5, doc = "inner Adam iterations per training task",
     only = TRAINING},
    {name = "inner_batch", type = "integer", default = 10,
     doc = "examples per inner minibatch (training; above ways x train_shots, examples repeat as in the reference)",
     only = TRAINING},
    {name = "train_shots", type = "integer", default = 10, doc = "examples per class of a training task",
     only = TRAINING},
    {name = "eval_batch", type = "integer", default = 5,
     doc = "examples per inner minibatch (evaluation; above the support set's size, examples repeat)"},
    {name = "meta_step", type = "number", default = 1.0, doc = "outer step size epsilon at the start",
     only = TRAINING},
    {name = "meta_step_final", type = "number", default = 0.0, doc = "outer step size at the end (linear decay)",
     only = TRAINING},
    {name = "transductive", type = "boolean", default = false,
     doc = "evaluation: predict all queries in one batch (batch-norm statistics of the query set)"},
  },
  check_config = function(cfg, set)
    if cfg.task == "sinusoid" and set("shots") then
      return "shots", "config key 'shots' has no effect with algorithm reptile on task sinusoid: its training tasks "
        .. "have train_shots points and its test tasks shots_test: remove it, or set train_shots"
    end
    if set("meta_lr") then
      return "meta_lr", "config key 'meta_lr' has no effect with algorithm reptile, whose outer step is SGD at "
        .. "meta_step (decaying linearly to meta_step_final), not Adam: remove it, or set meta_step"
    end
    if cfg.bn_mode == "running" then
      return "bn_mode", "config key 'bn_mode' must be batch with algorithm reptile, whose network normalises with "
        .. "batch statistics at meta-training and meta-test: remove bn_mode=running"
    end
  end,
  check_learner = function(learner, cfg, set)
    -- (batch norm is what makes a query's prediction depend on the others: its layers keep buffers)
    if learner.transductive and set("transductive") and #learner.net:buffers() == 0 then
      return "transductive", string.format("config key 'transductive' is true, but network %s has no batch norm, "
        .. "so its queries are predicted the same one at a time or all at once: remove transductive", tostring(cfg.model))
    end
  end,
}
local Learner = A.Learner
Learner.uses_seed = true -- meta_gradient's ctx carries a seed for the minibatch draws

local function positive(o, name)
  if math.type(o[name]) ~= "integer" or o[name] < 1 then
    error(string.format("reptile.new: '%s' must be a positive integer, got %s", name, tostring(o[name])), 3)
  end
end

function A.new(net, o)
  local self = algorithm.instance(A, net, o)
  self.inner_lr = o.inner_lr or 0.001
  self.steps = o.steps or 5
  self.inner_batch, self.eval_batch = o.inner_batch or 10, o.eval_batch or 5
  self.meta_step, self.meta_step_final = o.meta_step or 1.0, o.meta_step_final or 0.0
  self.transductive = o.transductive == true
  self.train_shots = o.train_shots or 10 -- the runner samples training tasks with this many per class
  local loss, metric = o.loss or "cross_entropy", o.metric or "accuracy"
  self.loss, self.metric = algorithm.losses[loss], algorithm.metrics[metric]
  if not self.loss or not self.metric then
    error("reptile.new: loss and metric must be named (" .. tostring(loss) .. ", " .. tostring(metric) .. ")", 2)
  end
  for _, name in ipairs{"steps", "inner_batch", "eval_batch", "train_shots"} do positive(self, name) end
  if (o.bn_mode or "batch") ~= "batch" then
    error("reptile: bn_mode=" .. tostring(o.bn_mode) .. " is not supported (Reptile's network normalises with "
      .. "batch statistics at meta-training and meta-test); use bn_mode=batch", 2)
  end
  return self
end

--- The outer optimizer: SGD, whose step size outer_lr sets every iteration.
function Learner:outer_optimizer()
  return require("optim").sgd{lr = self.meta_step}
end

--- epsilon at an iteration (1-based): linear from meta_step to meta_step_final.
function Learner:outer_lr(iteration, iterations)
  local done = (iteration - 1) / math.max(iterations, 1)
  return done * self.meta_step_final + (1 - done) * self.meta_step
end

-- minibatches of `size` indices into 1..n: a shuffled pass, then another, a batch may span two
-- passes (the reference's _mini_batches without replacement); a size above n takes examples of the
-- next passes too, as there (inner_batch=20 on a task of 5 examples: each example 4 times a batch)
local function minibatches(gen, n, size)
  local order, pos = gen:permutation(n), 0
  return function()
    local out = {}
    for k = 1, size do
      pos = pos + 1
      if pos > n then order, pos = gen:permutation(n), 1 end
      out[k] = order[pos]
    end
    return out
  end
end

local function rows(x, idx)
  local list = {}
  for k, i in ipairs(idx) do list[k] = x:select(1, i) end
  return T.stack(list, 1)
end

-- k Adam iterations on minibatches of (x, y) from the weights w (a list of leaves); returns the new
-- list. `after(step, w)` is called after each iteration (evaluation reports there).
function Learner:train_on(w, x, y, k, size, gen, after)
  local n = x:size(1)
  local next_batch = minibatches(gen, n, size)
  local idx = {}
  for i, a in ipairs(self.adapted) do
    if a then idx[#idx + 1] = i end
  end
  local v, beta2, eps = {}, 0.999, 1e-8
  for step = 1, k do
    local b = next_batch()
    local list = {}
    for m, i in ipairs(idx) do list[m] = w[i] end
    local loss = self.loss(self.net:forward(rows(x, b), w), rows(y, b))
    local grads = ag.grad(loss, list, {allow_unused = true})
    local lr = self.inner_lr * math.sqrt(1 - beta2 ^ step) -- beta1 = 0: m = g, no bias correction of m
    ag.no_grad(function()
      for m, i in ipairs(idx) do
        local g = grads[m]
        if g ~= nil then
          v[i] = v[i] and (v[i] * beta2 + (g * g) * (1 - beta2)) or (g * g) * (1 - beta2)
          w[i] = (w[i] - g / (v[i]:sqrt() + eps) * lr):detach():requires_grad(true)
        end
      end
    end)
    if after then after(step, w) end
  end
  return w
end

local function leaves(self, meta)
  local w = {}
  for i = 1, #self.params do w[i] = meta[i]:detach():requires_grad(self.adapted[i] == true) end
  return w
end

--- One task: W = Adam^steps(theta) on the support set (train_shots per class); the "gradient"
--- theta - W (nil for parameters the inner loop does not adapt), and the query loss and metric at W.
function Learner:task_meta_gradient(meta, sx, sy, qx, qy, ctx)
  meta = self:complete(meta)
  if not (ctx and ctx.seed) then error("reptile: meta_gradient needs ctx.seed (the run draws one per meta-batch)", 0) end
  local gen = T.generator(ctx.seed * 4096 + (ctx.task or 1))
  self.net:train(true)
  self.net:update_buffers(false)
  local w = self:train_on(leaves(self, meta), sx, sy, self.steps, self.inner_batch, gen)
  local grads = {}
  ag.no_grad(function()
    for i = 1, #self.params do
      if self.adapted[i] then grads[i] = meta[i]:detach() - w[i]:detach() end
    end
  end)
  local out = ag.no_grad(function() return self.net:forward(qx, w) end)
  return self.loss(out, qy):item(), self.metric(out, qy), grads
end

-- the query predictions of the weights w (see the header: transductive or one query at a time)
function Learner:predict(w, sx, qx)
  return ag.no_grad(function()
    if self.transductive then return self.net:forward(qx, w) end
    local out = {}
    for j = 1, qx:size(1) do
      local x = T.cat({sx, qx:narrow(1, j, 1)}, 1)
      out[j] = self.net:forward(x, w):select(1, x:size(1))
    end
    return T.stack(out, 1)
  end)
end

--- Meta-test one task: the query metric after 0..steps Adam iterations on the support set.
function Learner:finetune(meta, sx, sy, qx, qy, steps)
  meta = self:complete(meta)
  local results = {}
  self.net:with_mode(true, false, function() -- batch statistics, the running ones left as they are
    local w = leaves(self, meta)
    results[1] = self.metric(self:predict(w, sx, qx), qy)
    self:train_on(w, sx, sy, steps, self.eval_batch, T.generator(1),
      function(step, now) results[step + 1] = self.metric(self:predict(now, sx, qx), qy) end)
  end)
  return results
end

return A
