-- tests/lua/autograd_spec.lua: the autograd module (ag.grad, no_grad, the
-- flags of a tensor) against closed forms, its misuse errors, and its memory
-- behaviour (graphs are freed as soon as nothing refers to them).
local T = require "tensor"
local helpers = require "tests.lua.helpers"
local function near(a, b, tol, what) return helpers.near(a, b, tol or 1e-5, what) end
local ag = require "autograd"

local gen = T.generator(7)

local function leaf(values) return T.tensor(values):requires_grad(true) end

-- the full Hessian of a scalar function of a vector x, row by row
local function hessian(f, x)
  local g = ag.grad(f(x), { x }, { create_graph = true })[1]
  local rows = {}
  for i = 1, x:numel() do
    rows[i] = ag.grad(g:select(1, i), { x }, { allow_unused = true })[1]
    rows[i] = rows[i] and rows[i]:totable() or T.zeros(x:shape()):totable()
  end
  return rows
end

describe("closed forms", function()
  it("the gradient of sum(x^2) is 2x", function()
    local x = leaf { 1, -2, 3 }
    near(ag.grad((x * x):sum(), { x })[1], { 2, -4, 6 })
    near(ag.grad(x:pow(2):sum(), { x })[1], { 2, -4, 6 })
  end)

  it("the Hessian of sum(x^3) is diag(6x)", function()
    local x = leaf { 1, -2, 0.5 }
    local h = hessian(function(v) return v:pow(3):sum() end, x)
    near(h, { { 6, 0, 0 }, { 0, -12, 0 }, { 0, 0, 3 } })
    -- the same through x * x * x (product rule twice)
    near(hessian(function(v) return (v * v * v):sum() end, x), h)
  end)

  it("the Hessian of x^T A x is A + A^T", function()
    local a = T.tensor { { 1, 2, 0 }, { -1, 3, 4 }, { 0.5, 0, -2 } }
    local x = leaf { 0.3, -0.7, 1.1 }
    local h = hessian(function(v) return v:matmul(a:matmul(v)) end, x)
    local at = a:transpose(1, 2)
    near(h, (a + at):totable())
    -- and through the batched form: x as a (1, 3) row, A x as a (3, 1) column
    h = hessian(function(v) return v:reshape { 1, 3 }:matmul(a):matmul(v:reshape { 3, 1 }):sum() end, x)
    near(h, (a + at):totable())
  end)

  it("second derivatives through exp, log, tanh, sigmoid and their composition", function()
    local function d2(f, v)
      local x = T.tensor(v):requires_grad(true)
      local g = ag.grad(f(x), { x }, { create_graph = true })[1]
      return ag.grad(g, { x })[1]:item()
    end
    local v = 0.6
    near(d2(function(x) return x:exp() end, v), math.exp(v), 1e-5, "exp''")
    near(d2(function(x) return x:log() end, v), -1 / v ^ 2, 1e-5, "log''")
    local t = math.tanh(v)
    near(d2(function(x) return x:tanh() end, v), -2 * t * (1 - t * t), 1e-5, "tanh''")
    local s = 1 / (1 + math.exp(-v))
    near(d2(function(x) return x:sigmoid() end, v), s * (1 - s) * (1 - 2 * s), 1e-5, "sigmoid''")
    near(d2(function(x) return x:sqrt() end, v), -0.25 * v ^ -1.5, 1e-5, "sqrt''")
    -- softplus log(1 + e^x): f'' = sigmoid(x) (1 - sigmoid(x))
    near(d2(function(x) return (x:exp() + 1):log() end, v), s * (1 - s), 1e-5, "softplus''")
    -- exp(tanh(x)): f'' = e^t ((1 - t^2)^2 - 2 t (1 - t^2))
    near(d2(function(x) return x:tanh():exp() end, v), math.exp(t) * ((1 - t * t) ^ 2 - 2 * t * (1 - t * t)), 1e-5,
      "exp(tanh)''")
    -- x^y in y: d2/dy2 = x^y log(x)^2
    local base = T.tensor(1.7)
    near(d2(function(y) return base:pow(y) end, v), 1.7 ^ v * math.log(1.7) ^ 2, 1e-5, "(c^y)''")
  end)

  it("third- and fourth-order derivatives", function()
    local x = T.tensor(0.5):requires_grad(true)
    local d = { x:pow(4) }
    for k = 1, 4 do d[k + 1] = ag.grad(d[k], { x }, { create_graph = true })[1] end
    near(d[2]:item(), 4 * 0.5 ^ 3)
    near(d[3]:item(), 12 * 0.5 ^ 2)
    near(d[4]:item(), 24 * 0.5)
    near(d[5]:item(), 24)
    -- exp(2x): the k-th derivative is 2^k exp(2x)
    local e = (x * 2):exp()
    for k = 1, 3 do
      e = ag.grad(e, { x }, { create_graph = true })[1]
      near(e:item(), 2 ^ k * math.exp(1), 1e-5, "d^" .. k .. " exp(2x)")
    end
  end)

  it("MAML in 1-D: d/dw L(w - a L'(w)) = (1 - a L''(w)) L'(w - a L'(w))", function()
    -- L(w) = exp(w) + w^2: L' = exp(w) + 2w, L'' = exp(w) + 2
    local function loss(w) return w:exp() + w * w end
    local function d1(w) return math.exp(w) + 2 * w end
    local function d2(w) return math.exp(w) + 2 end
    for _, w0 in ipairs { -0.5, 0.3, 1.2 } do
      local a = 0.1
      local w = T.tensor(w0):requires_grad(true)
      local g = ag.grad(loss(w), { w }, { create_graph = true })[1]
      local adapted = w - g * a
      local meta = ag.grad(loss(adapted), { w })[1]:item()
      local w1 = w0 - a * d1(w0)
      near(meta, (1 - a * d2(w0)) * d1(w1), 1e-5, "meta-gradient at w = " .. w0)
      -- without create_graph the inner gradient is a constant: first-order MAML
      local g_fo = ag.grad(loss(w), { w })[1]
      assert.is_false(g_fo:requires_grad())
      assert.is_true(g:requires_grad())
      near(ag.grad(loss(w - g_fo * a), { w })[1]:item(), d1(w1), 1e-5, "first-order at w = " .. w0)
    end
  end)

  it("MAML on a quadratic: the meta-gradient is (I - aA) A (w - a A w)", function()
    -- L(w) = 0.5 w^T A w with A symmetric, so L'(w) = A w and L'' = A
    local A = T.tensor { { 2, 0.5 }, { 0.5, 1 } }
    local w = leaf { 1.0, -2.0 }
    local a = 0.2
    local function loss(v) return v:matmul(A:matmul(v)) * 0.5 end
    local g = ag.grad(loss(w), { w }, { create_graph = true })[1]
    local meta = ag.grad(loss(w - g * a), { w })[1]
    local I = T.tensor { { 1, 0 }, { 0, 1 } }
    local w0 = T.tensor { 1.0, -2.0 }
    local w1 = w0 - A:matmul(w0) * a
    near(meta, (I - A * a):matmul(A:matmul(w1)))
  end)

  it("two inner steps (a gradient of a gradient of a gradient)", function()
    -- L(w) = w^2 / 2: each step multiplies w by (1 - a), so L(w2) = (1-a)^4 w^2 / 2
    local a, w0 = 0.3, 1.5
    local w = T.tensor(w0):requires_grad(true)
    local function loss(v) return v * v * 0.5 end
    local v = w
    for _ = 1, 2 do v = v - ag.grad(loss(v), { v }, { create_graph = true })[1] * a end
    near(ag.grad(loss(v), { w })[1]:item(), (1 - a) ^ 4 * w0)
  end)

  it("a vector-Jacobian product with grad_output", function()
    local x = leaf { 1, 2, 3 }
    local y = x * x -- dy/dx = diag(2x)
    near(ag.grad(y, { x }, { grad_output = T.tensor { 1, 0, -1 } })[1], { 2, 0, -6 })
    -- a (2, 3) output
    local m = x:reshape { 1, 3 }:expand { 2, 3 } * T.tensor { { 1, 1, 1 }, { 2, 2, 2 } }
    near(ag.grad(m, { x }, { grad_output = T.ones { 2, 3 } })[1], { 3, 3, 3 })
  end)
end)

