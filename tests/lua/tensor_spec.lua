-- tests/lua/tensor_spec.lua: the tensor module's values: construction,
-- random generators, inspection, tostring, arithmetic, reductions, shape ops,
-- matmul, in-place ops, network pieces, serialisation, crc32, write_atomic
-- and memory accounting. Misuse is in tensor_errors_spec.lua, gradients in
-- autograd_spec.lua and gradcheck_ops_spec.lua.
local T = require "tensor"
local helpers = require "tests.lua.helpers"
local function near(a, b, tol, what) return helpers.near(a, b, tol or 1e-6, what) end

-- float32 rounding of a Lua number
local function f32(v) return (string.unpack("f", string.pack("f", v))) end


describe("construction", function()
  it("T.tensor from nested tables, numbers and tensors", function()
    local x = T.tensor { { 1, 2, 3 }, { 4, 5, 6 } }
    assert.same({ 2, 3 }, x:shape())
    assert.same({ { 1, 2, 3 }, { 4, 5, 6 } }, x:totable())
    local s = T.tensor(2.5)
    assert.equals(0, s:dim())
    assert.same({}, s:shape())
    assert.equals(2.5, s:item())
    local e = T.tensor {}
    assert.same({ 0 }, e:shape())
    assert.same({ 1, 1, 1 }, T.tensor { { { 7 } } }:shape())
    -- from a tensor: a copy with its own storage
    local c = T.tensor(x)
    c:set(100, 1)
    assert.equals(1, x:get(1))
    -- values are stored as float32
    assert.equals(f32(0.1), T.tensor { 0.1 }:get(1))
    -- 8 levels of nesting is the maximum
    assert.same({ 1, 1, 1, 1, 1, 1, 1, 2 }, T.tensor { { { { { { { { 1, 2 } } } } } } } }:shape())
  end)

  it("zeros, ones, full, with 0-d and empty shapes", function()
    assert.same({ 0, 0, 0 }, T.zeros { 3 }:totable())
    assert.same({ { 1, 1 } }, T.ones { 1, 2 }:totable())
    assert.same({ { -2.5, -2.5 }, { -2.5, -2.5 } }, T.full({ 2, 2 }, -2.5):totable())
    assert.equals(0, T.zeros {}:item())
    assert.equals(1, T.ones {}:numel())
    local e = T.zeros { 3, 0, 2 }
    assert.equals(0, e:numel())
    assert.same({ 3, 0, 2 }, e:shape())
    local inf = T.full({ 2 }, 1 / 0)
    assert.equals(math.huge, inf:get(2))
    local nan = T.full({ 1 }, 0 / 0):item()
    assert.is_true(nan ~= nan)
  end)

  it("arange with one, two and three arguments", function()
    assert.same({ 0, 1, 2, 3, 4 }, T.arange(5):totable())
    assert.same({ 2, 3, 4 }, T.arange(2, 5):totable())
    assert.same({ 0, 0.25, 0.5, 0.75 }, T.arange(0, 1, 0.25):totable())
    assert.same({ 5, 3, 1 }, T.arange(5, 0, -2):totable())
    assert.same({ 0 }, T.arange(3, 3):shape())
    assert.same({ 0 }, T.arange(3, 1):shape(), "an empty range")
    assert.same({ 0 }, T.arange(0):shape())
  end)

  it("rand is in [0, 1), randn has mean 0 and variance 1", function()
    local g = T.generator(3)
    local u = T.rand({ 10000 }, g)
    assert.is_true(u:max():item() < 1)
    assert.is_true(u:mul(-1):max():item() <= 0)
    near(u:mean():item(), 0.5, 0.02)
    local n = T.randn({ 100, 100 }, g)
    near(n:mean():item(), 0, 0.03)
    near(n:var():item(), 1, 0.05)
  end)
end)

