-- maml: Model-Agnostic Meta-Learning (Finn et al. 2017) on the public tensor/autograd/nn API.
--
--   local maml = require "maml"
--   local learner = maml.new{net = net, inner_lr = 0.4, steps = 1, loss = "cross_entropy",
--                            inner_loss_scale = 5, first_order = false, bn_mode = "batch"}
--   local stats, grads = learner:meta_gradient(batch)     -- batch: support_x (B, ...), ...
--   opt:step(learner.params, grads)                        -- e.g. optim.adam
--   local per_step = learner:finetune(learner.params, sx, sy, qx, qy, 3)   -- metric after 0..3 steps
--
-- The network's parameters are net:parameters(); which of them the inner loop adapts is
-- net:adapted() (the others, e.g. the paper's batch-norm shifts, are used as they are and learned by
-- the outer optimizer only). The meta-parameters (what the outer optimizer updates and checkpoints
-- hold) are learner.meta_params: the network's parameters followed by any that a variant adds with
-- learner:add_meta_parameter(name, tensor) (e.g. Meta-SGD's per-parameter step sizes, used in an
-- overridden learner:inner_step(i, w, g)). Inner loop: fast = w - inner_lr * d(inner_loss_scale * loss(support))/dw, `steps`
-- times, with create_graph so the meta-gradient d loss(query; fast) / d w is exact second order;
-- first_order=true drops the second-order term (FOMAML): the inner gradients are constants.
-- Meta-loss: the query loss after adaptation (a plain mean over query points), averaged over the
-- tasks of the meta-batch. (The paper's code sums over the queries and divides by K, i.e. N x this
-- mean when there are K queries per class; Adam's update does not change with a constant factor on
-- the loss, up to its eps.) The meta-gradient is accumulated task by task, so only one task's graph
-- is alive at a time (same gradient as one backward over the summed loss).
local T = require "tensor"
local options = require "options"
local ag = require "autograd"

local M = {}

--- Losses by name: f(output, target) -> scalar tensor, a mean over the examples.
M.losses = {
  cross_entropy = function(logits, labels) return T.cross_entropy(logits, labels) end,
  mse = function(pred, target) return T.mse_loss(pred, target) end,
}

--- Metrics by name: f(output, target) -> Lua number.
M.metrics = {
  accuracy = function(logits, labels) return T.accuracy(logits, labels) end,
  mse = function(pred, target) return T.mse_loss(pred, target):item() end,
}

local Learner = {}
Learner.__index = Learner

