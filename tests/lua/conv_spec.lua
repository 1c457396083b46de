-- tests/lua/conv_spec.lua: T.conv2d, its backward ops and the poolings from Lua: values against
-- loops in Lua, first and second derivatives by finite differences (gradcheck, gradgradcheck),
-- and the error messages of misuse.
local T = require "tensor"
local helpers = require "tests.lua.helpers"
local ag = require "autograd"
local gc = require "gradcheck"

local gen = T.generator(7)

local function randn(shape) return T.randn(shape, gen) end

local function leaf(t) return t:requires_grad(true) end

-- a new leaf with t's values (t itself may already require grad)
local function fresh(t) return t:detach():clone():requires_grad(true) end

-- distinct values far apart compared with gradcheck's step, so no max changes under a probe:
-- a random permutation of (k - n/2) * 0.3, k = 1..n
local function separated(shape)
  local n = 1
  for _, d in ipairs(shape) do n = n * d end
  local values = {}
  for i, k in ipairs(gen:permutation(n)) do values[i] = (k - n / 2) * 0.3 end
  return T.tensor(values):reshape(shape)
end

local function max_abs_diff(a, b) return (a - b):abs():max():item() end

-- conv2d written out in Lua, on tensors
local function conv2d_loops(x, w, b, stride, pad)
  return T.tensor(helpers.conv2d_loops(x:totable(), w:totable(), b and b:totable(), stride, pad))
end

-- shapes: {N, C, H, W}, {O, KH, KW}, stride, padding
local conv_cases = {
  { { 1, 1, 5, 5 }, { 2, 3, 3 }, 1, 0 },
  { { 2, 3, 7, 6 }, { 4, 3, 3 }, 2, 1 },
  { { 2, 2, 6, 7 }, { 3, 2, 3 }, 3, 2 },
  { { 1, 3, 4, 5 }, { 2, 1, 2 }, 1, 1 },
  { { 3, 2, 4, 4 }, { 2, 2, 2 }, 2, 0 },
}

local function case_name(c)
  return ("x {%s}, %dx%dx%d kernel, stride %d, padding %d"):format(table.concat(c[1], ","), c[2][1], c[2][2],
    c[2][3], c[3], c[4])
end

local function case_tensors(c)
  local x = randn(c[1])
  local w = randn({ c[2][1], c[1][2], c[2][2], c[2][3] }) * 0.5
  local b = randn({ c[2][1] })
  return x, w, b
end