describe("special points", function()
  it("derivatives at 0 of x^0, x^1, x^2, relu, abs follow the torch conventions", function()
    local x = leaf { 0, 2 }
    near(ag.grad(x:pow(0):sum(), { x })[1], { 0, 0 })
    near(ag.grad(x:pow(1):sum(), { x })[1], { 1, 1 })
    near(ag.grad(x:pow(2):sum(), { x })[1], { 0, 4 })
    near(ag.grad(x:relu():sum(), { x })[1], { 0, 1 })
    near(ag.grad(x:abs():sum(), { x })[1], { 0, 1 })
    local g = ag.grad(x:pow(0):sum(), { x }, { create_graph = true })[1]
    near(g, { 0, 0 })
  end)

  it("a grad_output that requires grad: the gradient is differentiable in it", function()
    local x, v = leaf { 1, 2, 3 }, leaf { 0.5, -1, 2 }
    local g = ag.grad(x:pow(3), { x }, { grad_output = v, create_graph = true })[1] -- 3 x^2 v
    near(g, { 1.5, -12, 54 })
    local d = ag.grad(g:sum(), { v, x })
    near(d[1], { 3, 12, 27 }) -- 3 x^2
    near(d[2], { 3, -12, 36 }) -- 6 x v
  end)
end)

