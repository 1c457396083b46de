-- experiment.config: the config of an experiment: the types of its values, every key by group (the
-- common ones, a task's, a model's, an algorithm's), and resolving a script's table with the
-- command line's overrides (experiment.resolve) into the config a run uses, or an error naming the key.
local T = require "tensor"
local algorithm = require "algorithm"
local json = require "json"

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
-- a file or folder: a relative one is taken in the folder mamlrun started in and kept as an absolute path,
-- so a run's config names the same place from any folder (locate.absolute)
types.path = {name = "a path", convert = function(v)
  local text = types.string.convert(v)
  return text and require("locate").absolute(text)
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

-- only (optional): {key = <name>, values = {...}}: the key has an effect only while that key has one of
-- those values (inner_momentum only with inner_optimizer momentum or adam), or {key =, not_values = {...}}:
-- only while it has none of them (val_tasks only with eval_every other than 0); set where it has none, it
-- is an error, not a silent no-op (M.resolve). only.instead (optional) names the key that has the effect
-- there (steps_test for steps with eval_only=true); the error says it
local function key(name, type_, default, doc, only)
  return {name = name, type = type_, default = default, doc = doc, only = only}
end

-- the keys of meta-training alone (eval_only=true tests a checkpoint: set there, they would change nothing);
-- `instead` names the key that meta-test uses in its place
local function training(instead) return {key = "eval_only", values = {false}, instead = instead} end
local TRAINING = training()

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
    key("seed", types.integer, 1, "seed of the training generator (initialisation and task sampling)", TRAINING),
    key("iterations", types.integer, 60000, "meta-iterations (meta-batches)", TRAINING),
    key("meta_batch", types.integer, 32, "tasks per meta-batch", TRAINING),
    key("meta_lr", types.number, 1e-3, "Adam learning rate of the meta-parameters", TRAINING),
    key("steps_test", types.integer, 3, "inner steps at meta-test (the headline number)"),
    key("steps_test_max", types.integer, 10,
      "evaluation reports the metric after 0..max(steps_test, steps_test_max) steps"),
    key("bn_mode", one_of{"batch", "running"}, "batch",
      "batch norm at meta-test: batch statistics (the paper's code, transductive) or running statistics"),
    key("on_nonfinite", one_of{"stop", "skip"}, "stop",
      "a NaN/inf meta-loss or gradient: stop the run, or skip that meta-update", TRAINING),
    key("log_every", types.integer, 20, "iterations per metrics record and per log line", TRAINING),
    key("eval_every", types.integer, 1000, "iterations between validation evaluations (0: never)", TRAINING),
    key("val_tasks", types.integer, 200, "tasks per validation evaluation (metric after 0..steps_test steps; only with "
      .. "eval_every other than 0)",
      {key = "eval_every", not_values = {0}}),
    key("test_tasks", types.integer, 600, "tasks of the final evaluation"),
    key("checkpoint_every", types.integer, 1000, "iterations between checkpoints (0: only at the end)", TRAINING),
    key("max_minutes", types.number, 0,
      "stop meta-training after this many minutes of this session (0: no limit); then checkpoint and test "
      .. "as at the end (runs of equal wall time)", TRAINING),
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
    key("checkpoint", types.string, "", "checkpoint file for eval_only (only with eval_only=true; to continue a "
      .. "run, resume=<its folder>)", {key = "eval_only", values = {true}}),
  },
  omniglot = {
    key("ways", types.integer, 5, "classes per task (N)"),
    key("shots", types.integer, 1, "support images per class (K)"),
    key("queries", types.integer, 1,
      "query images per class in meta-training (the paper's code: as many as the shots; the seed: 15)",
      training("queries_test")),
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
      .. "test draws other tasks); with split=vinyals 0, its own 172 validation characters"),
    key("data", types.path, "",
      "Omniglot folder (empty: $OMNIGLOT_DIR, else the per-user folder $XDG_DATA_HOME/mamlrun/omniglot "
      .. "(default ~/.local/share/mamlrun/omniglot), else a checkout's data/omniglot); a relative one is kept "
      .. "as an absolute path"),
  },
  sinusoid = {
    key("shots", types.integer, 10, "support points per task in meta-training (K)", training("shots_test")),
    key("queries", types.integer, 10, "query points per task in meta-training", training("queries_test")),
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
      "paper: Xavier-uniform conv, standard-normal linear weights; kaiming: Kaiming normal", TRAINING),
  },
  peer_net = {},
  mlp = {
    key("hidden", types.integer_list, {40, 40}, "hidden layer sizes"),
    key("init", one_of{"paper", "kaiming"}, "paper", "paper: truncated normal std 0.01; kaiming: Kaiming normal",
      TRAINING),
  },
}

