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
-- The config (every key, its type, default and meaning; resolving overrides) is lua/experiment/config.lua
-- (`experiment.help()` prints the keys); the checkpoint tree of a run is lua/experiment/state.lua; this
-- file builds a run from a config and runs it (training loop, progress, metrics, plots, evaluation).
local T = require "tensor"
local nn = require "nn"
local algorithm = require "algorithm"
local json = require "json"
local plot = require "plot"
local checkpoint = require "checkpoint"
local usage_error = require("options").usage_error
local input_error, run_stopped = require("options").input_error, require("options").run_stopped
local without_position = require("options").without_position

local config = require "experiment.config"
local state = require "experiment.state"

local M = {}

local deep_copy, describe, schema = config.deep_copy, config.describe, config.schema

-- the config (lua/experiment/config.lua) and the checkpoint tree (lua/experiment/state.lua), here too
M.keys, M.resolve, M.help, M.algorithm_keys = config.keys, config.resolve, config.help, config.algorithm_keys
M.in_effect = config.in_effect
M.checkpoint_tree, M.load_tree, M.load_into = state.checkpoint_tree, state.load_tree, state.load_into

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
    local tasks = require "tasks"
    local ds = tasks.load{root = cfg.data ~= "" and cfg.data or nil, size = cfg.image}
    local n_train = #tasks.split(ds, {kind = cfg.split}).train
    if cfg.val_classes >= n_train then
      usage_error(string.format("config key 'val_classes' is %d, but split %s has %d training classes to carve "
        .. "the validation classes from: give fewer (the paper's code carves 100)", cfg.val_classes, cfg.split, n_train))
    end
    local source = tasks.source{dataset = ds, split = cfg.split, val = cfg.val_classes, rotation = cfg.rotation}
    if cfg.val_classes == 0 and cfg.split ~= "vinyals" then
      -- validation tasks from the test classes (drawn with their own generator)
      local sample, capacity = source.sample, source.capacity
      function source.sample(self, split, ...)
        return sample(self, split == "val" and "test" or split, ...)
      end
      function source.capacity(self, split)
        return capacity(self, split == "val" and "test" or split)
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
  for _, k in ipairs(config.model_keys(cfg.model)) do options[k.name] = cfg[k.name] end
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
local function train_shape(cfg, learner)
  return {ways = cfg.ways, shots = learner.train_shots or cfg.shots, queries = cfg.queries}
end
local function test_shape(cfg)
  return {ways = cfg.ways, shots = cfg.shots_test or cfg.shots, queries = cfg.queries_test}
end