describe("conv2d", function()
  for _, c in ipairs(conv_cases) do
    it("matches loops in Lua: " .. case_name(c), function()
      local x, w, b = case_tensors(c)
      local y = T.conv2d(x, w, b, { stride = c[3], padding = c[4] })
      local want = conv2d_loops(x, w, b, c[3], c[4])
      assert.same(want:shape(), y:shape())
      assert.is_true(max_abs_diff(y, want) < 1e-4)
      assert.is_true(max_abs_diff(T.conv2d(x, w, nil, { stride = c[3], padding = c[4] }),
        conv2d_loops(x, w, nil, c[3], c[4])) < 1e-4)
    end)

    it("has exact first derivatives in x, w and b: " .. case_name(c), function()
      local x, w, b = case_tensors(c)
      local opts = { stride = c[3], padding = c[4] }
      assert.is_true(gc.gradcheck(function(x_, w_, b_) return T.conv2d(x_, w_, b_, opts) end,
        { leaf(x), leaf(w), leaf(b) }))
    end)

    it("has exact second derivatives: " .. case_name(c), function()
      local x, w, b = case_tensors(c)
      local opts = { stride = c[3], padding = c[4] }
      -- conv alone is bilinear (the x-w cross terms); tanh between two convs adds curvature
      assert.is_true(gc.gradgradcheck(function(x_, w_, b_) return T.conv2d(x_, w_, b_, opts) end,
        { leaf(x), leaf(w), leaf(b) }))
      local w2 = leaf(randn({ 2, c[2][1], 1, 1 }))
      assert.is_true(gc.gradgradcheck(function(x_, w_, b_, w2_)
        return T.conv2d(T.conv2d(x_, w_, b_, opts):tanh(), w2_)
      end, { leaf(x), leaf(w), leaf(b), w2 }))
    end)
  end

  it("defaults to stride 1 and padding 0, and is also a method", function()
    local x, w = randn({ 2, 3, 5, 5 }), randn({ 4, 3, 3, 3 })
    local y = T.conv2d(x, w)
    assert.same({ 2, 4, 3, 3 }, y:shape())
    assert.is_true(max_abs_diff(y, x:conv2d(w)) == 0)
    assert.is_true(max_abs_diff(y, conv2d_loops(x, w, nil, 1, 0)) < 1e-4)
  end)

  it("gives the conv4 shapes (28 -> 13 -> 6 -> 2 -> 1 and 28 -> 14 -> 7 -> 4 -> 2)", function()
    for _, pad in ipairs({ 0, 1 }) do
      local x = randn({ 5, 1, 28, 28 })
      local sizes = {}
      for layer = 1, 4 do
        local k = (pad == 0 and layer == 4) and 2 or 3
        local stride = (pad == 0 and layer == 4) and 1 or 2
        x = T.conv2d(x, randn({ 64, x:size(2), k, k }), randn({ 64 }), { stride = stride, padding = pad })
        sizes[layer] = x:size(3)
      end
      assert.same(pad == 0 and { 13, 6, 2, 1 } or { 14, 7, 4, 2 }, sizes)
    end
  end)

  it("gradients and second-order MAML step through a conv4 network", function()
    -- one inner SGD step on a tiny conv net, then the meta-gradient, checked by finite differences
    local x = randn({ 2, 1, 9, 9 })
    local function net(w1, w2, input)
      local h = T.conv2d(input, w1, nil, { stride = 2, padding = 1 }):tanh()
      return T.conv2d(h, w2, nil, { stride = 2 }):sum()
    end
    local function meta(w1, w2)
      local g = ag.grad(net(w1, w2, x), { w1, w2 }, { create_graph = true })
      return T.stack({ net(w1 - g[1] * 0.1, w2 - g[2] * 0.1, x * 0.5) })
    end
    assert.is_true(gc.gradcheck(meta, { leaf(randn({ 3, 1, 3, 3 }) * 0.5), leaf(randn({ 2, 3, 3, 3 }) * 0.5) }))
  end)
end)

describe("conv2d_backward_input and conv2d_backward_weight", function()
  for _, c in ipairs(conv_cases) do
    it("are the adjoints of conv2d and differentiable twice: " .. case_name(c), function()
      local x, w = case_tensors(c)
      local opts = { stride = c[3], padding = c[4] }
      local y = T.conv2d(x, w, nil, opts)
      local gy = randn(y:shape())
      local hw, k = { c[1][3], c[1][4] }, { c[2][2], c[2][3] }
      local gx = T.conv2d_backward_input(gy, w, hw, opts)
      local gw = T.conv2d_backward_weight(x, gy, k, opts)
      local a, b2, c2 = (y * gy):sum():item(), (x * gx):sum():item(), (w * gw):sum():item()
      assert.is_true(math.abs(a - b2) < 1e-4 * (1 + math.abs(a)))
      assert.is_true(math.abs(a - c2) < 1e-4 * (1 + math.abs(a)))
      -- both ops, and autograd's gradients of <conv2d(x, w), gy>, against loops in Lua (not against
      -- each other: autograd's conv2d node calls these very ops)
      local gx_ref, gw_ref = helpers.conv2d_backward_loops(x:totable(), w:totable(), gy:totable(), c[3], c[4])
      gx_ref, gw_ref = T.tensor(gx_ref), T.tensor(gw_ref)
      local xl, wl = fresh(x), fresh(w)
      local g = ag.grad((T.conv2d(xl, wl, nil, opts) * gy):sum(), { xl, wl })
      assert.is_true(max_abs_diff(gx, gx_ref) < 1e-4)
      assert.is_true(max_abs_diff(gw, gw_ref) < 1e-4)
      assert.is_true(max_abs_diff(g[1], gx_ref) < 1e-4)
      assert.is_true(max_abs_diff(g[2], gw_ref) < 1e-4)
      local f_in = function(gy_, w_) return T.conv2d_backward_input(gy_, w_, hw, opts) end
      local f_w = function(x_, gy_) return T.conv2d_backward_weight(x_, gy_, k, opts) end
      assert.is_true(gc.gradcheck(f_in, { fresh(gy), fresh(w) }))
      assert.is_true(gc.gradgradcheck(f_in, { fresh(gy), fresh(w) }))
      assert.is_true(gc.gradcheck(f_w, { fresh(x), fresh(gy) }))
      assert.is_true(gc.gradgradcheck(f_w, { fresh(x), fresh(gy) }))
    end)
  end
end)

