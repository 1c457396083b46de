-- tests/lua/gradcheck_ops_spec.lua: first and second derivatives of every
-- differentiable op against finite differences (lua/gradcheck.lua).
-- Inputs are small (a few elements) so the whole file runs in seconds, and
-- kept away from kinks (relu and abs at 0, ties in max) by more than
-- gradcheck's step.
local T = require "tensor"
local ag = require "autograd"
local gc = require "gradcheck"
local near = require("tests.lua.helpers").near

local gen = T.generator(20240601)

-- a leaf requiring grad: randn values of a shape ({2, 3}, or {} for 0-d)
local function leaf(shape)
  return T.randn(shape, gen):requires_grad(true)
end

-- a leaf requiring grad with the given values (a nested table)
local function leafv(values)
  return T.tensor(values):requires_grad(true)
end

-- values in [lo, hi) (for log, sqrt, pow: away from 0)
local function positive(shape, lo, hi)
  lo, hi = lo or 0.5, hi or 2.0
  return (T.rand(shape, gen) * (hi - lo) + lo):requires_grad(true)
end

-- randn values pushed away from 0 by at least 0.2 (for relu, abs)
local function off_zero(shape)
  local x = T.randn(shape, gen)
  local pushed = x + x:sign() * 0.2
  return T.tensor(pushed):requires_grad(true)
end

-- both checks; f takes the inputs and returns a tensor
local function check(f, inputs, opts)
  assert.is_true(gc.gradcheck(f, inputs, opts))
  assert.is_true(gc.gradgradcheck(f, inputs, opts))
end