describe("random generators", function()
  -- reference implementations in Lua: splitmix64 seeding, xoshiro128**, the
  -- 53-bit uniform, Box-Muller, Lemire's bounded integers, Fisher-Yates
  local M32 = 0xffffffff
  local function reference(seed)
    local x = seed
    local function splitmix64()
      x = x + 0x9e3779b97f4a7c15
      local z = x
      z = (z ~ (z >> 30)) * 0xbf58476d1ce4e5b9
      z = (z ~ (z >> 27)) * 0x94d049bb133111eb
      return z ~ (z >> 31)
    end
    local a, b = splitmix64(), splitmix64()
    local s = { a & M32, a >> 32, b & M32, b >> 32 }
    local function rotl(v, k) return ((v << k) | (v >> (32 - k))) & M32 end
    local r = {}
    function r.u32()
      local result = rotl((s[2] * 5) & M32, 7) * 9 & M32
      local t = (s[2] << 9) & M32
      s[3] = s[3] ~ s[1]
      s[4] = s[4] ~ s[2]
      s[2] = s[2] ~ s[3]
      s[1] = s[1] ~ s[4]
      s[3] = s[3] ~ t
      s[4] = rotl(s[4], 11)
      return result
    end
    function r.uniform()
      local hi, lo = r.u32() >> 5, r.u32() >> 6
      return (hi * 67108864.0 + lo) / 9007199254740992.0
    end
    local spare
    function r.normal()
      if spare then
        local v = spare
        spare = nil
        return v
      end
      local u1, u2 = r.uniform(), r.uniform()
      if u1 < 1e-300 then u1 = 1e-300 end
      local rad, th = math.sqrt(-2 * math.log(u1)), 2 * math.pi * u2
      spare = rad * math.sin(th)
      return rad * math.cos(th)
    end
    function r.below(n)
      local m = r.u32() * n
      local l = m & M32
      if l < n then
        local t = ((-n) & M32) % n
        while l < t do
          m = r.u32() * n
          l = m & M32
        end
      end
      return m >> 32
    end
    return r
  end

  it("matches the reference xoshiro128** with splitmix64 seeding", function()
    for _, seed in ipairs { 0, 1, 42, -1, 123456789012345 } do
      local g, r = T.generator(seed), reference(seed)
      for i = 1, 50 do assert.equals(r.uniform(), g:uniform(), "uniform " .. i .. " seed " .. seed) end
      for i = 1, 20 do near(g:normal(), r.normal(), 1e-12, "normal " .. i) end
      for _, n in ipairs { 1, 2, 6, 10, 1000, 0xffffffff, 3 } do
        assert.equals(r.below(n) + 1, g:random(n), "random(" .. n .. ")")
      end
    end
  end)

  it("permutation is Fisher-Yates on the same stream", function()
    local g, r = T.generator(5), reference(5)
    local p = g:permutation(20)
    local want = {}
    for i = 1, 20 do want[i] = i end
    for i = 20, 2, -1 do
      local j = r.below(i) + 1
      want[i], want[j] = want[j], want[i]
    end
    assert.same(want, p)
    assert.same({}, g:permutation(0))
    assert.same({ 1 }, g:permutation(1))
  end)

  it("gives known first values (a change of algorithm is caught)", function()
    local g = T.generator(42)
    assert.equals(0.41370166815658871, g:uniform())
    assert.equals(0.0039839933778147429, g:uniform())
    g = T.generator(42)
    near(g:normal(), 1.3281997115288575, 1e-15)
    near(g:normal(), 0.033254665373255637, 1e-15)
    g = T.generator(42)
    local rolls = {}
    for i = 1, 8 do rolls[i] = g:random(6) end
    assert.same({ 3, 6, 1, 4, 4, 4, 5, 4 }, rolls)
    assert.same({ 6, 8, 2, 5, 3, 1, 7, 4 }, T.generator(42):permutation(8))
    assert.equals(f32(1.3281997115288575), T.randn({ 4 }, T.generator(42)):get(1))
    assert.equals(f32(0.41370166815658871), T.rand({ 1 }, T.generator(42)):item())
    assert.equals("xoshiro128ss:2feb6e95bdd73226b266f10328efe333:0:0000000000000000", T.generator(42):get_state())
  end)

  it("the same seed gives the same numbers, another seed others", function()
    local a, b, c = T.randn({ 5 }, T.generator(9)), T.randn({ 5 }, T.generator(9)), T.randn({ 5 }, T.generator(10))
    assert.same(a:totable(), b:totable())
    assert.are_not.same(a:totable(), c:totable())
    T.manual_seed(11)
    local d = T.rand { 4 }
    T.manual_seed(11)
    assert.same(d:totable(), T.rand({ 4 }):totable())
    assert.same(d:totable(), T.rand({ 4 }, T.generator(11)):totable(), "manual_seed seeds like generator()")
  end)

  it("get_state / set_state round trip, also with a spare normal", function()
    local g = T.generator(8)
    g:normal() -- leaves the Box-Muller spare
    local state = g:get_state()
    assert.matches("^xoshiro128ss:%x+:1:%x+$", state)
    local want = { g:normal(), g:uniform(), g:random(100) }
    local h = T.generator(0)
    h:set_state(state)
    assert.same(want, { h:normal(), h:uniform(), h:random(100) })
    g:set_state(state)
    assert.same(want, { g:normal(), g:uniform(), g:random(100) })
    assert.equals(g:get_state(), h:get_state())
  end)

  it("clone is independent; default_generator shares the default state", function()
    local g = T.generator(4)
    g:uniform()
    local c = g:clone()
    assert.equals(g:uniform(), c:uniform())
    c:uniform()
    assert.are_not.equals(g:get_state(), c:get_state())
    T.manual_seed(12)
    local d = T.default_generator()
    local state = d:get_state()
    T.rand { 3 } -- advances the default generator
    assert.are_not.equals(state, d:get_state())
    assert.matches("^generator %(", tostring(d))
  end)

  it("random(n) stays in 1..n, permutation(n) is a permutation", function()
    local g = T.generator(6)
    local seen = {}
    for _ = 1, 200 do
      local v = g:random(5)
      assert.is_true(math.type(v) == "integer" and v >= 1 and v <= 5)
      seen[v] = true
    end
    assert.same({ true, true, true, true, true }, seen)
    assert.equals(1, g:random(1))
    local p = g:permutation(100)
    table.sort(p)
    for i = 1, 100 do assert.equals(i, p[i]) end
  end)
end)

describe("inspection", function()
  local x = T.tensor { { 1, 2, 3 }, { 4, 5, 6 } }

  it("shape, size, dim, numel", function()
    assert.same({ 2, 3 }, x:shape())
    assert.same({ 2, 3 }, x:size())
    assert.equals(2, x:size(1))
    assert.equals(3, x:size(2))
    assert.equals(3, x:size(-1))
    assert.equals(2, x:size(-2))
    assert.equals(2, x:dim())
    assert.equals(6, x:numel())
    assert.equals("integer", math.type(x:numel()))
  end)

  it("item, totable, get, set", function()
    assert.equals(4, T.tensor { { 4 } }:item())
    assert.equals(5, T.tensor(5):item())
    assert.same({ { 1, 2, 3 }, { 4, 5, 6 } }, x:totable())
    assert.equals(3, T.tensor(3):totable())
    assert.same({}, T.zeros { 0 }:totable())
    assert.same({ {}, {} }, T.zeros { 2, 0 }:totable())
    assert.equals(6, x:get(6)) -- flat index
    assert.equals(4, x:get(2, 1))
    assert.equals(7, T.tensor(7):get(1))
    local y = T.zeros { 2, 2 }
    assert.equals(y, y:set(9, 2, 1)) -- returns the tensor
    y:set(-1, 4)
    assert.same({ { 0, 0 }, { 9, -1 } }, y:totable())
  end)

  it("is_tensor", function()
    assert.is_true(T.is_tensor(x))
    assert.is_false(T.is_tensor({}))
    assert.is_false(T.is_tensor(nil))
    assert.is_false(T.is_tensor(T.generator(1)))
    assert.is_false(T.is_tensor(io.stdout))
  end)
end)

