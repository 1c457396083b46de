-- MAML++ (Antoniou, Edwards and Storkey 2019, "How to train your MAML"): MAML with five changes,
-- each its own switch so that it can be ablated (the defaults: its Omniglot configs,
-- experiment_config/omniglot_maml++_*.json of AntreasAntoniou/HowToTrainYourMAMLPytorch):
--
--   multi_step_loss  MSL: the meta-loss is sum_s w_s L_query(after step s) over the inner steps, with
--                    w annealed from uniform toward the last step over msl_epochs epochs (then the
--                    last step's loss alone)                                        (config: 20 epochs)
--   learn_inner_lr   LSLR: a learned inner step size per parameter tensor and per step, initialised
--                    to inner_lr (meta-parameters "<name>.lr", one entry per step)     (0.1)
--   per_step_bn      BNWB: batch-norm weights and biases per inner step (step 1 uses the network's,
--                    steps 2.. meta-parameters "<name>.step<k>"), not adapted in the inner loop
--   second_order_epoch  DA: first order up to and including this epoch, second order after (-1:
--                    always second order, as its Omniglot configs)
--   cosine_lr        CA: the meta learning rate annealed from meta_lr to min_meta_lr on a cosine over
--                    the run, per epoch of epoch_iterations iterations               (1e-3 -> 1e-5, 500)
-- The per-step quantities extend past the trained steps: evaluating with more inner steps than
-- training (steps_test > steps) uses the last step's learning rate and batch-norm parameters (its
-- reference code cannot, its issue #28). Its per-step batch-norm running statistics are not kept:
-- the reference normalises with batch statistics in training and test alike, so they never enter
-- its results (and its backup of them was aliased, issue #42); bn_mode=running is refused.
local T = require "tensor"
local ag = require "autograd"
local algorithm = require "algorithm"
local maml = require "algorithms.maml"
local usage_error = require("options").usage_error

-- (a key of meta-training alone: with eval_only=true, set on the command line, it is an error)
local TRAINING = {key = "eval_only", values = {false}}

local A = algorithm.define{
  name = "mamlpp", base = maml,
  doc = "MAML++ (Antoniou et al. 2019): MSL, LSLR, per-step BN weights, derivative-order and cosine annealing",
  keys = {
    {name = "inner_lr", type = "number", default = 0.1, doc = "inner step size (LSLR: its initial value)"},
    {name = "steps", type = "integer", default = 5, doc = "inner steps in meta-training",
     only = {key = "eval_only", values = {false}, instead = "steps_test"}},
    {name = "first_order", type = "boolean", default = false, doc = "first order throughout (DA aside)",
     only = TRAINING},
    {name = "inner_loss_scale", type = "number_or_ways", default = 1,
     doc = "factor of the inner loss (MAML++: 1, the plain mean)"},
    {name = "multi_step_loss", type = "boolean", default = true, doc = "MSL: per-step query losses, annealed",
     only = TRAINING},
    {name = "msl_epochs", type = "integer", default = 20, doc = "MSL: epochs over which its weights anneal",
     only = {key = "multi_step_loss", values = {true}}},
    {name = "learn_inner_lr", type = "boolean", default = true, doc = "LSLR: learned per-layer per-step step sizes"},
    {name = "per_step_bn", type = "boolean", default = true, doc = "BNWB: batch-norm weights and biases per step"},
    {name = "second_order_epoch", type = "integer", default = -1,
     doc = "DA: first order up to this epoch (-1: second order from the start)",
     only = {key = "first_order", values = {false}}},
    {name = "cosine_lr", type = "boolean", default = true, doc = "CA: cosine annealing of the meta learning rate",
     only = TRAINING},
    {name = "min_meta_lr", type = "number", default = 1e-5, doc = "CA: the meta learning rate at the end",
     only = {key = "cosine_lr", values = {true}}},
    {name = "epoch_iterations", type = "integer", default = 500, doc = "iterations per epoch (MSL, DA, CA)",
     only = TRAINING},
  },
  check_config = function(cfg, set)
    for _, name in ipairs{"steps", "epoch_iterations", "msl_epochs"} do
      if cfg[name] < 1 then
        return name, string.format("config key '%s' must be at least 1 with algorithm mamlpp (its per-step "
          .. "learning rates, batch-norm weights and epochs count from 1), got %d", name, cfg[name])
      end
    end
    -- epochs are what MSL, DA and CA anneal over: with the three off, an epoch length changes nothing
    local da = not cfg.first_order and cfg.second_order_epoch >= 0
    -- (a script's epoch length counts only while the command line leaves the three switches as the script has them)
    if set and set("epoch_iterations", {"multi_step_loss", "cosine_lr", "second_order_epoch", "first_order"})
        and not cfg.eval_only and not cfg.multi_step_loss and not da
        and not cfg.cosine_lr then
      return "epoch_iterations", string.format("config key 'epoch_iterations' is %d, but it has no effect with "
        .. "multi_step_loss=false, cosine_lr=false and no derivative-order annealing (second_order_epoch=%d%s): "
        .. "epochs are what those anneal over; remove it, or turn one of them on", cfg.epoch_iterations,
        cfg.second_order_epoch, cfg.first_order and ", first_order=true" or "")
    end
    if cfg.bn_mode == "running" then
      return "bn_mode", "config key 'bn_mode' must be batch with algorithm mamlpp: running statistics would have "
        .. "to be kept per inner step, and MAML++ normalises with batch statistics at meta-test too: remove "
        .. "bn_mode=running"
    end
  end,
  check_learner = function(learner, cfg, set)
    -- (the default, true, is MAML++'s; only a per_step_bn=true the user set is held to having an effect)
    if learner.per_step_bn and set("per_step_bn") and learner.per_step_bn_params == 0 then
      return "per_step_bn", string.format("config key 'per_step_bn' is true, but network %s has no batch-norm "
        .. "weights or biases to keep per step: remove per_step_bn", tostring(cfg.model))
    end
  end,
}
local Learner = A.Learner

function A.new(net, o)
  local self = algorithm.instance(A, net, o)
  maml.setup(self, o)
  if self.bn_mode ~= "batch" then
    error("mamlpp: bn_mode=running would need per-step running statistics, which are not kept (MAML++ "
      .. "normalises with batch statistics at meta-test too); use bn_mode=batch", 2)
  end
  self.multi_step_loss, self.learn_inner_lr = o.multi_step_loss ~= false, o.learn_inner_lr ~= false
  self.per_step_bn, self.cosine_lr = o.per_step_bn ~= false, o.cosine_lr ~= false
  self.msl_epochs, self.epoch_iterations = o.msl_epochs or 20, o.epoch_iterations or 500
  self.second_order_epoch, self.min_meta_lr = o.second_order_epoch or -1, o.min_meta_lr or 1e-5
  if math.type(self.epoch_iterations) ~= "integer" or self.epoch_iterations < 1 then
    error("mamlpp: 'epoch_iterations' must be a positive integer", 2)
  end
  -- LSLR: one step size per adapted parameter tensor and step
  self.lr_index = {}
  if self.learn_inner_lr then
    for i in ipairs(self.params) do
      if self.adapted[i] then
        local name = self.names[i] .. ".lr"
        self:add_meta_parameter(name, T.full({self.steps}, self.inner_lr))
        self.lr_index[i] = self.meta_index[name]
      end
    end
  end
  -- BNWB: the batch-norm parameters of steps 2..steps (step 1 uses the network's own)
  self.bn_index = {} -- bn_index[k][i]: meta index of parameter i's copy for step k
  if self.per_step_bn then
    local bn_params = {}
    local function walk(layer, k)
      if layer.kind == "batchnorm2d" then
        for j = 1, #layer.own_params do bn_params[#bn_params + 1] = k + j - 1 end
      end
      local offset = k + #layer.own_params
      for _, child in ipairs(layer.children) do offset = walk(child, offset) end
      return offset
    end
    walk(net, 1)
    self.per_step_bn_params = #bn_params
    for k = 2, self.steps do
      self.bn_index[k] = {}
      for _, i in ipairs(bn_params) do
        if self.adapted[i] then
          -- (a setting of the user's that cannot be honoured: the message alone, no traceback)
          usage_error(string.format("mamlpp: per_step_bn (true, MAML++'s default) keeps batch-norm weights and "
            .. "biases per step, which the inner loop must not adapt, and network %s adapts its batch norm: set "
            .. "per_step_bn=false, or use a network whose batch norm is not adapted (conv4 with bn_adapt=false)",
            tostring(net.kind)))
        end
        local name = self.names[i] .. ".step" .. k
        self:add_meta_parameter(name, self.params[i]:detach():clone())
        self.bn_index[k][i] = self.meta_index[name]
      end
    end
  end
  return self
end

local function epoch_of(self, ctx)
  return ((ctx and ctx.iteration or 1) - 1) // self.epoch_iterations
end

--- The fast weights with the batch-norm parameters of step `step` (past the trained steps: the last).
function Learner:forward_at(meta, fast, x, step)
  local k = math.max(1, math.min(step, self.steps))
  local set = self.bn_index[k]
  if set then
    local p = {}
    for i, w in ipairs(fast) do p[i] = w end
    for i, m in pairs(set) do p[i] = meta[m] end
    fast = p
  end
  return self.net:forward(x, fast)
end

function Learner:inner_step(i, w, g, meta, step)
  local m = self.lr_index[i]
  if not m then return w:sub_scaled(g, self.inner_lr) end
  return w - g * meta[m]:narrow(1, math.min(step, self.steps), 1)
end

function Learner:is_first_order(ctx)
  return self.first_order or epoch_of(self, ctx) <= self.second_order_epoch
end

--- MSL's weights of the per-step query losses at an epoch (nil once it is over: the last step only).
function Learner:step_weights(epoch)
  local n = self.steps
  if not self.multi_step_loss or epoch >= self.msl_epochs then return nil end
  local w, decay, floor = {}, 1 / n / self.msl_epochs, 0.03 / n
  for s = 1, n - 1 do w[s] = math.max(1 / n - epoch * decay, floor) end
  w[n] = math.min(1 / n + epoch * (n - 1) * decay, 1 - (n - 1) * floor)
  return w
end

function Learner:task_meta_gradient(meta, sx, sy, qx, qy, ctx)
  meta = self:complete(meta)
  self.net:train(true)
  self.net:update_buffers(self.comm == nil)
  local weights = self:step_weights(epoch_of(self, ctx))
  local create_graph = not self:is_first_order(ctx)
  local fast, state = self:net_params(meta), self:inner_state()
  local total, out, loss
  for s = 1, self.steps do
    fast, state = self:adapt_from(meta, fast, sx, sy, 1, create_graph, s, state)
    if weights or s == self.steps then
      out = self:forward_at(meta, fast, qx, s)
      loss = self.loss(out, qy)
      local term = weights and loss * weights[s] or loss
      total = total and total + term or term
    end
  end
  local grads = ag.grad(total, meta, {allow_unused = true})
  return loss:item(), ag.no_grad(self.metric, out:detach(), qy), grads
end

--- CA: cosine annealing per epoch, from meta_lr to min_meta_lr over the run.
function Learner:outer_lr(iteration, iterations, meta_lr)
  if not self.cosine_lr then return nil end
  local epochs = math.max(1, iterations / self.epoch_iterations)
  local epoch = (iteration - 1) // self.epoch_iterations
  return self.min_meta_lr + (meta_lr - self.min_meta_lr) * (1 + math.cos(math.pi * epoch / epochs)) / 2
end

return A
