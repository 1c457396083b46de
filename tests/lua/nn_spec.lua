-- tests/lua/nn_spec.lua: the nn library (lua/nn.lua): layer shapes, functional forward, parameter
-- bookkeeping, initialisation, batch-norm buffers, and conv4 against a direct convolution in Lua.
local T = require "tensor"
local helpers = require "tests.lua.helpers"
local ag = require "autograd"
local nn = require "nn"

-- ------------------------------------------------------------------ a reference network in plain Lua
-- Tensors as nested Lua tables x[n][c][h][w]; every op written out with loops.

local function to_table(t) return t:totable() end
local conv2d_direct = helpers.conv2d_loops


-- batch norm with batch statistics (biased variance), optional scale/shift per channel
local function batch_norm_direct(x, gamma, beta, eps)
  local N, C, H, W = #x, #x[1], #x[1][1], #x[1][1][1]
  local y = {}
  for n = 1, N do
    y[n] = {}
    for c = 1, C do y[n][c] = {} end
  end
  for c = 1, C do
    local sum, count = 0, N * H * W
    for n = 1, N do for h = 1, H do for w = 1, W do sum = sum + x[n][c][h][w] end end end
    local mean = sum / count
    local sq = 0
    for n = 1, N do for h = 1, H do for w = 1, W do sq = sq + (x[n][c][h][w] - mean) ^ 2 end end end
    local var = sq / count
    for n = 1, N do
      for h = 1, H do
        y[n][c][h] = {}
        for w = 1, W do
          local v = (x[n][c][h][w] - mean) / math.sqrt(var + eps)
          y[n][c][h][w] = v * (gamma and gamma[c] or 1) + (beta and beta[c] or 0)
        end
      end
    end
  end
  return y
end

local function map4(x, f)
  local y = {}
  for n = 1, #x do
    y[n] = {}
    for c = 1, #x[n] do
      y[n][c] = {}
      for h = 1, #x[n][c] do
        y[n][c][h] = {}
        for w = 1, #x[n][c][h] do y[n][c][h][w] = f(x[n][c][h][w]) end
      end
    end
  end
  return y
end

local function max_pool_direct(x, k)
  local y = {}
  for n = 1, #x do
    y[n] = {}
    for c = 1, #x[n] do
      y[n][c] = {}
      local H, W = #x[n][c], #x[n][c][1]
      for i = 1, H // k do
        y[n][c][i] = {}
        for j = 1, W // k do
          local m = -math.huge
          for a = 1, k do for b = 1, k do m = math.max(m, x[n][c][(i - 1) * k + a][(j - 1) * k + b]) end end
          y[n][c][i][j] = m
        end
      end
    end
  end
  return y
end

local function relu(v) return v > 0 and v or 0 end

-- features (N, C) -> logits with a linear layer w (O, C), b (O)
local function linear_direct(f, w, b)
  local y = {}
  for n = 1, #f do
    y[n] = {}
    for o = 1, #w do
      local s = b[o]
      for c = 1, #f[n] do s = s + f[n][c] * w[o][c] end
      y[n][o] = s
    end
  end
  return y
end

-- conv4 by hand from its parameter list (names tell which is which)
local function conv4_direct(x, net, pool, eps)
  local params, names = net:parameters(), net:parameter_names()
  local p = {}
  for i, name in ipairs(names) do p[name] = to_table(params[i]) end
  local h = x
  for b = 1, 4 do
    h = conv2d_direct(h, p["conv" .. b .. ".weight"], p["conv" .. b .. ".bias"], pool == "stride" and 2 or 1, 1)
    h = batch_norm_direct(h, p["bn" .. b .. ".weight"], p["bn" .. b .. ".bias"], eps)
    h = map4(h, relu)
    if pool == "max" then h = max_pool_direct(h, 2) end
  end
  local features = {}
  for n = 1, #h do
    features[n] = {}
    local k = 0
    for c = 1, #h[n] do
      if pool == "stride" then
        local s, count = 0, 0
        for i = 1, #h[n][c] do for j = 1, #h[n][c][i] do s, count = s + h[n][c][i][j], count + 1 end end
        features[n][c] = s / count
      else
        for i = 1, #h[n][c] do for j = 1, #h[n][c][i] do k = k + 1; features[n][k] = h[n][c][i][j] end end
      end
    end
  end
  return linear_direct(features, p["fc.weight"], p["fc.bias"])