describe("tostring", function()
  it("shows values and shape like torch", function()
    assert.equals("tensor(3, shape ())", tostring(T.tensor(3)))
    assert.equals("tensor({1, 2.5, -3}, shape (3))", tostring(T.tensor { 1, 2.5, -3 }))
    assert.equals("tensor({{1, 2, 3},\n         {4, 5, 6}}, shape (2, 3))", tostring(T.tensor { { 1, 2, 3 }, { 4, 5, 6 } }))
    assert.equals("tensor({{{1},\n          {2}}}, shape (1, 2, 1))", tostring(T.tensor { { { 1 }, { 2 } } }))
    assert.equals("tensor({}, shape (0))", tostring(T.tensor {}))
    assert.equals("tensor({}, shape (0, 3))", tostring(T.zeros { 0, 3 }))
    assert.equals("tensor({0.3333, 1.235e+08, 1e-10}, shape (3))", tostring(T.tensor { 1 / 3, 123456789, 1e-10 }))
  end)

  it("prints inf and nan", function()
    assert.equals("tensor({inf, -inf, nan, nan}, shape (4))", tostring(T.tensor { 1 / 0, -1 / 0, 0 / 0, -(0 / 0) }))
  end)

  it("abbreviates a tensor of more than 1000 elements", function()
    assert.equals("tensor({0, 1, 2, ..., 1997, 1998, 1999}, shape (2000))", tostring(T.arange(2000)))
    local row = "{0, 0, 0, ..., 0, 0, 0}"
    local pad = ",\n         "
    assert.equals("tensor({" .. row .. pad .. row .. pad .. row .. pad .. "..." .. pad .. row .. pad .. row .. pad .. row ..
      "}, shape (20, 60))", tostring(T.zeros { 20, 60 }))
    -- 1000 elements are printed in full
    assert.is_nil(tostring(T.zeros { 1000 }):find("...", 1, true))
    -- as torch: T.randn{4, 3, 5, 5} (300 elements) in full; past 1000, each dim longer than 6 shows
    -- its first and last 3 entries
    local small = tostring(T.zeros { 4, 3, 5, 5 })
    assert.is_nil(small:find("...", 1, true))
    assert.equals(300, select(2, small:gsub("0", "")))
    local big = tostring(T.arange(1200):reshape { 4, 3, 10, 10 })
    assert.truthy(big:find("^tensor%({{{{0, 1, 2, %.%.%., 7, 8, 9},\n           {10, 11, 12, %.%.%., 17, 18, 19},"))
    assert.truthy(big:find("{1190, 1191, 1192, ..., 1197, 1198, 1199}}}}, shape (4, 3, 10, 10))", 1, true))
    assert.equals(4 * 3 * (6 + 1), select(2, big:gsub("%.%.%.", "")))
  end)

  it("says whether the tensor requires grad and which op made it", function()
    local x = T.tensor { 1, 2 }:requires_grad(true)
    assert.equals("tensor({1, 2}, shape (2), requires_grad)", tostring(x))
    assert.equals("tensor({2, 4}, shape (2), grad_fn mul_scalar)", tostring(x * 2))
    assert.equals("tensor(3, shape (), grad_fn reshape)", tostring(x:sum()))
  end)
end)

describe("arithmetic", function()
  local a = T.tensor { { 1, 2, 3 }, { 4, 5, 6 } }

  it("tensor with tensor, number with tensor, each way", function()
    assert.same({ { 2, 4, 6 }, { 8, 10, 12 } }, (a + a):totable())
    assert.same({ { 0, 0, 0 }, { 0, 0, 0 } }, (a - a):totable())
    assert.same({ { 1, 4, 9 }, { 16, 25, 36 } }, (a * a):totable())
    assert.same({ { 1, 1, 1 }, { 1, 1, 1 } }, (a / a):totable())
    assert.same({ { 11, 12, 13 }, { 14, 15, 16 } }, (a + 10):totable())
    assert.same({ { 11, 12, 13 }, { 14, 15, 16 } }, (10 + a):totable())
    assert.same({ { 0, 1, 2 }, { 3, 4, 5 } }, (a - 1):totable())
    assert.same({ { 9, 8, 7 }, { 6, 5, 4 } }, (10 - a):totable())
    assert.same({ { 2, 4, 6 }, { 8, 10, 12 } }, (2 * a):totable())
    assert.same({ { 0.5, 1, 1.5 }, { 2, 2.5, 3 } }, (a / 2):totable())
    near(6 / a, { { 6, 3, 2 }, { 1.5, 1.2, 1 } })
    assert.same({ { -1, -2, -3 }, { -4, -5, -6 } }, (-a):totable())
    assert.same((a + 1):totable(), a:add(1):totable())
    assert.same((a * a):totable(), T.mul(a, a):totable())
    assert.same((a - 2):totable(), T.sub(a, 2):totable())
    assert.same((3 / a):totable(), T.div(3, a):totable())
  end)

  it("broadcasts: 0-d, row, column, leading dims, both sides", function()
    assert.same({ { 2, 3, 4 }, { 5, 6, 7 } }, (a + T.tensor(1)):totable())
    assert.same({ { 11, 22, 33 }, { 14, 25, 36 } }, (a + T.tensor { 10, 20, 30 }):totable())
    assert.same({ { 11, 12, 13 }, { 24, 25, 26 } }, (a + T.tensor { { 10 }, { 20 } }):totable())
    local lead = T.tensor { { { 0 } }, { { 100 } } } + a -- (2,1,1) + (2,3) -> (2,2,3)
    assert.same({ 2, 2, 3 }, lead:shape())
    assert.equals(106, lead:get(2, 2, 3))
    local outer = T.tensor { { 1 }, { 2 } } * T.tensor { 1, 10, 100 } -- (2,1) * (3) -> (2,3)
    assert.same({ { 1, 10, 100 }, { 2, 20, 200 } }, outer:totable())
    assert.same({ 2, 0 }, (T.zeros { 2, 1 } + T.zeros { 0 }):shape())
  end)

  it("pow with a number and with a tensor exponent", function()
    assert.same({ 1, 4, 9 }, T.tensor { 1, 2, 3 }:pow(2):totable())
    assert.same({ 1, 8, 27 }, (T.tensor { 1, 2, 3 } ^ 3):totable())
    near(T.tensor { 4, 9 }:pow(0.5), { 2, 3 })
    near(T.tensor { 2, 4 }:pow(-1), { 0.5, 0.25 })
    assert.same({ 1, 1 }, T.tensor { 2, 4 }:pow(0):totable())
    near(T.tensor { 2, 3 }:pow(T.tensor { 3, 2 }), { 8, 9 })
    near(T.pow(T.tensor { 2, 3 }, 1.5), { 2 ^ 1.5, 3 ^ 1.5 })
  end)

  it("unary functions", function()
    local x = T.tensor { -2, -0.5, 0.5, 2 }
    near(x:exp(), { math.exp(-2), math.exp(-0.5), math.exp(0.5), math.exp(2) })
    near(T.tensor { 1, math.exp(1) }:log(), { 0, 1 })
    near(T.tensor { 4, 2 }:sqrt(), { 2, math.sqrt(2) })
    assert.same({ 2, 0.5, 0.5, 2 }, x:abs():totable())
    assert.same({ -1, -1, 1, 1 }, x:sign():totable())
    assert.same({ 0, 0, 0.5, 2 }, x:relu():totable())
    near(x:sigmoid(), { 1 / (1 + math.exp(2)), 1 / (1 + math.exp(0.5)), 1 / (1 + math.exp(-0.5)), 1 / (1 + math.exp(-2)) })
    near(x:tanh(), { math.tanh(-2), math.tanh(-0.5), math.tanh(0.5), math.tanh(2) })
    assert.same(x:neg():totable(), (-x):totable())
    assert.same(x:relu():totable(), T.relu(x):totable())
    assert.same({ 0 }, T.tensor { 0 }:sign():totable())
  end)

  it("propagates inf and nan", function()
    local x = T.tensor { 1, 0, -1 }
    local y = x / T.tensor { 0, 0, 0 }
    assert.equals(math.huge, y:get(1))
    assert.is_true(y:get(2) ~= y:get(2))
    assert.equals(-math.huge, y:get(3))
    assert.equals(-math.huge, T.tensor { 0 }:log():item())
    assert.is_true(T.tensor { -1 }:sqrt():item() ~= T.tensor { -1 }:sqrt():item())
    assert.equals(1, T.tensor { 1000 }:sigmoid():item())
    assert.equals(0, T.tensor { -1000 }:sigmoid():item())
  end)

  it("comparisons give 0/1 tensors, with tensors or numbers", function()
    local x, y = T.tensor { 1, 2, 3 }, T.tensor { 3, 2, 1 }
    assert.same({ 0, 1, 0 }, x:eq(y):totable())
    assert.same({ 1, 0, 1 }, x:ne(y):totable())
    assert.same({ 1, 0, 0 }, x:lt(y):totable())
    assert.same({ 1, 1, 0 }, x:le(y):totable())
    assert.same({ 0, 0, 1 }, x:gt(y):totable())
    assert.same({ 0, 1, 1 }, x:ge(y):totable())
    assert.same({ 0, 1, 1 }, x:ge(2):totable())
    assert.same({ { 0, 1, 1 }, { 0, 0, 1 } }, x:gt(T.tensor { { 1 }, { 2 } }):totable())
    local nan = T.tensor { 0 / 0 }
    assert.same({ 0 }, nan:eq(nan):totable())
    assert.same({ 1 }, nan:ne(nan):totable())
  end)
end)

