-- tests/lua/checkpoint_load_spec.lua: loading a checkpoint that is damaged or from elsewhere
-- (experiment.load_tree, load_into and resume). A file that is not a checkpoint, is truncated or
-- corrupt, holds a tree without the fields a MAML run needs, or comes from another experiment (other
-- shapes) is refused with a message that says what is wrong; a valid one loads. (Round trips, CRC and
-- truncation of the file format itself: experiment_spec.lua; random bytes: tests/fuzz.)
local T = require "tensor"
local experiment = require "experiment"
local checkpoint = require "checkpoint"
local options = require "options"

-- experiment.run sets the global thread count (parallel.set_threads) and leaves it set: put it back
-- after each test, so that no test depends on which ran before it
local parallel = require "parallel"
local threads_before
before_each(function() threads_before = parallel.threads() end)
after_each(function() parallel.set_threads(threads_before) end)

local dir
setup(function()
  dir = require("tests.lua.helpers").tmpdir("checkpoint-load")
end)
teardown(function() os.execute("rm -rf '" .. dir .. "'") end)

local cfg = experiment.resolve({task = "sinusoid", hidden = {8, 8}, progress = "none"}, {})

-- a run prepared for cfg (nothing written) and a valid checkpoint tree of it
local function prepared(overrides)
  local c = cfg
  if overrides then c = experiment.resolve({task = "sinusoid", hidden = {8, 8}, progress = "none"}, overrides) end
  return experiment.prepare(c, {})
end

local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = deep_copy(x) end
  return out
end

local function refused(tree, want)
  local path = dir .. "/c.bin"
  checkpoint.save(path, tree)
  local ok, err = pcall(experiment.load_into, path, prepared().learner)
  assert.is_false(ok, "loaded: " .. want)
  -- a problem of the file, not of the code: its message alone, without a traceback (vm/main.c)
  assert.is_true(options.is_input_error(err), tostring(err))
  err = err.message
  assert.truthy(err:find(want, 1, true), "\nexpected: " .. want .. "\n     got: " .. err)
end

describe("loading a checkpoint", function()
  it("loads a valid one and refuses one of another network, saying what differs", function()
    local run = prepared()
    local path = dir .. "/good.bin"
    checkpoint.save(path, experiment.checkpoint_tree(run))
    assert.equals(0, experiment.load_into(path, prepared().learner).iteration)
    local ok, err = pcall(experiment.load_into, path, prepared{hidden = {4, 8}}.learner)
    assert.is_false(ok)
    assert.is_true(options.is_input_error(err), tostring(err))
    err = err.message
    assert.truthy(err:find("does not fit this experiment's network", 1, true), err)
    assert.truthy(err:find("parameter 1: checkpoint fc1.weight (8, 1), this experiment fc1.weight (4, 1)", 1, true), err)
  end)

  it("refuses a tree without the fields of a MAML run, naming the field", function()
    local good = experiment.checkpoint_tree(prepared())
    local function without(f)
      local t = deep_copy(good)
      f(t)
      return t
    end
    refused({1, 2, 3}, "not of a MAML run (format nil)")
    refused(without(function(t) t.format = "other" end), "not of a MAML run (format other)")
    refused(without(function(t) t.iteration = -1 end), "is not a usable MAML checkpoint: iteration is -1")
    refused(without(function(t) t.iteration = 1.5 end), "iteration is 1.5")
    refused(without(function(t) t.shapes = nil end), "no params, or no shapes of them")
    refused(without(function(t) t.buffers = "x" end), "no buffers, or no shapes of them")
    refused(without(function(t) table.remove(t.params) end), "5 params but 6 shapes")
    refused(without(function(t) t.params[1] = "tensor" end), "params 1 is a string, not a tensor")
    refused(without(function(t) t.shapes.params[3] = {"fc2.weight", {"8", 8}} end),
      "shape 3 of the params is not {name, {sizes}}")
    refused(without(function(t) t.generator = 5 end), "generator is a number, not a string")
    refused(without(function(t) t.window = {loss = 0} end), "window.metric is not a number")
  end)

  it("resume refuses a damaged run folder with a message", function()
    local run = prepared()
    local tree = experiment.checkpoint_tree(run)
    tree.config = "{not json"
    os.execute("mkdir -p '" .. dir .. "/run'")
    checkpoint.save(dir .. "/run/checkpoint.bin", tree)
    local ok, err = pcall(experiment.run, {task = "sinusoid"}, {overrides = {resume = dir .. "/run"}})
    assert.is_false(ok)
    assert.is_true(options.is_input_error(err), tostring(err))
    err = err.message
    assert.truthy(err:find("checkpoint.bin is not a usable MAML checkpoint: its config is not a JSON object", 1, true), err)
    -- the same file tested with eval_only=true: the same message
    ok, err = pcall(experiment.run, {task = "sinusoid", hidden = {8, 8}, progress = "none"},
      {overrides = {eval_only = true, checkpoint = dir .. "/run/checkpoint.bin", out_dir = dir}})
    assert.is_false(ok)
    assert.is_true(options.is_input_error(err), tostring(err))
    assert.equals(dir .. "/run/checkpoint.bin is not a usable MAML checkpoint: its config is not a JSON object", err.message)
    -- not a checkpoint at all
    local f = assert(io.open(dir .. "/run/checkpoint.bin", "wb"))
    f:write("PK\3\4 a zip file, say")
    f:close()
    ok, err = pcall(experiment.run, {task = "sinusoid"}, {overrides = {resume = dir .. "/run"}})
    assert.is_false(ok)
    assert.is_true(options.is_input_error(err), tostring(err))
    err = err.message
    assert.truthy(err:find("is not a mamlrun checkpoint (no MAMLCKPT magic)", 1, true), err)
  end)

  it("tensors in a checkpoint are validated (T.deserialize)", function()
    local blob = T.serialize(T.ones{2, 3})
    for _, bad in ipairs{blob:sub(1, -2), blob .. "x", "MRT1" .. string.pack("<I4", 9), blob:sub(1, 7),
                         "MRT1" .. string.pack("<I4i8", 1, -1)} do
      local ok, err = pcall(T.deserialize, bad)
      assert.is_false(ok)
      assert.truthy(err:find("bad argument #1 to 'deserialize'", 1, true), err)
    end
  end)
end)
