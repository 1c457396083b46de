-- experiment.state: a run's state as a checkpoint tree (meta-parameters, buffers, the optimizer, the
-- generator, the metrics so far, the config), a checkpoint file's tree checked field by field, and
-- loading or restoring it into a run (lua/checkpoint.lua holds the file format).
local T = require "tensor"
local ag = require "autograd"
local nn = require "nn"
local optim = require "optim"
local json = require "json"
local checkpoint = require "checkpoint"
local input_error = require("options").input_error

local M = {}

local function named_shapes(names, tensors)
  local out = {}
  for i, t in ipairs(tensors) do out[i] = {names[i], t:shape()} end
  return out
end

--- The file name of an experiment script without its folders ("omniglot5w1s.lua"), or nil for none
--- (code given with -e or on stdin).
function M.script_name(path)
  if type(path) ~= "string" or path == "" or path == "-" then return nil end
  return path:match("([^/]+)$")
end

--- The state of a run as a checkpoint tree.
function M.checkpoint_tree(run)
  local net, learner = run.net, run.learner
  return {
    format = "mamlrun-maml", experiment = run.cfg.name, iteration = run.iteration,
    script = M.script_name(run.script),
    -- (the file itself, for the command that continues the run from another folder)
    script_path = M.script_name(run.script) and require("locate").absolute(run.script) or nil,
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
    input_error(string.format("%s is not a usable MAML checkpoint: " .. fmt, path, ...))
  end
  if type(tree) ~= "table" then bad("it holds a %s, not a table", type(tree)) end
  if tree.format ~= "mamlrun-maml" then
    input_error(path .. " is a mamlrun checkpoint but not of a MAML run (format " .. tostring(tree.format) .. ")")
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
  for key, want in pairs{experiment = "string", script = "string", config = "string", generator = "string", metrics = "string",
                         optimizer = "table", window = "table", skipped = "number"} do
    if tree[key] ~= nil and type(tree[key]) ~= want then bad("%s is a %s, not a %s", key, type(tree[key]), want) end
  end
  for _, field in ipairs{"loss", "metric", "n", "grad_norm"} do
    if tree.window and type(tree.window[field]) ~= "number" then bad("window.%s is not a number", field) end
  end
  return tree
end

--- The config a checkpoint tree was saved with (of the file at path), as a table: what resume= continues
--- and eval_only= compares with.
function M.saved_config(tree, path)
  local ok, saved = pcall(json.decode, tree.config or "{}")
  if not ok or type(saved) ~= "table" then
    input_error(path .. " is not a usable MAML checkpoint: its config is not a JSON object")
  end
  return saved
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
    input_error(string.format("checkpoint %s (experiment %s) does not fit this experiment's network:\n  %s",
      path, tostring(tree.experiment), diff))
  end
  ag.no_grad(function()
    nn.copy_into(learner.meta_params, tree.params, learner.meta_names)
    nn.copy_into(net:buffers(), tree.buffers, net:buffer_names())
  end)
  return tree
end

-- restore the training state of a checkpoint tree into run
function M.restore(run, tree, path)
  local msg = optim.check_state(tree.optimizer or {}, run.learner.meta_params, run.learner.meta_names)
  if msg then input_error("checkpoint " .. path .. ": " .. msg) end
  -- another algorithm's outer optimizer (Reptile's SGD for MAML's Adam): its state cannot go on
  local saved_kind, kind = type(tree.optimizer) == "table" and tree.optimizer.kind, run.opt.kind
  if saved_kind and kind and saved_kind ~= kind then
    local saved = M.saved_config(tree, path)
    require("options").usage_error(string.format("resume: the run's outer optimizer is %s (algorithm %s), but "
      .. "algorithm %s steps with %s: a resumed run keeps its outer optimizer and its state; resume it with "
      .. "algorithm=%s, or start a new run for another algorithm", saved_kind, tostring(saved.algorithm),
      tostring(run.cfg.algorithm), kind, tostring(saved.algorithm)))
  end
  run.opt:load_state(tree.optimizer)
  run.gen:set_state(tree.generator)
  run.iteration = tree.iteration
  run.skipped = tree.skipped or 0
  run.window = tree.window or run.window
  run.metrics_lines = {}
  for line in (tree.metrics or ""):gmatch("[^\n]+") do run.metrics_lines[#run.metrics_lines + 1] = line end
end

return M