describe("reductions", function()
  local x = T.tensor { { 1, 2, 3 }, { 4, 5, 6 } }

  it("sum over all, a dim, negative dims, a list, keepdim", function()
    assert.equals(21, x:sum():item())
    assert.same({}, x:sum():shape())
    assert.same({ 5, 7, 9 }, x:sum(1):totable())
    assert.same({ 6, 15 }, x:sum(2):totable())
    assert.same({ 6, 15 }, x:sum(-1):totable())
    assert.same({ { 6 }, { 15 } }, x:sum(2, true):totable())
    assert.same({ { 5, 7, 9 } }, x:sum(1, true):totable())
    assert.equals(21, x:sum({ 1, 2 }):item())
    assert.same({ { 21 } }, x:sum({ 1, 2 }, true):totable())
    assert.same({ { 21 } }, x:sum(nil, true):totable())
    assert.same({ 2, 1, 4 }, T.ones { 2, 3, 4 }:sum(2, true):shape())
    assert.same({ 3 }, T.ones { 2, 3, 4 }:sum({ 1, 3 }):shape())
    assert.same({ 8, 8, 8 }, T.ones { 2, 3, 4 }:sum({ 1, 3 }):totable())
    assert.equals(0, T.zeros { 0 }:sum():item())
    assert.equals(5, T.tensor(5):sum():item())
    assert.same(x:sum(1):totable(), T.sum(x, 1):totable())
  end)

  it("mean and var (unbiased by default)", function()
    assert.equals(3.5, x:mean():item())
    assert.same({ 2.5, 3.5, 4.5 }, x:mean(1):totable())
    assert.same({ { 2 }, { 5 } }, x:mean(2, true):totable())
    near(x:var():item(), 17.5 / 5)
    near(x:var(nil, false, false):item(), 17.5 / 6)
    assert.same({ 4.5, 4.5, 4.5 }, x:var(1):totable())
    assert.same({ { 1 }, { 1 } }, x:var(2, true):totable())
    near(x:var(2, false, false), { 2 / 3, 2 / 3 })
    assert.is_true(T.zeros { 0 }:mean():item() ~= T.zeros { 0 }:mean():item(), "the mean of nothing is nan")
  end)

  it("max and argmax, over all and along a dim, with 1-based indices", function()
    local y = T.tensor { { 3, 9, 1 }, { 7, 2, 8 } }
    assert.equals(9, y:max():item())
    local v, i = y:max(2)
    assert.same({ 9, 8 }, v:totable())
    assert.same({ 2, 3 }, i:totable())
    v, i = y:max(1, true)
    assert.same({ { 7, 9, 8 } }, v:totable())
    assert.same({ { 2, 1, 2 } }, i:totable())
    assert.equals(2, y:argmax():item()) -- flat position
    assert.same({ 2, 3 }, y:argmax(2):totable())
    assert.same({ { 2 }, { 3 } }, y:argmax(-1, true):totable())
    -- ties: the first one; NaN wins
    assert.equals(1, T.tensor { 5, 5 }:argmax():item())
    local n = T.tensor { 1, 0 / 0, 3 }
    assert.is_true(n:max():item() ~= n:max():item())
    assert.equals(2, n:argmax():item())
  end)
end)