-- channels-last: (N,C,H,W) <-> (N,H,W,C)
local function to_nhwc(t) return t:permute({ 1, 3, 4, 2 }) end
local function to_nchw(t) return t:permute({ 1, 4, 2, 3 }) end

describe("conv2d with layout = \"nhwc\"", function()
  for _, c in ipairs(conv_cases) do
    it("is conv2d on channels-last tensors: " .. case_name(c), function()
      local x, w, b = case_tensors(c)
      local opts = { stride = c[3], padding = c[4] }
      local nhwc = { stride = c[3], padding = c[4], layout = "nhwc" }
      local y = T.conv2d(to_nhwc(x), w, b, nhwc)
      local want = conv2d_loops(x, w, b, c[3], c[4])
      assert.is_true(max_abs_diff(to_nchw(y), want) < 1e-4)
      local gy = randn(T.conv2d(x, w, nil, opts):shape())
      local hw, k = { c[1][3], c[1][4] }, { c[2][2], c[2][3] }
      assert.is_true(max_abs_diff(to_nchw(T.conv2d_backward_input(to_nhwc(gy), w, hw, nhwc)),
        T.conv2d_backward_input(gy, w, hw, opts)) < 1e-4)
      assert.is_true(max_abs_diff(T.conv2d_backward_weight(to_nhwc(x), to_nhwc(gy), k, nhwc),
        T.conv2d_backward_weight(x, gy, k, opts)) < 1e-4)
    end)

    it("has exact first and second derivatives in x, w and b: " .. case_name(c), function()
      local x, w, b = case_tensors(c)
      local nhwc = { stride = c[3], padding = c[4], layout = "nhwc" }
      local f = function(x_, w_, b_) return T.conv2d(x_, w_, b_, nhwc) end
      assert.is_true(gc.gradcheck(f, { leaf(to_nhwc(x)), leaf(w), leaf(b) }))
      assert.is_true(gc.gradgradcheck(f, { leaf(to_nhwc(x)), leaf(w), leaf(b) }))
      local w2 = leaf(randn({ 2, c[2][1], 1, 1 }))
      assert.is_true(gc.gradgradcheck(function(x_, w_, b_, w2_)
        return T.conv2d(T.conv2d(x_, w_, b_, nhwc):tanh(), w2_, nil, { layout = "nhwc" })
      end, { leaf(to_nhwc(x)), leaf(w), leaf(b), w2 }))
    end)

    it("has backward ops differentiable twice: " .. case_name(c), function()
      local x, w = case_tensors(c)
      local nhwc = { stride = c[3], padding = c[4], layout = "nhwc" }
      local xl = to_nhwc(x)
      local gy = randn(T.conv2d(xl, w, nil, nhwc):shape())
      local hw, k = { c[1][3], c[1][4] }, { c[2][2], c[2][3] }
      local f_in = function(gy_, w_) return T.conv2d_backward_input(gy_, w_, hw, nhwc) end
      local f_w = function(x_, gy_) return T.conv2d_backward_weight(x_, gy_, k, nhwc) end
      assert.is_true(gc.gradcheck(f_in, { fresh(gy), fresh(w) }))
      assert.is_true(gc.gradgradcheck(f_in, { fresh(gy), fresh(w) }))
      assert.is_true(gc.gradcheck(f_w, { fresh(xl), fresh(gy) }))
      assert.is_true(gc.gradgradcheck(f_w, { fresh(xl), fresh(gy) }))
    end)
  end

  it("global_avg_pool2d takes the layout too", function()
    local x = randn({ 2, 3, 4, 5 })
    assert.is_true(max_abs_diff(T.global_avg_pool2d(to_nhwc(x), { layout = "nhwc" }), T.global_avg_pool2d(x)) < 1e-6)
    assert.is_true(gc.gradcheck(function(x_) return T.global_avg_pool2d(x_, { layout = "nhwc" }) end,
      { leaf(to_nhwc(x)) }))
  end)

  it("refuses an unknown layout, naming the function and the values", function()
    local x, w = randn({ 1, 2, 5, 5 }), randn({ 3, 2, 3, 3 })
    local function fails_with(f, want)
      local ok, err = pcall(f)
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find(want, 1, true), "got: " .. tostring(err))
    end
    fails_with(function() T.conv2d(x, w, nil, { layout = "chwn" }) end,
      "bad argument #4 to 'conv2d' (layout must be \"nchw\" or \"nhwc\", got \"chwn\")")
    fails_with(function() T.batch_norm(x, nil, nil, { layout = "NHWC" }) end,
      "bad argument #4 to 'batch_norm' (layout must be \"nchw\" or \"nhwc\", got \"NHWC\")")
    fails_with(function() T.global_avg_pool2d(x, { layout = 1 }) end, "global_avg_pool2d")
    fails_with(function() T.conv2d(x, w, nil, { layout = "nhwc" }) end,
      "weight (3, 2, 3, 3) has 2 input channels, input (1, 2, 5, 5) has 5")
  end)