describe("graph structure", function()
  it("a gradient with respect to a non-leaf intermediate", function()
    local x = leaf { 1, 2 }
    local y = x * 3 -- intermediate
    local z = (y * y):sum()
    local g = ag.grad(z, { y, x })
    near(g[1], { 6, 12 }) -- 2y
    near(g[2], { 18, 36 }) -- 2y * 3
    near(ag.grad(z, { y })[1], { 6, 12 })
  end)

  it("the same leaf, or the same intermediate, listed twice", function()
    local x = leaf { 1, 2 }
    local y = x * 2
    local z = (y * y):sum()
    local g = ag.grad(z, { x, x })
    near(g[1], { 8, 16 })
    near(g[2], { 8, 16 })
    g = ag.grad(z, { y, x, y })
    near(g[1], { 4, 8 })
    near(g[2], { 8, 16 })
    near(g[3], { 4, 8 })
  end)

  it("gradients of all paths add up (a diamond, a tensor used many times)", function()
    local x = leaf { 2 }
    local y = x * x -- 4
    local z = y * x + y:exp() + x -- dz/dx = 3x^2 + 2x e^(x^2) + 1
    near(ag.grad(z:sum(), { x })[1], { 12 + 4 * math.exp(4) + 1 }, 1e-5)
    local s = x
    for _ = 1, 10 do s = s + x end
    near(ag.grad(s:sum(), { x })[1], { 11 })
  end)

  it("sums arriving in place never change a gradient handed to another input", function()
    -- add's backward hands the same tensor to both its inputs; partial sums of a gradient are added
    -- to in place when nothing is recorded, which must not reach the other input's gradient. The
    -- shared tensor arrives first or last, depending on the order the ops were recorded in.
    for _, shared_first in ipairs { true, false } do
      local x = leaf { 1, 2, 3 }
      local a, b = x * 1, x * 1
      local y
      if shared_first then
        local own = (a * 3):sum() + (b * 5):sum()
        y = own + ((a + b) * x):sum()
      else
        local c = a + b
        y = (c * x):sum() + (a * 3):sum() + (b * 5):sum()
      end
      local g = ag.grad(y, { a, b, x })
      near(g[1], { 1 + 3, 2 + 3, 3 + 3 }) -- x + 3
      near(g[2], { 1 + 5, 2 + 5, 3 + 5 }) -- x + 5
      near(g[3], { 4 * 1 + 8, 4 * 2 + 8, 4 * 3 + 8 }) -- d/dx (2x^2 + 8x)
    end
  end)

  it("the output itself as an input (a leaf or not)", function()
    local x = leaf(2.5)
    near(ag.grad(x, { x })[1]:item(), 1)
    local y = x * 2
    near(ag.grad(y, { y, x })[1]:item(), 1)
    local v = leaf { 1, 2 }
    near(ag.grad(v, { v }, { grad_output = T.tensor { 3, 4 } })[1], { 3, 4 })
  end)

  it("a graph can be differentiated again and again (no retain_graph needed)", function()
    local x = leaf { 0.5, 1.5 }
    local z = (x:exp() * x):sum()
    local g1 = ag.grad(z, { x })[1]:totable()
    local g2 = ag.grad(z, { x })[1]:totable()
    near(g2, g1, 0)
  end)

  it("create_graph decides whether the gradient has a graph", function()
    local x = leaf { 1, 2 }
    local z = (x * x * x):sum()
    local plain = ag.grad(z, { x })[1]
    assert.is_false(plain:requires_grad())
    assert.is_true(plain:is_leaf())
    local with_graph = ag.grad(z, { x }, { create_graph = true })[1]
    assert.is_true(with_graph:requires_grad())
    assert.is_false(with_graph:is_leaf())
    -- a gradient that is constant in x has no graph even with create_graph
    local lin = ag.grad((x * 3):sum(), { x }, { create_graph = true })[1]
    near(lin, { 3, 3 })
    assert.is_false(lin:requires_grad())
    assert.is_true(lin:is_leaf())
    assert.is_true(ag.enabled(), "grad mode is restored after ag.grad")
  end)

  it("a long chain (100000 ops) is differentiated and freed without deep recursion", function()
    local x = leaf { 1 }
    local y = x
    for _ = 1, 100000 do y = y * 1.0 + 0.0 end
    near(ag.grad(y:sum(), { x })[1], { 1 })
    y = nil
    collectgarbage()
  end)
end)

