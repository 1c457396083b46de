-- experiment: the runner behind experiments/*.lua. Resolves a config (script values, then the
-- command-line overrides), builds the task source, network and MAML learner, trains with progress,
-- metrics, plots and checkpoints, and ends with the 600-task evaluation.
--
--   -- experiments/omniglot5w1s.lua
--   return require("experiment").run{ name = "omniglot5w1s", ways = 5, shots = 1, ... }
--
--   -- an ablation: a base experiment plus a few changed keys
--   local experiment = require "experiment"
--   local base = experiment.config "experiments/omniglot5w1s.lua"
--   return experiment.run(experiment.extend(base, {name = "omniglot5w1s_first_order", first_order = true}))
--
-- experiment.run(cfg [, opts]) takes the overrides from require("mamlrun").overrides (the host's
-- key=value arguments) unless opts.overrides is given. Other opts, mainly for tests and variants:
-- source (a task source object: see lua/sinusoid.lua for the interface), host (replacements for
-- the mamlrun module's is_tty/time/on_signal/signal_pending/rss_peak), print (a function for output),
-- warn (a function for warnings, default: stderr), after_iteration (a function(run, iteration) called after each meta-iteration), build_learner (a
-- function(cfg, net, source) returning the learner, for variants; default experiment.build_learner).
-- Every valid key, its type, default and meaning is in M.keys below (`experiment.help()` prints them).
local T = require "tensor"
local ag = require "autograd"
local nn = require "nn"
local optim = require "optim"
local algorithm = require "algorithm"
local json = require "json"
local plot = require "plot"
local checkpoint = require "checkpoint"

local M = {}

-- ------------------------------------------------------------------ types of config values

local types = {}

types.integer = {name = "an integer", convert = function(v)
  if type(v) == "number" and v == math.floor(v) and math.abs(v) < 2^53 then return math.tointeger(v) end
end}
types.number = {name = "a number", convert = function(v)
  if type(v) == "number" then return v end
end}
types.boolean = {name = "a boolean (true or false)", convert = function(v)
  if type(v) == "boolean" then return v end
end}
types.string = {name = "a string", convert = function(v)
  if type(v) == "string" then return v end
  if type(v) == "number" then return tostring(v) end
end}
types.integer_list = {name = "a list of integers (e.g. 40,40)", convert = function(v)
  if type(v) == "number" and math.tointeger(v) then return {math.tointeger(v)} end
  if type(v) == "string" then
    local out = {}
    for item in v:gmatch("[^,%s]+") do
      local n = math.tointeger(tonumber(item))
      if not n then return nil end
      out[#out + 1] = n
    end
    if #out > 0 then return out end
    return nil
  end
  if type(v) == "table" then
    local out = {}
    for i, n in ipairs(v) do
      out[i] = math.tointeger(n)
      if not out[i] then return nil end
    end
    if #out > 0 then return out end
  end
end}

local builtin_models = {"conv4", "peer_net", "mlp"}

-- a name of a module on package.path (beside the script), or nil
local function module_exists(name)
  return type(name) == "string" and name:match("^[%w_%.]+$") ~= nil
    and (package.loaded[name] ~= nil or package.searchpath(name, package.path) ~= nil)
end

types.model = {name = "one of " .. table.concat(builtin_models, ", ") .. ", or the name of a network module "
  .. "beside the script", convert = function(v)
  for _, m in ipairs(builtin_models) do
    if v == m then return v end
  end
  if module_exists(v) then return v end
end}

types.algorithm = {name = "one of " .. table.concat(algorithm.shipped, ", ") .. ", or the name of an algorithm "
  .. "module beside the script", convert = function(v)
  for _, a in ipairs(algorithm.shipped) do
    if v == a then return v end
  end
  if module_exists(v) then return v end
end}

local function one_of(choices)
  return {name = "one of " .. table.concat(choices, ", "), choices = choices, convert = function(v)
    for _, c in ipairs(choices) do
      if v == c then return v end
    end
  end}
end

local function number_or(choice)
  return {name = string.format("a number or \"%s\"", choice), convert = function(v)
    if type(v) == "number" or v == choice then return v end
  end}
end

-- ------------------------------------------------------------------ the config keys

local function key(name, type_, default, doc) return {name = name, type = type_, default = default, doc = doc} end

--- Every config key by group: {name, type, default, doc}. The valid keys of an experiment are the
--- common ones, those of its task and those of its model.
M.keys = {
  common = {
    key("name", types.string, "experiment", "experiment name; the run folder is <out_dir>/<name>-<timestamp>"),
    key("task", one_of{"omniglot", "sinusoid", "custom"}, "omniglot",
      "task family (custom: a source passed to experiment.run)"),
    key("model", types.model, "conv4",
      "network: conv4, peer_net, mlp (nn.conv4, nn.peer_net, nn.mlp), or a module of your own beside the "
      .. "script (nn.from_module)"),
    key("algorithm", types.algorithm, "maml",
      "meta-learning algorithm: " .. table.concat(algorithm.shipped, ", ")
      .. " (lua/algorithms/), or a module of your own beside the script"),
    key("seed", types.integer, 1, "seed of the training generator (initialisation and task sampling)"),
    key("iterations", types.integer, 60000, "meta-iterations (meta-batches)"),
    key("meta_batch", types.integer, 32, "tasks per meta-batch"),
    key("meta_lr", types.number, 1e-3, "Adam learning rate of the meta-parameters"),
    key("steps_test", types.integer, 3, "inner steps at meta-test (the headline number)"),
    key("steps_test_max", types.integer, 10,
      "evaluation reports the metric after 0..max(steps_test, steps_test_max) steps"),
    key("bn_mode", one_of{"batch", "running"}, "batch",
      "batch norm at meta-test: batch statistics (the paper's code, transductive) or running statistics"),
    key("on_nonfinite", one_of{"stop", "skip"}, "stop",
      "a NaN/inf meta-loss or gradient: stop the run, or skip that meta-update"),
    key("log_every", types.integer, 20, "iterations per metrics record and per log line"),
    key("eval_every", types.integer, 1000, "iterations between validation evaluations (0: never)"),
    key("val_tasks", types.integer, 200, "tasks per validation evaluation (metric after 0..steps_test steps)"),
    key("test_tasks", types.integer, 600, "tasks of the final evaluation"),
    key("checkpoint_every", types.integer, 1000, "iterations between checkpoints (0: only at the end)"),
    key("max_minutes", types.number, 0,
      "stop meta-training after this many minutes of this session (0: no limit); then checkpoint and test "
      .. "as at the end (runs of equal wall time)"),
    key("eval_seed", types.integer, 12345,
      "seed of the validation (eval_seed) and test (eval_seed + 1) tasks, the same for every run"),
    key("threads", types.integer, 0,
      "threads for the tasks of a meta-batch (the parallel module; 0: one per core, or $MAMLRUN_THREADS; "
      .. "1: all on the main thread). Results do not depend on it"),
    key("out_dir", types.string, "runs", "folder of the run folders"),
    key("progress", one_of{"auto", "line", "log", "none"}, "auto",
      "auto: a live line on a terminal, log lines otherwise; line; log; none (quiet)"),
    key("resume", types.string, "", "a run folder to continue (its config, checkpoint.bin and metrics)"),
    key("eval_only", types.boolean, false, "only evaluate the model in `checkpoint` on the test tasks"),
    key("checkpoint", types.string, "", "checkpoint file for eval_only"),
  },
  omniglot = {
    key("ways", types.integer, 5, "classes per task (N)"),
    key("shots", types.integer, 1, "support images per class (K)"),
    key("queries", types.integer, 1,
      "query images per class in meta-training (the paper's code: as many as the shots; the seed: 15)"),
    key("queries_test", types.integer, 1,
      "query images per class of each evaluation task (the paper's code: as many as the shots; with "
      .. "bn_mode=batch they also set the batch-norm statistics of the query forward)"),
    key("rotation", one_of{"task", "classes", "none"}, "task",
      "task: each class of a task rotated by a random multiple of 90 degrees, per task (the paper's code); "
      .. "classes: rotated copies are classes of their own; none"),
    key("image", types.integer, 28, "image side in pixels"),
    key("split", one_of{"paper", "maml", "seed", "lake", "vinyals"}, "paper",
      "class split (lua/tasks.lua): paper = maml: 1200 random train characters / 423 test; seed: the first "
      .. "1200 in load order; lake: background / evaluation alphabets; vinyals: 1028 / 172 validation / 423"),
    key("val_classes", types.integer, 0,
      "classes carved from the training ones for validation (the paper's code: 100); 0: validation "
      .. "tasks come from the test classes (monitoring only: nothing is selected on them, and the final "
      .. "test draws other tasks)"),
    key("data", types.string, "",
      "Omniglot folder (empty: $OMNIGLOT_DIR, else the per-user folder $XDG_DATA_HOME/mamlrun/omniglot "
      .. "(default ~/.local/share/mamlrun/omniglot), else a checkout's data/omniglot)"),
  },
  sinusoid = {
    key("shots", types.integer, 10, "support points per task in meta-training (K)"),
    key("queries", types.integer, 10, "query points per task in meta-training"),
    key("shots_test", types.integer, 5, "support points per evaluation task"),
    key("queries_test", types.integer, 100, "query points per evaluation task"),
    key("amp_min", types.number, 0.1, "amplitude range low"),
    key("amp_max", types.number, 5.0, "amplitude range high"),
    key("phase_min", types.number, 0.0, "phase range low"),
    key("phase_max", types.number, math.pi, "phase range high"),
    key("x_min", types.number, -5.0, "input range low"),
    key("x_max", types.number, 5.0, "input range high"),
  },
  custom = {
    key("ways", types.integer, 5, "classes per task (N)"),
    key("shots", types.integer, 1, "support examples per class (K)"),
    key("queries", types.integer, 1, "query examples per class in meta-training"),
    key("queries_test", types.integer, 5, "query examples per class of each evaluation task"),
  },
  conv4 = {
    key("channels", types.integer, 64, "filters per conv layer"),
    key("pool", one_of{"stride", "max"}, "stride", "stride-2 convs + mean (Omniglot) or max-pool (MiniImagenet)"),
    key("order", one_of{"norm_relu", "relu_norm"}, "norm_relu", "conv -> BN -> ReLU (paper) or conv -> ReLU -> BN"),
    key("bn_scale", types.boolean, false, "batch norm has a learned scale (gamma); the paper's code: no"),
    key("bn_adapt", types.boolean, false, "the inner loop adapts the batch-norm parameters; the paper's code: no"),
    key("bn_eps", types.number, 1e-3, "batch-norm epsilon (TF's default 1e-3)"),
    key("init", one_of{"paper", "kaiming"}, "paper",
      "paper: Xavier-uniform conv, standard-normal linear weights; kaiming: Kaiming normal"),
  },
  peer_net = {},
  mlp = {
    key("hidden", types.integer_list, {40, 40}, "hidden layer sizes"),
    key("init", one_of{"paper", "kaiming"}, "paper", "paper: truncated normal std 0.01; kaiming: Kaiming normal"),
  },
}

local default_model = {omniglot = "conv4", sinusoid = "mlp", custom = "conv4"}

-- the config key group of an algorithm module (its `keys`: {name=, type=, default=, doc=} with type
-- "integer", "number", "boolean", "string", "number_or_ways" or a list of choices)
local function algorithm_keys(A)
  local group = {}
  for _, k in ipairs(A.keys or {}) do
    local t = k.type
    if type(t) == "table" then t = one_of(t)
    elseif t == "number_or_ways" then t = number_or("ways")
    else t = types[t] end
    if not t then error(string.format("algorithm %s: key '%s' has an unknown type %s", A.name, tostring(k.name),
      tostring(k.type)), 0) end
    group[#group + 1] = key(k.name, t, k.default, k.doc or "")
  end
  return group
end

-- the config key group of a network module of the user's own (its `keys`, as an algorithm's)
local function model_keys(model)
  for _, m in ipairs(builtin_models) do
    if m == model then return M.keys[model] or {} end
  end
  local mod = require(model)
  return type(mod) == "table" and mod.keys and algorithm_keys{name = model, keys = mod.keys} or {}
end

--- The config keys of an algorithm (by name), as M.keys' groups.
function M.algorithm_keys(name)
  return algorithm_keys((algorithm.load(name)))
end

-- the key list of a (task, model, algorithm), as a map name -> entry and a sorted list of names
local function schema(task, model, alg)
  local map, names = {}, {}
  local groups = {M.keys.common, M.keys[task] or {}, model == "none" and {} or model_keys(model),
    alg and M.algorithm_keys(alg) or {}}
  for _, group in ipairs(groups) do
    for _, k in ipairs(group) do
      if not map[k.name] then names[#names + 1] = k.name end
      map[k.name] = k
    end
  end
  table.sort(names)
  return map, names
end

-- whether name is a key of any group (of the shipped algorithms too)
local function any_key(name)
  local groups = {}
  for _, group in pairs(M.keys) do groups[#groups + 1] = group end
  for _, a in ipairs(algorithm.shipped) do groups[#groups + 1] = M.algorithm_keys(a) end
  for _, group in ipairs(groups) do
    for _, k in ipairs(group) do
      if k.name == name then return true end
    end
  end
  return false
end

local function deep_copy(v)
  if type(v) ~= "table" or T.is_tensor(v) then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = deep_copy(x) end
  return out
end

local function describe(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "table" then return json.encode(v) end
  return tostring(v)
end

-- a config error: the user's (no traceback, exit status 2: see options.usage_error) when the value
-- came from the command line, else the script's
local ON_COMMAND_LINE = " on the command line"
local function config_error(where, msg)
  if where == ON_COMMAND_LINE then require("options").usage_error(msg) end
  error(msg, 0)
end

-- check and convert one value; `where` says whose value it is in errors
local function convert(k, v, where)
  local out = k.type.convert(v)
  if out == nil then
    config_error(where, string.format("config key '%s' expects %s, got %s %s%s", k.name, k.type.name, type(v),
      describe(v), where))
  end
  return out
end

local function merge_extra(dst, src, path)
  for k, v in pairs(src) do
    local full = path .. "." .. k
    if type(v) == "table" then
      if dst[k] ~= nil and type(dst[k]) ~= "table" then
        error(string.format("config key '%s' is %s, not a table", full, describe(dst[k])), 0)
      end
      dst[k] = dst[k] or {}
      merge_extra(dst[k], v, full)
    else
      if dst[k] ~= nil and type(dst[k]) ~= type(v) then
        if type(dst[k]) == "string" then v = tostring(v)
        else
          error(string.format("config key '%s' expects a %s (like its value %s), got %s %s", full,
            type(dst[k]), describe(dst[k]), type(v), describe(v)), 0)
        end
      end
      dst[k] = v
    end
  end
end

--- The resolved config: script values over the defaults, then the overrides over those. Errors on an
--- unknown key (listing the valid ones) and on a value of the wrong type (naming the key). The
--- `extra` table is free-form for variants: its keys are checked against the types of its values.
--- Keys of the script that belong to another task or model (conv4's bn_scale when the model is
--- changed to peer_net) are dropped; the second result lists them.
function M.resolve(script_cfg, overrides)
  overrides = overrides or {}
  local cfg = deep_copy(script_cfg or {})
  local common = schema("common", "none")
  local task = convert(common.task, overrides.task or cfg.task or "omniglot", "")
  local model = convert(common.model, overrides.model or cfg.model or default_model[task], "")
  local alg = convert(common.algorithm, overrides.algorithm or cfg.algorithm or "maml", "")
  local map, names = schema(task, model, alg)
  local function unknown(k, where)
    return string.format("unknown config key '%s'%s (task %s, model %s, algorithm %s); valid keys: %s",
      tostring(k), where, task, model, alg, table.concat(names, ", ") .. ", extra.*")
  end
  local out, ignored = {extra = {}}, {}
  for k, v in pairs(cfg) do
    if k == "extra" then
      if type(v) ~= "table" then error("config key 'extra' must be a table", 0) end
      merge_extra(out.extra, v, "extra")
    elseif not map[k] then
      if not any_key(k) then error(unknown(k, " in the experiment script"), 0) end
      -- a key of another task or model (e.g. conv4's bn_scale after model=peer_net): not used
      ignored[#ignored + 1] = k
    else
      out[k] = convert(map[k], v, " in the experiment script")
    end
  end
  for k, v in pairs(overrides) do
    if k == "extra" then
      if type(v) ~= "table" then config_error(ON_COMMAND_LINE, "override 'extra' must be extra.<key>=<value>") end
      local ok, err = pcall(merge_extra, out.extra, v, "extra")
      if not ok then config_error(ON_COMMAND_LINE, err) end
    elseif not map[k] then
      config_error(ON_COMMAND_LINE, unknown(k, ON_COMMAND_LINE))
    else
      out[k] = convert(map[k], v, ON_COMMAND_LINE)
    end
  end
  for _, name in ipairs(names) do
    if out[name] == nil then out[name] = deep_copy(map[name].default) end
  end
  out.task, out.model, out.algorithm = task, model, alg
  table.sort(ignored)
  local function origin(name) return overrides[name] ~= nil and ON_COMMAND_LINE or "" end
  for _, name in ipairs{"iterations", "meta_batch", "val_tasks", "test_tasks", "log_every"} do
    if out[name] < (name == "iterations" and 0 or 1) then
      config_error(origin(name), string.format("config key '%s' must be positive, got %d", name, out[name]))
    end
  end
  for _, name in ipairs{"steps", "steps_test", "eval_every", "checkpoint_every", "threads"} do
    if out[name] ~= nil and out[name] < 0 then
      config_error(origin(name), string.format("config key '%s' must be >= 0, got %s", name, tostring(out[name])))
    end
  end
  -- sizes of the task and the network (keys of some tasks and models only): caught here, they would
  -- fail later far from the key (a negative size deep in nn.lua, a mean over no query points)
  for _, name in ipairs{"ways", "shots", "queries", "shots_test", "queries_test", "image", "channels"} do
    if out[name] ~= nil and out[name] < 1 then
      config_error(origin(name), string.format("config key '%s' must be positive, got %d", name, out[name]))
    end
  end
  for _, name in ipairs{"steps_test_max", "val_classes", "max_minutes"} do
    if out[name] ~= nil and out[name] < 0 then
      config_error(origin(name), string.format("config key '%s' must be >= 0, got %s", name, tostring(out[name])))
    end
  end
  for _, name in ipairs(names) do
    local v = out[name]
    if map[name].type == types.number and (v ~= v or v == math.huge or v == -math.huge) then
      config_error(origin(name), string.format("config key '%s' must be a finite number, got %s", name, tostring(v)))
    end
  end
  for i, size in ipairs(out.hidden or {}) do
    if size < 1 then config_error(origin("hidden"), string.format("config key 'hidden' must list positive sizes, got %d at position %d",
      size, i)) end
  end
  return out, ignored
end

--- The text of every key of a (task, model, algorithm) with type, default and meaning.
function M.help(task, model, alg)
  task = task or "omniglot"
  model = model or default_model[task]
  alg = alg or "maml"
  local map, names = schema(task, model, alg)
  local lines = {string.format("config keys of a %s experiment with model %s and algorithm %s:", task, model, alg)}
  for _, name in ipairs(names) do
    local k = map[name]
    lines[#lines + 1] = string.format("  %-17s %-10s %s (%s)", name, describe(k.default), k.doc, k.type.name)
  end
  return table.concat(lines, "\n")
end

-- ------------------------------------------------------------------ configs of scripts

M.config_only = false

-- the file of an experiment script (lua/locate.lua): relative to the current folder, then beside the
-- running script, then a shipped one by its path under the project (experiments/omniglot5w1s.lua) or
-- by name (omniglot5w1s); nil and a message listing every place looked in when none is a file
local function find_file(path)
  local ok, host = pcall(require, "mamlrun")
  local script = ok and type(host) == "table" and host.script or nil
  local beside = script and script ~= "-" and (script:match("^(.*)/[^/]*$") or ".") or nil
  return require("locate").script(path, {beside = beside})
end

--- The config table of an experiment script (run in config-only mode: its experiment.run call
--- returns the table instead of training). Overrides are not applied. path: a file, or a shipped
--- experiment by name or by its path under the install (see find_file).
function M.config(path)
  local file, why = find_file(path)
  if not file then error("experiment.config: " .. why, 2) end
  local chunk, err = loadfile(file)
  if not chunk then error("experiment.config: " .. tostring(err), 2) end
  local was = M.config_only
  M.config_only = true
  local ok, result = pcall(chunk, {})
  M.config_only = was
  if not ok then error(result, 0) end
  if type(result) ~= "table" then
    error("experiment.config: " .. path .. " did not return experiment.run{...}", 2)
  end
  return result
end

--- A copy of base with the keys of changes replacing its own (nested tables merged).
function M.extend(base, changes)
  local out = deep_copy(base)
  for k, v in pairs(changes or {}) do
    if type(v) == "table" and type(out[k]) == "table" and k == "extra" then
      for k2, v2 in pairs(v) do out[k][k2] = deep_copy(v2) end
    else
      out[k] = deep_copy(v)
    end
  end
  return out
end

-- ------------------------------------------------------------------ building blocks

--- The task source of a config (opts.source when given).
function M.build_source(cfg, injected)
  if injected then return injected end
  if cfg.task == "sinusoid" then
    return require("sinusoid").new{amplitude = {cfg.amp_min, cfg.amp_max},
      phase = {cfg.phase_min, cfg.phase_max}, x = {cfg.x_min, cfg.x_max}}
  elseif cfg.task == "omniglot" then
    local source = require("tasks").source{root = cfg.data ~= "" and cfg.data or nil, size = cfg.image,
      split = cfg.split, val = cfg.val_classes, rotation = cfg.rotation}
    if cfg.val_classes == 0 and cfg.split ~= "vinyals" then
      -- validation tasks from the test classes (drawn with their own generator)
      local sample = source.sample
      function source.sample(self, split, ...)
        return sample(self, split == "val" and "test" or split, ...)
      end
    end
    return source
  end
  error("task 'custom' needs a task source: experiment.run(cfg, {source = ...})", 0)
end

--- The network of a config.
function M.build_net(cfg, source)
  if cfg.model == "conv4" then
    return nn.conv4{ways = cfg.ways, channels = cfg.channels, image = source.image_size or cfg.image,
      in_channels = source.channels or 1, pool = cfg.pool, order = cfg.order, bn_scale = cfg.bn_scale,
      bn_adapt = cfg.bn_adapt, bn_eps = cfg.bn_eps, init = cfg.init}
  elseif cfg.model == "peer_net" then
    return nn.peer_net{ways = cfg.ways, in_channels = source.channels or 1}
  elseif cfg.model == "mlp" then
    local sizes = {source.input_size or 1}
    for _, h in ipairs(cfg.hidden) do sizes[#sizes + 1] = h end
    sizes[#sizes + 1] = source.kind == "regression" and (source.output_size or 1) or cfg.ways
    return nn.mlp{sizes = sizes, init = cfg.init}
  end
  -- a network module of the user's own: its keys, and the sizes of the task
  local options = {ways = cfg.ways, image = source.image_size or cfg.image, in_channels = source.channels or 1,
    input_size = source.input_size, output_size = source.kind == "regression" and (source.output_size or 1) or nil}
  for _, k in ipairs(model_keys(cfg.model)) do options[k.name] = cfg[k.name] end
  return nn.from_module(cfg.model, options)
end

--- The options of a config's algorithm: the values of its keys, and what every algorithm is told
--- of the task (loss, metric, ways, bn_mode).
function M.algorithm_options(cfg, source)
  local options = {loss = source.loss or "cross_entropy", metric = source.metric or "accuracy",
    ways = source.kind ~= "regression" and cfg.ways or nil, bn_mode = cfg.bn_mode}
  for _, k in ipairs(M.algorithm_keys(cfg.algorithm)) do options[k.name] = cfg[k.name] end
  if options.inner_loss_scale == "ways" and source.kind == "regression" then options.inner_loss_scale = 1 end
  return options
end

--- The learner of a config: its algorithm (lua/algorithms/<name>.lua or a module beside the script)
--- built by name, so that worker threads and MPI ranks build the same.
function M.build_learner(cfg, net, source)
  return algorithm.build(cfg.algorithm, net, M.algorithm_options(cfg, source))
end

-- task shapes for training and evaluation
local function train_shape(cfg)
  return {ways = cfg.ways, shots = cfg.train_shots or cfg.shots, queries = cfg.queries}
end
local function test_shape(cfg)
  return {ways = cfg.ways, shots = cfg.shots_test or cfg.shots, queries = cfg.queries_test}
end

local function named_shapes(names, tensors)
  local out = {}
  for i, t in ipairs(tensors) do out[i] = {names[i], t:shape()} end
  return out
end

--- The state of a run as a checkpoint tree.
function M.checkpoint_tree(run)
  local net, learner = run.net, run.learner
  return {
    format = "mamlrun-maml", experiment = run.cfg.name, iteration = run.iteration,
    shapes = {params = named_shapes(learner.meta_names, learner.meta_params),
              buffers = named_shapes(net:buffer_names(), net:buffers())},
    params = learner.meta_params, buffers = net:buffers(), skipped = run.skipped,
    optimizer = run.opt and run.opt:state() or nil,
    generator = run.gen and run.gen:get_state() or nil,
    window = run.window,
    metrics = run.metrics_lines and table.concat(run.metrics_lines, "\n") or nil,
    config = json.encode(run.cfg),
  }
end

--- The tree of a checkpoint file with the fields that loading and resuming use checked: a damaged or
--- foreign tree is an error saying what is wrong with it (not an index error deep in the runner).
function M.load_tree(path)
  local tree = checkpoint.load(path)
  local function bad(fmt, ...)
    error(string.format("%s is not a usable MAML checkpoint: " .. fmt, path, ...), 0)
  end
  if type(tree) ~= "table" then bad("it holds a %s, not a table", type(tree)) end
  if tree.format ~= "mamlrun-maml" then
    error(path .. " is a mamlrun checkpoint but not of a MAML run (format " .. tostring(tree.format) .. ")", 0)
  end
  if math.type(tree.iteration) ~= "integer" or tree.iteration < 0 then bad("iteration is %s", tostring(tree.iteration)) end
  for _, kind in ipairs{"params", "buffers"} do
    local shapes, tensors = type(tree.shapes) == "table" and tree.shapes[kind], tree[kind]
    if type(shapes) ~= "table" or type(tensors) ~= "table" then bad("no %s, or no shapes of them", kind) end
    if #tensors ~= #shapes then bad("%d %s but %d shapes", #tensors, kind, #shapes) end
    for i, entry in ipairs(shapes) do
      local ok = type(entry) == "table" and type(entry[1]) == "string" and type(entry[2]) == "table"
      for _, size in ipairs(ok and entry[2] or {}) do ok = ok and math.type(size) == "integer" end
      if not ok then bad("shape %d of the %s is not {name, {sizes}}", i, kind) end
      if not T.is_tensor(tensors[i]) then bad("%s %d is a %s, not a tensor", kind, i, type(tensors[i])) end
    end
  end
  for key, want in pairs{experiment = "string", config = "string", generator = "string", metrics = "string",
                         optimizer = "table", window = "table", skipped = "number"} do
    if tree[key] ~= nil and type(tree[key]) ~= want then bad("%s is a %s, not a %s", key, type(tree[key]), want) end
  end
  for _, field in ipairs{"loss", "metric", "n", "grad_norm"} do
    if tree.window and type(tree.window[field]) ~= "number" then bad("window.%s is not a number", field) end
  end
  return tree
end

--- Load a checkpoint file's meta-parameters and buffers into a learner and its net (checking every
--- shape); returns the tree.
function M.load_into(path, learner)
  local net = learner.net
  local tree = M.load_tree(path)
  local diff = checkpoint.compare_shapes("parameter", tree.shapes.params,
    named_shapes(learner.meta_names, learner.meta_params))
  diff = diff or checkpoint.compare_shapes("buffer", tree.shapes.buffers,
    named_shapes(net:buffer_names(), net:buffers()))
  if diff then
    error(string.format("checkpoint %s (experiment %s) does not fit this experiment's network:\n  %s",
      path, tostring(tree.experiment), diff), 0)
  end
  ag.no_grad(function()
    nn.copy_into(learner.meta_params, tree.params, learner.meta_names)
    nn.copy_into(net:buffers(), tree.buffers, net:buffer_names())
  end)
  return tree
end

-- ------------------------------------------------------------------ output and files

local function host_functions(opts)
  local ok, host = pcall(require, "mamlrun")
  if not ok or type(host) ~= "table" then host = {} end
  local h = opts.host or {}
  return {
    is_tty = h.is_tty or host.is_tty or function() return false end,
    time = h.time or host.time or os.clock,
    on_signal = h.on_signal or host.on_signal or function() end,
    signal_pending = h.signal_pending or host.signal_pending or function() return nil end,
    rss_peak = h.rss_peak or host.rss_peak or function() return 0 end,
    overrides = host.overrides,
    script = host.script,
  }
end

local mkdir_p = T.mkdir_p -- (vm/sys.c; the error says "cannot create the folder <path>: <why>")

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

local function write_file(path, text) T.write_atomic(path, text) end

-- the metrics file of MPI ranks other than 0 (rank 0 alone writes the run folder)
local null_file = {write = function() end, flush = function() end, close = function() end}

-- a config as a Lua chunk `return {...}` with sorted keys
local function lua_literal(v, indent)
  indent = indent or ""
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "number" then
    if math.type(v) == "integer" then return tostring(v) end
    if v == math.pi then return "math.pi" end
    return string.format("%.17g", v):find("[.eEn]") and string.format("%.17g", v) or string.format("%.1f", v)
  end
  if type(v) ~= "table" then return tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  if #keys == #v then
    local items = {}
    for i = 1, #v do items[i] = lua_literal(v[i], indent) end
    return "{" .. table.concat(items, ", ") .. "}"
  end
  local lines = {"{"}
  for _, k in ipairs(keys) do
    lines[#lines + 1] = string.format("%s  %s = %s,", indent, k, lua_literal(v[k], indent .. "  "))
  end
  lines[#lines + 1] = indent .. "}"
  return table.concat(lines, "\n")
end

local function new_run_dir(cfg)
  local base = cfg.out_dir .. "/" .. cfg.name .. "-" .. os.date("%Y%m%d-%H%M%S")
  local dir, n = base, 1
  while exists(dir .. "/config.lua") or exists(dir) do
    n = n + 1
    dir = base .. "-" .. n
  end
  mkdir_p(dir)
  return dir
end

local function fmt_time(s)
  if s ~= s or s == math.huge then return "?" end
  s = math.floor(s + 0.5)
  if s >= 3600 then return string.format("%dh%02dm", s // 3600, (s % 3600) // 60) end
  if s >= 60 then return string.format("%dm%02ds", s // 60, s % 60) end
  return string.format("%ds", s)
end

local function is_finite(x) return x == x and x ~= math.huge and x ~= -math.huge end

-- ------------------------------------------------------------------ evaluation

local function metric_label(source)
  return (source.metric or "accuracy") == "accuracy" and "accuracy" or (source.metric or "metric")
end

--- Evaluate the learner's parameters on n tasks of `split` drawn with a generator seeded `seed`,
--- reporting the metric after 0..steps inner steps.
function M.evaluate(run, split, n_tasks, seed, steps, should_stop)
  local cfg, source, learner = run.cfg, run.source, run.learner
  local gen = T.generator(seed)
  local shape = test_shape(cfg)
  return learner:evaluate(learner.params, n_tasks, function()
    local b = source:sample(split, 1, gen, shape)
    return b.support_x:select(1, 1), b.support_y:select(1, 1), b.query_x:select(1, 1), b.query_y:select(1, 1)
  end, steps, should_stop)
end

--- The algorithm of a config and its settings, as text: "maml (first_order false, inner_lr 0.4, ...)".
function M.algorithm_text(cfg)
  local parts = {}
  for _, k in ipairs(M.algorithm_keys(cfg.algorithm)) do
    parts[#parts + 1] = k.name .. " " .. describe(cfg[k.name]):gsub('^"(.*)"$', "%1")
  end
  return cfg.algorithm .. (#parts > 0 and " (" .. table.concat(parts, ", ") .. ")" or "")
end

--- The final-evaluation table as text.
function M.format_table(result, cfg, source, title)
  local pct = (source.metric or "accuracy") == "accuracy"
  local lines = {title or string.format("%d tasks", result.n)}
  lines[#lines + 1] = string.format("  %5s  %10s  %10s", "steps", metric_label(source), "95% CI")
  for i, m in ipairs(result.mean) do
    local step = i - 1
    local mark = step == cfg.steps_test and "  <- steps_test" or ""
    if pct then
      lines[#lines + 1] = string.format("  %5d  %9.2f%%  %9.2f%%%s", step, 100 * m, 100 * result.ci95[i], mark)
    else
      lines[#lines + 1] = string.format("  %5d  %10.4f  %10.4f%s", step, m, result.ci95[i], mark)
    end
  end
  return table.concat(lines, "\n")
end

-- ------------------------------------------------------------------ the run

local Run = {}
Run.__index = Run

function Run:say(fmt, ...)
  if self.cfg.progress == "none" then return end
  if self.live_line then
    self.print_raw("\n")
    self.live_line = false
  end
  self.print_raw(string.format(fmt, ...) .. "\n")
end

-- a warning: printed even with progress=none (on stderr unless opts.warn is given)
function Run:warn(fmt, ...)
  if self.live_line then
    self.print_raw("\n")
    self.live_line = false
  end
  self.print_warning(string.format(fmt, ...) .. "\n")
end

function Run:record(rec)
  local line = json.encode(rec)
  self.metrics_lines[#self.metrics_lines + 1] = line
  if self.metrics_file then
    self.metrics_file:write(line, "\n")
    self.metrics_file:flush()
  end
end

function Run:write_plot()
  if not self.dir then return end
  local train_x, train_loss, train_metric = {}, {}, {}
  local val_x, val_metric, val_pre = {}, {}, {}
  for _, line in ipairs(self.metrics_lines) do
    local r = json.decode(line)
    if r.type == "train" then
      train_x[#train_x + 1], train_loss[#train_loss + 1] = r.iter, r.loss
      train_metric[#train_metric + 1] = r[self.metric_key]
    elseif r.type == "val" then
      val_x[#val_x + 1] = r.iter
      val_metric[#val_metric + 1] = r[self.metric_key .. "_steps_test"]
      val_pre[#val_pre + 1] = r[self.metric_key] and r[self.metric_key][1]
    end
  end
  local accuracy = self.metric_key == "acc"
  local steps = self.cfg.steps_test
  -- (a picture that cannot be written, on a full disk, does not stop the run)
  local ok, err = pcall(plot.write, self.dir .. "/curves.svg", {
    title = string.format("%s (%s)", self.cfg.name, self.dir:match("[^/]+$")),
    panels = {
      {title = "meta-training: query loss after adaptation", ylabel = "loss",
       series = {{name = "meta-train loss", x = train_x, y = train_loss}}},
      {title = accuracy and "accuracy" or "MSE", ylabel = accuracy and "accuracy" or "MSE",
       ylim = accuracy and {0, 1} or nil,
       series = {{name = "meta-train (query)", x = train_x, y = train_metric},
                 {name = string.format("validation, %d step%s", steps, steps == 1 and "" or "s"),
                  x = val_x, y = val_metric, marker = true},
                 {name = "validation, 0 steps", x = val_x, y = val_pre, marker = true}}},
    },
  })
  if not ok then self:warn("curves.svg not written: %s", tostring(err)) end
end

-- Save the training state (atomically: a failed write leaves the previous file as it was). Returns
-- true, or false and a message saying why and which earlier checkpoint is intact; the failure is
-- recorded in the metrics and warned about, and the run goes on.
function Run:save_checkpoint(why)
  if not self.dir then return true end
  local path = self.dir .. "/checkpoint.bin"
  local ok, err = pcall(checkpoint.save, path, M.checkpoint_tree(self))
  if not ok then
    err = tostring(err):gsub("^[^:\n]+%.lua:%d+: ", "") -- (where in checkpoint.lua says nothing here)
    local last = self.last_checkpoint
    local msg = string.format("checkpoint at iteration %d not saved: %s; %s", self.iteration, err,
      last and string.format("the previous checkpoint %s (iteration %d) is intact", last.path, last.iteration)
        or "there is no earlier checkpoint")
    self:record({type = "checkpoint_failed", iter = self.iteration, reason = err})
    self:warn("%s", msg)
    return false, msg
  end
  self.last_checkpoint = {path = path, iteration = self.iteration}
  if why then self:say("checkpoint (%s) at iteration %d: %s", why, self.iteration, path) end
  return true
end

function Run:validate()
  local result = M.evaluate(self, "val", self.cfg.val_tasks, self.cfg.eval_seed, self.cfg.steps_test,
    function() return self:signal() end)
  if result.n == 0 or self:agreed_signal() then return nil end -- interrupted: no partial record
  local rec = {type = "val", iter = self.iteration, tasks = result.n}
  rec[self.metric_key] = result.mean
  rec[self.metric_key .. "_ci95"] = result.ci95
  rec[self.metric_key .. "_steps_test"] = result.mean[self.cfg.steps_test + 1]
  self:record(rec)
  local v = result.mean[self.cfg.steps_test + 1]
  if self.metric_key == "acc" then
    self:say("validation at %d: accuracy %.2f%% after %d steps (%.2f%% before adaptation), %d tasks",
      self.iteration, 100 * v, self.cfg.steps_test, 100 * result.mean[1], result.n)
  else
    self:say("validation at %d: MSE %.4f after %d steps (%.4f before adaptation), %d tasks",
      self.iteration, v, self.cfg.steps_test, result.mean[1], result.n)
  end
  self:write_plot()
  return result
end

-- poll the host for SIGINT/SIGTERM; remembers it once seen
function Run:signal()
  if not self.signal_name then self.signal_name = self.host.signal_pending() end
  return self.signal_name
end

-- the signal as every MPI rank sees it (any rank's; collective: all ranks call it at the same
-- points), so that all stop at the same iteration; the local signal in one process
function Run:agreed_signal()
  local sig = self:signal()
  if self.comm then self.signal_name = self.comm:agree(sig) end
  return self.signal_name
end

function Run:progress(it, stats)
  local now = self.host.time()
  local cfg = self.cfg
  self.rate_window[#self.rate_window + 1] = {it, now}
  if #self.rate_window > 50 then table.remove(self.rate_window, 1) end
  local first = self.rate_window[1]
  local rate = (it > first[1] and now > first[2]) and (it - first[1]) / (now - first[2]) or 0
  self.rate = rate
  local eta = rate > 0 and (cfg.iterations - it) / rate or math.huge
  -- means since the last log record (this iteration's values right after one)
  local w = self.window
  local loss, acc = stats.loss, stats.metric
  if w.n > 0 then loss, acc = w.loss / w.n, w.metric / w.n end
  local metric = self.metric_key == "acc" and string.format("  train acc %5.1f%%", 100 * acc) or ""
  local text = string.format("iter %d/%d  %.2f it/s  ETA %s  loss %.4f%s", it, cfg.iterations, rate,
    fmt_time(eta), loss, metric)
  if self.mode == "line" then
    if now - (self.last_draw or -1) >= 0.2 or it == cfg.iterations then
      self.print_raw("\r" .. text .. "\27[K")
      self.live_line = true
      self.last_draw = now
    end
  end
end

-- a plain log line with the averages of the last log_every iterations
function Run:log_line(rec)
  if self.mode ~= "log" then return end
  local cfg = self.cfg
  local eta = (self.rate or 0) > 0 and (cfg.iterations - rec.iter) / self.rate or math.huge
  local metric = self.metric_key == "acc" and string.format("  train acc %5.1f%%", 100 * rec.acc) or ""
  self:say("iter %d/%d  %.2f it/s  ETA %s  loss %.4f%s  |grad| %.3g", rec.iter, cfg.iterations,
    self.rate or 0, fmt_time(eta), rec.loss, metric, rec.grad_norm)
end

-- one meta-iteration: sample, meta-gradient, checks, Adam
function Run:step(it)
  local cfg = self.cfg
  local batch = self.source:sample("train", cfg.meta_batch, self.gen, train_shape(cfg))
  local ctx = {iteration = it, iterations = cfg.iterations}
  if self.learner.uses_seed then ctx.seed = self.gen:random(2147483647) end -- its own draws, per meta-batch
  local stats, grads = self.learner:meta_gradient(batch, ctx)
  local sq = 0
  for _, g in ipairs(grads) do sq = sq + (g * g):sum():item() end
  stats.grad_norm = math.sqrt(sq)
  if not (is_finite(stats.loss) and is_finite(stats.grad_norm)) then
    local what = string.format("non-finite %s (%s) at iteration %d",
      is_finite(stats.loss) and "meta-gradient norm" or "meta-loss",
      tostring(is_finite(stats.loss) and stats.grad_norm or stats.loss), it)
    if cfg.on_nonfinite == "skip" then
      self.skipped = self.skipped + 1
      self:record({type = "skipped", iter = it, reason = what})
      self:say("%s: meta-update skipped (on_nonfinite=skip)", what)
      return stats
    end
    local last = self.last_checkpoint
    local msg = what .. "; the run stopped (on_nonfinite=stop); last good checkpoint: "
      .. (last and string.format("%s (iteration %d)", last.path, last.iteration) or "none")
    self:record({type = "stopped", iter = it, reason = what})
    self:write_plot()
    error(msg, 0)
  end
  local lr = self.learner:outer_lr(it, cfg.iterations, cfg.meta_lr)
  if lr then self.opt.lr = lr end
  self.opt:step(self.learner.meta_params, grads)
  return stats
end

function Run:train()
  local cfg = self.cfg
  self.host.on_signal()
  local t_start = self.host.time()
  local train_time, train_iters = 0, 0
  for it = self.iteration + 1, cfg.iterations do
    local t0 = self.host.time()
    local stats = self:step(it)
    train_time = train_time + (self.host.time() - t0)
    train_iters = train_iters + 1
    self.iteration = it
    local w = self.window
    if is_finite(stats.loss) then
      w.loss, w.metric, w.n = w.loss + stats.loss, w.metric + stats.metric, w.n + 1
      w.grad_norm = w.grad_norm + stats.grad_norm
    end
    self:progress(it, stats)
    if it % cfg.log_every == 0 and w.n > 0 then
      local rec = {type = "train", iter = it, loss = w.loss / w.n, grad_norm = w.grad_norm / w.n,
        it_per_s = self.rate, time = self.host.time() - t_start}
      rec[self.metric_key] = w.metric / w.n
      self:record(rec)
      self:log_line(rec)
      self.window = {loss = 0, metric = 0, n = 0, grad_norm = 0}
    end
    if cfg.eval_every > 0 and it % cfg.eval_every == 0 then self:validate() end
    if cfg.checkpoint_every > 0 and it % cfg.checkpoint_every == 0 then self:save_checkpoint() end
    if self.after_iteration then self.after_iteration(self, it) end
    if cfg.max_minutes > 0 and self.host.time() - t_start >= 60 * cfg.max_minutes and it < cfg.iterations then
      self:record({type = "time_limit", iter = it, minutes = cfg.max_minutes})
      self:say("max_minutes=%g reached at iteration %d of %d: training ends here", cfg.max_minutes, it,
        cfg.iterations)
      break
    end
    local sig = self:agreed_signal()
    if sig then
      local saved, failure = self:save_checkpoint(sig)
      self:write_plot()
      if not saved then
        local last = self.last_checkpoint
        error(string.format("%s: stopped at iteration %d without saving it (%s)%s", sig, it, failure,
          last and string.format("; continue from iteration %d with: mamlrun %s resume=%s", last.iteration,
            self.script or "<experiment script>", self.dir) or ""), 0)
      end
      self:say("%s: stopped at iteration %d; continue with: mamlrun %s resume=%s", sig, it,
        self.script or "<experiment script>", self.dir or "?")
      return false
    end
  end
  self.seconds_per_iteration = train_iters > 0 and train_time / train_iters or nil
  return true
end

function Run:final_evaluation()
  local cfg = self.cfg
  local t0 = self.host.time()
  local result = M.evaluate(self, "test", cfg.test_tasks, cfg.eval_seed + 1,
    math.max(cfg.steps_test, cfg.steps_test_max), function() return self:signal() end)
  if self:agreed_signal() then return nil end
  local seconds = self.host.time() - t0
  local title = string.format("final evaluation of %s at iteration %d: %d test tasks%s, %s, "
    .. "bn_mode %s", cfg.name, self.iteration, result.n,
    cfg.ways and self.source.kind ~= "regression" and string.format(" (%d-way %d-shot, %d queries per class)",
      cfg.ways, cfg.shots, cfg.queries_test) or "", M.algorithm_text(cfg), cfg.bn_mode)
  local text = M.format_table(result, cfg, self.source, title)
  self:say("%s", text)
  local rec = {type = "test", iter = self.iteration, tasks = result.n, seconds = seconds, algorithm = cfg.algorithm}
  rec[self.metric_key] = result.mean
  rec[self.metric_key .. "_std"] = result.std
  rec[self.metric_key .. "_ci95"] = result.ci95
  self:record(rec)
  return result, text
end

function Run:write_summary(result, text)
  if not self.dir then return end
  local cfg = self.cfg
  local summary = {
    name = cfg.name, run = self.dir, iteration = self.iteration, iterations = cfg.iterations,
    seconds_per_iteration = self.seconds_per_iteration, skipped_updates = self.skipped,
    rss_peak_bytes = self.host.rss_peak(), metric = self.metric_key, steps_test = cfg.steps_test,
    algorithm = cfg.algorithm, algorithm_options = {},
  }
  for _, k in ipairs(M.algorithm_keys(cfg.algorithm)) do summary.algorithm_options[k.name] = cfg[k.name] end
  if result then
    summary.test = {tasks = result.n, mean = result.mean, std = result.std, ci95 = result.ci95}
    summary.test_at_steps_test = {mean = result.mean[cfg.steps_test + 1], ci95 = result.ci95[cfg.steps_test + 1]}
  end
  write_file(self.dir .. "/summary.json", json.encode(summary) .. "\n")
  if text then
    local extra = self.seconds_per_iteration and
      string.format("\n%.3f s per meta-iteration (training only)\n", self.seconds_per_iteration) or "\n"
    write_file(self.dir .. "/summary.txt", text .. extra)
  end
end

--- Set up a run for cfg: source, net, learner, optimizer, generator (nothing is written yet).
function M.prepare(cfg, opts)
  opts = opts or {}
  local has_parallel, parallel = pcall(require, "parallel")
  if has_parallel then
    if cfg.threads > 0 then parallel.set_threads(cfg.threads) end
  elseif cfg.threads > 1 then
    error("threads=" .. cfg.threads .. " needs the parallel module (built into mamlrun)", 0)
  end
  local source = M.build_source(cfg, opts.source)
  local net = M.build_net(cfg, source)
  local run = setmetatable({
    cfg = cfg, source = source, net = net, iteration = 0, skipped = 0,
    metrics_lines = {}, rate_window = {}, window = {loss = 0, metric = 0, n = 0, grad_norm = 0},
    host = host_functions(opts), script = opts.script or host_functions(opts).script,
    after_iteration = opts.after_iteration,
    print_raw = opts.print or function(s) io.stdout:write(s); io.stdout:flush() end,
    print_warning = opts.warn or function(s) io.stderr:write(s); io.stderr:flush() end,
    metric_key = (source.metric or "accuracy") == "accuracy" and "acc" or source.metric,
  }, Run)
  run.gen = T.generator(cfg.seed)
  net:init(run.gen)
  run.learner = (opts.build_learner or M.build_learner)(cfg, net, source)
  -- under mpirun: the tasks of each meta-batch and evaluation split over the ranks (lua/distributed.lua);
  -- rank 0 alone prints and writes the run folder
  run.comm = require("distributed").communicator()
  run.learner.comm = run.comm
  run.is_root = run.comm == nil or run.comm.rank == 0
  if not run.is_root then run.print_raw, run.print_warning = function() end, function() end end
  if run.comm and has_parallel and cfg.threads == 0 then parallel.set_threads(run.comm.mpi.default_threads()) end
  run.opt = run.learner:outer_optimizer(cfg)
  -- what worker threads could not rebuild is refused before anything runs (never run as another algorithm)
  run.learner:check_threads(string.format("%s (algorithm %s)", cfg.name, cfg.algorithm))
  if cfg.progress == "auto" then
    run.mode = run.host.is_tty(1) and "line" or "log"
  else
    run.mode = cfg.progress
  end
  return run
end

-- restore the training state of a checkpoint tree into run
local function restore(run, tree, path)
  local msg = optim.check_state(tree.optimizer or {}, run.learner.meta_params, run.learner.meta_names)
  if msg then error("checkpoint " .. path .. ": " .. msg, 0) end
  run.opt:load_state(tree.optimizer)
  run.gen:set_state(tree.generator)
  run.iteration = tree.iteration
  run.skipped = tree.skipped or 0
  run.window = tree.window or run.window
  run.metrics_lines = {}
  for line in (tree.metrics or ""):gmatch("[^\n]+") do run.metrics_lines[#run.metrics_lines + 1] = line end
end

--- The answer to `mamlrun SCRIPT --help` (the override help=true): the script's description, then every
--- key with its value in this experiment (the script's values, then the other overrides), its default
--- where different, and its meaning. Builds and runs nothing. Returns {help = text, cfg = config}.
function M.show_help(script_cfg, overrides, opts)
  local cfg, ignored = M.resolve(script_cfg, overrides)
  local script = host_functions(opts).script
  local lines = {}
  if script and script ~= "-" then
    local about = require("locate").description(script)
    lines[1] = script .. (about and ": " .. about or "")
  end
  local map, names = schema(cfg.task, cfg.model, cfg.algorithm)
  lines[#lines + 1] = string.format("config keys of this experiment (task %s, model %s%s): key, value, meaning",
    cfg.task, tostring(cfg.model), cfg.algorithm and ", algorithm " .. tostring(cfg.algorithm) or "")
  for _, name in ipairs(names) do
    local k = map[name]
    local value = describe(cfg[name])
    local default = value ~= describe(k.default) and ", default " .. describe(k.default) or ""
    lines[#lines + 1] = string.format("  %-17s %-10s %s (%s%s)", name, value, k.doc, k.type.name, default)
  end
  if next(cfg.extra or {}) then
    lines[#lines + 1] = string.format("  %-17s %-10s %s", "extra", describe(cfg.extra), "free-form keys of a variant")
  end
  if ignored and #ignored > 0 then
    lines[#lines + 1] = "keys of the script not used with this task and model: " .. table.concat(ignored, ", ")
  end
  lines[#lines + 1] = string.format("run it: mamlrun %s [key=value ...] (this help: --help or help=true; "
    .. "nothing was run)", script or "SCRIPT")
  local text = table.concat(lines, "\n") .. "\n"
  local print_raw = opts.print or function(t) io.stdout:write(t); io.stdout:flush() end
  print_raw(text)
  return {help = text, cfg = cfg}
end

--- Run an experiment: resolve the config with the overrides, then train and evaluate (or, in
--- config-only mode, return the script's config table; with the override help=true, print the
--- experiment's keys and values instead: M.show_help). Returns a result table:
--- {dir=, cfg=, test=, interrupted=, iteration=}.
local run_experiment

function M.run(script_cfg, opts)
  if M.config_only then return deep_copy(script_cfg) end
  -- the thread count a run sets (threads=N) is the caller's again afterwards, on every exit path
  -- (a to-be-closed guard: it runs when the run returns or raises, without catching the error)
  local has_parallel, parallel = pcall(require, "parallel")
  local before = has_parallel and parallel.threads() or nil
  local restore <close> = setmetatable({}, {__close = function()
    if before and parallel.threads() ~= before then parallel.set_threads(before) end
  end})
  return run_experiment(script_cfg, opts)
end

function run_experiment(script_cfg, opts)
  opts = opts or {}
  local host = host_functions(opts)
  local overrides = opts.overrides or host.overrides or {}
  if overrides.help ~= nil then -- `mamlrun SCRIPT --help`; help=false is no request
    if type(overrides.help) ~= "boolean" then
      error(string.format("override 'help' expects true or false, got %s %s", type(overrides.help),
        describe(overrides.help)), 0)
    end
    local rest = {}
    for k, v in pairs(overrides) do if k ~= "help" then rest[k] = v end end
    if overrides.help then return M.show_help(script_cfg, rest, opts) end
    overrides = rest
  end
  local resume_dir = overrides.resume
  local cfg, ignored
  local resume_tree
  if resume_dir and resume_dir ~= "" then
    local path = resume_dir .. "/checkpoint.bin"
    if not exists(path) then error("resume: no checkpoint.bin in " .. resume_dir, 0) end
    resume_tree = M.load_tree(path)
    local ok, saved = pcall(json.decode, resume_tree.config or "{}")
    if not ok or type(saved) ~= "table" then
      error(path .. " is not a usable MAML checkpoint: its config is not a JSON object", 0)
    end
    saved.resume = nil
    local rest = {}
    for k, v in pairs(overrides) do if k ~= "resume" then rest[k] = v end end
    cfg = M.resolve(saved, rest)
    cfg.resume = resume_dir
  else
    cfg, ignored = M.resolve(script_cfg, overrides)
  end
  local run = M.prepare(cfg, opts)
  if ignored and #ignored > 0 then
    run:say("note: keys of the script not used with task %s and model %s: %s", cfg.task, cfg.model,
      table.concat(ignored, ", "))
  end

  if cfg.eval_only then
    if cfg.checkpoint == "" then error("eval_only=true needs checkpoint=<file>", 0) end
    local tree = M.load_into(cfg.checkpoint, run.learner)
    run.iteration = tree.iteration or 0
    if run.is_root then
      run.dir = new_run_dir{out_dir = cfg.out_dir, name = cfg.name .. "-eval"}
      write_file(run.dir .. "/config.lua", "return " .. lua_literal(cfg) .. "\n")
      run.metrics_file = assert(io.open(run.dir .. "/metrics.jsonl", "w"))
    else
      run.metrics_file = null_file
    end
    run:say("evaluating %s (iteration %d) -> %s", cfg.checkpoint, run.iteration, run.dir)
    local result, text = run:final_evaluation()
    run.metrics_file:close()
    run:write_summary(result, text)
    return {dir = run.dir, cfg = cfg, test = result, iteration = run.iteration, interrupted = result == nil}
  end

  if resume_tree then
    M.load_into(resume_dir .. "/checkpoint.bin", run.learner)
    restore(run, resume_tree, resume_dir .. "/checkpoint.bin")
    if run.is_root then
      run.dir = resume_dir
      run.last_checkpoint = {path = resume_dir .. "/checkpoint.bin", iteration = run.iteration}
      local f = assert(io.open(run.dir .. "/metrics.jsonl", "w"))
      for _, line in ipairs(run.metrics_lines) do f:write(line, "\n") end
      run.metrics_file = f
    end
    run:say("resuming %s at iteration %d of %d", resume_dir, run.iteration, cfg.iterations)
  elseif run.is_root then
    run.dir = new_run_dir(cfg)
    run.metrics_file = assert(io.open(run.dir .. "/metrics.jsonl", "w"))
  end
  if run.is_root then
    write_file(run.dir .. "/config.lua", "-- resolved config of this run\nreturn " .. lua_literal(cfg) .. "\n")
    write_file(run.dir .. "/config.json", json.encode(cfg) .. "\n")
  else
    run.metrics_file = null_file
  end
  if run.comm then
    run.comm:check_same("config or initial parameters", json.encode(cfg) .. " "
      .. require("distributed").checksum(run.learner.meta_params))
    local fewest, most = cfg.meta_batch // run.comm.size, -(-cfg.meta_batch // run.comm.size)
    run:say("distributed: %d MPI processes, %s tasks of each meta-batch per process", run.comm.size,
      fewest == most and fewest or fewest .. "-" .. most)
  end
  run:say("%s: %s on %s with %d weights, %d meta-parameter tensors (%d adapted in the inner loop), run folder %s",
    cfg.name, M.algorithm_text(cfg), tostring(run.net.kind), run.net:num_elements(), #run.learner.meta_params,
    (function() local n = 0; for _, a in ipairs(run.learner.adapted) do if a then n = n + 1 end end; return n end)(),
    run.dir)

  local ok, err = pcall(function() return run:train() end)
  if not ok then
    run.metrics_file:close()
    error(err, 0)
  end
  local finished = err
  if not finished then
    run.metrics_file:close()
    run:write_summary(nil, nil)
    return {dir = run.dir, cfg = cfg, interrupted = true, iteration = run.iteration, net = run.net}
  end
  if run.live_line then
    run.print_raw("\n")
    run.live_line = false
  end
  if not (run.last_checkpoint and run.last_checkpoint.iteration == run.iteration) then run:save_checkpoint() end
  if run.comm then
    run.comm:check_same("trained parameters", require("distributed").checksum(run.learner.meta_params))
  end
  local result, text = run:final_evaluation()
  run.metrics_file:close()
  run:write_plot()
  run:write_summary(result, text)
  if result then run:say("run folder: %s", run.dir) end
  return {dir = run.dir, cfg = cfg, test = result, iteration = run.iteration, interrupted = result == nil,
    net = run.net, seconds_per_iteration = run.seconds_per_iteration}
end

return M
