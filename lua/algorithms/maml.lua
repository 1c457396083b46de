-- MAML (Finn et al. 2017), Algorithm 2, and its first-order approximation (FOMAML).
--
--   for each task i of the meta-batch:
--     theta_i' = theta - alpha * grad_theta L_support(f_theta)        (`steps` times, from theta_i')
--     g_i      = grad_theta L_query(f_theta_i')                       (through the inner steps: exact
--                                                                      second order; first_order=true
--                                                                      treats the inner gradients as
--                                                                      constants)
--   theta <- Adam(theta, mean_i g_i)
--
-- Which network parameters the inner loop adapts is net:adapted() (the paper's batch-norm shifts are
-- meta-learned only); variants change that (anil.lua) or the inner update (meta_sgd.lua) by
-- overriding the methods below. The inner loss is inner_loss_scale x the mean support loss (the
-- paper's code steps on N x mean cross-entropy: inner_loss_scale = "ways"). The meta-loss is the
-- mean query loss (the paper's code: N x it, which Adam does not see).
-- bn_mode "batch" normalises with the batch statistics at meta-test too (the paper's code,
-- transductive); "running" uses the running statistics accumulated in meta-training.
local T = require "tensor"
local ag = require "autograd"
local algorithm = require "algorithm"

local A = algorithm.define{
  name = "maml",
  doc = "MAML (Finn et al. 2017): SGD inner loop, exact second-order meta-gradient (first_order: FOMAML)",
  keys = {
    {name = "inner_lr", type = "number", default = 0.4, doc = "inner-loop SGD step size"},
    {name = "steps", type = "integer", default = 1, doc = "inner SGD steps in meta-training",
     only = {key = "eval_only", values = {false}, instead = "steps_test"}},
    {name = "first_order", type = "boolean", default = false,
     doc = "FOMAML: do not differentiate through the inner gradients", only = {key = "eval_only", values = {false}}},
    {name = "inner_loss_scale", type = "number_or_ways", default = "ways",
     doc = "factor of the inner loss: \"ways\" = N x mean cross-entropy (the paper's code), 1 = plain mean"},
    {name = "inner_optimizer", type = {"sgd", "momentum", "adam"}, default = "sgd",
     doc = "inner-loop optimizer, differentiable at second order: sgd, momentum (heavy ball), adam"},
    {name = "inner_momentum", type = "number", default = 0.9,
     doc = "momentum's coefficient, and Adam's beta1 (beta2 = 0.999); only with inner_optimizer momentum|adam",
     only = {key = "inner_optimizer", values = {"momentum", "adam"}}},
  },
}
local Learner = A.Learner

--- A.new(net, {inner_lr=, steps=1, first_order=false, inner_loss_scale=1|"ways", ways=,
---   loss="cross_entropy"|"mse"|fn, metric="accuracy"|"mse"|fn, bn_mode="batch"|"running"})
function A.new(net, o)
  local self = algorithm.instance(A, net, o)
  A.setup(self, o)
  return self
end

--- The MAML fields of a learner (variants call it from their own new()).
function A.setup(self, o)
  local loss = o.loss or "cross_entropy"
  local metric = o.metric or (loss == "mse" and "mse" or "accuracy")
  self.inner_lr = o.inner_lr or error(self.algorithm .. ".new: 'inner_lr' is required", 3)
  self.steps = o.steps or 1
  self.first_order = o.first_order == true
  local scale = o.inner_loss_scale or 1
  if scale == "ways" then scale = (loss == "mse") and 1 or (o.ways or error(self.algorithm
    .. ".new: inner_loss_scale=\"ways\" needs 'ways'", 3)) end
  self.inner_loss_scale = scale
  self.loss_name = type(loss) == "string" and loss or "custom"
  self.loss = type(loss) == "function" and loss or algorithm.losses[loss]
  self.metric_name = type(metric) == "string" and metric or "custom"
  self.metric = type(metric) == "function" and metric or algorithm.metrics[metric]
  self.bn_mode = o.bn_mode or "batch"
  self.inner_optimizer = o.inner_optimizer or "sgd"
  self.inner_momentum = o.inner_momentum or 0.9
  if self.inner_optimizer ~= "sgd" and self.inner_optimizer ~= "momentum" and self.inner_optimizer ~= "adam" then
    error(self.algorithm .. ".new: inner_optimizer must be sgd, momentum or adam, got "
      .. tostring(self.inner_optimizer), 3)
  end
  if not self.loss then error(self.algorithm .. ".new: unknown loss '" .. tostring(loss) .. "'", 3) end
  if not self.metric then error(self.algorithm .. ".new: unknown metric '" .. tostring(metric) .. "'", 3) end
  if self.bn_mode ~= "batch" and self.bn_mode ~= "running" then
    error(self.algorithm .. ".new: bn_mode must be \"batch\" or \"running\", got " .. tostring(self.bn_mode), 3)
  end
  return self
end

--- The direction of the inner update of parameter i at step `step` from its gradient g: g itself
--- (sgd), the heavy-ball velocity v = momentum v + g (momentum), or Adam's bias-corrected
--- m / (sqrt(v) + eps) with beta1 = inner_momentum, beta2 = 0.999 and eps inside the square root
--- (sqrt(v + eps^2)), so that its derivative stays finite where a gradient is exactly zero. Built from
--- differentiable ops: with create_graph the second-order meta-gradient goes through it. `state`
--- holds the optimizer's moments from step to step of one task.
function Learner:inner_direction(i, g, step, state)
  local kind = self.inner_optimizer
  if kind == "sgd" then return g end
  local b1 = self.inner_momentum
  if kind == "momentum" then
    state.v[i] = state.v[i] and state.v[i] * b1 + g or g
    return state.v[i]
  end
  state.m[i] = state.m[i] and state.m[i] * b1 + g * (1 - b1) or g * (1 - b1)
  state.v[i] = state.v[i] and state.v[i] * 0.999 + g * g * 0.001 or g * g * 0.001
  return (state.m[i] / (1 - b1 ^ step)) / ((state.v[i] / (1 - 0.999 ^ step) + 1e-16):sqrt())
end

--- A new (empty) inner-optimizer state.
function Learner:inner_state() -- luacheck: ignore self
  return {m = {}, v = {}}
end

--- The inner update of parameter i at inner step `step` (1-based) along the direction g: plain SGD.
function Learner:inner_step(i, w, g, meta, step) -- luacheck: ignore meta step
  return w:sub_scaled(g, self.inner_lr) -- (w - g * inner_lr in one op, the same bits)
end

--- The network's output on x with the fast weights at inner step `step` (0: before adaptation);
--- variants with per-step parameters (mamlpp.lua) take them from meta here.
function Learner:forward_at(meta, fast, x, step) -- luacheck: ignore meta step
  return self.net:forward(x, fast)
end

--- The support loss the inner loop descends at step `step` (inner_loss_scale x the mean loss).
function Learner:inner_loss(fast, x, y, step, meta)
  local loss = self.loss(self:forward_at(meta, fast, x, step), y)
  if self.inner_loss_scale ~= 1 then loss = loss * self.inner_loss_scale end
  return loss
end

--- Inner steps first_step .. first_step + steps - 1 on (x, y) from the fast weights `fast` (a list
--- over the network's parameters); returns new fast weights (entries not adapted are the given
--- tensors) and the inner optimizer's state (pass it back to continue). create_graph keeps the steps
--- differentiable (second order).
function Learner:adapt_from(meta, fast, x, y, steps, create_graph, first_step, state)
  state = state or self:inner_state()
  local out = {}
  for i, p in ipairs(fast) do out[i] = p end
  local idx = {}
  for i, a in ipairs(self.adapted) do
    if a then idx[#idx + 1] = i end
  end
  for s = first_step or 1, (first_step or 1) + steps - 1 do
    local list = {}
    for n, i in ipairs(idx) do list[n] = out[i] end
    local loss = self:inner_loss(out, x, y, s, meta)
    if not T.is_tensor(loss) then
      error(string.format("%s: Learner:inner_loss returned a %s at inner step %d, not a tensor (the support loss to "
        .. "differentiate)", self.algorithm, type(loss), s), 0)
    end
    local grads = ag.grad(loss, list, {create_graph = create_graph, allow_unused = true})
    for n, i in ipairs(idx) do
      if grads[n] ~= nil then
        out[i] = self:inner_step(i, out[i], self:inner_direction(i, grads[n], s, state), meta, s)
        if not T.is_tensor(out[i]) then
          error(string.format("%s: Learner:inner_step returned a %s for %s at inner step %d, not a tensor (the "
            .. "parameter's new value)", self.algorithm, type(out[i]), tostring(self.names[i]), s), 0)
        end
      end
    end
  end
  return out, state
end

--- The inner loop from the meta-parameters: `steps` steps on (x, y); returns the fast weights.
function Learner:adapt(meta, x, y, steps, create_graph)
  meta = self:complete(meta)
  return (self:adapt_from(meta, self:net_params(meta), x, y, steps, create_graph, 1))
end

--- The query loss of a task after adaptation, differentiable with respect to meta.
function Learner:query_loss(meta, fast, qx, qy, ctx) -- luacheck: ignore ctx
  local out = self:forward_at(meta, fast, qx, self.steps)
  return self.loss(out, qy), out
end

--- One task's meta-gradient: query loss and metric after adapting on the support set, and the
--- gradient of the query loss with respect to meta (a list; nil where an entry had no influence).
function Learner:task_meta_gradient(meta, sx, sy, qx, qy, ctx)
  meta = self:complete(meta)
  self.net:train(true)
  self.net:update_buffers(self.comm == nil) -- split over MPI ranks: no rank sees every task
  local fast = self:adapt(meta, sx, sy, self.steps, not self:is_first_order(ctx))
  local loss, out = self:query_loss(meta, fast, qx, qy, ctx)
  if not T.is_tensor(loss) or not T.is_tensor(out) then
    error(string.format("%s: Learner:query_loss returned (%s, %s); expected the query loss and the network's output, "
      .. "two tensors", self.algorithm, T.is_tensor(loss) and "a tensor" or type(loss),
      T.is_tensor(out) and "a tensor" or type(out)), 0)
  end
  local grads = ag.grad(loss, meta, {allow_unused = true})
  return loss:item(), ag.no_grad(self.metric, out:detach(), qy), grads
end

--- Whether this meta-iteration differentiates through the inner gradients.
function Learner:is_first_order(ctx) -- luacheck: ignore ctx
  return self.first_order
end

--- The old entry (tests, scripts): task_gradient(sx, sy, qx, qy [, meta]).
function Learner:task_gradient(sx, sy, qx, qy, meta)
  return self:task_meta_gradient(meta or self.meta_params, sx, sy, qx, qy, {})
end

--- Meta-test one task: adapt a detached copy of meta on the support set and return the query
--- metric after 0, 1, ..., steps inner steps (a list of steps + 1 numbers). Changes neither the
--- meta-parameters nor the network's buffers.
function Learner:finetune(meta, sx, sy, qx, qy, steps)
  meta = self:complete(meta)
  local consts = {}
  for i, p in ipairs(meta) do consts[i] = p:detach() end
  local fast = self:net_params(consts)
  for i in ipairs(fast) do
    if self.adapted[i] then fast[i]:requires_grad(true) end
  end
  local results = {}
  local state = self:inner_state()
  -- batch statistics, as in meta-training (the running ones left as they are), or the running statistics
  self.net:with_mode(self.bn_mode == "batch", false, function()
    for step = 0, steps do
      results[step + 1] = ag.no_grad(function() return self.metric(self:forward_at(consts, fast, qx, step), qy) end)
      if step < steps then
        local next_fast = self:adapt_from(consts, fast, sx, sy, 1, false, step + 1, state)
        for i, w in ipairs(next_fast) do
          if self.adapted[i] then fast[i] = w:detach():requires_grad(true) end
        end
      end
    end
  end)
  return results
end

return A