describe("shape ops", function()
  local x = T.arange(24):reshape { 2, 3, 4 }

  it("reshape and view share the storage; -1 is inferred", function()
    assert.same({ 6, 4 }, x:reshape { 6, 4 }:shape())
    assert.same({ 4, 6 }, x:view { -1, 6 }:shape())
    assert.same({ 24 }, x:view { -1 }:shape())
    assert.same({}, T.tensor { 5 }:reshape {}:shape())
    local base = T.zeros { 2, 2 }
    local v = base:view { 4 }
    base:set(7, 1, 2)
    assert.equals(7, v:get(2))
    assert.same({ 0, 3 }, T.zeros { 0 }:reshape { 0, 3 }:shape())
    assert.same({ 2, 0 }, T.zeros { 0 }:view { 2, -1 }:shape())
  end)

  it("transpose and permute", function()
    local t = x:transpose(1, 3)
    assert.same({ 4, 3, 2 }, t:shape())
    assert.equals(x:get(2, 3, 1), t:get(1, 3, 2))
    local p = x:permute { 2, 3, 1 }
    assert.same({ 3, 4, 2 }, p:shape())
    for _, idx in ipairs { { 1, 1, 1 }, { 2, 3, 4 }, { 1, 2, 3 }, { 2, 1, 4 } } do
      assert.equals(x:get(idx[1], idx[2], idx[3]), p:get(idx[2], idx[3], idx[1]))
    end
    assert.same(x:transpose(1, 2):totable(), x:permute { 2, 1, 3 }:totable())
    assert.same(x:totable(), x:transpose(-1, -1):totable())
    assert.same({ { 1, 3 }, { 2, 4 } }, T.tensor { { 1, 2 }, { 3, 4 } }:transpose(1, 2):totable())
  end)

  it("narrow and select", function()
    local n = x:narrow(3, 2, 2)
    assert.same({ 2, 3, 2 }, n:shape())
    assert.equals(x:get(2, 3, 3), n:get(2, 3, 2))
    assert.same({ 2, 0, 4 }, x:narrow(2, 4, 0):shape())
    local s = x:select(1, 2)
    assert.same({ 3, 4 }, s:shape())
    assert.same(x:select(2, -1):totable(), x:select(2, 3):totable())
    assert.equals(x:get(1, 2, 4), x:select(3, 4):get(1, 2))
    assert.equals(5, T.tensor { 4, 5 }:select(1, 2):item())
  end)

  it("cat and stack", function()
    local a, b = T.tensor { { 1, 2 } }, T.tensor { { 3, 4 }, { 5, 6 } }
    assert.same({ { 1, 2 }, { 3, 4 }, { 5, 6 } }, T.cat({ a, b }, 1):totable())
    assert.same({ { 1, 2 }, { 3, 4 }, { 5, 6 } }, T.cat { a, b }:totable())
    assert.same({ { 3, 4, 1, 2 } }, T.cat({ b:narrow(1, 1, 1), a }, 2):totable())
    assert.same({ { 3, 4, 1, 2 } }, T.cat({ b:narrow(1, 1, 1), a }, -1):totable())
    assert.same({ { 1, 2 } }, T.cat({ a }, 1):totable())
    assert.same({ 3, 2 }, T.cat({ T.zeros { 0, 2 }, a, b }, 1):shape())
    local s = T.stack({ T.tensor { 1, 2 }, T.tensor { 3, 4 }, T.tensor { 5, 6 } }, 2)
    assert.same({ { 1, 3, 5 }, { 2, 4, 6 } }, s:totable())
    assert.same({ { 1, 2 }, { 3, 4 } }, T.stack { T.tensor { 1, 2 }, T.tensor { 3, 4 } }:totable())
    assert.same({ 2 }, T.stack { T.tensor(1), T.tensor(2) }:shape())
  end)

  it("flatten, unsqueeze, squeeze, expand, clone, contiguous", function()
    assert.same({ 24 }, x:flatten():shape())
    assert.same({ 2, 12 }, x:flatten(2):shape())
    assert.same({ 2, 3, 4 }, x:flatten(3):shape())
    assert.same({ 1 }, T.tensor(3):flatten():shape())
    assert.same({ 2, 1, 3, 4 }, x:unsqueeze(2):shape())
    assert.same({ 2, 3, 4, 1 }, x:unsqueeze(-1):shape())
    assert.same({ 1, 2, 3, 4 }, x:unsqueeze(1):shape())
    local ones = T.zeros { 1, 3, 1, 2 }
    assert.same({ 3, 2 }, ones:squeeze():shape())
    assert.same({ 3, 1, 2 }, ones:squeeze(1):shape())
    assert.same({ 1, 3, 1, 2 }, ones:squeeze(2):shape(), "a dim of size > 1 stays")
    local e = T.tensor { { 1 }, { 2 } }:expand { 2, 3 }
    assert.same({ { 1, 1, 1 }, { 2, 2, 2 } }, e:totable())
    assert.same({ 4, 2, 3 }, T.tensor { 1, 2, 3 }:expand { 4, 2, 3 }:shape())
    local c = x:clone()
    c:set(-1, 1)
    assert.equals(0, x:get(1))
    assert.same(x:totable(), x:contiguous():totable())
  end)
end)

