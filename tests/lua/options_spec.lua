-- tests/lua/options_spec.lua: every options table of the API, in C (vm/lua_check.c) and in the Lua
-- library (lua/options.lua), refuses a key it does not know and a value of the wrong type, with a
-- message naming the function, the key and the valid keys. The list of cases is checked against
-- the sources: a function that checks options (lt_check_options in vm/, options.check in lua/)
-- without a case here fails the last test, so new options tables are covered.
local T = require "tensor"
local ag = require "autograd"
local omniglot = require "omniglot"
local mamlrun = require "mamlrun"

local root = (mamlrun.root and mamlrun.root .. "/..") or "."

local x4 = T.rand({2, 3, 6, 6}, T.generator(1))
local w4 = T.rand({4, 3, 3, 3}, T.generator(2))
local gy = T.rand({2, 4, 4, 4}, T.generator(3))
local net = function() return require("nn").mlp{sizes = {1, 2, 1}} end
local leaf = function() return T.ones{1}:requires_grad(true) end

-- name as it appears in messages, argument number, a call with the given options table, and one
-- valid key with a value of the wrong type
local cases = {
  {"grad", 3, function(o) local w = T.ones{1}:requires_grad(true) return ag.grad((w * 2):sum(), {w}, o) end,
    "create_graph", 1},
  {"batch_norm", 4, function(o) return T.batch_norm(x4, nil, nil, o) end, "training", "no"},
  {"conv2d", 4, function(o) return T.conv2d(x4, w4, nil, o) end, "stride", "2"},
  {"conv2d_backward_input", 4, function(o) return T.conv2d_backward_input(gy, w4, {6, 6}, o) end, "padding", true},
  {"conv2d_backward_weight", 4, function(o) return T.conv2d_backward_weight(x4, gy, {3, 3}, o) end, "stride", 1.5},
  {"max_pool2d", 3, function(o) return T.max_pool2d(x4, 2, o) end, "stride", {}},
  {"avg_pool2d", 3, function(o) return T.avg_pool2d(x4, 2, o) end, "padding", "0"},
  {"global_avg_pool2d", 2, function(o) return T.global_avg_pool2d(x4, o) end, "layout", 1},
  {"load", 2, function(o) return omniglot.load("/nonexistent", o) end, "size", "28"},
  {"resize", 4, function(o) return omniglot.resize(T.rand{5, 5}, 3, 3, o) end, "pil_exact", 1},
  {"tile", 2, function(o) return omniglot.tile(T.rand{2, 1, 5, 5}, o) end, "invert", "yes"},
  {"nn.conv2d", 4, function(o) return require("nn").conv2d(1, 2, 3, o) end, "bias", 0},
  {"nn.linear", 3, function(o) return require("nn").linear(1, 2, o) end, "init_std", "1"},
  {"nn.batchnorm2d", 2, function(o) return require("nn").batchnorm2d(2, o) end, "momentum", true},
  {"nn.max_pool2d", 2, function(o) return require("nn").max_pool2d(2, o) end, "stride", 1.5},
  {"nn.mean_pool", 1, function(o) return require("nn").mean_pool(o) end, "layout", true},
  {"nn.conv4", 1, function(o) return require("nn").conv4(o) end, "ways", "5"},
  {"nn.peer_net", 1, function(o) return require("nn").peer_net(o) end, "in_channels", false},
  {"nn.mlp", 1, function(o) return require("nn").mlp(o) end, "sizes", 3},
  {"optim.sgd", 1, function(o) return require("optim").sgd(o) end, "lr", "0.1"},
  {"optim.adam", 1, function(o) return require("optim").adam(o) end, "betas", 0.9},
  {"maml.new", 1, function(o) return require("maml").new(o) end, "first_order", "true"},
  {"tasks.load", 1, function(o) return require("tasks").load(o) end, "quiet", 1},
  {"tasks.split", 2, function(o) return require("tasks").split({}, o) end, "seed", "1"},
  {"tasks.sampler", 3, function(o) return require("tasks").sampler({}, {}, o) end, "generator", 1},
  {"tasks.source", 1, function(o) return require("tasks").source(o) end, "rotate", "task"},
  {"tasks.picture", 3, function(o) return require("tasks").picture({}, "/nonexistent.png", o) end, "task", "1"},
  {"sinusoid.new", 1, function(o) return require("sinusoid").new(o) end, "amplitude", 5},
  {"gradcheck", 3, function(o) return require("gradcheck").gradcheck(function(v) return v end, {leaf()}, o) end,
    "eps", "0.1"},
  {"gradgradcheck", 3, function(o) return require("gradcheck").gradgradcheck(function(v) return v end, {leaf()}, o) end,
    "max_elements", 2.5},
  {"map", 4, function(o) return require("parallel").map("tests.lua.helpers", "busy_job", {{0, 1}}, o) end,
    "workers_only", 1},
  {"json.encode", 2, function(o) return require("json").encode({}, o) end, "empty_object", "yes"},
}