describe("flags: requires_grad, detach, is_leaf, grad_fn", function()
  it("a new tensor is a leaf that does not require grad", function()
    local x = T.tensor { 1, 2 }
    assert.is_false(x:requires_grad())
    assert.is_true(x:is_leaf())
    assert.is_nil(x:grad_fn())
    local y = x * 2
    assert.is_false(y:requires_grad())
    assert.is_true(y:is_leaf(), "an op on constants records nothing")
  end)

  it("requires_grad(true) returns the tensor and marks it; ops on it record nodes", function()
    local x = T.tensor { 1, 2 }
    assert.equals(x, x:requires_grad(true))
    assert.is_true(x:requires_grad())
    assert.is_true(x:is_leaf())
    local y = x * 2 + 1
    assert.is_true(y:requires_grad())
    assert.is_false(y:is_leaf())
    assert.equals("add_scalar", y:grad_fn())
    assert.equals("add", (x + x):grad_fn())
    assert.equals("mul", (x * x):grad_fn())
    assert.equals("mul_scalar", (x * 2):grad_fn())
    assert.equals("exp", x:exp():grad_fn())
    assert.equals("matmul", x:reshape { 1, 2 }:matmul(T.ones { 2, 1 }):grad_fn())
    -- switching off on a leaf is allowed
    x:requires_grad(false)
    assert.is_false(x:requires_grad())
    assert.is_false((x * 2):requires_grad())
  end)

  it("node names are unique: each names one backward rule (ops/*.c, vm/*.c)", function()
    local root = (require("mamlrun").root or "lua") .. "/.."
    local rule_of, count = {}, 0
    local p = io.popen("cat " .. root .. "/ops/*.c " .. root .. "/vm/*.c")
    local text = p:read("a")
    p:close()
    for _, pattern in ipairs { 'ag_record%([^,]+, "([%w_]+)", ([%w_]+)', 'RECORD1%([^,]+, "([%w_]+)", ([%w_]+)' } do
      for name, rule in text:gmatch(pattern) do
        count = count + 1
        assert.is_true(rule_of[name] == nil or rule_of[name] == rule,
          ("node name '%s' is used by %s and %s"):format(name, tostring(rule_of[name]), rule))
        rule_of[name] = rule
      end
    end
    assert.is_true(count > 30, "found only " .. count .. " recorded nodes")
  end)

  it("a computed tensor cannot stop requiring grad", function()
    local y = leaf { 1 } * 2
    assert.has_error(function() y:requires_grad(false) end,
      "bad argument #1 to 'requires_grad' (a tensor computed by differentiable ops cannot stop requiring grad; use detach())")
    y:requires_grad(true) -- a no-op
    assert.is_true(y:requires_grad())
  end)

  it("detach shares the data, has no history and does not require grad", function()
    local x = leaf { 1, 2 }
    local y = x * 2
    local d = y:detach()
    assert.is_false(d:requires_grad())
    assert.is_true(d:is_leaf())
    assert.same({ 2, 4 }, d:totable())
    d:set(10, 1) -- shares storage with y
    assert.equals(10, y:get(1))
    assert.equals(2, T.detach(x):numel())
    -- a detached factor is a constant for ag.grad
    local z = (y:detach() * x):sum()
    near(ag.grad(z, { x })[1], { 10, 4 })
  end)

  it("T.tensor(x) copies the data without history", function()
    local x = leaf { 1, 2 }
    local c = T.tensor(x * 3)
    assert.is_false(c:requires_grad())
    assert.same({ 3, 6 }, c:totable())
    c:set(0, 1)
    assert.same({ 1, 2 }, x:totable())
  end)

  it("in-place changes of a recorded tensor are refused, of a leaf allowed", function()
    local x = leaf { 1, 2 }
    local y = x * 2
    for _, call in ipairs {
      function() y:set(1, 1) end, function() y:fill_(0) end, function() y:zero_() end,
      function() y:add_(1) end, function() y:mul_(2) end, function() y:copy_(x) end,
      function() y:addcmul_(x, x) end, function() y:addcdiv_(x, x) end,
    } do
      local ok, err = pcall(call)
      assert.is_false(ok)
      assert.matches("in%-place change of a tensor computed by differentiable ops", err)
    end
    x:add_(1) -- a leaf (an optimizer step) may change
    assert.same({ 2, 3 }, x:totable())
  end)
end)