describe("gradcheck itself", function()
  it("fails on a wrong gradient (T.tensor copies without history)", function()
    -- f(x) = x * x with one factor detached: the analytic gradient is x, the true one 2x
    local x = leafv { 0.5, -1.0, 1.5 }
    local ok, err = pcall(gc.gradcheck, function(a) return T.tensor(a) * a end, { x })
    assert.is_false(ok)
    assert.matches("gradcheck: input 1 %(shape {3}%) element %d+: analytic .* vs numeric", err)
  end)

  it("gradgradcheck fails on a wrong second derivative", function()
    -- first derivative right (d/dx of x^3 is 3x^2 via x * x * x), but the
    -- gradient is computed through a detached copy of x in one factor: the
    -- analytic Hessian misses terms
    local x = leafv { 0.7, -1.2 }
    local ok = pcall(gc.gradgradcheck, function(a)
      return a * a * T.tensor(a) + (a:pow(3) - a * a * T.tensor(a)):detach()
    end, { x })
    assert.is_false(ok)
  end)

  it("gradgradcheck checks every input, also those after an unused one", function()
    local unused, x = leafv { 0.5 }, leafv { 0.7, -1.2 }
    local ok = pcall(gc.gradgradcheck, function(_, a)
      return a * a * T.tensor(a) + (a:pow(3) - a * a * T.tensor(a)):detach()
    end, { unused, x })
    assert.is_false(ok)
  end)

  it("fails on a backward that returns NaN (sqrt's gradient at 0, times 0)", function()
    -- value x^2 + 0, gradient 2x + inf * 0 = NaN
    local x = leafv { 0.5, -1.0, 1.5 }
    local broken = function(a) return a * a + (a * 0):sqrt() end
    local g = ag.grad(broken(x):sum(), { x })[1]:get(1)
    assert.is_true(g ~= g) -- (the broken function is broken: its gradient is NaN)
    local ok, err = pcall(gc.gradcheck, broken, { x })
    assert.is_false(ok)
    assert.matches("gradcheck: input 1 %(shape {3}%) element 1: analytic %-?nan vs numeric", err)
    assert.is_false((pcall(gc.gradgradcheck, broken, { x })))
  end)

  it("fails on an infinite gradient", function()
    -- value x^2, gradient 2x + 1/(2 sqrt(0)) = inf
    local x = leafv { 0.5, -1.0 }
    local ok, err = pcall(gc.gradcheck, function(a) return a * a + (a - T.tensor(a)):sqrt() end, { x })
    assert.is_false(ok)
    assert.matches("analytic inf vs numeric", err)
  end)

  it("gradgradcheck fails on a backward that ignores create_graph (detached gradients)", function()
    -- ag.grad broken the way a first-order-only engine would be: right values, no graph
    local grad = ag.grad
    ag.grad = function(out, inputs, opts)
      local gs = grad(out, inputs, opts)
      for k, g in pairs(gs) do gs[k] = g:detach() end
      return gs
    end
    local ok, err = pcall(gc.gradgradcheck, function(a) return a:tanh() * a end, { leafv { 0.5, -1.0, 1.5 } })
    ag.grad = grad
    assert.is_false(ok)
    assert.matches("gradcheck: input 1 %(shape {3}%) element %d+: analytic 0 vs numeric", err)
    -- the same f with the real engine passes, and a linear f (constant gradient) too
    check(function(a) return a:tanh() * a end, { leafv { 0.5, -1.0, 1.5 } })
    check(function(a) return a * 3 end, { leafv { 0.5, -1.0, 1.5 } })
  end)

  it("gradgradcheck fails when only one input's gradient is detached", function()
    -- f(a, b) = a^2 b: the gradient for a is rebuilt without history (T.tensor copies the values)
    local a, b = leafv { 0.5, -1.0 }, leafv { 1.5, 0.7 }
    local grad = ag.grad
    ag.grad = function(out, inputs, opts)
      local gs = grad(out, inputs, opts)
      gs[1] = T.tensor(gs[1])
      return gs
    end
    local ok = pcall(gc.gradgradcheck, function(x, y) return x * x * y end, { a, b })
    ag.grad = grad
    assert.is_false(ok)
    check(function(x, y) return x * x * y end, { a, b })
  end)

  it("rejects inputs that are not leaves requiring grad", function()
    local x = T.randn({ 2 }, gen)
    assert.has_error(function() gc.gradcheck(function(a) return a end, { x }) end,
      "gradcheck: input 1 must be a leaf tensor with requires_grad(true)")
    local ok, err = pcall(gc.gradcheck, function(a) return a end, { x:requires_grad(true) }, { bogus = 1 })
    assert.is_false(ok)
    assert.matches("bad argument #3 to 'gradcheck' (unknown option 'bogus'", err, 1, true)
  end)

  it("fails on a small gradient that is wrong by 2x (the absolute tolerance scales with outputs below 1)", function()
    -- f = 1e-4 x + 1e-3 x^2 with one factor detached: analytic 1e-4 + 1e-3 x, true 1e-4 + 2e-3 x
    local x = leafv { 0.5, 1.5 }
    local ok, err = pcall(gc.gradcheck, function(a) return a * 1e-4 + T.tensor(a) * a * 1e-3 end, { x })
    assert.is_false(ok)
    assert.matches("gradcheck: input 1 %(shape {2}%) element %d+: analytic .* vs numeric", err)
  end)

  it("refuses options that would check nothing, and a call it cannot make", function()
    -- max_elements = 0 checked no element and passed the wrong gradient above
    local x = leafv { 0.5, -1.0, 1.5 }
    local wrong = function(a) return T.tensor(a) * a end
    for _, case in ipairs {
        { { max_elements = 0 }, "option 'max_elements' must be at least 1" },
        { { eps = 0 }, "option 'eps' must be a positive finite step" },
        { { atol = -1 }, "option 'atol' must be a finite tolerance >= 0" },
        { { rtol = 0 / 0 }, "option 'rtol' must be a finite tolerance >= 0" } } do
      for _, fn in ipairs { "gradcheck", "gradgradcheck" } do
        local ok, err = pcall(gc[fn], wrong, { x }, case[1])
        assert.is_false(ok)
        assert.matches("bad argument #3 to '" .. fn .. "' (" .. case[2], err, 1, true)
      end
    end
    local ok, err = pcall(gc.gradcheck, nil, { x })
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'gradcheck' (a function expected, got nil)", err, 1, true)
    ok, err = pcall(gc.gradcheck, wrong, x)
    assert.is_false(ok)
    assert.matches("a non-empty list of input tensors expected, got a tensor (put it in a list: {x})", err, 1, true)
  end)

  it("passes for an input the output does not depend on (zero gradient)", function()
    local x, y = leafv { 1, 2 }, leafv { 3 }
    check(function(a, _) return a * 2 end, { x, y })
  end)
end)