describe("matmul", function()
  local function naive(a, b) -- (n, k) @ (k, m) tables
    local out = {}
    for i = 1, #a do
      out[i] = {}
      for j = 1, #b[1] do
        local s = 0
        for k = 1, #b do s = s + a[i][k] * b[k][j] end
        out[i][j] = s
      end
    end
    return out
  end

  it("2-d against a naive product", function()
    local g = T.generator(2)
    local a, b = T.randn({ 5, 7 }, g), T.randn({ 7, 3 }, g)
    near(a:matmul(b), naive(a:totable(), b:totable()), 1e-5)
    near(T.matmul(a, b), naive(a:totable(), b:totable()), 1e-5)
  end)

  it("batched, batched x 2-d, 2-d x batched", function()
    local g = T.generator(3)
    local a, b, w = T.randn({ 2, 3, 4 }, g), T.randn({ 2, 4, 5 }, g), T.randn({ 4, 2 }, g)
    local ab = a:matmul(b)
    assert.same({ 2, 3, 5 }, ab:shape())
    for i = 1, 2 do near(ab:select(1, i), naive(a:select(1, i):totable(), b:select(1, i):totable()), 1e-5) end
    local aw = a:matmul(w)
    assert.same({ 2, 3, 2 }, aw:shape())
    for i = 1, 2 do near(aw:select(1, i), naive(a:select(1, i):totable(), w:totable()), 1e-5) end
    local m = T.randn({ 3, 4 }, g)
    local mb = m:matmul(b)
    assert.same({ 2, 3, 5 }, mb:shape())
    for i = 1, 2 do near(mb:select(1, i), naive(m:totable(), b:select(1, i):totable()), 1e-5) end
  end)

  it("vectors", function()
    local v, m = T.tensor { 1, 2, 3 }, T.tensor { { 1, 0 }, { 0, 1 }, { 1, 1 } }
    assert.equals(14, v:matmul(v):item())
    assert.same({}, v:matmul(v):shape())
    assert.same({ 4, 5 }, v:matmul(m):totable())
    assert.same({ 1, 0, 1 }, m:matmul(T.tensor { 1, 0 }):totable())
    assert.same({ 2, 3 }, T.ones { 2, 3, 2 }:matmul(T.tensor { 1, 1 }):shape())
    assert.same({ 2, 2 }, T.tensor { 1, 1, 1 }:matmul(T.ones { 2, 3, 2 }):shape())
  end)

  it("empty operands", function()
    assert.same({ { 0, 0 }, { 0, 0 } }, T.zeros { 2, 0 }:matmul(T.zeros { 0, 2 }):totable())
    assert.same({ 0, 2 }, T.zeros { 0, 3 }:matmul(T.zeros { 3, 2 }):shape())
  end)
end)

describe("in-place ops", function()
  it("copy_, fill_, zero_, add_, mul_, addcmul_, addcdiv_ return the tensor", function()
    local x = T.zeros { 3 }
    assert.equals(x, x:copy_(T.tensor { 1, 2, 3 }))
    assert.same({ 1, 2, 3 }, x:totable())
    assert.same({ 4, 4, 4 }, x:fill_(4):totable())
    assert.same({ 0, 0, 0 }, x:zero_():totable())
    x:copy_(T.tensor { 1, 2, 3 })
    assert.same({ 2, 3, 4 }, x:add_(1):totable())
    assert.same({ 4, 7, 10 }, x:add_(T.tensor { 1, 2, 3 }, 2):totable())
    assert.same({ 5, 8, 11 }, x:add_(T.tensor { 1, 1, 1 }):totable())
    assert.same({ 4, 7, 10 }, x:add_(2, -0.5):totable()) -- (a number scaled by alpha too)
    x:add_(1, 1)
    assert.same({ 10, 16, 22 }, x:mul_(2):totable())
    assert.same({ 10, 32, 66 }, x:mul_(T.tensor { 1, 2, 3 }):totable())
    assert.same({ 12, 40, 84 }, x:addcmul_(T.tensor { 1, 2, 3 }, T.tensor { 2, 4, 6 }):totable())
    assert.same({ 10, 36, 78 }, x:addcmul_(T.tensor { 1, 2, 3 }, T.tensor { 2, 2, 2 }, -1):totable())
    assert.same({ 11, 37, 79 }, x:addcdiv_(T.tensor { 2, 4, 6 }, T.tensor { 2, 4, 6 }):totable())
    assert.same({ 10, 36, 78 }, x:addcdiv_(T.tensor { 2, 4, 6 }, T.tensor { 1, 2, 3 }, -0.5):totable())
    local one = T.zeros { 1 }
    one:copy_(T.tensor(7)) -- one element in another shape
    assert.same({ 7 }, one:totable())
  end)

  it("changes the views that share the storage", function()
    local x = T.zeros { 2, 2 }
    local v = x:view { 4 }
    x:fill_(3)
    assert.same({ 3, 3, 3, 3 }, v:totable())
    x:copy_(x) -- copying onto itself is fine
    assert.same({ 3, 3, 3, 3 }, v:totable())
  end)
end)