end)

-- relu = true: max(conv2d, 0) as one op. Its value, gradients and second derivatives equal those of
-- conv2d followed by T.relu (the same mask), in both layouts, to float rounding.
describe("conv2d with relu = true", function()
  for _, layout in ipairs({ "nchw", "nhwc" }) do
    for _, c in ipairs(conv_cases) do
      it(layout .. ": is conv2d then relu, to every order: " .. case_name(c), function()
        local x, w, b = case_tensors(c)
        if layout == "nhwc" then x = to_nhwc(x) end
        local opts = { stride = c[3], padding = c[4], layout = layout }
        local fused = { stride = c[3], padding = c[4], layout = layout, relu = true }
        assert.same(T.conv2d(x, w, b, opts):relu():totable(), T.conv2d(x, w, b, fused):totable())
        local r = randn(T.conv2d(x, w, b, opts):shape())
        local function grads(f, create_graph)
          local xl, wl, bl = fresh(x), fresh(w), fresh(b)
          local g = ag.grad((f(xl, wl, bl):tanh() * r):sum(), { xl, wl, bl }, { create_graph = true })
          local h = ag.grad((g[1] * g[1]):sum() + (g[2] * g[2]):sum(), { xl, wl, bl }, { allow_unused = true })
          return g, h
        end
        local g1, h1 = grads(function(a, k, bb) return T.conv2d(a, k, bb, opts):relu() end)
        local g2, h2 = grads(function(a, k, bb) return T.conv2d(a, k, bb, fused) end)
        for i = 1, 3 do
          assert.is_true(max_abs_diff(g1[i], g2[i]) < 1e-5, "first derivative " .. i)
          if h1[i] then assert.is_true(max_abs_diff(h1[i], h2[i]) < 1e-4, "second derivative " .. i) end
        end
      end)
    end
  end

  it("has exact first and second derivatives by finite differences", function()
    local x, w, b = T.randn({ 2, 3, 6, 6 }, T.generator(11)), T.randn({ 4, 3, 3, 3 }, T.generator(12)) * 0.5,
      T.randn({ 4 }, T.generator(13))
    local f = function(x_, w_, b_) return T.conv2d(x_, w_, b_, { stride = 2, padding = 1, relu = true }):tanh() end
    assert.is_true(gc.gradcheck(f, { leaf(x), leaf(w), leaf(b) }))
    assert.is_true(gc.gradgradcheck(f, { leaf(x), leaf(w), leaf(b) }))
  end)

  it("is refused by the backward ops (it belongs to the forward)", function()
    local ok, err = pcall(T.conv2d_backward_input, randn({ 1, 2, 3, 3 }), randn({ 2, 1, 3, 3 }), { 5, 5 },
      { relu = true })
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("unknown option 'relu'", 1, true), tostring(err))
  end)
