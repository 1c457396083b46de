-- algorithm: what every meta-learning algorithm shares, and how it is found by name.
--
--   local algorithm = require "algorithm"
--   local learner = algorithm.build("anil", net, {inner_lr = 0.4, steps = 1})   -- lua/algorithms/anil.lua
--   local stats, grads = learner:meta_gradient(batch, {iteration = 1})
--   opt:step(learner.meta_params, grads)
--
-- An algorithm is a module: lua/algorithms/<name>.lua for the shipped ones (algorithm.shipped), or a
-- module of the user's own beside the experiment script (`require`-able by its name). It is made
-- with algorithm.define{name=, base=, doc=, keys=} and implements, on its Learner class:
--   A.new(net, options)                     -> a learner (algorithm.instance(A, net, options) + fields)
--   Learner:task_meta_gradient(meta, sx, sy, qx, qy, ctx) -> query loss, metric, gradient list over meta
--   Learner:finetune(meta, sx, sy, qx, qy, steps)          -> the metric after 0..steps inner steps
-- and optionally Learner:outer_optimizer(cfg) (default Adam at cfg.meta_lr),
-- Learner:outer_lr(iteration, iterations, meta_lr) (a schedule; nil: constant) and the field
-- learner.train_shots (training tasks with that many examples per class instead of the run's shots).
-- `meta` is the list of meta-parameters (learner.meta_params order): the network's parameters
-- first, then the algorithm's own (learner:add_meta_parameter), looked up by name with
-- learner.meta_index. Every method takes it as an argument, so the same code runs on the main
-- thread and, on copies of the tensors, in the parallel workers.
--
-- Threads and MPI ranks: meta_gradient and evaluate run tasks on the `parallel` module's threads.
-- Each worker thread rebuilds the learner from learner.spec (the algorithm's module name and its
-- options, plain data) and the network from net.spec (nn.rebuild), and receives the
-- meta-parameters with every job. What a worker cannot rebuild (a learner or network edited after
-- construction, a replaced method, an option that is a function, a network without a spec) is
-- refused with an error saying what to do; it never runs as something else. What those checks cannot
-- see (a module field or global the script set) shows in the first task a learner sends to the workers,
-- which this thread computes too, once: the two must agree to the bit, or the run stops.
local T = require "tensor"
local ag = require "autograd"
local nn = require "nn"
local usage_or_input = require "options" -- (usage_error, input_error: mistakes of the user's, no traceback)
local usage_error = usage_or_input.usage_error

local M = {}

--- The algorithms shipped in lua/algorithms/.
M.shipped = {"maml", "meta_sgd", "anil", "reptile", "mamlpp"}

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

-- ------------------------------------------------------------------ fingerprints

-- a deterministic text of a value: tensors by shape, functions by identity, tables sorted
local function describe(v, depth, seen)
  local kind = type(v)
  if T.is_tensor(v) then return "tensor(" .. table.concat(v:shape(), ",") .. ")" end
  if kind == "function" then return tostring(v) end
  if kind == "string" then return string.format("%q", v) end
  if kind ~= "table" then return tostring(v) end
  if seen[v] or depth > 8 then return "<table>" end
  seen[v] = true
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = tostring(k) .. "=" .. describe(v[k], depth + 1, seen) end
  seen[v] = nil
  return "{" .. table.concat(parts, ",") .. "}"
end
M.describe = function(v) return describe(v, 0, {}) end

-- fields of a learner that are not part of its definition: state, caches, the network (checked
-- on its own), tensors whose values travel with every job
local volatile = {net = true, meta_params = true, params = true, fingerprint = true, spec = true, comm = true,
  cache = true}

local function learner_fields(self)
  local out = {}
  for k, v in pairs(self) do
    if not volatile[k] then out[k] = describe(v, 0, {}) end
  end
  return out
end

-- the methods of a class and of its bases, by name
local function methods(class)
  local out = {}
  local c = class
  while c do
    for k, v in pairs(c) do
      if type(v) == "function" and out[k] == nil then out[k] = tostring(v) end
    end
    local mt = getmetatable(c)
    c = mt and type(mt.__index) == "table" and mt.__index or nil
  end
  return out
end

-- ------------------------------------------------------------------ the learner base

local Learner = {}
Learner.__index = Learner
M.Learner = Learner

--- algorithm.define{name=, base=<module of another algorithm>, doc=, keys={{name=, type=, default=,
--- doc=}, ...}} -> the module table A, with A.Learner inheriting from base's Learner (or this
--- module's). keys: the algorithm's config keys (lua/experiment.lua; type is "integer", "number",
--- "boolean", "string", a list of choices, or "number_or_ways"). check_config(cfg, set) and
--- check_learner(learner, cfg, set) (the built learner, its network learner.net): nil, or a key's name
--- and the error for a setting the algorithm cannot honour (docs/algorithms.md).
local DEFINE_FIELDS = {"name", "base", "doc", "keys", "check_config", "check_learner"}

-- a mistake in the call of algorithm.define in the user's module: the message starts with that call's
-- place (file:line) and has no traceback of our code (options.input_error: the module is the user's file)
local function define_error(fmt, ...)
  local info = debug.getinfo(3, "Sl")
  local where = info and info.currentline and info.currentline > 0 and (info.short_src .. ":" .. info.currentline .. ": ")
    or ""
  usage_or_input.input_error(where .. string.format(fmt, ...))
end

function M.define(def)
  if type(def) ~= "table" or type(def.name) ~= "string" then
    error("algorithm.define: expected {name = <string>, ...}", 2)
  end
  -- a field it does not know would be ignored (a check_confg that never checks): refused
  local stray = usage_or_input.unknown_field(def, DEFINE_FIELDS)
  if stray then
    define_error("algorithm.define (%s): unknown field %s; the fields are %s", def.name, stray,
      table.concat(DEFINE_FIELDS, ", "))
  end
  for _, f in ipairs{"check_config", "check_learner"} do
    if def[f] ~= nil and type(def[f]) ~= "function" then
      define_error("algorithm.define (%s): %s must be a function, got %s", def.name, f, type(def[f]))
    end
  end
  if def.keys ~= nil and type(def.keys) ~= "table" then
    define_error("algorithm.define (%s): keys must be a list of {name=, type=, default=, doc=}, got %s",
      def.name, type(def.keys))
  end
  if def.base ~= nil and (type(def.base) ~= "table" or type(def.base.Learner) ~= "table") then
    define_error("algorithm.define (%s): base must be the module of another algorithm (require "
      .. "\"algorithms.maml\"), got %s", def.name, type(def.base))
  end
  local A = {name = def.name, doc = def.doc or "", keys = def.keys or {}, base = def.base,
    check_config = def.check_config or (def.base and def.base.check_config),
    check_learner = def.check_learner or (def.base and def.base.check_learner)}
  local parent = def.base and def.base.Learner or Learner
  A.Learner = setmetatable({}, {__index = parent})
  A.Learner.__index = A.Learner
  return A
end

--- A new learner of algorithm A on net with options (a plain table): the fields every algorithm
--- has (net, params, names, adapted, meta_params, meta_names, meta_index, options).
function M.instance(A, net, options)
  if type(net) ~= "table" or type(net.parameters) ~= "function" then
    error(A.name .. ".new: 'net' must be an nn network, got " .. type(net), 3)
  end
  local self = setmetatable({}, A.Learner)
  self.algorithm, self.options, self.net = A.name, options or {}, net
  self.params, self.names, self.adapted = net:parameters(), net:parameter_names(), net:adapted()
  self.meta_params, self.meta_names, self.meta_index = {}, {}, {}
  for i, p in ipairs(self.params) do self:add_meta_parameter(self.names[i], p) end
  return self
end

--- Add a meta-parameter that is not the network's (a leaf tensor; it is made to require grad);
--- returns the tensor (its index in meta_params is meta_index[name]).
function Learner:add_meta_parameter(name, tensor)
  if self.meta_index[name] then error("add_meta_parameter: '" .. name .. "' exists already", 2) end
  local i = #self.meta_params + 1
  self.meta_params[i] = tensor:requires_grad(true)
  self.meta_names[i] = name
  self.meta_index[name] = i
  return self.meta_params[i]
end

--- The meta-parameter list `meta` with the entries it lacks taken from this learner (a caller may
--- pass only the network's parameters).
function Learner:complete(meta)
  if meta == nil then return self.meta_params end
  if #meta >= #self.meta_params then return meta end
  local out = {}
  for i = 1, #self.meta_params do out[i] = meta[i] or self.meta_params[i] end
  return out
end

--- The network's parameters in meta (a new list of the first #net:parameters() entries).
function Learner:net_params(meta)
  local out = {}
  for i = 1, #self.params do out[i] = meta[i] end
  return out
end

-- ------------------------------------------------------------------ building by name

local loaded = {}   -- module name -> {A =, methods = snapshot at load}

-- the methods every algorithm must have (the base Learner has neither)
local REQUIRED = {"task_meta_gradient", "finetune"}

-- An algorithm's class as written: every required method there, and no method of its own whose name is
-- a near miss of one its base calls (inner_stp for inner_step would never be called: the run would be
-- plain MAML under another name). Refused with the module's file, the name and the one meant.
local function check_methods(A, module)
  local file = package.searchpath(module, package.path)
  local where = string.format("algorithm %s (%s)", A.name, file or "module " .. module)
  local parent = getmetatable(A.Learner) and getmetatable(A.Learner).__index
  local inherited = {}
  for k in pairs(type(parent) == "table" and methods(parent) or {}) do inherited[#inherited + 1] = k end
  for _, r in ipairs(REQUIRED) do inherited[#inherited + 1] = r end
  table.sort(inherited)
  local own = {}
  for k, v in pairs(A.Learner) do
    if type(k) == "string" and type(v) == "function" then own[#own + 1] = k end
  end
  table.sort(own)
  for _, r in ipairs(REQUIRED) do
    if type(A.Learner[r]) ~= "function" then
      local near = usage_or_input.closest(r, own)
      usage_or_input.input_error(string.format("%s has no method Learner:%s, which every algorithm needs "
        .. "(docs/algorithms.md)%s", where, r, near and string.format("; did you mean it by Learner:%s?", near) or ""))
    end
  end
  local known = {}
  for _, k in ipairs(inherited) do known[k] = true end
  for _, k in ipairs(own) do
    local near = not known[k] and usage_or_input.closest(k, inherited)
    if near then
      usage_or_input.input_error(string.format("%s defines Learner:%s, which nothing calls: did you mean "
        .. "Learner:%s, which %s calls? (a helper method of your own needs a name further from the hooks')", where, k,
        near, A.base and tostring(A.base.name) or "the runner"))
    end
  end
end

--- The module of an algorithm by name: a shipped one (lua/algorithms/<name>.lua) or a module of
--- that name on package.path (beside the experiment script). Returns A and its module name.
function M.load(name)
  if type(name) ~= "string" or name == "" then
    error("algorithm: expected an algorithm name, got " .. tostring(name), 2)
  end
  local module
  for _, s in ipairs(M.shipped) do
    if s == name then module = "algorithms." .. name end
  end
  if not module then
    module = name
    local found = package.searchpath(name, package.path)
    if not found and not package.loaded[name] then
      error(string.format("unknown algorithm '%s': the shipped ones are %s; an algorithm of your own is a "
        .. "module %s.lua beside the experiment script (see docs/algorithms.md)", name,
        table.concat(M.shipped, ", "), name), 0)
    end
  end
  local A = require(module)
  if type(A) ~= "table" or type(A.new) ~= "function" or type(A.Learner) ~= "table" then
    local file = package.searchpath(module, package.path)
    usage_or_input.input_error(string.format("algorithm '%s': module %s%s is not an algorithm (make it with "
      .. "algorithm.define and give it a new(net, options) function)", name, module, file and " (" .. file .. ")" or ""))
  end
  if not loaded[module] then
    check_methods(A, module)
    loaded[module] = {A = A, methods = methods(A.Learner)}
  end
  return A, module
end

-- the first option whose value a worker cannot receive (a function, a userdata), as a message
local function unportable(v, path)
  if type(v) == "function" or (type(v) == "userdata" and not T.is_tensor(v)) or type(v) == "thread" then
    return path .. " is a " .. type(v)
  end
  if T.is_tensor(v) then return path .. " is a tensor (give numbers or lists)" end
  if type(v) == "table" then
    for k, x in pairs(v) do
      local why = unportable(x, path .. "." .. tostring(k))
      if why then return why end
    end
  end
end

local function copy_plain(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy_plain(x) end
  return out
end

--- Build the learner of algorithm `name` (a name as algorithm.load takes it) on net with options
--- (plain values). The learner's spec (algorithm module and options) and fingerprint are what the
--- workers rebuild and what learner:reproducible() compares with.
function M.build(name, net, options)
  local A, module = M.load(name)
  options = options or {}
  if type(options) ~= "table" then
    error(string.format("bad argument #3 to 'algorithm.build' (options table expected, got %s)", type(options)), 2)
  end
  -- an option the algorithm does not know would be ignored: refused, naming the valid ones
  local valid, names = {loss = true, metric = true, ways = true, bn_mode = true}, {}
  for _, k in ipairs(A.keys or {}) do valid[k.name] = true end
  for k in pairs(valid) do names[#names + 1] = k end
  table.sort(names)
  for k in pairs(options) do
    if not valid[k] then
      error(string.format("%s: unknown option '%s'; valid options: %s", A.name, tostring(k),
        table.concat(names, ", ")), 2)
    end
  end
  local learner = A.new(net, copy_plain(options))
  if getmetatable(learner) == nil then error(string.format("algorithm '%s': new() did not return a learner", name), 0) end
  learner.spec = {algorithm = A.name, module = module, options = copy_plain(options), net = net.spec,
    unportable = unportable(options, "option")}
  learner.spec.key = M.describe(learner.spec) -- what a worker caches its rebuilt learner under
  learner.fingerprint = learner_fields(learner)
  return learner
end

--- nil when a worker thread can rebuild this learner and its network exactly; otherwise a message
--- saying what it cannot rebuild and what to do instead.
function Learner:reproducible()
  local spec = self.spec
  local fix = "; write the variant as an algorithm module (lua/algorithms/<name>.lua or <name>.lua beside "
    .. "the script, see docs/algorithms.md) and build it with algorithm.build, or run with threads=1"
  if not spec then
    return "the learner was not made by algorithm.build (or maml.new), so worker threads cannot rebuild it" .. fix
  end
  if not require("locate").module_file(spec.module) then
    return string.format("the algorithm module '%s' is in no file on package.path (the script made it, in "
      .. "package.loaded or package.preload), so worker threads, which load modules from files, cannot build it; "
      .. "put it in %s.lua beside the script, or run with threads=1", spec.module, spec.module)
  end
  if spec.unportable then
    return string.format("the %s learner's %s, which cannot be sent to a worker thread%s", spec.algorithm,
      spec.unportable, fix)
  end
  local now = learner_fields(self)
  for k, v in pairs(now) do
    if self.fingerprint[k] ~= v then
      return string.format("learner.%s of the %s learner was %s after it was built; worker threads rebuild "
        .. "the learner from its algorithm and options and would not see that%s", tostring(k), spec.algorithm,
        self.fingerprint[k] == nil and "added" or "changed", fix)
    end
  end
  for k in pairs(self.fingerprint) do
    if now[k] == nil then
      return string.format("learner.%s of the %s learner was removed after it was built%s", tostring(k),
        spec.algorithm, fix)
    end
  end
  local at_load = loaded[spec.module]
  if at_load then
    local current = methods(at_load.A.Learner)
    for k, v in pairs(current) do
      if at_load.methods[k] ~= v then
        return string.format("the method %s of algorithm %s was %s after its module %s was loaded; worker "
          .. "threads load the module's file and would not see that%s", k, spec.algorithm,
          at_load.methods[k] and "replaced" or "added", spec.module, fix)
      end
    end
  end
  local why = nn.reproducible(self.net)
  if why then return why end
  return nil
end

--- Whether the tasks of a meta-batch can run on worker threads (compatibility: true when
--- reproducible() has nothing against it).
function Learner:can_run_parallel()
  return self:reproducible() == nil
end

-- the parallel module when more than one thread is set, else nil
local function threads_module()
  local parallel = package.loaded.parallel or (pcall(require, "parallel") and require("parallel"))
  if parallel and parallel.threads() > 1 then return parallel end
  return nil
end

-- refuse to run on threads what the threads would not run as written
local function check_for_threads(self, what)
  local why = self:reproducible()
  if why then
    local parallel = threads_module()
    -- (the user's to change, not a bug of the code: a message without a traceback, exit status 2)
    usage_error(string.format("%s on %d threads: %s", what, parallel and parallel.threads() or 0, why))
  end
end

-- ------------------------------------------------------------------ a worker's result against this thread's

-- What reproducible() reads (fields, methods, the network's layers) is not all a task depends on: a
-- module field or a global the script set, a method replaced after require and before the run, a file
-- read when a module loads. So the first task a learner sends to the worker threads in meta_gradient,
-- and the first in evaluate, is also computed on this thread by the learner itself, once, and the two
-- must agree to the bit (a task's result does not depend on the thread that runs it); otherwise the
-- run stops rather than run as something else on the workers.
local cross_checked = setmetatable({}, {__mode = "k"}) -- learner -> {meta_gradient = true, evaluate = true}

-- true the first time a learner asks for `what`'s check, then false
local function first_check(self, what)
  local done = cross_checked[self] or {}
  cross_checked[self] = done
  if done[what] then return false end
  done[what] = true
  return true
end

local function same_number(a, b) return a == b or (a ~= a and b ~= b) end

-- the first difference of two values (numbers, tensors, lists of them) as text, or nil
local function first_difference(here, there, name_of)
  for i = 1, math.max(#here, #there) do
    local a, b, name = here[i], there[i], name_of(i)
    if T.is_tensor(a) and T.is_tensor(b) then
      if table.concat(a:shape(), "x") ~= table.concat(b:shape(), "x") then
        return string.format("%s has shape %s on the worker, %s here", name, table.concat(b:shape(), "x"),
          table.concat(a:shape(), "x"))
      end
      local ad, bd = a:detach():clone(), b:detach():clone()
      if T.crc32(T.serialize(ad)) ~= T.crc32(T.serialize(bd)) then
        return string.format("%s differs (by up to %.3g)", name, (ad - bd):abs():max():item())
      end
    elseif type(a) == "number" and type(b) == "number" then
      if not same_number(a, b) then return string.format("%s is %.9g on the worker, %.9g here", name, b, a) end
    elseif a ~= nil or b ~= nil then -- (not two numbers, not two tensors)
      return string.format("%s is a %s on the worker, a %s here", name, T.is_tensor(b) and "tensor" or type(b),
        T.is_tensor(a) and "tensor" or type(a))
    end
  end
  return nil
end

local function check_against_worker(self, what, threads, job_text, difference)
  if difference == nil then return end
  usage_error(string.format("%s on %d threads: a worker thread computed %s otherwise than this thread: %s. The %s "
    .. "learner or its network depends on something a worker thread does not rebuild from the module files "
    .. "and the options (a module field or a global the script set, a method replaced after require, a file "
    .. "read when a module loads), so on threads it would not run as written. Make that setting a config key "
    .. "(keys= of algorithm.define) or an option of the network's module, or run with threads=1", what, threads,
    job_text, difference, tostring(self.spec and self.spec.algorithm or self.algorithm)))
end

-- meta_gradient's first job (the arguments of algorithm.task_gradients), once per learner
local function cross_check_gradients(self, parallel, job)
  if not first_check(self, "meta_gradient") then return end
  local meta, sx, sy, qx, qy, ctx = job[2], job[3], job[4], job[5], job[6], job[7]
  -- (this thread's network is left as it was: its modes, and its batch-norm running statistics, which a
  -- task may update)
  local net = self.net
  local saved = {}
  for i, b in ipairs(net:buffers()) do saved[i] = b:clone() end
  local loss, metric, grads = net:with_mode(net.is_training, net.updates_buffers, function()
    return self:task_meta_gradient(meta, sx, sy, qx, qy, ctx)
  end)
  ag.no_grad(function() for i, b in ipairs(net:buffers()) do b:copy_(saved[i]) end end)
  local here = {loss, metric}
  for i, p in ipairs(meta) do here[2 + i] = (grads or {})[i] or T.zeros(p:shape()) end
  local r = parallel.map("algorithm", "task_gradients", {job}, {workers_only = true})[1]
  local there = {r[1], r[2]}
  for i = 1, #meta do there[2 + i] = r[3][i] end
  local names = self.meta_names
  check_against_worker(self, "meta_gradient", parallel.threads(),
    string.format("task %d of the meta-batch of iteration %s", ctx.task, tostring(ctx.iteration)),
    first_difference(here, there, function(i)
      if i == 1 then return "the query loss" elseif i == 2 then return "the metric" end
      return "the gradient of " .. tostring(names[i - 2] or ("meta-parameter " .. (i - 2)))
    end))
end

-- evaluate's first job (the arguments of algorithm.finetune_task), once per learner
local function cross_check_finetune(self, parallel, job)
  if not first_check(self, "evaluate") then return end
  local here = self:finetune(job[2], job[4], job[5], job[6], job[7], job[8])
  local there = parallel.map("algorithm", "finetune_task", {job}, {workers_only = true})[1][1]
  if type(here) ~= "table" or type(there) ~= "table" then
    check_against_worker(self, "evaluate", parallel.threads(), "the first task's fine-tuning",
      string.format("finetune returned a %s on the worker, a %s here", type(there), type(here)))
  end
  check_against_worker(self, "evaluate", parallel.threads(), "the first task's fine-tuning",
    first_difference(here, there, function(i)
      return string.format("the metric after %d inner step%s", i - 1, i == 2 and "" or "s")
    end))
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

--- Refuse now (rather than at the first meta-batch) what the worker threads could not run.
function Learner:check_threads(what)
  if threads_module() then check_for_threads(self, what or "the run") end
end

--- Whether meta_gradient runs the tasks on the calling thread even with several threads set: an
--- algorithm that updates state of the main network during training (batch-norm running
--- statistics with bn_mode=running) keeps it where it is updated.
function Learner:sequential_tasks()
  return self.bn_mode == "running"
end

--- The meta-gradient of one meta-batch (tables of tensors with the task as first dimension:
--- support_x, support_y, query_x, query_y). ctx: {iteration=, iterations=, seed=} (what an
--- algorithm's schedule or randomness needs; seed: an integer drawn per meta-batch). Returns stats
--- {loss=, metric=} (means over tasks) and the gradient list, parallel to self.meta_params
--- (zeros for parameters that did not influence the loss), summed in task order whatever the
--- number of threads. With self.comm (lua/distributed.lua: MPI ranks), this process computes its
--- share of the tasks and adds them to the running sum that goes from rank to rank.
function Learner:meta_gradient(batch, ctx)
  ctx = ctx or {}
  local meta_params = self.meta_params
  local n_tasks = batch.support_x:size(1)
  local grads = {}
  local total_loss, total_metric = 0, 0
  local function add(loss, metric, g)
    for i = 1, #meta_params do accumulate(grads, i, g[i], 1 / n_tasks) end
    total_loss, total_metric = total_loss + loss, total_metric + metric
  end
  local comm, first, last, mine = self.comm, 1, n_tasks, {}
  local function checked(t, loss, metric, g)
    if type(loss) ~= "number" or type(metric) ~= "number" or type(g) ~= "table" then
      error(string.format("%s: Learner:task_meta_gradient returned (%s, %s, %s) for task %d; expected the query "
        .. "loss and the metric as numbers and the gradient list over meta (return loss:item(), metric, grads)",
        tostring(self.algorithm), T.is_tensor(loss) and "a tensor" or type(loss),
        T.is_tensor(metric) and "a tensor" or type(metric), type(g), t), 0)
    end
    if #g > #meta_params then
      error(string.format("%s: Learner:task_meta_gradient returned %d gradients for task %d, but meta has %d "
        .. "entries", tostring(self.algorithm), #g, t, #meta_params), 0)
    end
    return loss, metric, g
  end
  if comm then
    if self.bn_mode == "running" then
      error("bn_mode=running needs the running statistics of every task, which no MPI rank sees; "
        .. "use bn_mode=batch or one process", 2)
    end
    first, last = comm:share(n_tasks)
  end
  local collect = comm and function(...) mine[#mine + 1] = {...} end or add
  local function collect_task(t, ...) collect(checked(t, ...)) end
  local function task_ctx(t)
    return {iteration = ctx.iteration, iterations = ctx.iterations, seed = ctx.seed, task = t}
  end
  local parallel = threads_module()
  if parallel and last > first and not self:sequential_tasks() then
    check_for_threads(self, "meta_gradient")
    local jobs = {}
    for t = first, last do
      jobs[#jobs + 1] = {self.spec, meta_params, batch.support_x:select(1, t), batch.support_y:select(1, t),
        batch.query_x:select(1, t), batch.query_y:select(1, t), task_ctx(t)}
    end
    cross_check_gradients(self, parallel, jobs[1])
    for j, r in ipairs(parallel.map("algorithm", "task_gradients", jobs)) do collect_task(first + j - 1, r[1], r[2], r[3]) end
  else
    for t = first, last do
      collect_task(t, self:task_meta_gradient(meta_params, batch.support_x:select(1, t), batch.support_y:select(1, t),
        batch.query_x:select(1, t), batch.query_y:select(1, t), task_ctx(t)))
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

--- The outer optimizer of this algorithm (default: Adam at the config's meta_lr).
function Learner:outer_optimizer(cfg)
  return require("optim").adam{lr = cfg.meta_lr}
end

--- The outer learning rate at an iteration (nil: the optimizer's own, constant).
function Learner:outer_lr(iteration, iterations, meta_lr) -- luacheck: ignore
  return nil
end

--- Evaluate over tasks: `next_task()` returns support_x, support_y, query_x, query_y of one task
--- (or nil to stop early). Returns {mean = {...}, std = {...}, ci95 = {...}, n = tasks}, each
--- list indexed by inner step + 1; ci95 = 1.96 * std / sqrt(n) (std: population standard deviation,
--- as numpy's np.std in the paper's code). Tasks are fine-tuned on the parallel module's threads,
--- a few per thread at a time, drawn in order here; with self.comm each MPI rank adapts its share
--- of the tasks and the rows are gathered in task order (should_stop must not communicate: ranks
--- call it different numbers of times).
function Learner:evaluate(meta, n_tasks, next_task, steps, should_stop)
  meta = self:complete(meta)
  local per_task = {}
  local first, last = 1, n_tasks
  if self.comm then first, last = self.comm:share(n_tasks) end -- every rank draws tasks 1..last in order
  local parallel = threads_module()
  if parallel then check_for_threads(self, "evaluate") end
  local threads = parallel and parallel.threads() or 1
  local buffers = self.net:buffers()
  local pending = {}
  -- a task's row, checked as it comes (not after every task is evaluated)
  local function keep(row)
    local t = #per_task + 1
    local ok = type(row) == "table" and #row == steps + 1
    for c = 1, ok and #row or 0 do ok = ok and type(row[c]) == "number" end
    if not ok then
      error(string.format("%s: Learner:finetune returned %s for task %d; expected a list of steps + 1 = %d numbers "
        .. "(the metric after 0..%d inner steps)", tostring(self.algorithm), type(row) == "table"
        and string.format("a table of %d entries", #row) or "a " .. type(row), t, steps + 1, steps), 0)
    end
    per_task[t] = row
  end
  local function flush()
    if #pending == 0 then return end
    cross_check_finetune(self, parallel, pending[1])
    for _, r in ipairs(parallel.map("algorithm", "finetune_task", pending)) do keep(r[1]) end
    pending = {}
  end
  for t = 1, last do
    if should_stop and should_stop() then break end
    local sx, sy, qx, qy = next_task(t)
    if sx == nil then break end
    if t >= first then
      if threads > 1 then
        pending[#pending + 1] = {self.spec, meta, buffers, sx, sy, qx, qy, steps}
        if #pending >= 4 * threads then flush() end
      else
        keep(self:finetune(meta, sx, sy, qx, qy, steps))
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

-- ------------------------------------------------------------------ the workers' side

local worker_learners = {} -- per Lua state: learners rebuilt from a spec, by spec.key (its text)

local function worker_learner(spec)
  local learner = worker_learners[spec.key]
  if not learner then
    learner = M.build(spec.module, nn.rebuild(spec.net), spec.options)
    worker_learners[spec.key] = learner
  end
  return learner
end

--- Entry of parallel.map: one task's meta-gradient on a learner rebuilt from spec; returns loss,
--- metric and the dense gradient list over meta.
function M.task_gradients(spec, meta, sx, sy, qx, qy, ctx)
  local learner = worker_learner(spec)
  local loss, metric, grads = learner:task_meta_gradient(meta, sx, sy, qx, qy, ctx)
  for i, p in ipairs(meta) do
    if grads[i] == nil then grads[i] = T.zeros(p:shape()) end
  end
  return loss, metric, grads
end

--- Entry of parallel.map: finetune() of one evaluation task on a learner rebuilt from spec, with
--- the calling network's buffers (batch-norm running statistics).
function M.finetune_task(spec, meta, buffers, sx, sy, qx, qy, steps)
  local learner = worker_learner(spec)
  ag.no_grad(function() nn.copy_into(learner.net:buffers(), buffers, learner.net:buffer_names()) end)
  return learner:finetune(meta, sx, sy, qx, qy, steps)
end

return M