describe("network pieces", function()
  it("linear is x w^T + b", function()
    local x, w, b = T.tensor { { 1, 2 } }, T.tensor { { 1, 0 }, { 1, 1 }, { 0, 2 } }, T.tensor { 10, 20, 30 }
    assert.same({ { 11, 23, 34 } }, T.linear(x, w, b):totable())
    assert.same({ { 1, 3, 4 } }, T.linear(x, w):totable())
    assert.same({ 1, 3, 4 }, T.linear(T.tensor { 1, 2 }, w):totable())
    assert.same({ 2, 5, 3 }, T.linear(T.ones { 2, 5, 2 }, w, b):shape())
  end)

  it("log_softmax and softmax", function()
    local x = T.tensor { { 1, 2, 3 }, { 1000, 1000, 1000 } }
    local p = T.softmax(x, 2)
    near(p:sum(2), { 1, 1 })
    near(p:select(1, 2), { 1 / 3, 1 / 3, 1 / 3 }, 1e-6)
    local z = math.log(math.exp(1) + math.exp(2) + math.exp(3))
    near(T.log_softmax(x, 2):select(1, 1), { 1 - z, 2 - z, 3 - z }, 1e-6)
    near(T.log_softmax(x, -1), T.log_softmax(x, 2), 0)
    near(T.softmax(x, 1):sum(1), { 1, 1, 1 })
    assert.equals(0, T.log_softmax(T.tensor { -1e30, 0 }, 1):get(2), "no overflow for extreme logits")
  end)

  it("cross_entropy is the mean negative log-likelihood; accuracy counts argmax hits", function()
    local logits = T.tensor { { 2, 1, 0 }, { 0, 0, 3 } }
    local ls = T.log_softmax(logits, 2)
    local want = -(ls:get(1, 1) + ls:get(2, 2)) / 2
    near(T.cross_entropy(logits, { 1, 2 }):item(), want)
    near(T.cross_entropy(logits, T.tensor { 1, 2 }):item(), want)
    assert.same({}, T.cross_entropy(logits, { 1, 2 }):shape())
    assert.equals(0.5, T.accuracy(logits, { 1, 2 }))
    assert.equals(1, T.accuracy(logits, T.tensor { 1, 3 }))
    -- a row with a NaN predicts nothing (a diverged network is not 100% right)
    assert.equals(0, T.accuracy(T.tensor { { 0 / 0, 0 / 0, 0 / 0 } }, { 1 }))
    assert.equals(0.5, T.accuracy(T.tensor { { 1, 0 / 0 }, { 0, 1 } }, { 1, 2 }))
  end)

  it("mse_loss is the mean squared difference", function()
    near(T.mse_loss(T.tensor { 1, 2, 3 }, T.tensor { 1, 0, 0 }):item(), (4 + 9) / 3)
  end)

  it("batch_norm normalises per channel in training mode and updates running stats", function()
    local x = T.tensor { { 1, 10 }, { 3, 20 }, { 5, 60 } }
    local y = T.batch_norm(x, nil, nil)
    near(y:mean(1), { 0, 0 }, 1e-5)
    near(y:var(1, false, false), { 1, 1 }, 1e-4)
    local rm, rv = T.zeros { 2 }, T.ones { 2 }
    local w, b = T.tensor { 2, 3 }, T.tensor { 1, -1 }
    local z = T.batch_norm(x, w, b, { running_mean = rm, running_var = rv, momentum = 0.5 })
    near(z, (y * w + b), 1e-5)
    near(rm, { 0.5 * 3, 0.5 * 30 }, 1e-6)
    near(rv, { 0.5 + 0.5 * 4, 0.5 + 0.5 * 700 }, 1e-5) -- the unbiased batch variance
    -- (N, C, H, W): statistics over N, H, W
    local img = T.randn({ 3, 2, 4, 4 }, T.generator(1))
    local out = T.batch_norm(img, nil, nil)
    near(out:mean { 1, 3, 4 }, { 0, 0 }, 1e-5)
  end)

  it("batch_norm in eval mode uses the running statistics and leaves them", function()
    local x = T.tensor { { 1, 10 }, { 3, 20 } }
    local rm, rv = T.tensor { 1, 10 }, T.tensor { 4, 25 }
    local y = T.batch_norm(x, T.tensor { 1, 2 }, T.tensor { 0, 1 }, {
      running_mean = rm, running_var = rv, training = false, eps = 0 })
    near(y, { { 0, 1 }, { 1, 5 } })
    assert.same({ 1, 10 }, rm:totable())
    assert.same({ 4, 25 }, rv:totable())
  end)

  it("batch_norm's one-sweep statistics match double sums, far from 0", function()
    -- the mean (1000) is large against the spread; planes of 2250 values and of 1 value
    for _, shape in ipairs { { 3, 2, 50, 45 }, { 400, 2 } } do
      local scale = T.tensor({ 0.5, 3 }):view(#shape == 2 and { 1, 2 } or { 1, 2, 1, 1 })
      local x = T.randn(shape, T.generator(7)) * scale + 1000
      local rm, rv = T.zeros { 2 }, T.zeros { 2 }
      local y = T.batch_norm(x, nil, nil, { running_mean = rm, running_var = rv, momentum = 1, eps = 0 })
      local v = x:view { shape[1], 2, -1 }:totable()
      for c = 1, 2 do
        local s, n = 0, 0
        for i = 1, #v do for k = 1, #v[i][c] do s, n = s + v[i][c][k], n + 1 end end
        local mean, ss = s / n, 0
        for i = 1, #v do for k = 1, #v[i][c] do ss = ss + (v[i][c][k] - mean) ^ 2 end end
        near(rm:totable()[c], mean, 4e-8, "mean") -- within float rounding of 1000 (3e-5)
        near(rv:totable()[c], ss / (n - 1), 1e-5, "unbiased variance")
      end
      local dims = #shape == 2 and { 1 } or { 1, 3, 4 }
      near(y:mean(dims), { 0, 0 }, 1e-4)
      near(y:var(dims, false, false), { 1, 1 }, 1e-4)
    end
  end)
end)

describe("serialisation", function()
  it("serialize / deserialize round trip of many shapes", function()
    local g = T.generator(1)
    for _, shape in ipairs { {}, { 0 }, { 5 }, { 2, 3 }, { 2, 0, 4 }, { 1, 2, 1, 2, 1, 2, 1, 2 } } do
      local x = T.randn(shape, g)
      local s = T.serialize(x)
      assert.equals("string", type(s))
      assert.equals("MRT1", s:sub(1, 4))
      assert.equals(8 + 8 * #shape + 4 * x:numel(), #s)
      local y = T.deserialize(s)
      assert.same(x:shape(), y:shape())
      assert.same(x:totable(), y:totable())
    end
    local special = T.tensor { 1 / 0, -1 / 0, -0.0 }
    assert.same(special:totable(), T.deserialize(T.serialize(special)):totable())
    local n = T.deserialize(T.serialize(T.tensor { 0 / 0 })):item()
    assert.is_true(n ~= n)
    -- a view serialises its own elements
    local v = T.arange(6):reshape { 2, 3 }:narrow(2, 2, 2)
    assert.same({ { 1, 2 }, { 4, 5 } }, T.deserialize(T.serialize(v)):totable())
  end)

  it("crc32 of known strings", function()
    assert.equals(0xCBF43926, T.crc32("123456789"))
    assert.equals(0, T.crc32(""))
    assert.equals(0x414FA339, T.crc32("The quick brown fox jumps over the lazy dog"))
    assert.equals(0xD202EF8D, T.crc32("\0"))
    -- every single-bit flip of a serialised tensor changes its crc32, and the value is a pure function
    -- of the bytes: the same on a copy built separately
    local s = T.serialize(T.ones { 3 })
    local copy = T.serialize(T.tensor { 1, 1, 1 })
    assert.equals(s, copy)
    assert.equals(T.crc32(s), T.crc32(copy))
    for i = 1, #s do
      for bit = 0, 7 do
        local flipped = s:sub(1, i - 1) .. string.char(s:byte(i) ~ (1 << bit)) .. s:sub(i + 1)
        assert.are_not.equals(T.crc32(s), T.crc32(flipped))
      end
    end
  end)
end)

describe("write_atomic", function()
  local dir
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p '" .. dir .. "'"))
  end)
  teardown(function() os.execute("rm -rf '" .. dir .. "'") end)

  local function read(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local s = f:read("a")
    f:close()
    return s
  end

  -- the names in dir, sorted (ls -A)
  local function listing()
    local p = io.popen("ls -A '" .. dir .. "'")
    local names = {}
    for line in p:lines() do names[#names + 1] = line end
    p:close()
    return names
  end

  it("writes a new file and replaces an old one, leaving no temporary file", function()
    local path = dir .. "/ckpt.bin"
    T.write_atomic(path, "first version")
    assert.equals("first version", read(path))
    local blob = T.serialize(T.randn({ 100 }, T.generator(1))) .. "\0tail"
    T.write_atomic(path, blob)
    assert.equals(blob, read(path))
    T.write_atomic(path, "")
    assert.equals("", read(path))
    assert.same({ "ckpt.bin" }, listing())
    os.remove(path)
  end)

  it("fails with a message when the directory does not exist", function()
    local ok, err = pcall(T.write_atomic, dir .. "/missing/x.bin", "data")
    assert.is_false(ok)
    assert.matches("write_atomic: cannot create .*missing/x%.bin%.tmp%.%d+': No such file or directory", err)
  end)

  it("dir_creatable says whether mkdir_p could make a folder, and makes nothing", function()
    assert.is_true(T.dir_creatable(dir))                     -- exists
    assert.is_true(T.dir_creatable(dir .. "/new/deeper/"))   -- its nearest existing parent is writable
    assert.is_nil(io.open(dir .. "/new/.")) -- (nothing was made)
    T.write_atomic(dir .. "/plain.txt", "x")
    for _, path in ipairs { dir .. "/plain.txt", dir .. "/plain.txt/d", dir .. "/plain.txt/d/e/" } do
      local ok, err = T.dir_creatable(path)
      assert.is_false(ok)
      assert.equals("cannot create the folder " .. path .. ": Not a directory", err)
      assert.is_false(pcall(T.mkdir_p, path)) -- what mkdir_p finds too
    end
    os.remove(dir .. "/plain.txt")
  end)

  it("mkdir_p makes a folder and its parents, accepts an existing one, and says why it cannot", function()
    T.mkdir_p(dir .. "/a/b/c")
    T.write_atomic(dir .. "/a/b/c/x.bin", "x")
    assert.equals("x", read(dir .. "/a/b/c/x.bin"))
    T.mkdir_p(dir .. "/a/b") -- exists
    local ok, err = pcall(T.mkdir_p, dir .. "/a/b/c/x.bin/d")
    assert.is_false(ok)
    assert.matches("cannot create the folder .*x%.bin/d: Not a directory", err)
    for _, bad in ipairs { {}, true } do
      ok, err = pcall(T.mkdir_p, bad)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'tensor.mkdir_p' %(string expected, got " .. type(bad) .. "%)", err)
      ok, err = pcall(T.dir_creatable, bad)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'tensor.dir_creatable' %(string expected, got " .. type(bad) .. "%)", err)
    end
    for _, bad in ipairs { {}, true } do
      ok, err = pcall(T.write_atomic, bad, "x")
      assert.matches("bad argument #1 to 'tensor.write_atomic' %(string expected, got " .. type(bad) .. "%)", err)
      ok, err = pcall(T.write_atomic, dir .. "/never.bin", bad)
      assert.matches("bad argument #2 to 'tensor.write_atomic'", err)
    end
    os.execute("rm -rf '" .. dir .. "/a'")
  end)

  it("MAMLRUN_WRITE_LIMIT makes a write fail with the old file intact", function()
    local path = dir .. "/limited.bin"
    T.write_atomic(path, "old contents")
    local mamlrun = os.getenv("MAMLRUN") or "./mamlrun"
    local script = dir .. "/child.lua"
    local f = assert(io.open(script, "w"))
    f:write(("local T = require 'tensor'\nlocal ok, err = pcall(T.write_atomic, %q, string.rep('n', 100))\n" ..
      "io.write(tostring(ok), '|', tostring(err))\n"):format(path))
    f:close()
    local function run(limit)
      local p = io.popen(("MAMLRUN_WRITE_LIMIT=%s '%s' '%s' 2>&1"):format(limit, mamlrun, script))
      local out = p:read("a")
      p:close()
      return out
    end
    local out = run(10)
    assert.matches("^false|write_atomic: cannot write '.*limited%.bin': No space left on device %(the previous file is unchanged%)", out)
    assert.equals("old contents", read(path))
    assert.same({ "child.lua", "limited.bin" }, listing(), "no temporary file is left")
    -- within the limit the write goes through
    assert.equals("true|nil", run(100))
    assert.equals(string.rep("n", 100), read(path))
    -- a limit that is no number of bytes is an error naming it (strtoull read 'abc' as 0 and '-1' as no limit)
    T.write_atomic(path, "old contents")
    for _, bad in ipairs{"abc", "-1", "12x"} do
      out = run(bad)
      assert.equals("false|write_atomic: cannot write '" .. path .. "': MAMLRUN_WRITE_LIMIT must be a number of bytes, "
        .. "got '" .. bad .. "' (unset it) (the previous file is unchanged)", out)
      assert.equals("old contents", read(path))
    end
    -- empty is unset
    assert.equals("true|nil", run("''"))
  end)
end)

describe("memory accounting", function()
  it("live_bytes follows allocations and frees; peak_bytes and reset_peak_memory", function()
    collectgarbage()
    collectgarbage()
    local m0 = T.memory()
    assert.equals("integer", math.type(m0.live_bytes))
    assert.is_true(m0.peak_bytes >= m0.live_bytes)
    local x = T.zeros { 1000, 100 }
    assert.equals(m0.live_bytes + 400000, T.memory().live_bytes)
    local v = x:view { 100000 } -- a view allocates nothing
    assert.equals(m0.live_bytes + 400000, T.memory().live_bytes)
    x = nil
    collectgarbage()
    assert.equals(m0.live_bytes + 400000, T.memory().live_bytes, "the view keeps the storage")
    v = nil
    collectgarbage()
    assert.equals(m0.live_bytes, T.memory().live_bytes)
    T.reset_peak_memory()
    assert.equals(m0.live_bytes, T.memory().peak_bytes)
    local y = T.zeros { 250000 }
    y = nil
    collectgarbage()
    assert.equals(m0.live_bytes + 1000000, T.memory().peak_bytes)
  end)
end)