-- A task the config asks for that a split cannot give (more ways than its classes, more shots and queries
-- than a class's images) is the config's mistake: a usage error naming the keys, before anything runs
-- (--check too), not a sampler's error at the first meta-batch or the first validation. Sources that say
-- what they can give (source:capacity(split) -> classes, images per class) are checked.
local function check_task_shapes(cfg, source, learner)
  if type(source.capacity) ~= "function" then return end
  local uses = {}
  if not cfg.eval_only then
    uses[#uses + 1] = {"train", train_shape(cfg, learner), "queries", "training"}
    if cfg.eval_every > 0 then
      uses[#uses + 1] = {"val", test_shape(cfg), "queries_test", "validation"}
    end
  end
  uses[#uses + 1] = {"test", test_shape(cfg), "queries_test", "test"}
  for _, use in ipairs(uses) do
    local split, shape, queries_key, what = use[1], use[2], use[3], use[4]
    local classes, per_class = source:capacity(split)
    if shape.ways > classes then
      local fix = split == "train" and cfg.val_classes > 0 and
        string.format(" (val_classes=%d took the rest): carve fewer validation classes", cfg.val_classes)
        or split == "val" and (cfg.val_classes > 0 and
          string.format(": give val_classes at least %d, or eval_every=0", shape.ways) or
          ": validate on no tasks (eval_every=0), or give fewer ways") or ""
      usage_error(string.format("config key 'ways' is %d, but split %s has %d %s classes (rotation %s)%s",
        shape.ways, cfg.split, classes, what, cfg.rotation, fix))
    end
    if shape.shots + shape.queries > per_class then
      -- (an algorithm's own training shots, Reptile's train_shots, are named as such)
      local shots_key = split == "train" and learner.train_shots and "train_shots" or "shots"
      usage_error(string.format("config keys '%s' (%d) and '%s' (%d) need %d distinct images of each class, "
        .. "but the dataset has %d per class", shots_key, shape.shots, queries_key, shape.queries,
        shape.shots + shape.queries, per_class))
    end
  end
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
    -- a check=true answered: the host then knows (vm/main.c refuses --check to a script that answered none)
    mark_checked = function() host.checked = true end,
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

local function run_dir_error(err)
  input_error(string.format("the run folder: %s (set out_dir= to a folder you can write)", tostring(err)))
end

local function new_run_dir_name(cfg)
  local base = cfg.out_dir .. "/" .. cfg.name .. "-" .. os.date("%Y%m%d-%H%M%S")
  local dir, n = base, 1
  while exists(dir .. "/config.lua") or exists(dir) do
    n = n + 1
    dir = base .. "-" .. n
  end
  return dir
end

local function new_run_dir(cfg)
  local dir = new_run_dir_name(cfg)
  local ok, err = pcall(mkdir_p, dir)
  if not ok then run_dir_error(err) end
  return dir
end

-- --check: the error new_run_dir would give, found without making the folder
local function check_new_run_dir(cfg)
  local ok, err = T.dir_creatable(new_run_dir_name(cfg))
  if not ok then run_dir_error(err) end
end

-- whether the run is at a validation's iteration whose val record its metrics lack
local function validation_missing(run)
  local cfg, it = run.cfg, run.iteration
  if cfg.eval_every <= 0 or it <= 0 or it % cfg.eval_every ~= 0 then return false end
  for _, line in ipairs(run.metrics_lines or {}) do
    if line:find('"type":"val"', 1, true) then
      local ok, r = pcall(json.decode, line)
      if ok and type(r) == "table" and r.type == "val" and r.iter == it then return false end
    end
  end
  return true
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

-- a config value as the command line gives it (key=value): a list as 40,40, a string bare
local function cli_value(v)
  if type(v) == "table" then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = tostring(x) end
    return table.concat(parts, ",")
  end
  return tostring(v)
end

--- Keys of validation that no test reads (eval_only=true: set on the command line, they are refused;
--- the checkpoint's are recorded).
M.VALIDATION_KEYS = {val_tasks = true, val_classes = true}

-- eval_only=true: the eval folder records how the checkpoint was trained (the keys of meta-training alone
-- and of validation, from its run's config), not the script's values, which trained nothing here
local function as_trained_record(cfg, saved)
  local map, names = schema(cfg.task, cfg.model, cfg.algorithm)
  for _, k in ipairs(names) do
    local only = map[k].only
    local training = only and only.key == "eval_only" and only.values and only.values[1] == false
    if (training or M.VALIDATION_KEYS[k]) and saved[k] ~= nil then cfg[k] = saved[k] end
  end
end

-- keys that say where and how a command runs, not what a checkpoint was trained or is tested as
local RUN_KEYS = {name = true, out_dir = true, data = true, threads = true, progress = true, eval_only = true,
                  checkpoint = true, resume = true, test_tasks = true, extra = true}

-- eval_only=true: the settings in effect at meta-test (the algorithm and its keys, the network's, the
-- task's, the split, the test protocol) that differ from those the checkpoint's run was trained with
-- (`saved`, its config) and that the command line did not set: {key, the checkpoint's, this command's}
local function untested_as_trained(cfg, saved, overrides)
  local map, names = schema(cfg.task, cfg.model, cfg.algorithm)
  local out = {}
  for _, k in ipairs(names) do
    if not RUN_KEYS[k] and not M.VALIDATION_KEYS[k] and overrides[k] == nil and saved[k] ~= nil and M.in_effect(map[k], cfg)
        and describe(saved[k]) ~= describe(cfg[k]) then
      out[#out + 1] = {k, saved[k], cfg[k]}
    end
  end
  return out
end

-- keys a resumed run keeps whatever the command line says, and why
local FIXED_ON_RESUME = {
  seed = "the generator's state comes from the checkpoint",
  init = "the weights come from the checkpoint",
  out_dir = "the run goes on in its own folder",
  name = "the run goes on in its own folder",
  split = "the classes were split when the run began",
  val_classes = "the classes were split when the run began",
}

-- the changes {{key, from, to}, ...} of a resumed run's config as text: "inner_lr 0.4 -> 0.1, ..."
local function changes_text(changes)
  local parts = {}
  for i, c in ipairs(changes) do parts[i] = string.format("%s %s -> %s", c[1], describe(c[2]), describe(c[3])) end
  return table.concat(parts, ", ")
end

--- The algorithm of a config and its settings in effect, as text: "maml (first_order false, inner_lr 0.4,
--- ...)"; a key without effect there (inner_momentum with inner_optimizer sgd) is left out.
function M.algorithm_text(cfg)
  local parts = {}
  for _, k in ipairs(M.algorithm_keys(cfg.algorithm)) do
    if M.in_effect(k, cfg) then
      parts[#parts + 1] = k.name .. " " .. describe(cfg[k.name]):gsub('^"(.*)"$', "%1")
    end
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
    err = without_position(err) -- (where in checkpoint.lua says nothing here)
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
  local batch = self.source:sample("train", cfg.meta_batch, self.gen, train_shape(cfg, self.learner))
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
    run_stopped(msg)
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
        run_stopped(string.format("%s: stopped at iteration %d without saving it (%s)%s", sig, it, failure,
          last and string.format("; continue from iteration %d with: mamlrun %s resume=%s", last.iteration,
            self.script or "<experiment script>", self.dir) or ""))
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
  local sig = self:agreed_signal()
  if sig then -- (said and recorded: the run is not tested, and what tests it)
    self:record({type = "stopped", iter = self.iteration, signal = sig, during = "test"})
    if cfg.eval_only then
      self:say("%s: stopped during the test of %s: nothing tested; test it again with the same command", sig,
        cfg.checkpoint)
    else
      self:say("%s: stopped during the final test at iteration %d, which is not tested; its checkpoint %s is saved: "
        .. "test it with: mamlrun %s resume=%s (a finished run is tested when resumed)", sig, self.iteration,
        self.last_checkpoint and self.last_checkpoint.path or "?", self.script or "<experiment script>",
        self.dir or "?")
    end
    return nil
  end
  local seconds = self.host.time() - t0
  local title = string.format("final evaluation of %s at iteration %d: %d test tasks%s, %s, "
    .. "bn_mode %s", cfg.name, self.iteration, result.n,
    cfg.ways and self.source.kind ~= "regression" and string.format(" (%d-way %d-shot, %d %s per class)",
      cfg.ways, cfg.shots, cfg.queries_test, cfg.queries_test == 1 and "query" or "queries") or "", M.algorithm_text(cfg), cfg.bn_mode)
  local text = M.format_table(result, cfg, self.source, title)
  if self.skipped > 0 and not cfg.eval_only then -- (said beside the numbers: they are not of a run that trained throughout)
    text = text .. string.format("\n%d of the %d meta-updates were skipped (a non-finite meta-gradient, "
      .. "on_nonfinite=skip)%s", self.skipped, self.iteration, self.skipped >= self.iteration
      and ": none was made, so this is the test of the initial network" or "")
  end
  self:say("%s", text)
  local rec = {type = "test", iter = self.iteration, tasks = result.n, seconds = seconds, algorithm = cfg.algorithm}
  rec[self.metric_key] = result.mean
  rec[self.metric_key .. "_std"] = result.std
  rec[self.metric_key .. "_ci95"] = result.ci95
  self:record(rec)
  return result, text
end

-- what the run ran on, for its record: the CPU's model name (Linux's /proc/cpuinfo, when there),
-- the worker threads and MPI ranks, the OpenBLAS core (vm/blas.h: who chose it) and what ran the
-- convolutions (ops/conv_dnnl.c)
local function machine(comm, training_threads)
  local cpu
  local f = io.open("/proc/cpuinfo", "r")
  if f then
    cpu = f:read("a"):match("model name%s*:%s*([^\n]+)")
    f:close()
  end
  local host = require("mamlrun")
  local has_parallel, parallel = pcall(require, "parallel")
  return {cpu = cpu, threads = has_parallel and parallel.threads() or 1, training_threads = training_threads,
          ranks = comm and comm.size or 1, blas_core = host.blas.core, blas_core_set_by = host.blas.set_by,
          conv = host.conv}
end

function Run:write_summary(result, text)
  if not self.dir then return end
  local cfg = self.cfg
  local summary = {
    name = cfg.name, run = self.dir, iteration = self.iteration, iterations = cfg.iterations,
    seconds_per_iteration = self.seconds_per_iteration, skipped_updates = self.skipped,
    rss_peak_bytes = self.host.rss_peak(), metric = self.metric_key, steps_test = cfg.steps_test,
    algorithm = cfg.algorithm, algorithm_options = {}, machine = machine(self.comm, self.training_threads),
  }
  -- (the settings in effect: inner_momentum with sgd, msl_epochs with MSL off are left out, as in the run's header)
  for _, k in ipairs(M.algorithm_keys(cfg.algorithm)) do
    if M.in_effect(k, cfg) then summary.algorithm_options[k.name] = cfg[k.name] end
  end
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

-- The network of cfg, built and run once on two of the task's examples (zeros), before anything is written:
-- a network that cannot take them (an image too small for conv4's pools, a flat mlp on images, a network
-- of another task) is refused here, naming the network, the examples and why, not at the first meta-batch
-- with a traceback (and --check finds it). A shipped network's refusal is a usage error; a network
-- module of the user's keeps its traceback (it may be a bug in the module).
local function checked_net(cfg, source)
  local builtin = false
  for _, m in ipairs(config.builtin_models) do builtin = builtin or m == cfg.model end
  local function refuse(what, err)
    local msg = string.format("network %s %s: %s", tostring(cfg.model), what, without_position(err))
    if builtin then usage_error(msg) end
    error(msg, 0)
  end
  local handler = builtin and function(e) return e end or function(e) return debug.traceback(tostring(e), 2) end
  local ok, net = xpcall(M.build_net, handler, cfg, source)
  if not ok then refuse("cannot be built for task " .. tostring(cfg.task), net) end
  local regression = source.kind == "regression"
  local size = source.image_size or cfg.image
  local shape = regression and {2, source.input_size or 1} or {2, source.channels or 1, size, size}
  local text = "(" .. table.concat(shape, "x") .. (regression and "" or ", image=" .. tostring(size)) .. ")"
  local out
  ok, out = xpcall(function() return net:output_shape(shape) end, handler)
  if not ok then refuse(string.format("cannot take this task's examples %s", text), out) end
  local want = regression and (source.output_size or 1) or cfg.ways
  if #out ~= 2 or out[1] ~= 2 or out[2] ~= want then
    refuse(string.format("gives outputs of shape (%s) for the examples %s", table.concat(out, "x"), text),
      string.format("the task needs (2x%d), %s", want, regression and "one prediction per example"
        or "one score per class (ways=" .. tostring(cfg.ways) .. ")"))
  end
  return net
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
  if source.kind == "regression" and cfg.inner_loss_scale == "ways" then
    -- a regression has no classes: the default "ways" (classification's N x the mean loss) is the mean
    -- loss there, and the run says and records 1 (run_experiment refuses a "ways" the user set)
    cfg.inner_loss_scale = 1
  end
  local net = checked_net(cfg, source)
  if cfg.bn_mode == "running" and #net:buffers() == 0 then -- (running statistics are a net's buffers)
    usage_error(string.format("config key 'bn_mode' is \"running\", but network %s has no batch norm (no running "
      .. "statistics) and meta-tests the same either way: remove bn_mode", tostring(cfg.model)))
  end
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
  check_task_shapes(cfg, source, run.learner)
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
  -- bn_mode=running updates the running statistics task after task on one network: its meta-batches run on
  -- this thread alone (validation and test on all). Asked for by threads=N, that is refused; chosen by
  -- threads=0 (as many as useful), it is said, and the summary records it
  if has_parallel and parallel.threads() > 1 and run.learner:sequential_tasks() then
    if cfg.threads > 1 and not cfg.eval_only then
      usage_error(string.format("config key 'threads' is %d, but with bn_mode=running the tasks of a meta-batch "
        .. "run one after another on one thread (each updates the running statistics): set threads=1, or "
        .. "bn_mode=batch to train on %d threads", cfg.threads, cfg.threads))
    end
    run.training_threads = 1
  end
  if cfg.progress == "auto" then
    run.mode = run.host.is_tty(1) and "line" or "log"
  else
    run.mode = cfg.progress
  end
  return run
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

--- The answer to `mamlrun SCRIPT --check` (the override check=true): the run was resolved and built as it
--- would be (keys and their values, the algorithm's own checks, the data, the network and learner, the
--- checkpoint of resume= or eval_only=), and none of it ran; `what` says what the run would do.
local function checked(run, what)
  local cfg = run.cfg
  run.host.mark_checked()
  -- (the answer that was asked for: printed whatever progress= says; other MPI ranks print nothing)
  run.print_raw(string.format("check: %s: %s on %s with %d weights; %s. Nothing was run or written (the command "
    .. "without --check runs it)\n", cfg.name, M.algorithm_text(cfg), tostring(run.net.kind), run.net:num_elements(), what))
  return {checked = true, cfg = cfg, iteration = run.iteration}
end

--- Run an experiment: resolve the config with the overrides, then train and evaluate (or, in
--- config-only mode, return the script's config table; with the override help=true, print the
--- experiment's keys and values instead: M.show_help; with check=true, build the run and say what it
--- would do: checked). Returns a result table: {dir=, cfg=, test=, interrupted=, iteration=}, or
--- {checked = true, cfg=, iteration=} for check=true.
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

-- what a plain argument after SCRIPT (not key=value) was probably meant as, or nil
local function meant_override(a, following)
  local dashless = a:gsub("^%-+", "")
  local key, value = dashless:match("^([^=]*)=(.*)$")
  if key == nil then -- `inner_lr 0.1`: a key, then its value as the next argument
    key = dashless
    value = following ~= nil and not following:find("^%-") and following or nil
  end
  key = key:gsub("%-", "_")
  if key:match("^[%a_][%w_]*$") and value ~= nil and not value:find("=", 1, true) then
    return key .. "=" .. value
  end
  return nil
end

-- A plain argument after SCRIPT (`first-order=true`, `--first_order=true`, `inner_lr 0.1`, `=3`) is
-- no override: the host leaves it in the global `arg` for a script that reads its own arguments. An
-- experiment reads none, so one left there is a usage error naming it, not a run without it. A
-- script that reads its own plain arguments removes them from `arg` (table.remove(arg, 1)) first.
local function refuse_plain_arguments(host)
  local a = rawget(_G, "arg")
  if type(a) ~= "table" or host.script == nil or a[0] ~= host.script or a[1] == nil then return end
  local plain = {}
  for i = 1, #a do plain[#plain + 1] = string.format("'%s'", tostring(a[i])) end
  local hint = meant_override(tostring(a[1]), a[2] ~= nil and tostring(a[2]) or nil)
  usage_error(string.format("%s after the script %s (a key is a Lua name: letters, digits and _, "
    .. "dotted for a nested table; --check and --help are the only options); an experiment reads no other "
    .. "arguments, so nothing was run%s", table.concat(plain, ", "),
    #plain == 1 and "is not a key=value override" or "are not key=value overrides",
    hint and string.format("; did you mean %s?", hint) or ""))
end

function run_experiment(script_cfg, opts)
  opts = opts or {}
  local host = host_functions(opts)
  if opts.overrides == nil then refuse_plain_arguments(host) end
  local overrides = opts.overrides or host.overrides or {}
  -- the host's requests, not config keys: help=true (`mamlrun SCRIPT --help`) and check=true (`--check`);
  -- =false is no request
  local requests = {}
  for _, name in ipairs{"help", "check"} do
    if overrides[name] ~= nil then
      if type(overrides[name]) ~= "boolean" then
        usage_error(string.format("override '%s' expects true or false, got %s %s", name,
          type(overrides[name]), describe(overrides[name])))
      end
      requests[name] = overrides[name]
      local rest = {}
      for k, v in pairs(overrides) do if k ~= name then rest[k] = v end end
      overrides = rest
    end
  end
  if requests.help and requests.check then
    usage_error("--help and --check (help=true, check=true) are two requests: give one (--help lists the keys, "
      .. "--check builds the run and says what it would do)")
  end
  if requests.help then return M.show_help(script_cfg, overrides, opts) end
  local check = requests.check
  local resume_dir = overrides.resume
  if resume_dir and resume_dir ~= "" and (overrides.eval_only == true or (overrides.eval_only == nil and script_cfg.eval_only)) then
    usage_error(string.format("resume=%s has no effect with eval_only=true, which tests checkpoint= and trains "
      .. "nothing: give eval_only=true checkpoint=%s/checkpoint.bin alone to test the run, or resume= alone to "
      .. "train it further (it is tested at its end)", resume_dir, resume_dir))
  end
  local cfg, ignored, set
  local resume_tree, resume_changes
  if resume_dir and resume_dir ~= "" then
    local path = resume_dir .. "/checkpoint.bin"
    if not exists(path) then
      if exists(resume_dir .. "/.") then
        input_error(string.format("resume: %s has no checkpoint.bin (a run folder has one after its first "
          .. "checkpoint: checkpoint_every, an interruption or the end)", resume_dir))
      elseif exists(resume_dir) then
        input_error(string.format("resume: %s is a file, not a run folder (resume= takes the folder of the run; "
          .. "eval_only=true checkpoint=%s tests a checkpoint file)", resume_dir, resume_dir))
      end
      input_error(string.format("resume: no such run folder: %s", resume_dir))
    end
    resume_tree = M.load_tree(path)
    -- a run continues with the script it was started from: another script's settings would be ignored
    local this = state.script_name(opts.script or host_functions(opts).script)
    if resume_tree.script and this and resume_tree.script ~= this then
      -- the script as a command names it from here: a shipped one by name, a file of the user's by its path
      local locate = require "locate"
      local name = resume_tree.script:gsub("%.lua$", "")
      local by_name = locate.script(name)
      local file = type(resume_tree.script_path) == "string" and locate.is_file(resume_tree.script_path)
        and resume_tree.script_path or nil
      local command = (file and (not by_name or locate.absolute(by_name) ~= file)) and file or name
      usage_error(string.format("resume: %s is a run of %s (experiment %s), not of %s; continue it with: "
        .. "mamlrun %s resume=%s", resume_dir, resume_tree.script, tostring(resume_tree.experiment), this,
        command, resume_dir))
    end
    local saved = state.saved_config(resume_tree, path)
    saved.resume = nil
    local rest = {}
    for k, v in pairs(overrides) do if k ~= "resume" then rest[k] = v end end
    cfg, _, set = M.resolve(saved, rest, {resolved = true})
    cfg.resume = resume_dir
    -- what the command line changes in the run's own config: said, and kept in the start record of this
    -- session (config.json then holds the new values)
    local before = M.resolve(saved, {}, {resolved = true})
    local names = {}
    for k in pairs(rest) do names[#names + 1] = k end
    table.sort(names)
    resume_changes = {}
    for _, k in ipairs(names) do
      if describe(before[k]) ~= describe(cfg[k]) then
        if FIXED_ON_RESUME[k] then
          usage_error(string.format("resume: %s cannot change when a run continues (%s %s -> %s): %s; start a "
            .. "new run for another", k, k, describe(before[k]), describe(cfg[k]), FIXED_ON_RESUME[k]))
        end
        resume_changes[#resume_changes + 1] = {k, before[k], cfg[k]}
      end
    end
  else
    cfg, ignored, set = M.resolve(script_cfg, overrides)
  end
  local asked_scale = overrides.inner_loss_scale or (not resume_tree and cfg.inner_loss_scale ~= nil
    and script_cfg.inner_loss_scale) or nil
  local run = M.prepare(cfg, opts)
  if run.source.kind == "regression" and asked_scale == "ways" then
    usage_error(string.format("config key 'inner_loss_scale' is \"ways\" (%s), but task %s is a regression, "
      .. "which has no classes to scale the inner loss by: set a number (1: the mean loss)",
      overrides.inner_loss_scale ~= nil and "set on the command line" or "set in the experiment script", cfg.task))
  end
  -- what the algorithm cannot honour on this network (its check_learner): refused, as its check_config
  local check_learner = algorithm.load(cfg.algorithm).check_learner
  if check_learner then
    local name, msg = check_learner(run.learner, cfg, set)
    if name then usage_error(msg) end
  end
  if ignored and #ignored > 0 then
    run:warn("note: keys of the script not used with task %s and model %s: %s", cfg.task, cfg.model,
      table.concat(ignored, ", "))
  end

  if cfg.eval_only then
    if cfg.checkpoint == "" then usage_error("eval_only=true needs checkpoint=<file> (a run folder's checkpoint.bin)") end
    local tree = M.load_into(cfg.checkpoint, run.learner)
    run.iteration = tree.iteration or 0
    -- a checkpoint is tested as it was trained unless the command line says otherwise: a setting of the
    -- script that differs from the run's (another algorithm, inner optimizer or split) is an error
    local saved = state.saved_config(tree, cfg.checkpoint)
    for k in pairs(M.VALIDATION_KEYS) do
      if overrides[k] ~= nil then
        usage_error(string.format("config key '%s' (set on the command line) has no effect with eval_only=true: the "
          .. "test draws test_tasks tasks of the test classes; remove it", k))
      end
    end
    local differ = untested_as_trained(cfg, saved, overrides)
    if #differ > 0 then
      local as_trained, listed = {}, {}
      for i, d in ipairs(differ) do
        as_trained[i] = d[1] .. "=" .. cli_value(d[2])
        listed[i] = string.format("%s %s (the checkpoint's run: %s)", d[1], describe(d[3]), describe(d[2]))
      end
      usage_error(string.format("eval_only: %s was trained with other settings than this command would test it "
        .. "with: %s. To test it as trained add %s; to test it otherwise, set those keys on the command line",
        cfg.checkpoint, table.concat(listed, ", "), table.concat(as_trained, " ")))
    end
    as_trained_record(cfg, saved)
    if check then
      if run.is_root then check_new_run_dir{out_dir = cfg.out_dir, name = cfg.name .. "-eval"} end
      return checked(run, string.format("would test %s (iteration %d) on %d tasks", cfg.checkpoint,
        run.iteration, cfg.test_tasks))
    end
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
    local loaded, err = pcall(M.load_into, resume_dir .. "/checkpoint.bin", run.learner)
    if not loaded then
      if #resume_changes == 0 or tostring(err):find("does not fit", 1, true) == nil then error(err, 0) end
      usage_error(string.format("%s\n(changed on the command line: %s; a resumed run keeps its network: start a "
        .. "new run for another)", tostring(err), changes_text(resume_changes)))
    end
    state.restore(run, resume_tree, resume_dir .. "/checkpoint.bin")
    -- a resumed run only goes on: an iterations= below its checkpoint's would test it again and record a
    -- schedule it had already passed
    if cfg.iterations < run.iteration then
      usage_error(string.format("config key 'iterations' is %d, but the checkpoint of %s is at iteration %d: a "
        .. "resumed run only goes on; give iterations above %d to train further, or test the checkpoint with "
        .. "eval_only=true checkpoint=%s/checkpoint.bin", cfg.iterations, resume_dir, run.iteration, run.iteration,
        resume_dir))
    end
    local resuming = string.format("%s at iteration %d of %d%s", resume_dir, run.iteration, cfg.iterations,
      #resume_changes > 0 and "; changed on the command line: " .. changes_text(resume_changes) or "")
    if check then
      return checked(run, "would resume " .. resuming .. (cfg.max_minutes > 0
        and string.format(", for at most %g minutes (max_minutes)", cfg.max_minutes) or ""))
    end
    if run.is_root then
      run.dir = resume_dir
      run.last_checkpoint = {path = resume_dir .. "/checkpoint.bin", iteration = run.iteration}
      -- the checkpoint's records, written atomically (the file as it was stays until they are all there),
      -- then appended to
      local path = run.dir .. "/metrics.jsonl"
      write_file(path, #run.metrics_lines > 0 and table.concat(run.metrics_lines, "\n") .. "\n" or "")
      run.metrics_file = assert(io.open(path, "a"))
    end
    run:say("resuming %s", resuming)
  elseif check then
    if run.is_root then check_new_run_dir(cfg) end
    return checked(run, string.format("would train %d iterations%s into a new run folder under %s", cfg.iterations,
      cfg.max_minutes > 0 and string.format(" (for at most %g minutes: max_minutes)", cfg.max_minutes) or "",
      cfg.out_dir))
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
  -- each session of training (the first and every resume) starts with a record of where it runs, so a
  -- run continued on another machine, thread count or convolution backend says so, and from which
  -- iteration (mamlrun --compare lists them)
  local changed
  for _, c in ipairs(resume_changes or {}) do
    changed = changed or {}
    changed[c[1]] = {c[2], c[3]}
  end
  run:record({type = "start", iter = run.iteration, resumed = resume_tree ~= nil, changed = changed,
    date = os.date("!%Y-%m-%dT%H:%M:%SZ"),
    version = require("mamlrun").version, machine = machine(run.comm, run.training_threads)})
  run:say("%s: %s on %s with %d weights, %d meta-parameter tensors (%d adapted in the inner loop), run folder %s",
    cfg.name, M.algorithm_text(cfg), tostring(run.net.kind), run.net:num_elements(), #run.learner.meta_params,
    (function() local n = 0; for _, a in ipairs(run.learner.adapted) do if a then n = n + 1 end end; return n end)(),
    run.dir)
  if run.training_threads then
    run:say("bn_mode=running: the tasks of each meta-batch run on one thread, one after another (each updates "
      .. "the running statistics); validation and test on %d threads", require("parallel").threads())
  end

  -- (on an error the metrics file is closed as the error goes on: not caught and raised again, which would
  -- lose the traceback of where it happened, in the user's algorithm say)
  local finished
  do
    local close_on_error <close> = setmetatable({}, {__close = function(_, err)
      if err ~= nil then run.metrics_file:close() end
    end})
    -- a validation that a signal cut short (the checkpoint was saved at its iteration, without its record)
    -- runs again first, so that the resumed run's records are the uninterrupted run's
    if resume_tree and validation_missing(run) then
      run:say("the validation at iteration %d was interrupted: it runs now", run.iteration)
      run:validate()
    end
    finished = run:train()
  end
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