local default_model = {omniglot = "conv4", sinusoid = "mlp", custom = "conv4"}

-- the config key group of an algorithm module (its `keys`: {name=, type=, default=, doc=, only=} with
-- type "integer", "number", "boolean", "string", "number_or_ways" or a list of choices, and only as
-- key()'s)
local KEY_FIELDS = {"name", "type", "default", "doc", "only"}

local function describe(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "table" then return json.encode(v) end
  return tostring(v)
end
local KEY_TYPES = "\"integer\", \"number\", \"boolean\", \"string\", \"number_or_ways\" or a list of choices"
local KEY_TYPE_NAMES = {integer = true, number = true, boolean = true, string = true} -- (of `types`, for a module's keys)

-- Each key entry as it must be: a table with these fields alone, a name of its own, a known type and a
-- default of that type (a key the run would read as nil, or show as a number while refusing one on the
-- command line, is refused here, when the module's keys are first read, before anything runs).
local function check_key_entry(what, i, k, seen)
  local function bad(fmt, ...) require("options").input_error(what .. ": " .. string.format(fmt, ...)) end
  if type(k) ~= "table" then bad("keys[%d] is a %s, not a {name=, type=, default=, doc=} table", i, type(k)) end
  if type(k.name) ~= "string" or not k.name:match("^[%a_][%w_]*$") then
    bad("keys[%d] has %s, but a key's name is a Lua name (as lr_decay)", i,
      k.name == nil and "no name" or "the name " .. describe(k.name))
  end
  local stray = require("options").unknown_field(k, KEY_FIELDS)
  if stray then bad("key '%s' has an unknown field %s; a key's fields are %s", k.name, stray, table.concat(KEY_FIELDS, ", ")) end
  if seen[k.name] then bad("key '%s' is declared twice (keys[%d] and keys[%d])", k.name, seen[k.name], i) end
  seen[k.name] = i
  if k.doc ~= nil and type(k.doc) ~= "string" then bad("key '%s' has a doc that is a %s, not a string", k.name, type(k.doc)) end
end

local function algorithm_keys(A, kind)
  kind = kind or "algorithm"
  local what = kind .. " " .. tostring(A.name)
  local group, seen = {}, {}
  for i, k in ipairs(A.keys or {}) do
    check_key_entry(what, i, k, seen)
    local t = k.type
    if type(t) == "table" then t = one_of(t)
    elseif t == "number_or_ways" then t = number_or("ways")
    elseif KEY_TYPE_NAMES[t] then t = types[t]
    else t = nil end
    if not t then
      require("options").input_error(string.format("%s: key '%s' has an unknown type %s; the types are %s", what,
        k.name, describe(k.type), KEY_TYPES))
    end
    if k.default == nil then
      require("options").input_error(string.format("%s: key '%s' has no default (the value when neither the "
        .. "script nor the command line sets it)", what, k.name))
    end
    local converted = t.convert(k.default)
    if converted == nil or converted ~= k.default then
      require("options").input_error(string.format("%s: key '%s' is declared %s, but its default is %s (%s)", what,
        k.name, t.name, describe(k.default), math.type(k.default) == "float" and "a number" or "a " .. type(k.default)))
    end
    local only = k.only
    local list = type(only) == "table" and (only.values or only.not_values)
    local stray -- a field of `only` it does not have (a misspelt instead would silently say nothing)
    for f in pairs(type(only) == "table" and only or {}) do
      if f ~= "key" and f ~= "values" and f ~= "not_values" and f ~= "instead" then stray = tostring(f) end
    end
    if only ~= nil and (type(only) ~= "table" or type(only.key) ~= "string" or type(list) ~= "table" or #list == 0
        or (only.values and only.not_values) or (only.instead ~= nil and type(only.instead) ~= "string") or stray) then
      require("options").input_error(string.format("%s: key '%s' has a bad 'only'%s (expected {key = <name>, "
        .. "values = {...}} or {key = <name>, not_values = {...}}, and optionally instead = <name>)",
        what, tostring(k.name), stray and " (unknown field '" .. stray .. "')" or ""))
    end
    group[#group + 1] = key(k.name, t, k.default, k.doc or "", only)
  end
  return group
end

-- the config key group of a network module of the user's own (its `keys`, as an algorithm's)
local function model_keys(model)
  for _, m in ipairs(builtin_models) do
    if m == model then return M.keys[model] or {} end
  end
  local mod = require(model)
  return type(mod) == "table" and mod.keys and algorithm_keys({name = model, keys = mod.keys}, "network module")
    or {}
end

--- The config keys of an algorithm (by name), as M.keys' groups.
function M.algorithm_keys(name)
  return algorithm_keys((algorithm.load(name)))
end

-- the key list of a (task, model, algorithm), as a map name -> entry and a sorted list of names
local function schema(task, model, alg)
  local map, names = {}, {}
  local groups = {M.keys.common, task ~= "common" and M.keys[task] or {}, model == "none" and {} or model_keys(model),
    alg and M.algorithm_keys(alg) or {}}
  local owners = {"every experiment", "task " .. tostring(task), "network " .. tostring(model),
    "algorithm " .. tostring(alg)}
  local owner = {}
  for g, group in ipairs(groups) do
    for _, k in ipairs(group) do
      -- a network's or algorithm's key of the same name as another's would replace it silently (its default
      -- and meaning): refused
      if map[k.name] and owner[k.name] ~= g then
        require("options").input_error(string.format("%s declares the key '%s', which is a key of %s already: "
          .. "give it a name of its own", owners[g], k.name, owners[owner[k.name]]))
      end
      if not map[k.name] then names[#names + 1] = k.name end
      map[k.name], owner[k.name] = k, g
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

-- merge src into the extra table dst (path names it); declared: src may only set keys dst has (the command
-- line's extra.<key>=: a key the script's extra table does not declare is one nothing reads)
local function merge_extra(dst, src, path, declared)
  for k, v in pairs(src) do
    local full = path .. "." .. k
    if declared and dst[k] == nil then
      local have = {}
      for name in pairs(dst) do have[#have + 1] = path .. "." .. tostring(name) end
      table.sort(have)
      error(string.format("unknown config key '%s' on the command line: the experiment script's %s table declares "
        .. "%s, and nothing reads an extra key it does not declare (a variant reads the extra keys its script "
        .. "gives, with their defaults: add %s = <default> to the script's %s table)", full, path,
        #have > 0 and "only " .. table.concat(have, ", ") or "none", tostring(k), path), 0)
    end
    if type(v) == "table" then
      if dst[k] ~= nil and type(dst[k]) ~= "table" then
        error(string.format("config key '%s' is %s, not a table", full, describe(dst[k])), 0)
      end
      dst[k] = dst[k] or {}
      merge_extra(dst[k], v, full, declared)
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

local function where_set(name, overrides)
  return overrides[name] ~= nil and "set on the command line" or "set in the experiment script"
end

--- Whether key entry k (of M.keys or M.algorithm_keys) has an effect in config cfg: true unless its
--- `only` names a key whose value in cfg is none of the listed ones.
function M.in_effect(k, cfg)
  local only = k.only
  if not only or cfg[only.key] == nil then return true end
  for _, v in ipairs(only.values or only.not_values) do
    if cfg[only.key] == v then return only.values ~= nil end
  end
  return only.values == nil
end

-- the checks of M.resolve across keys, on its result `out` and its schema (map, names; script_cfg and
-- overrides say where each key was set). A key set where it has no effect is an error when the command line set it, or when
-- the script set it and the command line left the key it depends on alone (a script's key that an
-- override turns off, as min_meta_lr after cosine_lr=false, is what the user asked for).
local function check_combinations(out, map, names, script_cfg, overrides, resolved, set)
  local function origin(name) return overrides[name] ~= nil and ON_COMMAND_LINE or "" end
  for _, name in ipairs(names) do
    local only = map[name].only
    local set = only and (overrides[name] ~= nil
      or (not resolved and script_cfg[name] ~= nil and overrides[only.key] == nil))
    if set and not M.in_effect(map[name], out) then
      local choices = {}
      for i, v in ipairs(only.values or only.not_values) do choices[i] = tostring(v) end
      local needs = only.values and string.format("%s=%s", only.key, table.concat(choices, "|"))
        or string.format("%s other than %s", only.key, table.concat(choices, ", "))
      config_error(origin(name), string.format("config key '%s' (%s) has no effect with %s=%s: it is used only "
        .. "with %s; remove it, or set %s%s", name, where_set(name, overrides), only.key, tostring(out[only.key]),
        needs, only.key, only.instead and string.format(" (with %s=%s the key in effect is %s)", only.key, tostring(out[only.key]),
          only.instead) or ""))
    end
  end
  -- the evaluation reports 0..max(steps_test, steps_test_max) steps: a steps_test_max below steps_test changes nothing
  local max_set = overrides.steps_test_max ~= nil
    or (not resolved and script_cfg.steps_test_max ~= nil and overrides.steps_test == nil)
  if max_set and out.steps_test_max and out.steps_test and out.steps_test_max < out.steps_test then
    config_error(origin("steps_test_max"), string.format("config key 'steps_test_max' (%s) is %d, below steps_test "
      .. "(%d): the evaluation reports the metric after 0..max(steps_test, steps_test_max) inner steps, so it "
      .. "changes nothing; give it at least %d, or leave it out", where_set("steps_test_max", overrides),
      out.steps_test_max, out.steps_test, out.steps_test))
  end
  if out.split == "vinyals" and (out.val_classes or 0) ~= 0 then
    config_error(overrides.split ~= nil and ON_COMMAND_LINE or origin("val_classes"), string.format(
      "config key 'val_classes' (%s) must be 0 with split=vinyals, which has its own 172 validation characters; "
      .. "got %d: add val_classes=0", where_set("val_classes", overrides), out.val_classes))
  end
  local A = algorithm.load(out.algorithm)
  if type(A.check_config) == "function" then
    local name, msg = A.check_config(out, set)
    -- (the command line's mistake too when it chose the algorithm that refuses the script's key: the key
    -- cannot be removed from there, but overridden)
    if name and overrides[name] == nil and not resolved and script_cfg[name] ~= nil and overrides.algorithm ~= nil then
      local v = out[name]
      msg = string.format("%s (%s=%s is the experiment script's: override it on the command line%s)", msg, name,
        describe(v), type(v) == "boolean" and string.format(", %s=%s", name, tostring(not v)) or "")
    end
    if name then config_error(overrides.algorithm ~= nil and ON_COMMAND_LINE or origin(name), msg) end
  end
end

--- The resolved config: script values over the defaults, then the overrides over those. Errors on an
--- unknown key (listing the valid ones) and on a value of the wrong type (naming the key). The
--- `extra` table is free-form for variants: its keys are checked against the types of its values.
--- Keys of the script that belong to another task or model (conv4's bn_scale when the model is
--- changed to peer_net) are dropped; the second result lists them. A key set where it has no effect
--- (its `only`), a combination that cannot run (split=vinyals with val_classes) and one that the
--- algorithm rejects (its check_config) are errors naming the keys. opts.resolved: script_cfg is a
--- run's own resolved config (resume=), so only the overrides count as set. The third result is
--- set(name): whether the script or the command line set that key (what check_config is given).
function M.resolve(script_cfg, overrides, opts)
  overrides = overrides or {}
  local resolved = opts and opts.resolved
  local cfg = deep_copy(script_cfg or {})
  local common = schema("common", "none")
  -- (a task, model or algorithm mistyped on the command line is a usage error, as any other key there)
  local function chosen(name, default)
    if overrides[name] ~= nil then return convert(common[name], overrides[name], ON_COMMAND_LINE) end
    if cfg[name] ~= nil then return convert(common[name], cfg[name], " in the experiment script") end
    return convert(common[name], default, "")
  end
  local task = chosen("task", "omniglot")
  local model = chosen("model", default_model[task])
  local alg = chosen("algorithm", "maml")
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
      local ok, err = pcall(merge_extra, out.extra, v, "extra", true)
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
  local max_threads = require("parallel").max_threads
  if out.threads ~= nil and out.threads > max_threads then
    config_error(origin("threads"), string.format("config key 'threads' must be at most %d, got %d (0: one per core)",
      max_threads, out.threads))
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
  -- a classification task of one class has nothing to learn: its loss is 0 and its accuracy 100%
  if out.ways == 1 then
    config_error(origin("ways"), "config key 'ways' must be at least 2 (a task of 1 class has nothing to tell "
      .. "apart: loss 0, accuracy 100%), got 1")
  end
  -- the run folder is <out_dir>/<name>-<timestamp>: a name with a '/' made folders inside out_dir, an empty one
  -- a folder named by its timestamp alone
  if type(out.name) == "string" and (out.name == "" or out.name:find("/", 1, true)) then
    config_error(origin("name"), string.format("config key 'name' must be a file name, not empty and with no '/' "
      .. "(the run folder is <out_dir>/<name>-<timestamp>; out_dir chooses the folder), got %q", out.name))
  end
  -- step sizes and constants of the algorithms and the network (keys of some only): a negative step
  -- size would climb the loss, a zero Adam rate or batch-norm epsilon train nothing or divide by zero
  for _, name in ipairs{"meta_lr", "bn_eps"} do
    if out[name] ~= nil and not (out[name] > 0) then
      config_error(origin(name), string.format("config key '%s' must be positive, got %s", name, tostring(out[name])))
    end
  end
  for _, name in ipairs{"inner_lr", "meta_step", "meta_step_final", "min_meta_lr"} do
    if out[name] ~= nil and not (out[name] >= 0) then
      config_error(origin(name), string.format("config key '%s' must be >= 0, got %s", name, tostring(out[name])))
    end
  end
  if out.inner_momentum ~= nil and not (out.inner_momentum >= 0 and out.inner_momentum < 1) then
    config_error(origin("inner_momentum"), string.format("config key 'inner_momentum' must be in [0, 1) (momentum's "
      .. "coefficient, Adam's beta1), got %s", tostring(out.inner_momentum)))
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
  -- set(name [, by]): whether the script or the command line set the key (a script's key counts unless the
  -- command line chose another algorithm, or set one of the keys of the list `by` that decide whether it has
  -- an effect, as for `only`; a resumed run's config: only the overrides)
  local function set(name, by)
    if overrides[name] ~= nil then return true end
    if resolved or (script_cfg or {})[name] == nil or overrides.algorithm ~= nil then return false end
    for _, k in ipairs(by or {}) do
      if overrides[k] ~= nil then return false end
    end
    return true
  end
  check_combinations(out, map, names, script_cfg or {}, overrides, resolved, set)
  return out, ignored, set
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

M.deep_copy, M.describe, M.schema, M.model_keys, M.default_model = deep_copy, describe, schema, model_keys, default_model
M.builtin_models = builtin_models

return M
