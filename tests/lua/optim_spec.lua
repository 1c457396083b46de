-- tests/lua/optim_spec.lua: SGD and Adam (lua/optim.lua) against updates computed by hand in
-- double precision, and saving/restoring their state.
local T = require "tensor"
local optim = require "optim"

local function close(expected, got, tol)
  assert.equals(#expected, #got)
  for i = 1, #expected do
    if not (math.abs(expected[i] - got[i]) <= tol * (1 + math.abs(expected[i]))) then -- (a NaN fails)
      error(string.format("element %d: expected %.8g, got %.8g", i, expected[i], got[i]), 2)
    end
  end
end

local grads_seq = {{0.5, -1.0, 2.0}, {0.1, 0.3, -0.2}, {-0.4, 0.0, 1.5}}

describe("the spec's own checker", function()
  it("close fails on a NaN, an infinity or a wrong value", function()
    local ok, err = pcall(close, {1, 2}, {1, 0 / 0}, 1e-6)
    assert.is_false(ok)
    assert.matches("element 2: expected 2, got %-?nan", err)
    assert.is_false(pcall(close, {1}, {-math.huge}, 1e-6))
    assert.is_false(pcall(close, {1}, {1.01}, 1e-6))
    close({1, 2}, {1, 2 + 1e-7}, 1e-6)
  end)
end)

describe("optim.sgd", function()
  it("takes p - lr * g", function()
    local p = T.tensor{1, 2, 3}:requires_grad(true)
    local opt = optim.sgd{lr = 0.1}
    opt:step({p}, {T.tensor(grads_seq[1])})
    close({0.95, 2.1, 2.8}, p:totable(), 1e-6)
  end)

  it("with momentum: v = m v + g, p -= lr v (v = g at the first step)", function()
    local p = T.tensor{1, 2, 3}
    local opt = optim.sgd{lr = 0.1, momentum = 0.9}
    local ref, v = {1, 2, 3}, nil
    for _, g in ipairs(grads_seq) do
      opt:step({p}, {T.tensor(g)})
      if not v then v = {g[1], g[2], g[3]} else for i = 1, 3 do v[i] = 0.9 * v[i] + g[i] end end
      for i = 1, 3 do ref[i] = ref[i] - 0.1 * v[i] end
    end
    close(ref, p:totable(), 1e-6)
  end)

  it("skips a parameter whose gradient is nil", function()
    local a, b = T.tensor{1}, T.tensor{2}
    optim.sgd{lr = 1}:step({a, b}, {nil, T.tensor{1}})
    assert.same({1}, a:totable())
    assert.same({1}, b:totable())
  end)
end)

-- Adam by hand: m = b1 m + (1-b1) g, v = b2 v + (1-b2) g^2, p -= lr/(1-b1^t) m / (sqrt(v/(1-b2^t)) + eps)
local function adam_reference(p0, grads, lr, b1, b2, eps)
  local p, m, v = {}, {}, {}
  for i = 1, #p0 do p[i], m[i], v[i] = p0[i], 0, 0 end
  for t, g in ipairs(grads) do
    for i = 1, #p do
      m[i] = b1 * m[i] + (1 - b1) * g[i]
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]
      local mhat, vhat = m[i] / (1 - b1 ^ t), v[i] / (1 - b2 ^ t)
      p[i] = p[i] - lr * mhat / (math.sqrt(vhat) + eps)
    end
  end
  return p
end

describe("optim's step refuses gradients that are not its parameters' own", function()
  it("a number, or a tensor of another shape, names the gradient", function()
    for _, make in ipairs{require("optim").sgd, require("optim").adam} do
      local opt = make{lr = 0.1}
      local ok, err = pcall(opt.step, opt, {T.ones{2}}, {5})
      assert.is_false(ok)
      assert.truthy(tostring(err):find("step: gradient 1 is a number, not a tensor", 1, true), tostring(err))
      ok, err = pcall(opt.step, opt, {T.ones{2}}, {T.ones{3}})
      assert.is_false(ok)
      assert.truthy(tostring(err):find("step: gradient 1 has shape (3), its parameter (2)", 1, true), tostring(err))
    end
  end)
end)

describe("optim.adam", function()
  it("matches the bias-corrected update over several steps", function()
    local p = T.tensor{1, 2, 3}:requires_grad(true)
    local opt = optim.adam{lr = 0.01}
    for _, g in ipairs(grads_seq) do opt:step({p}, {T.tensor(g)}) end
    close(adam_reference({1, 2, 3}, grads_seq, 0.01, 0.9, 0.999, 1e-8), p:totable(), 1e-6)
    assert.equals(3, opt.t)
  end)

  it("honours betas and eps", function()
    local p = T.tensor{0.5, -0.5, 0}
    local opt = optim.adam{lr = 0.1, betas = {0.5, 0.9}, eps = 0.1}
    for _, g in ipairs(grads_seq) do opt:step({p}, {T.tensor(g)}) end
    close(adam_reference({0.5, -0.5, 0}, grads_seq, 0.1, 0.5, 0.9, 0.1), p:totable(), 1e-6)
  end)

  it("first step moves each element by about lr against the gradient sign", function()
    local p = T.zeros{3}
    optim.adam{lr = 1e-3}:step({p}, {T.tensor{5, -0.01, 100}})
    close({-1e-3, 1e-3, -1e-3}, p:totable(), 1e-4)
  end)
end)

describe("optimizer state", function()
  local function run_steps(opt, p, from, to)
    for s = from, to do opt:step({p}, {T.tensor(grads_seq[s])}) end
  end

  for _, kind in ipairs{"adam", "sgd"} do
    it(kind .. ": save after one step, restore in a new optimizer, continue identically", function()
      -- (adam has no momentum option: its moments are betas)
      local opts = kind == "sgd" and {lr = 0.05, momentum = 0.9} or {lr = 0.05, betas = {0.9, 0.999}}
      local make = function() return optim[kind](opts) end
      local p_ref = T.tensor{1, 2, 3}
      local ref = make()
      run_steps(ref, p_ref, 1, 3)

      local p = T.tensor{1, 2, 3}
      local first = make()
      run_steps(first, p, 1, 1)
      local saved = first:state()
      -- the saved state is a copy: more steps do not change it
      run_steps(first, T.tensor{0, 0, 0}, 2, 3)
      local second = make()
      second:load_state(saved)
      run_steps(second, p, 2, 3)
      assert.same(p_ref:totable(), p:totable())
    end)
  end

  it("is a plain table of numbers and tensors", function()
    local opt = optim.adam{}
    opt:step({T.zeros{2, 2}}, {T.ones{2, 2}})
    local s = opt:state()
    assert.equals("adam", s.kind)
    assert.equals(1, s.t)
    assert.is_true(T.is_tensor(s.m[1]))
    assert.is_true(T.is_tensor(s.v[1]))
    assert.is_nil(s.step)
  end)

  it("refuses a state of another optimizer", function()
    local s = optim.sgd{lr = 1}:state()
    assert.has_error(function() optim.adam{}:load_state(s) end, "adam:load_state: not an adam state (kind sgd)")
  end)

  it("check_state names a parameter whose shape differs", function()
    local opt = optim.adam{}
    opt:step({T.zeros{2, 3}}, {T.ones{2, 3}})
    assert.is_nil(optim.check_state(opt:state(), {T.zeros{2, 3}}, {"w"}))
    assert.equals("optimizer m state of w is (2, 3), the parameter is (3, 2)",
      optim.check_state(opt:state(), {T.zeros{3, 2}}, {"w"}))
  end)
end)