describe("no_grad and grad mode", function()
  it("a coroutine cannot yield inside no_grad (it would leave recording off for the rest)", function()
    local ok, err = pcall(coroutine.wrap(function() ag.no_grad(function() coroutine.yield() end) end))
    assert.is_false(ok)
    assert.matches("attempt to yield across a C%-call boundary", err)
    assert.is_true(ag.enabled())
  end)

  it("returns fn's results and records nothing inside", function()
    local x = leaf { 1, 2 }
    local a, b, c = ag.no_grad(function(p, q)
      assert.is_false(ag.enabled())
      return p * q, "text", nil
    end, x, 3)
    assert.same({ 3, 6 }, a:totable())
    assert.is_false(a:requires_grad())
    assert.equals("text", b)
    assert.is_nil(c)
    assert.is_true(ag.enabled())
    assert.equals(0, select("#", ag.no_grad(function() end)))
    assert.equals(3, select("#", ag.no_grad(function() return 1, nil, 3 end)))
  end)

  it("restores the mode when fn errors, and passes the error on", function()
    local ok, err = pcall(ag.no_grad, function() error("inner failure") end)
    assert.is_false(ok)
    assert.matches("inner failure", err)
    assert.is_true(ag.enabled())
    -- a non-string error value goes through unchanged
    local ok2, val = pcall(ag.no_grad, function() error({ code = 42 }) end)
    assert.is_false(ok2)
    assert.equals(42, val.code)
    assert.is_true(ag.enabled())
    -- an op error inside
    assert.error_matches(function() ag.no_grad(function() return T.zeros { 2 } + T.zeros { 3 } end) end, "bad argument #2 to 'add' (shapes (2) and (3) cannot be broadcast", 1, true)
    assert.is_true(ag.enabled())
  end)

  it("nests, and keeps grad off in an outer no_grad", function()
    ag.no_grad(function()
      ag.no_grad(function() assert.is_false(ag.enabled()) end)
      assert.is_false(ag.enabled())
      pcall(ag.no_grad, function() error("x") end)
      assert.is_false(ag.enabled())
    end)
    assert.is_true(ag.enabled())
  end)

  it("set_enabled returns the previous mode", function()
    assert.is_true(ag.set_enabled(false))
    assert.is_false(ag.enabled())
    local y = leaf { 1 } * 2
    assert.is_false(y:requires_grad())
    assert.is_false(ag.set_enabled(true))
    assert.is_true(ag.enabled())
  end)

  it("ag.grad works inside no_grad; create_graph records there too", function()
    local x = leaf { 3 }
    local z = (x * x):sum()
    local g = ag.no_grad(function() return ag.grad(z, { x }, { create_graph = true })[1] end)
    near(g, { 6 })
    assert.is_true(g:requires_grad())
    assert.is_true(ag.enabled())
  end)
end)