end)

-- pooling cases: {N, C, H, W}, k, stride, padding
local pool_cases = {
  { { 1, 1, 4, 4 }, 2, 2, 0 },
  { { 2, 3, 5, 6 }, 3, 2, 1 },
  { { 1, 2, 7, 5 }, 3, 1, 1 },
  { { 2, 1, 6, 6 }, 2, 3, 1 },
}

local function pool_name(c)
  return ("x {%s}, k %d, stride %d, padding %d"):format(table.concat(c[1], ","), c[2], c[3], c[4])
end

-- max or mean of each window in Lua; padding never wins a max and counts as zero in a mean
local function pool_loops(x, k, stride, pad, kind)
  local N, C, H, W = table.unpack(x:shape())
  local xs = x:totable()
  local OH, OW = (H + 2 * pad - k) // stride + 1, (W + 2 * pad - k) // stride + 1
  local y = {}
  for n = 1, N do
    y[n] = {}
    for c = 1, C do
      y[n][c] = {}
      for i = 1, OH do
        y[n][c][i] = {}
        for j = 1, OW do
          local best, sum = -math.huge, 0
          for a = 1, k do
            for b = 1, k do
              local h, v = (i - 1) * stride - pad + a, (j - 1) * stride - pad + b
              if h >= 1 and h <= H and v >= 1 and v <= W then
                best = math.max(best, xs[n][c][h][v])
                sum = sum + xs[n][c][h][v]
              end
            end
          end
          y[n][c][i][j] = kind == "max" and best or sum / (k * k)
        end
      end
    end
  end
  return T.tensor(y)
end

describe("max_pool2d", function()
  for _, c in ipairs(pool_cases) do
    it("matches loops in Lua and has exact first and second derivatives: " .. pool_name(c), function()
      local x = separated(c[1])
      local opts = { stride = c[3], padding = c[4] }
      local y = T.max_pool2d(x, c[2], opts)
      assert.is_true(max_abs_diff(y, pool_loops(x, c[2], c[3], c[4], "max")) == 0)
      local f = function(x_) return T.max_pool2d(x_, c[2], opts) end
      assert.is_true(gc.gradcheck(f, { leaf(x) }))
      -- max pooling is linear around x, so square before and after it: the second derivative
      -- then runs through max_pool2d_backward's own backward. The step (relative to values up
      -- to 31) must stay under the 0.3 between values, or a probe changes a window's maximum.
      assert.is_true(gc.gradgradcheck(function(x_)
        local y = T.max_pool2d(x_ * x_ * 0.1 + x_, c[2], opts)
        return y * y * 0.1
      end, { leaf(separated(c[1]) + 20) }, { eps = 1e-3 }))
    end)
  end

  it("defaults the stride to the kernel size", function()
    local x = separated({ 1, 1, 6, 6 })
    assert.same({ 1, 1, 3, 3 }, T.max_pool2d(x, 2):shape())
    assert.same({ 1, 1, 2, 2 }, x:max_pool2d(3):shape())
  end)

  it("sends the gradient to the first maximum of a tie, and adds it up over windows", function()
    local x = leaf(T.ones({ 1, 1, 3, 3 }))
    local g = ag.grad(T.max_pool2d(x, 2, { stride = 1 }):sum(), { x })[1]
    assert.same({ { { { 1, 1, 0 }, { 1, 1, 0 }, { 0, 0, 0 } } } }, g:totable())
    x = leaf(T.tensor({ { { { 0, 0, 0 }, { 0, 5, 0 }, { 0, 0, 0 } } } }))
    g = ag.grad(T.max_pool2d(x, 2, { stride = 1 }):sum(), { x })[1]
    assert.same({ { { { 0, 0, 0 }, { 0, 4, 0 }, { 0, 0, 0 } } } }, g:totable())
  end)