--- maml.new{net=, inner_lr=, steps=1, loss="cross_entropy"|"mse"|fn, metric="accuracy"|"mse"|fn,
---          inner_loss_scale=1, first_order=false, bn_mode="batch"|"running", parallel=true}
--- inner_loss_scale multiplies the support loss of the inner step (the paper's code steps on
--- N x mean cross-entropy: inner_loss_scale = ways). bn_mode: "batch" normalises with the batch
--- statistics also at meta-test (the paper's code, transductive); "running" uses the running
--- statistics (accumulated during meta-training) for every forward of finetune(). parallel=false
--- keeps meta_gradient on the calling thread (see can_run_parallel).
function M.new(opts)
  opts = options.check("maml.new", 1, opts, {net = "table", inner_lr = "number", steps = "integer",
    loss = "string|function", metric = "string|function", inner_loss_scale = "number", first_order = "boolean",
    bn_mode = "string", parallel = "boolean"})
  local net = opts.net or error("maml.new: 'net' is required", 2)
  local loss = opts.loss or "cross_entropy"
  local metric = opts.metric or (loss == "mse" and "mse" or "accuracy")
  local self = setmetatable({
    net = net,
    params = net:parameters(),
    adapted = net:adapted(),
    names = net:parameter_names(),
    meta_params = {},
    meta_names = {},
    inner_lr = opts.inner_lr or error("maml.new: 'inner_lr' is required", 2),
    steps = opts.steps or 1,
    loss_name = type(loss) == "string" and loss or "custom",
    loss = type(loss) == "function" and loss or M.losses[loss],
    metric_name = type(metric) == "string" and metric or "custom",
    metric = type(metric) == "function" and metric or M.metrics[metric],
    inner_loss_scale = opts.inner_loss_scale or 1,
    first_order = opts.first_order == true,
    bn_mode = opts.bn_mode or "batch",
    parallel = opts.parallel,
  }, Learner)
  if not self.loss then error("maml.new: unknown loss '" .. tostring(loss) .. "'", 2) end
  if not self.metric then error("maml.new: unknown metric '" .. tostring(metric) .. "'", 2) end
  if self.bn_mode ~= "batch" and self.bn_mode ~= "running" then
    error("maml.new: bn_mode must be \"batch\" or \"running\", got " .. tostring(self.bn_mode), 2)
  end
  for i, p in ipairs(self.params) do self.meta_params[i], self.meta_names[i] = p, self.names[i] end
  return self
end

--- Add a meta-parameter that is not the network's (a leaf tensor; it is made to require grad).
function Learner:add_meta_parameter(name, tensor)
  self.meta_params[#self.meta_params + 1] = tensor:requires_grad(true)
  self.meta_names[#self.meta_names + 1] = name
  return tensor
end

--- One inner SGD update of parameter i (weight w, gradient g); variants override it.
function Learner:inner_step(i, w, g) -- luacheck: ignore i
  return w - g * self.inner_lr
end

--- The inner loop: `steps` SGD steps on (x, y) from `params`; returns the fast weights (a new list;
--- entries not adapted are the given tensors themselves). create_graph=true keeps the steps
--- differentiable (second order); false makes each gradient a constant (first order).
function Learner:adapt(params, x, y, steps, create_graph)
  local fast = {}
  for i, p in ipairs(params) do fast[i] = p end
  local adapted_idx = {}
  for i, a in ipairs(self.adapted) do
    if a then adapted_idx[#adapted_idx + 1] = i end
  end
  for _ = 1, steps do
    local adapted_list = {}
    for n, i in ipairs(adapted_idx) do adapted_list[n] = fast[i] end
    local loss = self.loss(self.net:forward(x, fast), y)
    if self.inner_loss_scale ~= 1 then loss = loss * self.inner_loss_scale end
    local grads = ag.grad(loss, adapted_list, {create_graph = create_graph, allow_unused = true})
    for n, i in ipairs(adapted_idx) do
      if grads[n] ~= nil then fast[i] = self:inner_step(i, fast[i], grads[n]) end
    end
  end
  return fast
end

-- add g into acc[i] (a fresh tensor the first time)
local function accumulate(acc, i, g, scale)
  if g == nil then return end
  if acc[i] == nil then
    acc[i] = g:detach() * scale
  else
    acc[i]:add_(g, scale)
  end
end

--- One task's meta-gradient: the query loss after adapting on the support set, its metric, and
--- its gradient with respect to self.meta_params (a list; nil where a parameter had no influence).
function Learner:task_gradient(sx, sy, qx, qy, params, meta_params)
  params, meta_params = params or self.params, meta_params or self.meta_params
  self.net:train(true)
  self.net:update_buffers(self.comm == nil) -- split over MPI ranks: no rank sees every task
  local fast = self:adapt(params, sx, sy, self.steps, not self.first_order)
  local out = self.net:forward(qx, fast)
  local loss = self.loss(out, qy)
  local grads = ag.grad(loss, meta_params, {allow_unused = true})
  return loss:item(), ag.no_grad(self.metric, out:detach(), qy), grads
end

--- Whether meta_gradient can run the tasks of a meta-batch on the `parallel` module's threads: the
--- network can be rebuilt from net.spec, loss and metric are named, the inner step and the
--- meta-parameters are the plain ones, and batch norm's running statistics are not used (they would
--- be updated in the workers' copies of the network, not in this one).
function Learner:can_run_parallel()
  return self.parallel ~= false and self.net.spec ~= nil and self.loss_name ~= "custom"
    and self.metric_name ~= "custom" and rawget(self, "inner_step") == nil
    and getmetatable(self) == Learner and #self.meta_params == #self.params and self.bn_mode == "batch"
end

-- per Lua state: learners rebuilt from a spec (parallel workers)
local worker_learners = {}

--- Entry of parallel.map: one task's meta-gradient from plain values. spec = {net = net.spec,
--- learner = {inner_lr=, steps=, loss=, metric=, inner_loss_scale=, first_order=, bn_mode=}, key =};
--- returns loss, metric and the dense gradient list.
local function worker_learner(spec)
  local learner = worker_learners[spec.key]
  if not learner then
    local nn = require "nn"
    local options = {net = nn[spec.net.constructor](spec.net.options)}
    for k, v in pairs(spec.learner) do options[k] = v end
    learner = M.new(options)
    worker_learners[spec.key] = learner
  end
  return learner
end

function M.task_gradients(spec, params, sx, sy, qx, qy)
  local learner = worker_learner(spec)
  local loss, metric, grads = learner:task_gradient(sx, sy, qx, qy, params, params)
  for i, p in ipairs(params) do
    if grads[i] == nil then grads[i] = T.zeros(p:shape()) end
  end
  return loss, metric, grads
end

--- Entry of parallel.map: finetune() of one test task, on a learner rebuilt from spec.
function M.finetune_task(spec, params, sx, sy, qx, qy, steps)
  return worker_learner(spec):finetune(params, sx, sy, qx, qy, steps)
end

-- the spec of this learner for M.task_gradients and M.finetune_task
function Learner:parallel_spec()
  if not self.spec then
    local learner = {inner_lr = self.inner_lr, steps = self.steps, loss = self.loss_name,
      metric = self.metric_name, inner_loss_scale = self.inner_loss_scale, first_order = self.first_order,
      bn_mode = self.bn_mode}
    local spec = {net = self.net.spec, learner = learner}
    spec.key = require("json").encode(spec)
    self.spec = spec
  end
  return self.spec
end

--- The meta-gradient of one meta-batch (tables of tensors with the task as first dimension:
--- support_x, support_y, query_x, query_y). Returns stats {loss=, metric=} (means over tasks of the
--- query loss and metric after adaptation) and the gradient list, parallel to self.meta_params
--- (zeros for parameters that did not influence the loss). With more than one thread in the
--- `parallel` module (parallel.set_threads) and can_run_parallel(), the tasks run on its threads;
--- the gradients are summed in task order either way. With self.comm (lua/distributed.lua: MPI
--- ranks), this process computes its share of the tasks and adds them to the running sum that goes
--- from rank to rank, so the sum is the same as in one process.
function Learner:meta_gradient(batch)
  local meta_params = self.meta_params
  local n_tasks = batch.support_x:size(1)
  local grads = {}
  local total_loss, total_metric = 0, 0
  local function add(loss, metric, g)
    for i = 1, #meta_params do accumulate(grads, i, g[i], 1 / n_tasks) end
    total_loss, total_metric = total_loss + loss, total_metric + metric
  end
  local comm, first, last, mine = self.comm, 1, n_tasks, {}
  if comm then
    if self.bn_mode ~= "batch" then
      error("maml: bn_mode=running needs the running statistics of every task, which no MPI rank sees; "
        .. "use bn_mode=batch or one process", 2)
    end
    first, last = comm:share(n_tasks)
  end
  local collect = comm and function(...) mine[#mine + 1] = {...} end or add
  local parallel = package.loaded.parallel or (pcall(require, "parallel") and require("parallel"))
  if parallel and parallel.threads() > 1 and last > first and self:can_run_parallel() then
    local spec, jobs = self:parallel_spec(), {}
    for t = first, last do
      jobs[#jobs + 1] = {spec, self.params, batch.support_x:select(1, t), batch.support_y:select(1, t),
        batch.query_x:select(1, t), batch.query_y:select(1, t)}
    end
    for _, r in ipairs(parallel.map("maml", "task_gradients", jobs)) do collect(r[1], r[2], r[3]) end
  else
    for t = first, last do
      collect(self:task_gradient(batch.support_x:select(1, t), batch.support_y:select(1, t),
        batch.query_x:select(1, t), batch.query_y:select(1, t)))
    end
  end
  if comm then -- the sum goes from rank to rank, each adding its tasks: the same order as here alone
    grads, total_loss, total_metric = comm:receive_sum(meta_params)
    for _, r in ipairs(mine) do add(r[1], r[2], r[3]) end
    grads, total_loss, total_metric = comm:pass_sum(meta_params, grads, total_loss, total_metric)
  end
  for i, p in ipairs(meta_params) do
    if grads[i] == nil then grads[i] = T.zeros(p:shape()) end
  end
  return {loss = total_loss / n_tasks, metric = total_metric / n_tasks}, grads
end

--- Meta-test one task: adapt a detached copy of params on the support set (first order: no
--- meta-gradient is needed) and return the query metric after 0, 1, ..., steps inner steps
--- (a list of steps + 1 numbers). Does not change the net's parameters or buffers.
function Learner:finetune(params, sx, sy, qx, qy, steps)
  params = params or self.params
  local net = self.net
  local was_training, was_updating = net.is_training, net.updates_buffers
  if self.bn_mode == "batch" then
    net:train(true)          -- batch statistics, as in meta-training
    net:update_buffers(false)
  else
    net:train(false)         -- running statistics
  end
  local fast = {}
  for i, p in ipairs(params) do
    fast[i] = p:detach()
    if self.adapted[i] then fast[i]:requires_grad(true) end
  end
  local results = {}
  local ok, err = pcall(function()
    for step = 0, steps do
      results[step + 1] = ag.no_grad(function() return self.metric(net:forward(qx, fast), qy) end)
      if step < steps then
        local next_fast = self:adapt(fast, sx, sy, 1, false)
        for i, w in ipairs(next_fast) do
          if self.adapted[i] then fast[i] = w:detach():requires_grad(true) end
        end
      end
    end
  end)
  net:train(was_training)
  net:update_buffers(was_updating)
  if not ok then error(err, 0) end
  return results
end

--- Evaluate over tasks: `next_task()` returns support_x, support_y, query_x, query_y of one task
--- (or nil to stop early). Returns {mean = {...}, std = {...}, ci95 = {...}, n = tasks}, each
--- list indexed by inner step + 1; ci95 = 1.96 * std / sqrt(n) (std: population standard deviation,
--- as numpy's np.std in the paper's code). With self.comm each MPI rank adapts its share of the
--- tasks and the rows are gathered in task order (should_stop must not communicate: ranks call it
--- different numbers of times).
function Learner:evaluate(params, n_tasks, next_task, steps, should_stop)
  params = params or self.params
  local per_task = {}
  local first, last = 1, n_tasks
  if self.comm then first, last = self.comm:share(n_tasks) end -- every rank draws tasks 1..last in order
  -- on the parallel module's threads (as meta_gradient), a few tasks per thread at a time: tasks are
  -- drawn in order here, and each task's result is the one finetune() gives on this thread
  local parallel = package.loaded.parallel or (pcall(require, "parallel") and require("parallel"))
  local threads = (parallel and self:can_run_parallel()) and parallel.threads() or 1
  local pending = {}
  local function flush()
    if #pending == 0 then return end
    for _, r in ipairs(parallel.map("maml", "finetune_task", pending)) do per_task[#per_task + 1] = r[1] end
    pending = {}
  end
  for t = 1, last do
    if should_stop and should_stop() then break end
    local sx, sy, qx, qy = next_task(t)
    if sx == nil then break end
    if t >= first then
      if threads > 1 then
        pending[#pending + 1] = {self:parallel_spec(), params, sx, sy, qx, qy, steps}
        if #pending >= 4 * threads then flush() end
      else
        per_task[#per_task + 1] = self:finetune(params, sx, sy, qx, qy, steps)
      end
    end
  end
  flush()
  if self.comm then per_task = self.comm:gather_rows(per_task) end
  return M.summarize(per_task)
end

--- Mean, std and 95% interval per column of a list of equal-length rows.
function M.summarize(rows)
  local n = #rows
  local out = {mean = {}, std = {}, ci95 = {}, n = n}
  if n == 0 then return out end
  for c = 1, #rows[1] do
    local sum = 0
    for r = 1, n do sum = sum + rows[r][c] end
    local mean = sum / n
    local sq = 0
    for r = 1, n do sq = sq + (rows[r][c] - mean) ^ 2 end
    local std = math.sqrt(sq / n)
    out.mean[c], out.std[c], out.ci95[c] = mean, std, 1.96 * std / math.sqrt(n)
  end
  return out
end

return M