describe("misuse of ag.grad", function()
  local x = leaf { 1, 2 }
  local z = (x * x):sum()

  it("an output that does not require grad", function()
    assert.has_error(function() ag.grad(T.tensor { 1 }:sum(), { x }) end,
      "bad argument #1 to 'grad' (output does not require grad: none of the tensors it was computed from " ..
      "had requires_grad(true), or it was computed under no_grad)")
    local w = ag.no_grad(function() return (x * x):sum() end)
    assert.error_matches(function() ag.grad(w, { x }) end, "bad argument #1 to 'grad' (output does not require grad", 1, true)
  end)

  it("a non-scalar output without grad_output", function()
    assert.has_error(function() ag.grad(x * x, { x }) end,
      "bad argument #1 to 'grad' (output has shape (2): give opts.grad_output for a non-scalar output)")
  end)

  it("a grad_output of the wrong shape or type", function()
    assert.has_error(function() ag.grad(x * x, { x }, { grad_output = T.ones { 3 } }) end,
      "bad argument #3 to 'grad' (grad_output has shape (3), output has (2))")
    assert.has_error(function() ag.grad(x * x, { x }, { grad_output = 1 }) end,
      "bad argument #3 to 'grad' (option 'grad_output' must be a tensor or nil, got number)")
  end)

  it("non-tensor output, inputs or options", function()
    local ok, err = pcall(ag.grad, 5, { x })
    assert.is_false(ok)
    assert.matches("bad argument #1 to '[%w.]*grad' %(tensor expected, got number%)", err)
    assert.has_error(function() ag.grad(z, x) end,
      "bad argument #2 to 'grad' (expected a list of tensors, got tensor)")
    assert.has_error(function() ag.grad(z) end,
      "bad argument #2 to 'grad' (expected a list of tensors, got no value)")
    assert.has_error(function() ag.grad(z, { x, 3 }) end,
      "bad argument #2 to 'grad' (input 2 is number, expected a tensor)")
    assert.has_error(function() ag.grad(z, {}) end,
      "bad argument #2 to 'grad' (expected a non-empty list of tensors)")
    ok, err = pcall(ag.grad, z, { x }, "create_graph")
    assert.is_false(ok)
    assert.matches("bad argument #3 to 'grad' %(expected a table of options, got string%)", err)
  end)

  it("a mistyped or ill-typed option (a typo must not give a silent first-order gradient)", function()
    local w = T.tensor { 0.3 }:requires_grad(true)
    local loss = (w ^ 4):sum()
    assert.has_error(function() ag.grad(loss, { w }, { creat_graph = true }) end,
      "bad argument #3 to 'grad' (unknown option 'creat_graph'; valid options: create_graph, allow_unused, grad_output)")
    assert.has_error(function() ag.grad(loss, { w }, { create_graph = 1 }) end,
      "bad argument #3 to 'grad' (option 'create_graph' must be a boolean, got number)")
    assert.has_error(function() ag.grad(loss, { w }, { allow_unused = "yes" }) end,
      "bad argument #3 to 'grad' (option 'allow_unused' must be a boolean, got string)")
    assert.has_error(function() ag.grad(loss, { w }, { [1] = true }) end,
      "bad argument #3 to 'grad' (option names must be strings, got number)")
    -- the correctly spelled option still gives a differentiable gradient
    assert.is_true(ag.grad(loss, { w }, { create_graph = true })[1]:requires_grad())
  end)

  it("an input that does not require grad", function()
    assert.has_error(function() ag.grad(z, { x, T.tensor { 1 } }) end,
      "bad argument #2 to 'grad' (input 2 does not require grad)")
  end)

  it("an unused input: an error naming its position, or nil with allow_unused", function()
    local u = leaf { 5 }
    assert.has_error(function() ag.grad(z, { x, u }) end,
      "bad argument #2 to 'grad' (output does not depend on input 2; pass allow_unused=true to get nil)")
    assert.has_error(function() ag.grad(z, { u, x }) end,
      "bad argument #2 to 'grad' (output does not depend on input 1; pass allow_unused=true to get nil)")
    local g = ag.grad(z, { u, x, u }, { allow_unused = true })
    assert.is_nil(g[1])
    near(g[2], { 2, 4 })
    assert.is_nil(g[3])
    -- an intermediate of another graph is unused too
    local other = leaf { 1 } * 2
    assert.is_nil(ag.grad(z, { other, x }, { allow_unused = true })[1])
    -- used only through a detached path
    assert.is_nil(ag.grad((x:detach() * u):sum(), { x, u }, { allow_unused = true })[1])
  end)

  it("errors leave grad mode on and leak nothing", function()
    collectgarbage()
    collectgarbage()
    local before = T.memory().live_bytes
    for _ = 1, 50 do
      pcall(ag.grad, z, { x, leaf { 5 } })
      pcall(ag.grad, x * x, { x })
    end
    assert.is_true(ag.enabled())
    collectgarbage()
    collectgarbage()
    assert.equals(before, T.memory().live_bytes)
  end)
end)