describe("arithmetic with broadcasting", function()
  local ops = {
    add = function(a, b) return a + b end,
    sub = function(a, b) return a - b end,
    mul = function(a, b) return a * b end,
    div = function(a, b) return a / b end,
    pow = function(a, b) return a:pow(b) end,
  }
  -- shape pairs: same, scalar (0-d) on either side, row, column, leading dims
  local patterns = {
    { "same shape", { 2, 3 }, { 2, 3 } },
    { "0-d right", { 2, 3 }, {} },
    { "0-d left", {}, { 2, 3 } },
    { "row (3)", { 2, 3 }, { 3 } },
    { "row (1, 3)", { 2, 3 }, { 1, 3 } },
    { "row on the left", { 3 }, { 2, 3 } },
    { "column (2, 1)", { 2, 3 }, { 2, 1 } },
    { "column on the left", { 2, 1 }, { 2, 3 } },
    { "leading dims (2, 1, 3) with (2, 3)", { 2, 1, 3 }, { 2, 3 } },
    { "both broadcast (2, 1, 2) with (1, 3, 1)", { 2, 1, 2 }, { 1, 3, 1 } },
  }
  for _, name in ipairs { "add", "sub", "mul", "div", "pow" } do
    for _, p in ipairs(patterns) do
      it(name .. ": " .. p[1], function()
        local a, b
        if name == "pow" then
          a, b = positive(p[2], 0.5, 1.5), (T.rand(p[3], gen) * 2 - 1):requires_grad(true)
        elseif name == "div" then
          a, b = leaf(p[2]), positive(p[3], 0.5, 1.5)
        else
          a, b = leaf(p[2]), leaf(p[3])
        end
        check(ops[name], { a, b })
      end)
    end
  end

  it("numbers on either side", function()
    local x = positive({ 2, 2 }, 0.5, 1.5)
    check(function(a) return a + 2 end, { x })
    check(function(a) return 2 + a end, { x })
    check(function(a) return a - 3 end, { x })
    check(function(a) return 3 - a end, { x })
    check(function(a) return a * 1.5 end, { x })
    check(function(a) return -2 * a end, { x })
    check(function(a) return a / 4 end, { x })
    check(function(a) return 2 / a end, { x })
    check(function(a) return a:add(1):mul(2):sub(0.5):div(3) end, { x })
  end)

  it("the same tensor on both sides", function()
    local x = positive({ 3 }, 0.5, 1.5)
    check(function(a) return a * a end, { x })
    check(function(a) return a / a end, { x })
    check(function(a) return a:pow(a) end, { x })
    check(function(a) return a - a + a end, { x })
  end)
end)

describe("elementwise functions", function()
  it("pow with a number exponent", function()
    for _, p in ipairs { 2, 3, 0.5, -1, 1, 0, 2.5, -0.5 } do
      check(function(a) return a:pow(p) end, { positive({ 2, 2 }, 0.5, 1.5) })
    end
    check(function(a) return a:pow(3) end, { leafv { -1.5, 0.7, 1.2 } }) -- negative base, integer power
    check(function(a) return a ^ 2 end, { leafv { -1.5, 0.7 } })
  end)

  it("pow with a tensor exponent", function()
    local a, b = positive({ 3 }, 0.5, 2), leafv { -1.2, 0.3, 2.0 }
    check(function(x, y) return x:pow(y) end, { a, b })
    check(function(x, y) return x ^ y end, { a, b })
  end)

  local unary = {
    exp = function() return leaf { 2, 3 } end,
    log = function() return positive({ 2, 3 }) end,
    sqrt = function() return positive({ 2, 3 }) end,
    abs = function() return off_zero { 2, 3 } end,
    relu = function() return off_zero { 2, 3 } end,
    sigmoid = function() return leaf { 2, 3 } end,
    tanh = function() return leaf { 2, 3 } end,
    neg = function() return leaf { 2, 3 } end,
  }
  for _, name in ipairs { "exp", "log", "sqrt", "abs", "relu", "sigmoid", "tanh", "neg" } do
    it(name, function()
      check(function(a) return a[name](a) end, { unary[name]() })
      check(function(a) return T[name](a) end, { unary[name]() })
    end)
  end

  it("-x (unary minus)", function()
    check(function(a) return -a end, { leaf { 3 } })
  end)

  -- a:sub_scaled(b, s) is a - b * s in one op: its derivatives to second order, and the bits of
  -- the two ops in a row, the value and both gradients (tanh after it: the gradient depends on a, b)
  it("sub_scaled(a, b, s) = a - b * s", function()
    check(function(a, b) return a:sub_scaled(b, 0.37) end, { leaf { 2, 3 }, leaf { 2, 3 } })
    check(function(a, b) return T.sub_scaled(a, b, -1.5):tanh() end, { leaf { 5 }, leaf { 5 } })
    local a0, b0, r = T.randn({ 7, 5 }, gen), T.randn({ 7, 5 }, gen), T.randn({ 7, 5 }, gen)
    local function grads(fused)
      local a, b = T.tensor(a0):requires_grad(true), T.tensor(b0):requires_grad(true)
      local y = fused and a:sub_scaled(b, 0.1) or a - b * 0.1
      return y, ag.grad((y:tanh() * r):sum(), { a, b })
    end
    local y1, g1 = grads(false)
    local y2, g2 = grads(true)
    near(y2, y1, 0, "value")
    near(g2[1], g1[1], 0, "d/da")
    near(g2[2], g1[2], 0, "d/db")
    assert.has_error(function() T.sub_scaled(a0, T.ones { 5 }, 1) end,
      "bad argument #2 to 'sub_scaled' (expected the shape of argument 1, (7, 5), got (5))")
  end)

  it("compositions: the second derivative of relu's and abs's backward is zero", function()
    check(function(a) return a:relu() * a end, { off_zero { 4 } })
    check(function(a) return a:abs():pow(3) end, { off_zero { 4 } })
  end)

  it("sign and comparisons carry no gradient", function()
    local x = off_zero { 3 }
    assert.is_false(x:sign():requires_grad())
    assert.is_false(x:gt(0):requires_grad())
    check(function(a) return a * a:sign() end, { x })
  end)
end)

