-- tests/lua/tensor_errors_spec.lua: every misuse of the tensor module is a Lua
-- error of the form "bad argument #N to 'fn' (what was expected, what came)",
-- never a crash: wrong types, shapes, dims out of range, sizes that are
-- negative, fractional, NaN or too large (overflowing int64), missing
-- arguments; then every function against a grid of bad arguments.
local T = require "tensor"

-- Lua pattern for a plain string
local function esc(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

-- f must fail with "bad argument #arg to 'fn' (detail)"; fn may come as
-- 'tensor.fn' (the name Lua finds for a module function); detail is plain
-- text, or a Lua pattern when `pattern` is set
local function fails(f, fn, arg, detail, pattern)
  local ok, err = pcall(f)
  assert(not ok, "expected an error from '" .. fn .. "', got none")
  assert(type(err) == "string", "the error is a " .. type(err))
  local want = "bad argument #" .. arg .. " to '[%w_.]*" .. esc(fn) .. "' %(" .. (pattern and detail or esc(detail)) .. "%)"
  assert(err:find(want), ("\nexpected: bad argument #%d to '%s' (%s)\n     got: %s"):format(arg, fn, detail, err))
end

local x = T.tensor { { 1, 2, 3 }, { 4, 5, 6 } }
local LIMIT = "17179869184" -- T_MAXNUMEL, 2^34 elements

describe("construction", function()
  it("T.tensor", function()
    fails(function() T.tensor() end, "tensor", 1, "table expected, got no value")
    fails(function() T.tensor("1") end, "tensor", 1, "table expected, got string")
    fails(function() T.tensor { { 1, 2 }, { 3 } } end, "tensor", 1,
      "ragged nesting: expected 2 entries at depth 2, got 1")
    fails(function() T.tensor { { 1, 2 }, 3 } end, "tensor", 1, "expected a table at depth 2, got number")
    fails(function() T.tensor { 1, "2" } end, "tensor", 1, "expected numbers, got string at depth 1")
    fails(function() T.tensor { 1, {} } end, "tensor", 1, "expected numbers, got table at depth 1")
    fails(function() T.tensor { T.zeros { 2 } } end, "tensor", 1, "expected numbers, got tensor at depth 1")
    fails(function() T.tensor { { { { { { { { { 1 } } } } } } } } } end, "tensor", 1, "more than 8 levels of nesting")
  end)

  for _, fn in ipairs { "zeros", "ones", "rand", "randn" } do
    it(fn .. ": shapes that are not lists of sizes >= 0 within the limit", function()
      local f = T[fn]
      fails(function() f() end, fn, 1, "expected shape table like {2, 3}, got no value")
      fails(function() f(3) end, fn, 1, "expected shape table like {2, 3}, got number")
      fails(function() f(x) end, fn, 1, "expected shape table like {2, 3}, got tensor")
      fails(function() f { -1 } end, fn, 1, "expected sizes >= 0, got -1 at position 1")
      fails(function() f { 2, math.mininteger } end, fn, 1, "expected sizes >= 0, got -9223372036854775808 at position 2")
      fails(function() f { 2.5 } end, fn, 1, "expected integer sizes, got 2.5 at position 1")
      fails(function() f { 0 / 0 } end, fn, 1, "expected integer sizes, got %-?nan at position 1", true)
      fails(function() f { 1 / 0 } end, fn, 1, "expected integer sizes, got inf at position 1")
      fails(function() f { 2, "3" } end, fn, 1, "expected integer sizes, got string at position 2")
      fails(function() f { 2, {} } end, fn, 1, "expected integer sizes, got table at position 2")
      fails(function() f { 1, 1, 1, 1, 1, 1, 1, 1, 1 } end, fn, 1, "expected at most 8 dims, got 9")
      -- sizes whose product overflows int64, or passes the limit
      fails(function() f { 1 << 32, 1 << 32 } end, fn, 1, "shape (4294967296, 4294967296) is too large (more than " .. LIMIT .. " elements)")
      fails(function() f { 1 << 62, 4 } end, fn, 1, "shape (4611686018427387904, 4) is too large (more than " .. LIMIT .. " elements)")
      fails(function() f { math.maxinteger } end, fn, 1, "shape (9223372036854775807) is too large (more than " .. LIMIT .. " elements)")
      fails(function() f { 1 << 17, 1 << 17, 2 } end, fn, 1, "shape (131072, 131072, 2) is too large (more than " .. LIMIT .. " elements)")
      -- an empty tensor may not hide a huge size
      fails(function() f { 0, math.maxinteger } end, fn, 1, "shape (0, 9223372036854775807) is too large (more than " .. LIMIT .. " elements)")
    end)
  end

  it("full", function()
    fails(function() T.full({ 2 }) end, "full", 2, "number expected, got no value")
    fails(function() T.full({ 2 }, "x") end, "full", 2, "number expected, got string")
    fails(function() T.full({ -2 }, 1) end, "full", 1, "expected sizes >= 0, got -2 at position 1")
    fails(function() T.full(nil, 1) end, "full", 1, "expected shape table like {2, 3}, got nil")
  end)

  it("arange", function()
    fails(function() T.arange() end, "arange", 1, "number expected, got no value")
    fails(function() T.arange("a") end, "arange", 1, "number expected, got string")
    fails(function() T.arange(0, {}) end, "arange", 2, "number expected, got table")
    fails(function() T.arange(0, 1, 0) end, "arange", 3, "expected a finite non-zero step")
    fails(function() T.arange(0, 1, 0 / 0) end, "arange", 3, "expected a finite non-zero step")
    fails(function() T.arange(0, 1, 1 / 0) end, "arange", 3, "expected a finite non-zero step")
    fails(function() T.arange(0 / 0) end, "arange", 1, "expected finite bounds")
    fails(function() T.arange(0, 1 / 0) end, "arange", 1, "expected finite bounds")
    fails(function() T.arange(-1 / 0, 0) end, "arange", 1, "expected finite bounds")
    fails(function() T.arange(1e15) end, "arange", 2, "more than " .. LIMIT .. " elements")
    fails(function() T.arange(0, 1, 1e-12) end, "arange", 2, "more than " .. LIMIT .. " elements")
  end)

  it("rand and randn with something else than a generator", function()
    fails(function() T.randn({ 2 }, 5) end, "randn", 2, "generator expected, got number")
    fails(function() T.rand({ 2 }, x) end, "rand", 2, "generator expected, got tensor")
    fails(function() T.rand({ 2 }, {}) end, "rand", 2, "generator expected, got table")
  end)
end)

describe("generators", function()
  local g = T.generator(1)

  it("seeds must be integers", function()
    fails(function() T.generator() end, "generator", 1, "integer seed expected, got no value")
    fails(function() T.generator(1.5) end, "generator", 1, "integer seed expected, got number")
    fails(function() T.generator(0 / 0) end, "generator", 1, "integer seed expected, got number")
    fails(function() T.generator("seed") end, "generator", 1, "integer seed expected, got string")
    fails(function() T.manual_seed() end, "manual_seed", 1, "integer seed expected, got no value")
    fails(function() T.manual_seed(2 ^ 70) end, "manual_seed", 1, "integer seed expected, got number")
  end)

  it("random and permutation bounds", function()
    -- (a method call: Lua counts the arguments after self)
    fails(function() g:random() end, "random", 1, "number expected, got no value")
    fails(function() g:random(0) end, "random", 1, "expected 1 <= n < 2^32")
    fails(function() g:random(-3) end, "random", 1, "expected 1 <= n < 2^32")
    fails(function() g:random(1 << 32) end, "random", 1, "expected 1 <= n < 2^32")
    fails(function() g:random(0 / 0) end, "random", 1, "number has no integer representation")
    fails(function() g:random(2.5) end, "random", 1, "number has no integer representation")
    fails(function() g:permutation(-1) end, "permutation", 1, "expected 0 <= n <= 2^26")
    fails(function() g:permutation((1 << 26) + 1) end, "permutation", 1, "expected 0 <= n <= 2^26")
    fails(function() g:permutation("x") end, "permutation", 1, "number expected, got string")
  end)

  it("set_state takes only strings from get_state", function()
    local good = T.generator(42):get_state()
    fails(function() g:set_state() end, "set_state", 1, "string expected, got no value")
    for _, bad in ipairs {
      "", "garbage", good:sub(1, -2) .. "", good .. "x", good:gsub("^xoshiro128ss", "mt19937"),
      good:gsub(":0:", ":2:"), "xoshiro128ss:00000000000000000000000000000000:0:0000000000000000",
    } do
      fails(function() g:set_state(bad) end, "set_state", 2, "expected a string from get_state, got '" .. bad .. "'")
    end
    g:set_state(good) -- still usable
    assert.equals(good, g:get_state())
  end)

  it("methods on something else than a generator", function()
    for _, name in ipairs { "uniform", "normal", "random", "permutation", "get_state", "set_state", "clone" } do
      local method = getmetatable(g).__index[name]
      local call = load(("local method = ... local r = method(5) return r"):gsub("method", name))
      fails(function() call(method) end, name, 1, "generator expected, got number")
    end
  end)
end)

describe("inspection", function()
  it("size, item, get, set", function()
    fails(function() x:size(3) end, "size", 2, "dim 3 out of range for a 2-d tensor")
    fails(function() x:size(0) end, "size", 2, "dim 0 out of range for a 2-d tensor")
    fails(function() x:size(-3) end, "size", 2, "dim -3 out of range for a 2-d tensor")
    fails(function() x:size("1") end, "size", 2, "expected integer dim, got string")
    fails(function() x:size(1.5) end, "size", 2, "expected integer dim, got 1.5")
    fails(function() x:size(0 / 0) end, "size", 2, "expected integer dim, got %-?nan", true)
    fails(function() T.tensor(1):size(1) end, "size", 2, "dim 1 out of range for a 0-d tensor")
    fails(function() x:item() end, "item", 1, "expected a tensor with one element, got shape (2, 3)")
    fails(function() T.zeros { 0 }:item() end, "item", 1, "expected a tensor with one element, got shape (0)")
    fails(function() x:get() end, "get", 2, "expected 1 flat index or 2 indices, got 0")
    fails(function() x:get(1, 1, 1) end, "get", 2, "expected 1 flat index or 2 indices, got 3")
    fails(function() x:get(0) end, "get", 2, "flat index 0 outside 1..6")
    fails(function() x:get(7) end, "get", 2, "flat index 7 outside 1..6")
    fails(function() x:get(3, 1) end, "get", 2, "index 3 outside 1..2 of dim 1")
    fails(function() x:get(1, -1) end, "get", 3, "index -1 outside 1..3 of dim 2")
    fails(function() x:get(1.5) end, "get", 1, "number has no integer representation")
    fails(function() x:get(0 / 0) end, "get", 1, "number has no integer representation")
    fails(function() x:get("a") end, "get", 1, "number expected, got string")
    fails(function() T.zeros { 0 }:get(1) end, "get", 2, "flat index 1 outside 1..0")
    local y = T.zeros { 2 }
    fails(function() y:set() end, "set", 1, "number expected, got no value")
    fails(function() y:set("a", 1) end, "set", 1, "number expected, got string")
    fails(function() y:set(1) end, "set", 3, "expected 1 flat index or 1 indices, got 0")
    fails(function() y:set(1, 3) end, "set", 3, "flat index 3 outside 1..2")
    assert.same({ 0, 0 }, y:totable(), "failed sets change nothing")
  end)
end)

describe("arithmetic", function()
  it("shapes that do not broadcast, each op", function()
    local b = T.zeros { 4 }
    for _, op in ipairs {
      { "add", function() return x + b end }, { "sub", function() return x - b end },
      { "mul", function() return x * b end }, { "div", function() return x / b end },
      { "pow", function() return x:pow(b) end }, { "eq", function() return x:eq(b) end },
      { "ne", function() return x:ne(b) end }, { "lt", function() return x:lt(b) end },
      { "le", function() return x:le(b) end }, { "gt", function() return x:gt(b) end },
      { "ge", function() return x:ge(b) end },
    } do
      fails(op[2], op[1], 2, "shapes (2, 3) and (4) cannot be broadcast: dim 2 is 3 vs 4")
    end
    fails(function() return T.zeros { 2, 1, 3 } + T.zeros { 4, 2 } end, "add", 2,
      "shapes (2, 1, 3) and (4, 2) cannot be broadcast: dim 3 is 3 vs 2")
  end)

  it("operands that are neither tensors nor numbers", function()
    fails(function() return x + "1" end, "add", 2, "expected tensor or number, got string")
    fails(function() return x - nil end, "sub", 2, "expected tensor or number, got nil")
    fails(function() return {} * x end, "mul", 1, "expected tensor or number, got table")
    fails(function() return x / true end, "div", 2, "expected tensor or number, got boolean")
    fails(function() return x + T.generator(1) end, "add", 2, "expected tensor or number, got generator")
    fails(function() return T.add(x) end, "add", 2, "expected tensor or number, got no value")
    fails(function() return T.add(2, 3) end, "add", 1, "expected a tensor on one side, got two numbers")
    fails(function() return T.div(2, 3) end, "div", 1, "expected a tensor on one side, got two numbers")
    fails(function() return x:pow("2") end, "pow", 1, "tensor or number expected, got string")
    fails(function() return x:pow() end, "pow", 1, "tensor or number expected, got no value")
    fails(function() return x:eq("1") end, "eq", 1, "tensor or number expected, got string")
    fails(function() return x:gt() end, "gt", 1, "tensor or number expected, got no value")
  end)

  it("unary functions of something else than a tensor", function()
    for _, fn in ipairs { "exp", "log", "sqrt", "abs", "sign", "relu", "sigmoid", "tanh", "neg" } do
      local call = load(("local T = ... local r = T.%s(2) return r"):format(fn))
      fails(function() call(T) end, fn, 1, "tensor expected, got number")
      call = load(("local T = ... local r = T.%s() return r"):format(fn))
      fails(function() call(T) end, fn, 1, "tensor expected, got no value")
    end
  end)
end)

describe("reductions", function()
  it("dims out of range, of the wrong type, in lists", function()
    for _, fn in ipairs { "sum", "mean", "var" } do
      local call = function(...) return x[fn](x, ...) end
      fails(function() call(3) end, fn, 2, "dim 3 out of range for a 2-d tensor")
      fails(function() call(0) end, fn, 2, "dim 0 out of range for a 2-d tensor")
      fails(function() call(-3) end, fn, 2, "dim -3 out of range for a 2-d tensor")
      fails(function() call(1.5) end, fn, 2, "expected integer dim, got 1.5")
      fails(function() call("1") end, fn, 2, "expected dim or list of dims, got string")
      fails(function() call(x) end, fn, 2, "expected dim or list of dims, got tensor")
      fails(function() call { 1, 5 } end, fn, 2, "dim 5 out of range for a 2-d tensor")
      fails(function() call { 1, "2" } end, fn, 2, "expected integer dim, got string")
      fails(function() call { 0 / 0 } end, fn, 2, "expected integer dim, got %-?nan", true)
    end
    fails(function() T.tensor(1):sum(1) end, "sum", 2, "dim 1 out of range for a 0-d tensor")
  end)

  it("max and argmax", function()
    fails(function() x:max(3) end, "max", 2, "dim 3 out of range for a 2-d tensor")
    fails(function() x:max("1") end, "max", 2, "expected integer dim, got string")
    fails(function() x:argmax(0) end, "argmax", 2, "dim 0 out of range for a 2-d tensor")
    fails(function() T.zeros { 0 }:max() end, "max", 1, "expected a non-empty tensor")
    fails(function() T.zeros { 2, 0 }:max(2) end, "max", 1, "expected a non-empty tensor")
    fails(function() T.zeros { 0, 3 }:argmax() end, "argmax", 1, "expected a non-empty tensor")
  end)
end)

describe("shape ops", function()
  it("reshape and view", function()
    for _, fn in ipairs { "reshape", "view" } do
      local call = function(...) return x[fn](x, ...) end
      fails(function() call { 4 } end, fn, 2, "cannot reshape (2, 3) (6 elements) to (4) (4 elements)")
      fails(function() call {} end, fn, 2, "cannot reshape (2, 3) (6 elements) to () (1 elements)")
      fails(function() call { -1, -1 } end, fn, 2, "expected sizes >= 0 and at most one -1, got entry 2")
      fails(function() call { -2, -3 } end, fn, 2, "expected sizes >= 0 and at most one -1, got entry 1")
      fails(function() call { 2.5, -1 } end, fn, 2, "expected sizes >= 0 and at most one -1, got entry 1")
      fails(function() call { "6" } end, fn, 2, "expected sizes >= 0 and at most one -1, got entry 1")
      fails(function() call { 4, -1 } end, fn, 2, "cannot infer -1 reshaping (2, 3)")
      fails(function() call { 0, -1 } end, fn, 2, "cannot infer -1 reshaping (2, 3)")
      fails(function() call() end, fn, 2, "expected shape table like {2, -1}, got no value")
      fails(function() call(6) end, fn, 2, "expected shape table like {2, -1}, got number")
      fails(function() call { 1, 1, 1, 1, 1, 1, 1, 1, 6 } end, fn, 2, "expected at most 8 dims")
      fails(function() call { 1 << 40, 1 << 40, -1 } end, fn, 2, "cannot infer -1 reshaping (2, 3)")
      fails(function() T.zeros { 0 }[fn](T.zeros { 0 }, { 1 << 34, (1 << 62) + 1, -1 }) end, fn, 2,
        "shape (17179869184, 4611686018427387905, 0) is too large (more than " .. LIMIT .. " elements)")
    end
  end)

  it("transpose and permute", function()
    fails(function() x:transpose(1, 3) end, "transpose", 3, "dim 3 out of range for a 2-d tensor")
    fails(function() x:transpose(0, 1) end, "transpose", 2, "dim 0 out of range for a 2-d tensor")
    fails(function() x:transpose(1) end, "transpose", 3, "expected integer dim, got no value")
    fails(function() x:permute { 1, 1 } end, "permute", 2, "expected a permutation of 1..2")
    fails(function() x:permute { 1 } end, "permute", 2, "expected a permutation of 2 dims, got 1 entries")
    fails(function() x:permute { 1, 3 } end, "permute", 2, "dim 3 out of range for a 2-d tensor")
    fails(function() x:permute { 1, "2" } end, "permute", 2, "expected integer dim, got string")
    fails(function() x:permute(2, 1) end, "permute", 1, "table expected, got number")
  end)

  it("narrow and select, including sizes that overflow", function()
    fails(function() x:narrow(3, 1, 1) end, "narrow", 2, "dim 3 out of range for a 2-d tensor")
    fails(function() x:narrow(2, 3, 2) end, "narrow", 3, "start 3, length 2: not within 1..3 of dim 2")
    fails(function() x:narrow(2, 0, 1) end, "narrow", 3, "start 0, length 1: not within 1..3 of dim 2")
    fails(function() x:narrow(2, 1, -1) end, "narrow", 3, "start 1, length -1: not within 1..3 of dim 2")
    fails(function() x:narrow(2, 5, 0) end, "narrow", 3, "start 5, length 0: not within 1..3 of dim 2")
    fails(function() x:narrow(2, math.maxinteger, 2) end, "narrow", 3,
      "start 9223372036854775807, length 2: not within 1..3 of dim 2")
    fails(function() x:narrow(2, 2, math.maxinteger) end, "narrow", 3,
      "start 2, length 9223372036854775807: not within 1..3 of dim 2")
    fails(function() x:narrow(2, math.mininteger, math.maxinteger) end, "narrow", 3,
      "start -9223372036854775808, length 9223372036854775807: not within 1..3 of dim 2")
    fails(function() x:narrow(2, 1) end, "narrow", 3, "number expected, got no value")
    fails(function() x:select(1, 3) end, "select", 3, "index 3 outside 1..2 of dim 1")
    fails(function() x:select(1, 0) end, "select", 3, "index 0 outside 1..2 of dim 1")
    fails(function() x:select(1, -3) end, "select", 3, "index -3 outside 1..2 of dim 1")
    fails(function() x:select(1, math.mininteger) end, "select", 3, "index -9223372036854775808 outside 1..2 of dim 1")
    fails(function() x:select(3, 1) end, "select", 2, "dim 3 out of range for a 2-d tensor")
    fails(function() x:select(1) end, "select", 2, "number expected, got no value")
  end)

  it("cat and stack", function()
    fails(function() T.cat() end, "cat", 1, "expected a list of tensors, got nil")
    fails(function() T.cat(x) end, "cat", 1, "expected a list of tensors, got tensor")
    fails(function() T.cat {} end, "cat", 1, "expected a non-empty list of tensors")
    fails(function() T.cat { x, 2 } end, "cat", 1, "expected a tensor at position 2, got number")
    fails(function() T.cat({ x, T.zeros { 3, 2 } }, 1) end, "cat", 1,
      "tensor 2 has shape (3, 2), incompatible with (2, 3) along dim 1")
    fails(function() T.cat({ x, T.zeros { 3 } }, 1) end, "cat", 1,
      "tensor 2 has shape (3), incompatible with (2, 3) along dim 1")
    fails(function() T.cat({ x, x }, 3) end, "cat", 2, "dim 3 out of range for a 2-d tensor")
    fails(function() T.cat({ x, x }, "1") end, "cat", 2, "expected integer dim, got string")
    fails(function() T.cat { T.tensor(1), T.tensor(2) } end, "cat", 2, "dim 1 out of range for 0-d tensors")
    fails(function() T.stack() end, "stack", 1, "expected a list of tensors, got nil")
    fails(function() T.stack {} end, "stack", 1, "expected a non-empty list of tensors")
    fails(function() T.stack { x, {} } end, "stack", 1, "expected a tensor at position 2, got table")
    fails(function() T.stack { x, T.zeros { 3, 2 } } end, "stack", 1,
      "tensor 2 has shape (3, 2), expected (2, 3) like tensor 1")
    fails(function() T.stack({ x, x }, 4) end, "stack", 2, "dim 4 out of range for a 3-d tensor")
    fails(function() T.stack { T.zeros { 1, 1, 1, 1, 1, 1, 1, 1 } } end, "stack", 1, "tensors already have 8 dims")
  end)

  it("flatten, unsqueeze, squeeze", function()
    fails(function() x:flatten(3) end, "flatten", 2, "dim 3 out of range for a 2-d tensor")
    fails(function() x:flatten("1") end, "flatten", 2, "expected integer dim, got string")
    fails(function() x:unsqueeze(4) end, "unsqueeze", 2, "dim 4 out of range for a 3-d tensor")
    fails(function() x:unsqueeze() end, "unsqueeze", 2, "expected integer dim, got no value")
    fails(function() T.zeros { 1, 1, 1, 1, 1, 1, 1, 1 }:unsqueeze(1) end, "unsqueeze", 1, "already 8 dims")
    fails(function() x:squeeze(3) end, "squeeze", 2, "dim 3 out of range for a 2-d tensor")
  end)

  it("expand", function()
    fails(function() x:expand { 3, 3 } end, "expand", 2, "cannot expand shape (2, 3) to (3, 3)")
    fails(function() x:expand { 3 } end, "expand", 2, "cannot expand shape (2, 3) to (3)")
    fails(function() x:expand { -1, 3 } end, "expand", 2, "expected sizes >= 0, got -1 at position 1")
    fails(function() x:expand { 1 << 40, 2, 3 } end, "expand", 2,
      "shape (1099511627776, 2, 3) is too large (more than " .. LIMIT .. " elements)")
    fails(function() x:expand "big" end, "expand", 2, "expected shape table like {2, 3}, got string")
  end)
end)

describe("matmul", function()
  it("sizes, batch dims, 0-d operands, types", function()
    fails(function() x:matmul(x) end, "matmul", 2, "inner sizes differ: (2, 3) @ (2, 3) (3 vs 2)")
    fails(function() T.tensor { 1, 2 }:matmul(T.tensor { 1, 2, 3 }) end, "matmul", 2, "inner sizes differ: (2) @ (3) (2 vs 3)")
    fails(function() T.zeros { 2, 2, 3 }:matmul(T.zeros { 3, 3, 2 }) end, "matmul", 2,
      "batch dims differ: (2, 2, 3) @ (3, 3, 2)")
    fails(function() T.zeros { 2, 2, 2, 3 }:matmul(T.zeros { 2, 3, 2 }) end, "matmul", 2,
      "batch dims differ: (2, 2, 2, 3) @ (2, 3, 2)")
    fails(function() T.matmul(T.tensor(1), x) end, "matmul", 1, "expected a tensor with at least 1 dim, got a scalar")
    fails(function() T.matmul(x, T.tensor(1)) end, "matmul", 2, "expected a tensor with at least 1 dim, got a scalar")
    fails(function() T.matmul(x) end, "matmul", 2, "tensor expected, got no value")
    fails(function() T.matmul(x, { { 1 } }) end, "matmul", 2, "tensor expected, got table")
  end)
end)

describe("in-place ops", function()
  it("shapes and types", function()
    local y = T.zeros { 2, 3 }
    fails(function() y:copy_(T.zeros { 6 }) end, "copy_", 2, "expected shape (2, 3), got (6)")
    fails(function() y:copy_(T.zeros { 3 }) end, "copy_", 2, "expected shape (2, 3), got (3)")
    fails(function() y:copy_(1) end, "copy_", 1, "tensor expected, got number")
    fails(function() y:add_(T.zeros { 3 }) end, "add_", 2, "expected shape (2, 3), got (3)")
    fails(function() y:add_("1") end, "add_", 1, "tensor expected, got string")
    fails(function() y:add_(y, "a") end, "add_", 2, "number expected, got string")
    fails(function() y:mul_(T.zeros { 1, 3 }) end, "mul_", 2, "expected shape (2, 3), got (1, 3)")
    fails(function() y:addcmul_(y, T.zeros { 3 }) end, "addcmul_", 3, "expected shape (2, 3), got (3)")
    fails(function() y:addcdiv_(T.zeros { 3 }, y) end, "addcdiv_", 2, "expected shape (2, 3), got (3)")
    fails(function() y:addcdiv_(y) end, "addcdiv_", 2, "tensor expected, got no value")
    fails(function() y:fill_() end, "fill_", 1, "number expected, got no value")
    fails(function() y:fill_("zero") end, "fill_", 1, "number expected, got string")
    assert.same({ { 0, 0, 0 }, { 0, 0, 0 } }, y:totable(), "failed calls change nothing")
  end)

  it("a tensor with history", function()
    local y = T.zeros { 2 }:requires_grad(true) * 2
    for _, fn in ipairs { "copy_", "fill_", "zero_", "add_", "mul_", "addcmul_", "addcdiv_" } do
      fails(function() y[fn](y, y, y) end, fn, 1,
        "in-place change of a tensor computed by differentiable ops; detach() it first")
    end
    fails(function() y:set(1, 1) end, "set", 1,
      "in-place change of a tensor computed by differentiable ops; detach() it first")
    fails(function() y:requires_grad(false) end, "requires_grad", 1,
      "a tensor computed by differentiable ops cannot stop requiring grad; use detach()")
    fails(function() y:requires_grad(1) end, "requires_grad", 1, "boolean expected, got number")
  end)
end)

describe("network pieces", function()
  it("linear", function()
    fails(function() T.linear(x, T.zeros { 3 }) end, "linear", 2, "expected 2-d weight (out, in), got (3)")
    fails(function() T.linear(x, T.zeros { 3, 2 }) end, "linear", 1, "expected input (..., 2) for weight (3, 2), got (2, 3)")
    fails(function() T.linear(T.tensor(1), T.zeros { 2, 3 }) end, "linear", 1,
      "expected input (..., 3) for weight (2, 3), got ()")
    fails(function() T.linear(x, T.zeros { 2, 3 }, T.zeros { 3 }) end, "linear", 3, "expected bias of shape (2), got (3)")
    fails(function() T.linear(x, T.zeros { 2, 3 }, T.zeros { 1, 2 }) end, "linear", 3, "expected bias of shape (2), got (1, 2)")
    fails(function() T.linear(x, T.zeros { 2, 3 }, "b") end, "linear", 3, "expected tensor or nil, got string")
    fails(function() T.linear(x) end, "linear", 2, "tensor expected, got no value")
  end)

  it("log_softmax and softmax", function()
    for _, fn in ipairs { "log_softmax", "softmax" } do
      fails(function() T[fn](x) end, fn, 2, "expected integer dim, got no value")
      fails(function() T[fn](x, 3) end, fn, 2, "dim 3 out of range for a 2-d tensor")
      fails(function() T[fn](T.tensor(1), 1) end, fn, 2, "dim 1 out of range for a 0-d tensor")
      local call = load(("local T = ... local r = T.%s({}, 1) return r"):format(fn))
      fails(function() call(T) end, fn, 1, "tensor expected, got table")
    end
  end)

  it("cross_entropy and accuracy", function()
    for _, fn in ipairs { "cross_entropy", "accuracy" } do
      fails(function() T[fn](T.zeros { 3 }, { 1 }) end, fn, 1, "expected 2-d logits (N, C), got (3)")
      fails(function() T[fn](x, { 1 }) end, fn, 2, "expected 2 labels, got 1")
      fails(function() T[fn](x, "1") end, fn, 2, "expected labels as a tensor or a list, got string")
      fails(function() T[fn](x) end, fn, 2, "expected labels as a tensor or a list, got no value")
      fails(function() T[fn](x, { 1, "2" }) end, fn, 2, "expected integer labels, got string at position 2")
      fails(function() T[fn](x, { 1, 2.5 }) end, fn, 2, "expected integer labels, got 2.5 at position 2")
      fails(function() T[fn](x, T.tensor { 1, 1.5 }) end, fn, 2, "label 1.5 at position 2 is not an integer class")
      fails(function() T[fn](x, T.tensor { 0 / 0, 1 }) end, fn, 2, "label nan at position 1 is not an integer class")
      fails(function() T[fn](x, T.tensor { 1, 1 / 0 }) end, fn, 2, "label inf at position 2 is not an integer class")
      fails(function() T[fn](x, T.tensor { 1e30, 1 }) end, fn, 2, "label 1e+30 at position 1 is not an integer class")
    end
    fails(function() T.cross_entropy(x, { 0, 1 }) end, "cross_entropy", 2, "label 0 at position 1 is outside 1..3")
    fails(function() T.cross_entropy(x, { 1, 4 }) end, "cross_entropy", 2, "label 4 at position 2 is outside 1..3")
    fails(function() T.cross_entropy(x, { 1, math.mininteger }) end, "cross_entropy", 2,
      "label -9223372036854775808 at position 2 is outside 1..3")
    fails(function() T.cross_entropy(T.zeros { 0, 3 }, {}) end, "cross_entropy", 1, "expected at least one example")
    fails(function() T.accuracy(T.zeros { 2, 0 }, { 1, 1 }) end, "accuracy", 1, "expected a non-empty (N, C) tensor")
    fails(function() T.accuracy(T.zeros { 2, 3 }, { 1, 4 }) end, "accuracy", 2, "label 4 at position 2 is outside 1..3")
    fails(function() T.accuracy(T.zeros { 2, 3 }, { 0, 1 }) end, "accuracy", 2, "label 0 at position 1 is outside 1..3")
  end)

  it("mse_loss", function()
    fails(function() T.mse_loss(x, T.zeros { 3 }) end, "mse_loss", 2, "expected the shape of argument #1 (2, 3), got (3)")
    fails(function() T.mse_loss(x, 1) end, "mse_loss", 2, "tensor expected, got number")
  end)

  it("batch_norm", function()
    fails(function() T.batch_norm(T.zeros { 3 }) end, "batch_norm", 1, "expected input (N, C, ...), got (3)")
    fails(function() T.batch_norm(x, T.zeros { 2 }) end, "batch_norm", 2, "expected weight of shape (3), got (2)")
    fails(function() T.batch_norm(x, nil, T.zeros { 3, 1 }) end, "batch_norm", 3, "expected bias of shape (3), got (3, 1)")
    fails(function() T.batch_norm(x, 1) end, "batch_norm", 2, "expected tensor or nil, got number")
    fails(function() T.batch_norm(T.zeros { 1, 3 }) end, "batch_norm", 1,
      "training mode needs more than 1 value per channel, got input (1, 3)")
    fails(function() T.batch_norm(x, nil, nil, 5) end, "batch_norm", 4, "expected a table of options, got number")
    fails(function() T.batch_norm(x, nil, nil, { trainig = false, momentom = 0.5 }) end, "batch_norm", 4,
      "unknown option '%a+'; valid options: [%w_, ]+", true)
    fails(function() T.batch_norm(x, nil, nil, { trainig = false }) end, "batch_norm", 4,
      "unknown option 'trainig'; valid options: running_mean, running_var, training, momentum, eps, layout, relu")
    fails(function() T.batch_norm(x, nil, nil, { training = false }) end, "batch_norm", 4,
      "eval mode (training=false) needs running_mean and running_var")
    fails(function() T.batch_norm(x, nil, nil, { running_mean = T.zeros { 3 } }) end, "batch_norm", 4,
      "give both running_mean and running_var, or neither")
    fails(function() T.batch_norm(x, nil, nil, { running_mean = 0, running_var = T.ones { 3 } }) end, "batch_norm", 4,
      "option 'running_mean' must be a tensor or nil, got number")
    fails(function() T.batch_norm(x, nil, nil, { running_mean = T.zeros { 2 }, running_var = T.ones { 2 } }) end, "batch_norm", 4,
      "expected running_mean of shape (3), got (2)")
    fails(function() T.batch_norm(x, nil, nil, { training = "yes" }) end, "batch_norm", 4,
      "option 'training' must be a boolean, got string")
    fails(function() T.batch_norm(x, nil, nil, { momentum = 2 }) end, "batch_norm", 4, "option 'momentum' must be in [0, 1], got 2")
    fails(function() T.batch_norm(x, nil, nil, { momentum = 0 / 0 }) end, "batch_norm", 4,
      "option 'momentum' must be in %[0, 1%], got %-?nan", true)
    fails(function() T.batch_norm(x, nil, nil, { eps = -1 }) end, "batch_norm", 4, "option 'eps' must be in [0, 1], got -1")
    fails(function() T.batch_norm(x, nil, nil, { eps = "small" }) end, "batch_norm", 4, "option 'eps' must be a number, got string")
    local computed = T.zeros { 3 }:requires_grad(true) * 1
    fails(function() T.batch_norm(x, nil, nil, { running_mean = computed, running_var = T.ones { 3 } }) end, "batch_norm", 4,
      "running_mean must be a buffer, not a result of differentiable ops")
  end)
end)

describe("serialisation", function()
  local good = T.serialize(T.zeros { 2 })
  local function header(ndim, ...) return "MRT1" .. string.pack("<I4", ndim) .. string.pack(("<" .. ("i8"):rep(select("#", ...))), ...) end

  it("deserialize refuses corrupt input", function()
    fails(function() T.deserialize() end, "deserialize", 1, "string expected, got no value")
    fails(function() T.deserialize(x) end, "deserialize", 1, "string expected, got tensor")
    fails(function() T.deserialize("") end, "deserialize", 1, "not a serialized tensor: bad magic")
    fails(function() T.deserialize("XRT1" .. good:sub(5)) end, "deserialize", 1, "not a serialized tensor: bad magic")
    fails(function() T.deserialize("MRT1\2\0\0") end, "deserialize", 1, "not a serialized tensor: bad magic")
    fails(function() T.deserialize(header(2)) end, "deserialize", 1, "truncated header")
    fails(function() T.deserialize(header(9)) end, "deserialize", 1, "corrupt: 9 dims")
    fails(function() T.deserialize(header(0xffffffff)) end, "deserialize", 1, "corrupt: 4294967295 dims")
    fails(function() T.deserialize(header(1, -1)) end, "deserialize", 1, "corrupt shape")
    fails(function() T.deserialize(header(1, 1 << 40)) end, "deserialize", 1, "corrupt shape")
    fails(function() T.deserialize(header(2, 1 << 33, 1 << 33)) end, "deserialize", 1,
      "shape (8589934592, 8589934592) is too large (more than " .. LIMIT .. " elements)")
    fails(function() T.deserialize(good:sub(1, -2)) end, "deserialize", 1, "expected 24 bytes for shape, got 23")
    fails(function() T.deserialize(good .. "\0") end, "deserialize", 1, "expected 24 bytes for shape, got 25")
    fails(function() T.deserialize(header(1, 3)) end, "deserialize", 1, "expected 28 bytes for shape, got 16")
  end)

  it("serialize, crc32, write_atomic argument types", function()
    fails(function() T.serialize() end, "serialize", 1, "tensor expected, got no value")
    fails(function() T.serialize("x") end, "serialize", 1, "tensor expected, got string")
    fails(function() T.crc32() end, "crc32", 1, "string expected, got no value")
    fails(function() T.crc32({}) end, "crc32", 1, "string expected, got table")
    fails(function() T.write_atomic() end, "write_atomic", 1, "string expected, got no value")
    fails(function() T.write_atomic("/tmp/never-written") end, "write_atomic", 2, "string expected, got no value")
    fails(function() T.write_atomic("/tmp/never-written", {}) end, "write_atomic", 2, "string expected, got table")
  end)
end)

describe("closed tensors", function()
  it("a tensor released by its <close> variable is refused, not used", function()
    local escaped
    do
      local t <close> = T.zeros { 2 }
      escaped = t
    end
    assert.is_false(T.is_tensor(escaped))
    fails(function() return escaped + 1 end, "add", 1, "expected tensor or number, got closed tensor")
    fails(function() return T.exp(escaped) end, "exp", 1, "tensor expected, got closed tensor")
    fails(function() return T.cat { escaped } end, "cat", 1, "expected a tensor at position 1, got closed tensor")
    local ok, err = pcall(function() return escaped:sum() end)
    assert.is_false(ok)
    assert.matches("calling 'sum' on bad self %(tensor expected, got closed tensor%)", err)
    getmetatable(escaped).__gc(escaped) -- a second release is harmless
  end)
end)

describe("every function", function()
  -- module functions that take no argument, or accept anything
  local no_args = { memory = true, reset_peak_memory = true, default_generator = true, is_tensor = true, flops = true }

  it("module functions called without arguments fail naming themselves", function()
    for name, f in pairs(T) do
      if type(f) == "function" and not no_args[name] then
        local call = load(("local T = ... local r = T.%s() return r"):format(name))
        local ok, err = pcall(call, T)
        assert(not ok, "T." .. name .. "() did not fail")
        assert(err:find("bad argument #%d+ to '[%w_.]*" .. name .. "'"), "T." .. name .. "(): " .. err)
      end
    end
  end)

  it("methods refuse a self that is not a tensor", function()
    for name in pairs(T.methods) do
      local arith = name == "add" or name == "sub" or name == "mul" or name == "div"
      for _, self in ipairs(arith and { "s", {}, true } or { 5, "s", {}, true }) do
        local call = load(("local M = ... return function(v) local r = M.%s(v) return r end"):format(name))(T.methods)
        local ok, err = pcall(call, self)
        assert(not ok, name .. " accepted a " .. type(self))
        local expected = arith and "expected tensor or number, got " or "tensor expected, got "
        assert(err:find("bad argument #1 to '[%w_.]*" .. name .. "' %(" .. expected .. type(self) .. "%)"),
          name .. ": " .. err)
      end
    end
  end)

  it("a grid of bad arguments gives errors naming the function, never a crash", function()
    local values = {
      function() return nil end, function() return 2 end, function() return -1 end, function() return 2.5 end,
      function() return 0 / 0 end, function() return 1 / 0 end, function() return math.maxinteger end,
      function() return math.mininteger end, function() return "abc" end, function() return {} end,
      function() return T.tensor(1.5) end, function() return T.tensor { 1, 2, 3 } end,
      function() return T.tensor { { 1, 2 }, { 3, 4 } } end, function() return T.ones { 1, 1, 2, 2 } end,
      function() return T.zeros { 0, 2 } end, function() return { 2, 2 } end, function() return { 2, "x", -3 } end,
      function() return { 1 << 31, 1 << 31, 1 << 31 } end, function() return T.generator(1) end,
      function() return true end,
    }
    local thirds = { values[1], values[2], values[12], values[16] }
    local calls = {}
    for name, f in pairs(T) do
      -- write_atomic and mkdir_p would write files and folders named after the values into the working
      -- folder; their bad arguments have their own spec in tensor_spec.lua
      if type(f) == "function" and name ~= "write_atomic" and name ~= "mkdir_p" and name ~= "manual_seed" then
        calls[#calls + 1] = { name, load(("local T = ... return function(a, b, c) local r = T.%s(a, b, c) return r end"):format(name))(T) }
      end
    end
    for name in pairs(T.methods) do
      calls[#calls + 1] = { name, load(("return function(v, b, c) local r = v:%s(b, c) return r end"):format(name))() }
    end
    local n = 0
    for _, c in ipairs(calls) do
      for _, a in ipairs(values) do
        for _, b in ipairs(values) do
          for _, third in ipairs(thirds) do
            local ok, err = pcall(c[2], a(), b(), third())
            n = n + 1
            if not ok then
              assert(type(err) == "string", c[1] .. ": a non-string error")
              assert(err:find("'" .. c[1] .. "'", 1, true) or err:find("'tensor." .. c[1] .. "'", 1, true) or
                err:find("attempt to index a", 1, true), c[1] .. ": " .. err)
            end
          end
        end
      end
    end
    assert.is_true(n > 50000)
  end)
end)