describe("memory", function()
  local function settle()
    collectgarbage()
    collectgarbage()
    return T.memory().live_bytes
  end

  it("a graph is freed when nothing refers to it", function()
    local base = settle()
    local x = T.randn({ 256, 256 }, gen):requires_grad(true)
    local loss = (x:tanh() * x):exp():mean()
    local with_graph = settle()
    assert.is_true(with_graph >= base + 4 * 256 * 256 * 4, "the graph's tensors are alive")
    loss = nil
    assert.equals(base + 256 * 256 * 4, settle(), "only x is left")
    x = nil
    assert.equals(base, settle())
  end)

  it("2000 second-order steps: live bytes return to the baseline after collectgarbage", function()
    local base = settle()
    local w0 = T.randn({ 8, 4 }, gen)
    local xs, ys = T.randn({ 5, 4 }, gen), T.randn({ 5, 8 }, gen)
    for _ = 1, 2000 do
      local w = T.tensor(w0):requires_grad(true)
      local inner = T.mse_loss(T.linear(xs, w), ys)
      local g = ag.grad(inner, { w }, { create_graph = true })[1]
      local outer = T.mse_loss(T.linear(xs, w - g * 0.1), ys)
      local meta = ag.grad(outer, { w })[1]
      assert(meta:numel() == 32)
    end
    w0, xs, ys = nil, nil, nil
    assert.equals(base, settle())
  end)

  it("without collectgarbage, the collection triggered by tensor memory bounds live bytes", function()
    local base = settle()
    T.reset_peak_memory()
    local bytes_per_tensor = 16384 * 4
    local allocated = 0
    collectgarbage("stop") -- only the tensor-memory trigger in lt_push collects
    local ok, err = pcall(function()
      for _ = 1, 2000 do
        local w = T.full({ 16384 }, 0.5):requires_grad(true)
        local loss = (w * w):sum()
        local g = ag.grad(loss, { w })[1]
        allocated = allocated + 4 * bytes_per_tensor
        assert(g:numel() == 16384)
      end
    end)
    collectgarbage("restart")
    assert.is_true(ok, err)
    local peak = T.memory().peak_bytes - base
    assert.is_true(allocated > 400 * 2 ^ 20, "the loop allocates far more than the bound")
    -- a collection every 16 MB this thread allocates: the garbage never reaches twice that
    assert.is_true(peak < 32 * 2 ^ 20, ("peak %.1f MB above the baseline"):format(peak / 2 ^ 20))
    assert.equals(base, settle())
  end)
end)