describe("reductions", function()
  it("sum over each dim, lists of dims and all dims, with and without keepdim", function()
    local x = leaf { 2, 3, 2 }
    check(function(a) return a:sum() end, { x })
    for _, keep in ipairs { false, true } do
      for _, dims in ipairs { 1, 2, 3, -1, { 1, 3 }, { 2, 3 }, { 1, 2, 3 } } do
        check(function(a) return a:sum(dims, keep) end, { x })
      end
    end
  end)

  it("mean over each dim and all dims, keepdim", function()
    local x = leaf { 2, 3 }
    check(function(a) return a:mean() end, { x })
    for _, keep in ipairs { false, true } do
      for _, dims in ipairs { 1, 2, -2, { 1, 2 } } do
        check(function(a) return a:mean(dims, keep) end, { x })
      end
    end
  end)

  it("var (unbiased and biased) over each dim and all dims, keepdim", function()
    local x = leaf { 2, 3 }
    check(function(a) return a:var() end, { x })
    for _, keep in ipairs { false, true } do
      for _, unbiased in ipairs { true, false } do
        for _, dims in ipairs { 1, 2, { 1, 2 } } do
          check(function(a) return a:var(dims, keep, unbiased) end, { x })
        end
      end
    end
  end)

  it("max over all, over each dim (values), keepdim", function()
    -- well separated values (no ties within gradcheck's step)
    local x = leafv { { 0.3, -1.1, 2.0 }, { 1.4, 0.9, -0.4 } }
    check(function(a) return a:max() end, { x })
    for _, d in ipairs { 1, 2, -1 } do
      check(function(a) return (a:max(d)) end, { x })
      check(function(a) return (a:max(d, true)) end, { x })
    end
  end)

  it("reductions of a 0-d tensor", function()
    local s = leaf {}
    check(function(a) return a:sum() end, { s })
    check(function(a) return a:mean() end, { s })
    check(function(a) return a:max() end, { s })
  end)
end)

describe("matmul", function()
  local cases = {
    { "2-d", { 2, 3 }, { 3, 4 } },
    { "batched", { 2, 2, 3 }, { 2, 3, 2 } },
    { "batched x 2-d", { 2, 2, 3 }, { 3, 2 } },
    { "2-d x batched", { 2, 3 }, { 2, 3, 2 } },
    { "vector . vector", { 3 }, { 3 } },
    { "vector x matrix", { 3 }, { 3, 2 } },
    { "matrix x vector", { 2, 3 }, { 3 } },
    { "batched x vector", { 2, 2, 3 }, { 3 } },
    { "vector x batched", { 3 }, { 2, 3, 2 } },
  }
  for _, c in ipairs(cases) do
    it(c[1] .. " (" .. table.concat(c[2], "x") .. " @ " .. table.concat(c[3], "x") .. ")", function()
      check(function(a, b) return a:matmul(b) end, { leaf(c[2]), leaf(c[3]) })
    end)
  end

  it("x @ x (the same tensor twice) and T.matmul", function()
    local x = leaf { 3, 3 }
    check(function(a) return T.matmul(a, a) end, { x })
  end)
end)

describe("shape ops", function()
  local x234 = function() return leaf { 2, 3, 4 } end
  local cases = {
    { "reshape", function(a) return a:reshape { 4, 6 } end },
    { "reshape with -1", function(a) return a:reshape { -1, 2 } end },
    { "view", function(a) return a:view { 6, 4 } end },
    { "transpose", function(a) return a:transpose(1, 3) end },
    { "transpose negative dims", function(a) return a:transpose(-1, -2) end },
    { "permute", function(a) return a:permute { 3, 1, 2 } end },
    { "narrow", function(a) return a:narrow(3, 2, 2) end },
    { "narrow dim 1", function(a) return a:narrow(1, 2, 1) end },
    { "select", function(a) return a:select(2, 3) end },
    { "select negative index", function(a) return a:select(3, -1) end },
    { "flatten", function(a) return a:flatten() end },
    { "flatten from dim 2", function(a) return a:flatten(2) end },
    { "unsqueeze", function(a) return a:unsqueeze(2) end },
    { "unsqueeze at the end", function(a) return a:unsqueeze(-1) end },
    { "squeeze", function(a) return a:narrow(2, 1, 1):squeeze() end },
    { "squeeze one dim", function(a) return a:narrow(2, 1, 1):squeeze(2) end },
    { "expand", function(a) return a:narrow(2, 2, 1):expand { 2, 3, 4 } end },
    { "expand with new leading dims", function(a) return a:expand { 2, 2, 3, 4 } end },
    { "clone", function(a) return a:clone() end },
    { "contiguous", function(a) return a:contiguous() end },
    { "chain", function(a) return a:transpose(1, 2):reshape { 3, 8 }:narrow(2, 3, 4):unsqueeze(1) end },
  }
  for _, c in ipairs(cases) do
    it(c[1], function() check(c[2], { x234() }) end)
  end

  it("T.reshape, T.transpose, ... as module functions", function()
    local x = leaf { 2, 3 }
    check(function(a) return T.transpose(T.reshape(a, { 3, 2 }), 1, 2) end, { x })
    check(function(a) return T.select(T.narrow(a, 2, 1, 2), 1, 2) end, { x })
  end)

  it("expand of a vector and a column", function()
    check(function(a) return a:expand { 2, 3 } end, { leaf { 3 } })
    check(function(a) return a:expand { 2, 3 } end, { leaf { 2, 1 } })
    check(function(a) return a:expand { 2, 2 } end, { leaf {} })
  end)

  it("cat along each dim, of two and three tensors", function()
    local a, b, c = leaf { 2, 3 }, leaf { 2, 3 }, leaf { 1, 3 }
    check(function(x, y) return T.cat({ x, y }, 1) end, { a, b })
    check(function(x, y) return T.cat({ x, y }, 2) end, { a, b })
    check(function(x, y) return T.cat({ x, y }, -1) end, { a, b })
    check(function(x, y, z) return T.cat({ x, z, y }, 1) end, { a, b, c })
    check(function(x, y) return T.cat { x, y, x } end, { a, b }) -- default dim 1, x twice
  end)

  it("cat of many tensors (more inputs than a node holds inline)", function()
    local xs = {}
    for i = 1, 6 do xs[i] = leaf { 1, 2 } end
    check(function(...) return T.cat({ ... }, 1) end, xs)
  end)

  it("stack along each dim", function()
    local a, b = leaf { 2, 3 }, leaf { 2, 3 }
    for _, d in ipairs { 1, 2, 3, -1 } do
      check(function(x, y) return T.stack({ x, y }, d) end, { a, b })
    end
    check(function(x, y) return T.stack { x, y } end, { a, b })
  end)
end)

describe("network pieces", function()
  it("log_softmax and softmax over each dim", function()
    local x = leaf { 2, 3 }
    for _, d in ipairs { 1, 2, -1 } do
      check(function(a) return T.log_softmax(a, d) end, { x })
      check(function(a) return T.softmax(a, d) end, { x })
    end
    check(function(a) return T.softmax(a, 2) end, { leaf { 2, 2, 3 } })
  end)

  it("cross_entropy with labels as a list and as a tensor", function()
    local logits = leaf { 3, 4 }
    check(function(a) return T.cross_entropy(a, { 2, 4, 1 }) end, { logits })
    check(function(a) return T.cross_entropy(a, T.tensor { 3, 3, 2 }) end, { logits })
  end)

  it("mse_loss in both arguments", function()
    check(function(a, b) return T.mse_loss(a, b) end, { leaf { 2, 3 }, leaf { 2, 3 } })
  end)

  it("linear with and without bias, 1-d, 2-d and 3-d inputs", function()
    local w, b = leaf { 2, 3 }, leaf { 2 }
    check(function(x, w_, b_) return T.linear(x, w_, b_) end, { leaf { 4, 3 }, w, b })
    check(function(x, w_) return T.linear(x, w_) end, { leaf { 4, 3 }, w })
    check(function(x, w_, b_) return T.linear(x, w_, b_) end, { leaf { 3 }, w, b })
    check(function(x, w_, b_) return T.linear(x, w_, b_) end, { leaf { 2, 2, 3 }, w, b })
  end)

  describe("batch_norm", function()
    -- looser tolerances: normalisation divides by a small batch's std in float32
    local opts = { rtol = 5e-2, atol = 5e-3 }

    -- run(f, inputs) for each non-empty subset of (x, weight, bias) requiring grad, the others held
    -- constant: f(...) calls bn(x, weight, bias) with the subset's tensors in their places
    local function each_subset(values, bn, run)
      for mask = 1, 7 do
        local inputs, slots = {}, {}
        for i = 1, 3 do
          if mask & (1 << (i - 1)) ~= 0 then
            inputs[#inputs + 1] = T.tensor(values[i]):requires_grad(true)
            slots[#slots + 1] = i
          end
        end
        local function f(...)
          local args = { values[1], values[2], values[3] }
          for k, v in ipairs { ... } do args[slots[k]] = v end
          return bn(args[1], args[2], args[3])
        end
        run(f, inputs)
      end
    end

    -- the fused kernels (grad mode off) and the graph of differentiable ops recorded with
    -- create_graph give the same first and second derivatives, for batch_norm with options o
    local function create_graph_agrees(o, shape, c)
      local x, w, b = leaf(shape), leaf { c }, leaf { c }
      local r, v = T.randn(shape, gen), T.randn(shape, gen)
      local function loss() return (T.batch_norm(x, w, b, o):tanh() * r):sum() end
      local plain, recorded = ag.grad(loss(), { x, w, b }), ag.grad(loss(), { x, w, b }, { create_graph = true })
      for i = 1, 3 do near(recorded[i], plain[i], 1e-5, "first derivative " .. i) end
      local function hessian_v(create_graph) -- d/d(x, w, b) of <d loss/dx, v>
        local gx = ag.grad(loss(), { x }, { create_graph = true })[1]
        return ag.grad((gx * v):sum(), { x, w, b }, { create_graph = create_graph })
      end
      plain, recorded = hessian_v(false), hessian_v(true)
      for i = 1, 3 do near(recorded[i], plain[i], 1e-4, "second derivative " .. i) end
    end
    it("training mode, with weight and bias", function()
      check(function(x, w, b) return T.batch_norm(x, w, b) end, { leaf { 4, 3 }, leaf { 3 }, leaf { 3 } }, opts)
    end)
    it("training mode, without weight and bias", function()
      check(function(x) return T.batch_norm(x, nil, nil) end, { leaf { 4, 2 } }, opts)
    end)
    it("training mode, weight only and bias only", function()
      check(function(x, w) return T.batch_norm(x, w, nil) end, { leaf { 3, 2 }, leaf { 2 } }, opts)
      check(function(x, b) return T.batch_norm(x, nil, b) end, { leaf { 3, 2 }, leaf { 2 } }, opts)
    end)
    it("training mode on (N, C, H, W) with running statistics", function()
      local rm, rv = T.zeros { 2 }, T.ones { 2 }
      check(function(x, w, b)
        return T.batch_norm(x, w, b, { running_mean = rm, running_var = rv, momentum = 0.1 })
      end, { leaf { 2, 2, 2, 2 }, leaf { 2 }, leaf { 2 } }, opts)
    end)
    it("eval mode, with and without weight and bias", function()
      local rm, rv = T.tensor { 0.1, -0.3, 0.2 }, T.tensor { 0.8, 1.5, 1.1 }
      local o = { running_mean = rm, running_var = rv, training = false }
      check(function(x, w, b) return T.batch_norm(x, w, b, o) end, { leaf { 4, 3 }, leaf { 3 }, leaf { 3 } })
      check(function(x) return T.batch_norm(x, nil, nil, o) end, { leaf { 2, 3, 2 } })
    end)
    -- training mode is one fused op whose backward computes the gradients of x, weight and bias
    -- together: each subset requiring grad (the rest constants) takes its own path, and with tanh
    -- after it the incoming gradient depends on the inputs too. 3x3 planes: vector lanes and a tail.
    it("training mode, each subset of (x, weight, bias) requiring grad", function()
      local values = { T.randn({ 2, 2, 3, 3 }, gen), T.randn({ 2 }, gen), T.randn({ 2 }, gen) }
      each_subset(values, T.batch_norm, function(f, inputs)
        check(f, inputs, opts)
        check(function(...) return f(...):tanh() end, inputs, opts)
      end)
    end)
    it("training mode, third derivatives through the first gradient", function()
      local r = T.randn({ 3, 2, 2 }, gen)
      for k = 1, 3 do -- d/dx, d/dweight, d/dbias of sum(tanh(batch_norm) * r), as functions
        check(function(x, w, b)
          local y = T.batch_norm(x, w, b):tanh()
          return ag.grad((y * r):sum(), { x, w, b }, { create_graph = true })[k]
        end, { leaf { 3, 2, 2 }, leaf { 2 }, leaf { 2 } }, opts)
      end
    end)
    -- the fused kernels (grad mode off) and the graph of differentiable ops recorded with
    -- create_graph must give the same values; eps is large so that a rule losing it shows
    it("training mode, gradients with and without create_graph agree", function()
      create_graph_agrees({ eps = 0.5 }, { 3, 2, 3, 3 }, 2)
    end)
    -- relu = true: max(batch_norm, 0) as one op, whose gradients to second order are those of
    -- batch_norm then T.relu (the same mask), in both layouts and in eval mode
    it("relu = true is batch_norm then relu, to second order", function()
      for _, layout in ipairs { "nchw", "nhwc" } do
        local x0, w0, b0 = T.randn({ 2, 11, 4, 5 }, gen), T.randn({ 11 }, gen), T.randn({ 11 }, gen)
        if layout == "nhwc" then x0 = T.randn({ 2, 4, 5, 11 }, gen) end
        local r = T.randn(x0:shape(), gen)
        local plain, fused = { layout = layout }, { layout = layout, relu = true }
        near(T.batch_norm(x0, w0, b0, fused), T.batch_norm(x0, w0, b0, plain):relu(), 0, layout .. " value")
        local function grads(o, relu_after)
          local x, w, b = T.tensor(x0):requires_grad(true), T.tensor(w0):requires_grad(true),
            T.tensor(b0):requires_grad(true)
          local y = T.batch_norm(x, w, b, o)
          if relu_after then y = y:relu() end
          local g = ag.grad((y:tanh() * r):sum(), { x, w, b }, { create_graph = true })
          return g, ag.grad((g[1] * g[1]):sum() + (g[2] * g[2]):sum(), { x, w, b })
        end
        local g1, h1 = grads(plain, true)
        local g2, h2 = grads(fused, false)
        for i = 1, 3 do
          near(g2[i], g1[i], 1e-5, layout .. " first derivative " .. i)
          near(h2[i], h1[i], 1e-4, layout .. " second derivative " .. i)
        end
        local eval = { running_mean = T.zeros { 11 }, running_var = T.ones { 11 }, training = false, layout = layout }
        local eval_fused = { running_mean = T.zeros { 11 }, running_var = T.ones { 11 }, training = false,
          layout = layout, relu = true }
        near(T.batch_norm(x0, w0, b0, eval_fused), T.batch_norm(x0, w0, b0, eval):relu(), 0, layout .. " eval")
      end
      check(function(x, w, b) return T.batch_norm(x, w, b, { relu = true }):tanh() end,
        { leaf { 4, 3, 2 }, leaf { 3 }, leaf { 3 } }, opts)
    end)
    -- grad mode off, channels-last: the backward masks g by the pre-activation it recomputes from x
    -- instead of by the output; the bits must be those of relu_backward then batch_norm's backward,
    -- also where the pre-activation is exactly 0 (channel 2 constant with bias 0: xhat = 0 there)
    -- and with weight or bias missing or not needing grad
    it("relu = true, grad mode off, channels-last: the gradients of batch_norm then relu, bit for bit", function()
      local x0, w0, b0 = T.randn({ 2, 4, 5, 11 }, gen), T.randn({ 11 }, gen), T.randn({ 11 }, gen)
      local keep = T.ones { 11 }:totable()
      keep[2] = 0
      keep = T.tensor(keep) -- (narrow copies, so channel 2 is set through a per-channel mask)
      x0, b0 = x0 * keep + (1 - keep) * 0.75, b0 * keep
      local r = T.randn(x0:shape(), gen)
      for _, present in ipairs { { true, true }, { true, false }, { false, true }, { false, false } } do
        for _, wgrad in ipairs { true, false } do
          local function grads(fused)
            local x = T.tensor(x0):requires_grad(true)
            local w = present[1] and T.tensor(w0):requires_grad(wgrad) or nil
            local b = present[2] and T.tensor(b0):requires_grad(wgrad) or nil
            local y = T.batch_norm(x, w, b, { layout = "nhwc", relu = fused })
            if not fused then y = y:relu() end
            local wrt = { x }
            if w and wgrad then wrt[#wrt + 1] = w end
            if b and wgrad then wrt[#wrt + 1] = b end
            return ag.grad((y:tanh() * r):sum(), wrt)
          end
          local plain, fused = grads(false), grads(true)
          assert.are.equal(#plain, #fused)
          for i = 1, #plain do
            near(fused[i], plain[i], 0, ("weight %s, bias %s, gradient %d"):format(tostring(present[1]),
              tostring(present[2]), i))
          end
        end
      end
    end)
    -- channels-last (layout = "nhwc"): the input seen as (N*H*W, C), whose kernels run along rows
    -- (vectorised over C): 11 channels give vector lanes and a tail, 40 rows a block of 32 and a rest
    describe("layout = \"nhwc\"", function()
      local nhwc = { layout = "nhwc" }
      local function to_nhwc(t) return t:permute({ 1, 3, 4, 2 }) end
      it("is batch_norm on the channels-first tensor, moved", function()
        local x, w, b = T.randn({ 2, 11, 4, 5 }, gen), T.randn({ 11 }, gen), T.randn({ 11 }, gen)
        local rm1, rv1, rm2, rv2 = T.zeros { 11 }, T.ones { 11 }, T.zeros { 11 }, T.ones { 11 }
        local want = T.batch_norm(x, w, b, { running_mean = rm1, running_var = rv1 })
        local got = T.batch_norm(to_nhwc(x), w, b, { running_mean = rm2, running_var = rv2, layout = "nhwc" })
        near(got, to_nhwc(want), 1e-5, "training mode")
        near(rm2, rm1, 1e-6, "running mean")
        near(rv2, rv1, 1e-6, "running var")
        local eval = { running_mean = rm1, running_var = rv1, training = false }
        local eval_nhwc = { running_mean = rm1, running_var = rv1, training = false, layout = "nhwc" }
        near(T.batch_norm(to_nhwc(x), w, b, eval_nhwc), to_nhwc(T.batch_norm(x, w, b, eval)), 1e-5, "eval mode")
      end)
      it("has exact first and second derivatives, each subset of (x, weight, bias)", function()
        local values = { T.randn({ 2, 4, 5, 11 }, gen), T.randn({ 11 }, gen), T.randn({ 11 }, gen) }
        each_subset(values, function(x, w, b) return T.batch_norm(x, w, b, nhwc):tanh() end,
          function(f, inputs) check(f, inputs, opts) end)
      end)
      it("third derivatives through the first gradient", function()
        local r = T.randn({ 2, 3, 2, 3 }, gen)
        for k = 1, 3 do
          check(function(x, w, b)
            local y = T.batch_norm(x, w, b, nhwc):tanh()
            return ag.grad((y * r):sum(), { x, w, b }, { create_graph = true })[k]
          end, { leaf { 2, 3, 2, 3 }, leaf { 3 }, leaf { 3 } }, opts)
        end
      end)
      it("gradients with and without create_graph agree", function()
        create_graph_agrees({ eps = 0.5, layout = "nhwc" }, { 2, 4, 5, 11 }, 11)
      end)
    end)
  end)
end)