local function plain(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

describe("options tables", function()
  for _, c in ipairs(cases) do
    local name, arg, call, key, bad_value = c[1], c[2], c[3], c[4], c[5]
    it(name .. " refuses an unknown key, naming the function, the key and the valid keys", function()
      local ok, err = pcall(call, {[key] = nil, zz_typo = true})
      assert.is_false(ok)
      local want = "bad argument #" .. arg .. " to '" .. plain(name) .. "' %(unknown option 'zz_typo'; valid options: "
        .. "[%w_, ]*" .. plain(key) .. "[%w_, ]*%)"
      assert.is_truthy(tostring(err):find(want), tostring(err))
    end)
    it(name .. " refuses an ill-typed value and a table that is not one of options", function()
      local ok, err = pcall(call, {[key] = bad_value})
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("bad argument #" .. arg .. " to '" .. plain(name) .. "' %(option '"
        .. key .. "' must be "), tostring(err))
      ok, err = pcall(call, "options")
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("bad argument #" .. arg .. " to '" .. plain(name)
        .. "' %(expected a table of options, got string%)"), tostring(err))
    end)
  end

  it("the message is raised at the caller of a Lua library function", function()
    local ok, err = pcall(function()
      local made = require("nn").mlp{sise = {1, 1}} -- (not a tail call: that frame has no line)
      return made
    end)
    assert.is_false(ok)
    assert.matches("options_spec.lua:%d+: bad argument #1 to 'nn.mlp'", err)
  end)

  it("correct options still work", function()
    assert.equals("nn", net().kind == "mlp" and "nn")
    assert.same({4, 3, 3, 3}, T.conv2d_backward_weight(x4, gy, {3, 3}, {stride = 1, padding = 0}):shape())
    assert.is_true(ag.grad((T.ones{1}:requires_grad(true) * 2):sum(), {T.ones{1}:requires_grad(true)},
      {allow_unused = true, create_graph = true})[1] == nil)
  end)

  it("covers every function of the sources that checks an options table", function()
    local covered = {}
    for _, c in ipairs(cases) do covered[c[1]] = true end
    local found = {}
    local function scan(path, patterns)
      local f = assert(io.open(path))
      local text = f:read("a")
      f:close()
      for _, p in ipairs(patterns) do
        for name in text:gmatch(p) do found[#found + 1] = name end
      end
    end
    local p = io.popen("ls " .. root .. "/vm/*.c " .. root .. "/lua/*.lua")
    for path in p:lines() do
      scan(path, {'_options%(L, [%w_]+, "([%w_]+)"', 'check_pool_args%(L, "([%w_]+)"',
        'options%.check%("([%w_.]+)"', 'lt_check_options%(L, [%w_]+, "([%w_]+)"'})
    end
    p:close()
    assert.is_true(#found >= #cases - 2, "found only " .. #found .. " options checks in the sources")
    for _, name in ipairs(found) do
      assert.is_true(covered[name], name .. " checks an options table but has no case in options_spec.lua")
    end
  end)
end)

describe("options.script_keys (the key=value arguments of the bench scripts)", function()
  local options = require "options"
  local defaults = {iters = 7, inner_lr = 0.4, net = "peer", sizes = "1,64"}
  local function refused(overrides, want)
    local ok, err = pcall(options.script_keys, "some_bench", overrides, defaults)
    assert.is_false(ok)
    assert.is_true(options.is_usage_error(err), tostring(err))
    assert.equals(want, err.message)
  end

  it("gives the defaults with the overrides over them, a number as a string default's text", function()
    assert.same({iters = 2, inner_lr = 1, net = "conv4", sizes = "64"},
      options.script_keys("some_bench", {iters = 2, inner_lr = 1, net = "conv4", sizes = 64}, defaults))
    assert.same(defaults, options.script_keys("some_bench", nil, defaults))
  end)

  it("refuses a key it does not have and a value of another type, naming the script and the key", function()
    -- (conv4_bench took any key and read repeats alone; the others raised an error with a traceback)
    refused({itrs = 2}, "some_bench: unknown key 'itrs'; valid keys: inner_lr, iters, net, sizes")
    refused({iters = 1.5}, "some_bench: key 'iters' expects an integer (like its default 7), got number 1.5")
    refused({inner_lr = "x"}, "some_bench: key 'inner_lr' expects a number (like its default 0.4), got string x")
    refused({net = true}, "some_bench: key 'net' expects a string (like its default peer), got boolean true")
  end)

  it("is what every bench script reads its keys with", function()
    for _, name in ipairs{"autograd_bench", "bn_bench", "conv4_bench", "maml_bench", "memory_flat"} do
      local f = assert(io.open("bench/" .. name .. ".lua"))
      local text = f:read("a")
      f:close()
      assert.truthy(text:find('script_keys("' .. name .. '", ...', 1, true), name)
    end
  end)
end)