end

local function assert_close_tables(expected, got, tol, path)
  path = path or ""
  if type(expected) == "table" then
    assert.equals(#expected, #got, "length at " .. path)
    for i = 1, #expected do assert_close_tables(expected[i], got[i], tol, path .. "[" .. i .. "]") end
  else
    local err = math.abs(expected - got)
    if not (err <= tol * (1 + math.abs(expected))) then -- (a NaN fails)
      error(string.format("at %s: expected %.7g, got %.7g", path, expected, got), 2)
    end
  end
end

local function shape(t) return table.concat(t:shape(), ",") end

-- ------------------------------------------------------------------ tests

describe("the spec's own checker", function()
  it("assert_close_tables fails on a NaN or an infinity, and on a wrong value", function()
    local ok, err = pcall(assert_close_tables, {1, {2, 3}}, {1, {0 / 0, 3}}, 1e-6)
    assert.is_false(ok)
    assert.matches("at %[2%]%[1%]: expected 2, got %-?nan", err)
    assert.is_false(pcall(assert_close_tables, {1}, {math.huge}, 1e-6))
    assert.is_false(pcall(assert_close_tables, {0 / 0}, {0 / 0}, 1e-6))
    assert.is_false(pcall(assert_close_tables, {1}, {1.01}, 1e-6))
    assert_close_tables({1, {2, 3}}, {1, {2, 3 + 1e-7}}, 1e-6)
  end)
end)

describe("nn layers", function()
  it("conv2d has weight (O, C, K, K) and bias (O), and the usual output size", function()
    local conv = nn.conv2d(3, 4, 3, {stride = 2, padding = 1})
    assert.same({"weight", "bias"}, conv:parameter_names())
    assert.equals("4,3,3,3", shape(conv:parameters()[1]))
    assert.equals("4", shape(conv:parameters()[2]))
    assert.equals("2,4,4,4", shape(conv:forward(T.randn{2, 3, 7, 7})))
    assert.equals("2,4,5,5", shape(nn.conv2d(3, 4, 3):forward(T.randn{2, 3, 7, 7})))
    assert.equals(1, #nn.conv2d(3, 4, 3, {bias = false}):parameters())
  end)

  it("linear, relu, flatten, max_pool2d, mean_pool have the expected shapes", function()
    assert.equals("5,3", shape(nn.linear(8, 3):forward(T.randn{5, 8})))
    assert.equals("2,3,4", shape(nn.relu():forward(T.randn{2, 3, 4})))
    assert.equals("2,48", shape(nn.flatten():forward(T.randn{2, 3, 4, 4})))
    assert.equals("2,3,2,2", shape(nn.max_pool2d(2):forward(T.randn{2, 3, 5, 5})))
    assert.equals("2,3", shape(nn.mean_pool():forward(T.randn{2, 3, 5, 5})))
  end)

  it("batchnorm2d: scale/shift options, running buffers, adapted flags", function()
    local bn = nn.batchnorm2d(3)
    assert.same({"weight", "bias"}, bn:parameter_names())
    assert.same({"running_mean", "running_var"}, bn:buffer_names())
    assert.same({true, true}, bn:adapted())
    local paper = nn.batchnorm2d(3, {scale = false, adapt = false})
    assert.same({"bias"}, paper:parameter_names())
    assert.same({false}, paper:adapted())
    assert.equals("4,3,2,2", shape(paper:forward(T.randn{4, 3, 2, 2})))
  end)

  it("batchnorm2d updates running statistics in training mode unless told not to", function()
    local bn = nn.batchnorm2d(2, {momentum = 0.5})
    local x = T.randn{8, 2, 3, 3} * 2 + 1
    local mean = x:mean({1, 3, 4}):totable()
    bn:forward(x)
    local rm = bn:buffers()[1]:totable()
    for c = 1, 2 do assert.near(0.5 * mean[c], rm[c], 1e-5) end
    bn:update_buffers(false)
    bn:forward(T.randn{8, 2, 3, 3})
    assert.same(rm, bn:buffers()[1]:totable())
  end)

  it("batchnorm2d in eval mode normalises with the running statistics", function()
    local bn = nn.batchnorm2d(2, {eps = 1e-5})
    bn:buffers()[1]:copy_(T.tensor{1, -2})
    bn:buffers()[2]:copy_(T.tensor{4, 0.25})
    bn:train(false)
    local x = T.randn{3, 2, 2, 2}
    local y = bn:forward(x):totable()
    local xt = x:totable()
    assert.near((xt[2][1][1][2] - 1) / math.sqrt(4 + 1e-5), y[2][1][1][2], 1e-5)
    assert.near((xt[3][2][2][1] + 2) / math.sqrt(0.25 + 1e-5), y[3][2][2][1], 1e-4)
  end)

  it("with_mode runs a function in a mode and puts the modes back, also when it raises", function()
    local net = nn.sequential{nn.conv2d(1, 2, 3), nn.batchnorm2d(2)}
    net:train(false)
    local bn = net.children[2]
    local a, b = net:with_mode(true, false, function()
      assert.is_true(bn.is_training)
      assert.is_false(bn.updates_buffers)
      return 1, nil, 3
    end)
    assert.equals(1, a)
    assert.is_nil(b)
    assert.is_false(bn.is_training)
    assert.is_true(bn.updates_buffers)
    local ok, err = pcall(net.with_mode, net, true, false, function() error({code = 7}) end)
    assert.is_false(ok)
    assert.equals(7, err.code) -- the error itself goes on
    assert.is_false(bn.is_training)
    assert.is_true(bn.updates_buffers)
  end)

  it("sequential concatenates parameters with prefixed names", function()
    local net = nn.sequential{nn.conv2d(1, 2, 3):named("conv"), nn.relu(), nn.flatten(), nn.linear(2, 3)}
    assert.same({"conv.weight", "conv.bias", "4.weight", "4.bias"}, net:parameter_names())
    assert.equals(4, net:num_parameters())
    assert.equals(2 * 9 + 2 + 6 + 3, net:num_elements())
  end)

  it("forward(x, params) runs with the given weights instead of the net's own", function()
    local net = nn.sequential{nn.linear(4, 3), nn.relu(), nn.linear(3, 2)}
    net:init(T.generator(3))
    local x = T.randn{5, 4}
    local other = {}
    for i, p in ipairs(net:parameters()) do other[i] = T.randn(p:shape()) end
    local y_other = net:forward(x, other):totable()
    assert.are_not.same(net:forward(x):totable(), y_other)
    -- copying the weights in gives the same output
    ag.no_grad(function() nn.copy_into(net:parameters(), other) end)
    assert_close_tables(y_other, net:forward(x):totable(), 1e-6)
  end)

  it("forward with a wrong number of parameters is an error naming the counts", function()
    local net = nn.sequential{nn.linear(4, 3), nn.linear(3, 2)}
    assert.has_error(function() net:forward(T.randn{1, 4}, {T.randn{3, 4}}) end,
      "sequential:forward: expected 4 parameter tensors (net:parameters() order), got 1")
  end)

  it("nn.sequential refuses elements that are not layers", function()
    assert.has_error(function() nn.sequential{nn.relu(), 3} end,
      "nn.sequential: element 2 is a number, expected an nn layer")
    -- a layer alone (the braces forgotten) built a network of no parameters, the identity; a hole dropped
    -- the layers after it
    assert.has_error(function() nn.sequential(nn.linear(3, 4)) end,
      "nn.sequential: expected a list of layers, got a layer (write nn.sequential{layer, ...})")
    assert.has_error(function() nn.sequential{nn.linear(3, 4), nil, nn.linear(4, 2)} end,
      "nn.sequential: element 2 is nil (a layer that was not made?)")
  end)
end)

describe("nn initialisation", function()
  it("is reproducible from a generator", function()
    local a, b = nn.conv4{ways = 5}, nn.conv4{ways = 5}
    a:init(T.generator(7))
    b:init(T.generator(7))
    assert.same(a:parameters()[1]:totable(), b:parameters()[1]:totable())
  end)

  it("Kaiming normal: std sqrt(2 / fan_in), zero biases", function()
    local conv = nn.conv2d(64, 64, 3)
    conv:init(T.generator(1))
    local w = conv:parameters()[1]
    local std = math.sqrt(w:var():item())
    assert.near(math.sqrt(2 / (64 * 9)), std, 0.05 * std)
    assert.equals(0, conv:parameters()[2]:abs():sum():item())
  end)

  it("conv4 init=paper: Xavier-uniform conv weights, standard-normal linear weights", function()
    local net = nn.conv4{ways = 5, init = "paper"}
    net:init(T.generator(2))
    local p = {}
    for i, name in ipairs(net:parameter_names()) do p[name] = net:parameters()[i] end
    local bound = math.sqrt(6 / (64 * 9 + 64 * 9))
    local w = p["conv2.weight"]
    assert.is_true(w:abs():max():item() <= bound)
    assert.near(bound / math.sqrt(3), math.sqrt(w:var():item()), 0.05 * bound)
    local fc = p["fc.weight"]
    assert.near(1, math.sqrt(fc:var():item()), 0.3)
    assert.equals(0, p["bn1.bias"]:abs():sum():item())
  end)

  it("truncated normal stays within two standard deviations", function()
    local w = T.zeros{40, 40}
    nn.init_weight(w, "truncated_normal", T.generator(1), 0.01)
    assert.is_true(w:abs():max():item() <= 0.02 + 1e-7)
    assert.error_matches(function() nn.init_weight(w, "orthogonal", T.generator(1)) end, "nn.init_weight: unknown scheme 'orthogonal'", 1, true)
  end)
end)

describe("nn.conv4", function()
  it("follows the paper's code by default: BN shift only, not adapted, 28 -> 2 with stride 2", function()
    local net = nn.conv4{ways = 5}
    local names, adapted = net:parameter_names(), net:adapted()
    assert.same({"conv1.weight", "conv1.bias", "bn1.bias", "conv2.weight", "conv2.bias", "bn2.bias",
      "conv3.weight", "conv3.bias", "bn3.bias", "conv4.weight", "conv4.bias", "bn4.bias", "fc.weight",
      "fc.bias"}, names)
    for i, name in ipairs(names) do assert.equals(not name:match("^bn"), adapted[i], name) end
    assert.equals(8, #net:buffers())
    net:init(T.generator(1))
    assert.equals("3,5", shape(net:forward(T.rand{3, 1, 28, 28})))
    -- the spatial sizes 28 -> 14 -> 7 -> 4 -> 2
    local sizes, h = {}, T.rand{2, 1, 28, 28}
    for i, layer in ipairs(net.children) do
      if layer.kind == "conv2d" then
        h = layer:forward(h)
        sizes[#sizes + 1] = h:size(3)
      elseif i < #net.children - 1 and layer.kind ~= "mean_pool" then
        h = layer:forward(h)
      end
    end
    assert.same({14, 7, 4, 2}, sizes)
  end)

  -- channels-last (the default with pool="stride") and channels-first compute the same function:
  -- outputs, parameter gradients and the second-order MAML meta-gradient, to float rounding
  for _, net_of in ipairs{
    {"nn.conv4", function(layout) return nn.conv4{ways = 5, bn_scale = true, layout = layout} end},
    {"nn.conv4, order relu_norm", function(layout) return nn.conv4{ways = 3, order = "relu_norm", layout = layout} end},
    {"nn.peer_net", function(layout) return nn.peer_net{ways = 5, layout = layout} end},
  } do
    it(net_of[1] .. ": layout nhwc and nchw give the same outputs, gradients and meta-gradients", function()
      local a, b = net_of[2]("nhwc"):init(T.generator(3)), net_of[2]("nchw"):init(T.generator(3))
      assert.equals("channels_last", a.children[1].kind)
      assert.same(a:parameter_names(), b:parameter_names())
      local x, q = T.randn({10, 1, 28, 28}, T.generator(4)), T.randn({10, 1, 28, 28}, T.generator(5))
      local labels = {1, 2, 3, 1, 2, 3, 1, 2, 3, 1}
      local function meta_grad(net)
        local p = net:parameters()
        local g = ag.grad(T.cross_entropy(net:forward(x, p), labels), p, {create_graph = true})
        local fast = {}
        for i = 1, #p do fast[i] = p[i] - g[i] * 0.4 end
        return ag.grad(T.cross_entropy(net:forward(q, fast), labels), p)
      end
      local ya, yb = a:forward(x), b:forward(x)
      assert.is_true((ya - yb):abs():max():item() < 1e-4 * (1 + yb:abs():max():item()))
      local ga, gb = meta_grad(a), meta_grad(b)
      for i = 1, #ga do
        local scale = 1 + gb[i]:abs():max():item()
        assert.is_true((ga[i] - gb[i]):abs():max():item() < 1e-3 * scale, a:parameter_names()[i])
      end
    end)
  end

  it("refuses layout nhwc with max pooling, and an unknown layout", function()
    assert.has_error(function() nn.conv4{ways = 5, pool = "max", layout = "nhwc"} end,
      "nn.conv4: pool=\"max\" runs with layout=\"nchw\" only (max pooling has no channels-last kernels)")
    assert.has_error(function() nn.conv4{ways = 5, layout = "hwc"} end,
      "nn.conv4: layout must be \"nchw\" or \"nhwc\", got hwc")
    assert.has_error(function() nn.conv2d(1, 2, 3, {layout = "NCHW"}) end,
      "nn.conv2d: layout must be \"nchw\" or \"nhwc\", got NCHW")
    assert.equals("conv2d", nn.conv4{ways = 5, pool = "max"}.children[1].kind) -- channels-first
  end)

  it("options: bn_scale, bn_adapt, pool=max, order, init", function()
    local net = nn.conv4{ways = 3, bn_scale = true, bn_adapt = true, pool = "max", order = "relu_norm",
      init = "kaiming"}
    assert.equals("bn1.weight", net:parameter_names()[3])
    for _, a in ipairs(net:adapted()) do assert.is_true(a) end
    net:init(T.generator(1))
    assert.equals("2,3", shape(net:forward(T.rand{2, 1, 28, 28})))
    -- relu_norm: the ReLU fused into the convolution, then batch norm
    assert.equals("conv2d", net.children[1].kind)
    assert.is_true(net.children[1].relu)
    assert.equals("batchnorm2d", net.children[2].kind)
    assert.is_false(net.children[2].relu)
    assert.error_matches(function() nn.conv4{ways = 3, pool = "avg"} end, 'nn.conv4: pool must be "stride" or "max", got avg', 1, true)
    assert.error_matches(function() nn.conv4{} end, "nn.conv4: 'ways' (number of output logits) is required", 1, true)
  end)

  it("matches a direct convolution in Lua (stride variant)", function()
    local net = nn.conv4{ways = 3, channels = 2, image = 8, bn_scale = true}
    net:init(T.generator(5))
    -- non-trivial BN parameters and biases
    ag.no_grad(function()
      for i, name in ipairs(net:parameter_names()) do
        if name:match("bias$") or name:match("^bn") then
          net:parameters()[i]:copy_(T.randn(net:parameters()[i]:shape(), T.generator(i)) * 0.5 + 0.1)
        end
      end
    end)
    local x = T.rand({4, 1, 8, 8}, T.generator(9))
    local expected = conv4_direct(x:totable(), net, "stride", 1e-3)
    assert_close_tables(expected, net:forward(x):totable(), 1e-4)
  end)

  it("matches a direct convolution in Lua (max-pool variant)", function()
    local net = nn.conv4{ways = 2, channels = 2, image = 16, pool = "max"}
    net:init(T.generator(6))
    local x = T.rand({3, 1, 16, 16}, T.generator(10))
    local expected = conv4_direct(x:totable(), net, "max", 1e-3)
    assert_close_tables(expected, net:forward(x):totable(), 1e-4)
  end)
end)

describe("nn.peer_net", function()
  it("is the peer's network: conv -> ReLU -> BN, 28 -> 13 -> 6 -> 2 -> 1, all adapted", function()
    local net = nn.peer_net{ways = 5}
    assert.equals(18, net:num_parameters())
    for _, a in ipairs(net:adapted()) do assert.is_true(a) end
    assert.equals("2,5", shape(net:init(T.generator(1)):forward(T.rand{2, 1, 28, 28})))
    assert.equals("channels_last", net.children[1].kind) -- layout "nhwc", the default
    assert.equals("conv2d", net.children[2].kind)
    assert.is_true(net.children[2].relu) -- conv -> ReLU as one op
    assert.equals("batchnorm2d", net.children[3].kind)
    assert.equals("64,64,2,2", shape(net:parameters()[13]))
  end)
end)

describe("nn.mlp", function()
  it("builds linear layers with ReLU between them", function()
    local net = nn.mlp{sizes = {1, 40, 40, 1}}
    assert.equals(6, net:num_parameters())
    net:init(T.generator(1))
    assert.equals("7,1", shape(net:forward(T.randn{7, 1})))
  end)
end)