end)

describe("avg_pool2d", function()
  for _, c in ipairs(pool_cases) do
    it("matches loops in Lua and has exact first and second derivatives: " .. pool_name(c), function()
      local x = randn(c[1])
      local opts = { stride = c[3], padding = c[4] }
      local y = T.avg_pool2d(x, c[2], opts)
      assert.is_true(max_abs_diff(y, pool_loops(x, c[2], c[3], c[4], "avg")) < 1e-5)
      assert.is_true(gc.gradcheck(function(x_) return T.avg_pool2d(x_, c[2], opts) end, { fresh(x) }))
      assert.is_true(gc.gradgradcheck(function(x_) return T.avg_pool2d(x_:tanh(), c[2], opts):tanh() end,
        { fresh(x) }))
    end)
  end
end)

describe("global_avg_pool2d", function()
  it("is the mean over H and W, with exact derivatives", function()
    local x = randn({ 2, 3, 4, 5 })
    local y = T.global_avg_pool2d(x)
    assert.same({ 2, 3 }, y:shape())
    assert.is_true(max_abs_diff(y, x:mean({ 3, 4 })) < 1e-6)
    assert.is_true(gc.gradcheck(T.global_avg_pool2d, { fresh(x) }))
    assert.is_true(gc.gradgradcheck(function(x_) return T.global_avg_pool2d(x_:tanh()) end, { fresh(x) }))
  end)
end)

describe("misuse", function()
  local x, w = randn({ 2, 3, 5, 5 }), randn({ 4, 3, 3, 3 })
  local cases = {
    { "3-d input", function() T.conv2d(randn({ 3, 5, 5 }), w) end,
      "bad argument #1 to 'conv2d' (expected 4-d input (N,C,H,W), got 3-d (3, 5, 5))" },
    { "channel mismatch", function() T.conv2d(x, randn({ 4, 2, 3, 3 })) end,
      "weight (4, 2, 3, 3) has 2 input channels, input (2, 3, 5, 5) has 3" },
    { "kernel larger than the input", function() T.conv2d(x, randn({ 4, 3, 6, 6 })) end,
      "kernel 6x6 is larger than the padded input 5x5" },
    { "bias of the wrong size", function() T.conv2d(x, w, randn({ 3 })) end,
      "bad argument #3 to 'conv2d' (expected bias of shape (4), got (3))" },
    { "non-tensor input", function() T.conv2d({}, w) end, "bad argument #1 to 'conv2d'" },
    { "non-tensor weight", function() T.conv2d(x, 3) end, "bad argument #2 to 'conv2d'" },
    { "options not a table", function() T.conv2d(x, w, nil, 2) end,
      "bad argument #4 to 'conv2d' (expected a table of options, got number)" },
    { "unknown option", function() T.conv2d(x, w, nil, { pading = 1 }) end,
      "bad argument #4 to 'conv2d' (unknown option 'pading'; valid options: stride, padding, layout, relu)" },
    { "non-integer option", function() T.conv2d(x, w, nil, { stride = 1.5 }) end,
      "option 'stride' must be an integer, got 1.5" },
    { "option given as a string", function() T.conv2d(x, w, nil, { padding = "1" }) end,
      "option 'padding' must be an integer, got string" },
    { "max_pool2d options not a table", function() T.max_pool2d(x, 2, "stride=1") end,
      "bad argument #3 to 'max_pool2d' (expected a table of options, got string)" },
    { "backward_weight kernel size of the wrong length", function()
      T.conv2d_backward_weight(x, randn({ 2, 4, 3, 3 }), { 3, 3, 3 })
    end, "expected kernel size as {h, w}, got a table of length 3" },
    { "zero stride", function() T.conv2d(x, w, nil, { stride = 0 }) end, "stride must be >= 1, got 0" },
    { "negative padding", function() T.conv2d(x, w, nil, { padding = -1 }) end, "padding must be >= 0, got -1" },
    { "max_pool2d padding over half the kernel", function() T.max_pool2d(x, 2, { padding = 2 }) end,
      "bad argument #3 to 'max_pool2d' (padding must be between 0 and kernel size / 2 = 1, got 2)" },
    { "max_pool2d without a kernel size", function() T.max_pool2d(x) end, "bad argument #2 to 'max_pool2d'" },
    { "avg_pool2d on a 2-d tensor", function() T.avg_pool2d(randn({ 5, 5 }), 2) end,
      "bad argument #1 to 'avg_pool2d' (expected 4-d input (N,C,H,W), got 2-d (5, 5))" },
    { "global_avg_pool2d on a 3-d tensor", function() T.global_avg_pool2d(randn({ 3, 5, 5 })) end,
      "bad argument #1 to 'global_avg_pool2d' (expected 4-d input" },
    { "backward_input with an input size that does not fit", function()
      T.conv2d_backward_input(randn({ 2, 4, 3, 3 }), w, { 9, 9 }, { stride = 2 })
    end, "input size 9x9 gives a 4x4 output" },
  }
  for _, c in ipairs(cases) do
    it("says what was wrong: " .. c[1], function()
      local ok, err = pcall(c[2])
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find(c[3], 1, true), "got: " .. tostring(err))
    end)
  end