describe("a recorded value changed in place", function()
  local function refused(f, fragment)
    local ok, err = pcall(f)
    assert.is_false(ok)
    assert.truthy(tostring(err):find(fragment, 1, true), tostring(err))
  end

  it("is refused at the backward, not used: a leaf, an alias by detach() or reshape, an optimizer step", function()
    -- a constant leaf the product saved
    local w, x = T.tensor{1, 2, 3}:requires_grad(true), T.tensor{4, 5, 6}
    local y = (w * x):sum()
    x:add_(100)
    refused(function() return ag.grad(y, {w}) end, "autograd: input 2 of 'mul' was changed in place after 'mul' used it")
    -- a result written through its detach()ed alias (the message of e:fill_ says to detach it first)
    w = T.tensor{1, 2, 3}:requires_grad(true)
    local e = w:exp()
    y = (e * e):sum()
    e:detach():fill_(0)
    refused(function() return ag.grad(y, {w}) end, "input 1 of 'mul' was changed in place")
    -- through a reshape of it
    w = T.tensor{1, 2, 3}:requires_grad(true)
    x = T.tensor{{4, 5, 6}}
    y = (w * x:reshape{3}):sum()
    x:reshape{3}:mul_(2)
    refused(function() return ag.grad(y, {w}) end, "input 2 of 'mul' was changed in place")
    -- the parameter stepped by an optimizer between the forward and a second backward
    w = T.ones{2}:requires_grad(true)
    y = (w * w):sum()
    require("optim").sgd{lr = 0.1}:step({w}, ag.grad(y, {w}))
    refused(function() return ag.grad(y, {w}) end, "input 1 of 'mul' was changed in place")
    -- a value an op saved for its gradient: conv's fused ReLU keeps (a view of) its output
    local xin = T.rand({1, 1, 4, 4}, T.generator(1)):requires_grad(true)
    local out = T.conv2d(xin, T.rand({2, 1, 3, 3}, T.generator(2)), nil, {relu = true})
    out:detach():zero_() -- (differentiated from out itself: no later op has it as an input)
    refused(function() return ag.grad(out, {xin}, {grad_output = T.ones(out:shape())}) end,
      "autograd: a value that 'conv2d_relu' saved for its gradient")
  end)

  it("a change before the op or after its backward is fine", function()
    local w, x = T.tensor{1, 2, 3}:requires_grad(true), T.tensor{4, 5, 6}
    x:add_(1)
    local y = (w * x):sum()
    assert.same({5, 6, 7}, ag.grad(y, {w})[1]:totable())
    x:add_(1) -- (the graph is not used again)
    assert.same({6, 7, 8}, ag.grad((w * x):sum(), {w})[1]:totable())
  end)
end)