end)

-- conv2d keeps each weight's channels-last copy for the next calls (per thread, keyed by the
-- storage and its version): a weight written in place, by any of the ways there are, must be read
-- anew, as must a new weight in the memory of a freed one. The reference is the same call on a
-- clone (a storage the cache has never seen).
describe("conv2d's cached channels-last weights", function()
  local x, gy = randn { 3, 6, 6, 4 }, randn { 3, 3, 3, 5 }
  local nhwc = { stride = 2, padding = 1, layout = "nhwc" }
  local function same_as_clone(w, what)
    assert.are.same(T.conv2d(x, w:clone(), nil, nhwc):totable(), T.conv2d(x, w, nil, nhwc):totable(), what)
    local gx = T.conv2d_backward_input(gy, w, { 6, 6 }, nhwc)
    assert.are.same(T.conv2d_backward_input(gy, w:clone(), { 6, 6 }, nhwc):totable(), gx:totable(), what)
  end
  it("follow every in-place write of the weight", function()
    local w = randn { 5, 4, 3, 3 }
    local writes = {
      { "add_", function() w:add_(0.5) end },
      { "mul_", function() w:mul_(-2) end },
      { "copy_", function() w:copy_(randn { 5, 4, 3, 3 }) end },
      { "fill_", function() w:fill_(0.25) end },
      { "zero_", function() w:zero_() end },
      { "addcmul_", function() w:addcmul_(randn { 5, 4, 3, 3 }, randn { 5, 4, 3, 3 }) end },
      { "addcdiv_", function() w:addcdiv_(randn { 5, 4, 3, 3 }, T.ones { 5, 4, 3, 3 }, 2) end },
      { "set", function() w:set(3, 2, 1, 2, 3) end },
    }
    same_as_clone(w, "before any write")
    for _, write in ipairs(writes) do
      T.conv2d(x, w, nil, nhwc) -- (cached)
      write[2]()
      same_as_clone(w, "after " .. write[1])
    end
  end)
  it("are not served for a new weight in the memory of a freed one", function()
    for i = 1, 20 do -- (the buffer cache hands a freed weight's memory to the next one)
      local w = randn { 5, 4, 3, 3 }
      same_as_clone(w, "weight " .. i)
      w = nil -- luacheck: ignore
      collectgarbage()
    end
  end)
end)
