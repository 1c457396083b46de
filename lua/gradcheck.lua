-- gradcheck: compare analytic gradients with central finite differences.
--
-- gradcheck(f, inputs [, opts]) checks d/dx_i of sum(f(inputs) * r), r a fixed
-- random weight (so every output element matters), element by element.
-- gradgradcheck(f, inputs [, opts]) runs gradcheck on the gradient itself:
-- h(x) = <grad_x sum(f(x) * r), v> built with create_graph, so the check
-- compares Hessian-vector products against differences of gradients. Every
-- gradient is in h, also one that does not require grad: a backward that
-- ignores create_graph (a detached gradient) then has an analytic Hessian of
-- zero, which the differences of a nonlinear f contradict.
--
-- A NaN or an infinity on either side is a failure, never a pass.
--
-- Everything is float32, so the step is large (eps = 1e-2 by default, relative
-- to the element's size) and the tolerance is set for float32 rounding: atol
-- scaled by the size of the weighted outputs when that is below 1 (the rounding
-- scales with it), plus rtol of the gradient; the differences are taken in
-- double in Lua. Inputs must stay away from kinks
-- (relu at 0, ties in max) by more than eps.
local T = require "tensor"
local ag = require "autograd"
local options = require "options"

local M = {}

local defaults = { eps = 1e-2, rtol = 2e-2, atol = 2e-3, max_elements = 64, seed = 1234 }

local spec = { eps = "number", rtol = "number", atol = "number", max_elements = "integer", seed = "integer" }

-- opts over the defaults (checked in gradcheck and gradgradcheck, whose callers get the error): a value
-- that would check nothing (max_elements 0) or make no sense (eps 0, a negative or NaN tolerance) is refused
local function with_defaults(fn, opts)
  local o = {}
  for k, v in pairs(defaults) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end
  local function bad(key, want)
    error(string.format("bad argument #3 to '%s' (option '%s' must be %s, got %s)", fn, key, want, tostring(o[key])), 4)
  end
  if o.max_elements < 1 then bad("max_elements", "at least 1 (elements checked per input)") end
  if not (o.eps > 0 and o.eps < math.huge) then bad("eps", "a positive finite step") end
  if not (o.rtol >= 0 and o.rtol < math.huge) then bad("rtol", "a finite tolerance >= 0") end
  if not (o.atol >= 0 and o.atol < math.huge) then bad("atol", "a finite tolerance >= 0") end
  return o
end

-- f and its inputs as gradcheck takes them: a function, and a non-empty list of tensors
local function check_call(fn, f, inputs)
  if type(f) ~= "function" then
    error(string.format("bad argument #1 to '%s' (a function expected, got %s)", fn, type(f)), 3)
  end
  if type(inputs) ~= "table" or T.is_tensor(inputs) or #inputs == 0 then
    error(string.format("bad argument #2 to '%s' (a non-empty list of input tensors expected, got %s)", fn,
      T.is_tensor(inputs) and "a tensor (put it in a list: {x})" or type(inputs) == "table" and "an empty list"
      or type(inputs)), 3)
  end
end

-- the elements to probe: all of a small tensor, a fixed random sample of a big one
local function probe_indices(n, max, gen)
  if n <= max then
    local all = {}
    for i = 1, n do all[i] = i end
    return all
  end
  local perm = gen:permutation(n)
  local some = {}
  for i = 1, max do some[i] = perm[i] end
  table.sort(some)
  return some
end

local function scalar_of(f, inputs, weights)
  local out = f(table.unpack(inputs))
  if not T.is_tensor(out) then error("gradcheck: f must return a tensor, got " .. type(out), 3) end
  if weights[1] == nil then weights[1] = T.rand(out:shape(), weights.gen) + 0.5 end
  local weighted = out * weights[1]
  if weights.magnitude == nil then -- (the first call's: the unperturbed inputs)
    weights.magnitude = require("autograd").no_grad(function() return weighted:abs():sum():item() end)
  end
  return weighted:sum()
end

function M.gradcheck(f, inputs, opts)
  check_call("gradcheck", f, inputs)
  local o = with_defaults("gradcheck", options.check("gradcheck", 3, opts, spec))
  local gen = T.generator(o.seed)
  local weights = { gen = gen }
  for i, x in ipairs(inputs) do
    if not T.is_tensor(x) or not x:requires_grad() or not x:is_leaf() then
      error(("gradcheck: input %d must be a leaf tensor with requires_grad(true)"):format(i), 2)
    end
  end
  local out = scalar_of(f, inputs, weights)
  -- the absolute tolerance is for float32 rounding, which scales with the size of the weighted outputs:
  -- below 1 it shrinks with them (a gradient of 1e-3 that is twice the true one fails, as it should)
  local scale = math.min(1, weights.magnitude or 1)
  -- an output that does not require grad (f constant, or its graph was dropped) has zero gradients:
  -- the differences below then decide
  local analytic = out:requires_grad() and ag.grad(out, inputs, { allow_unused = true }) or {}
  -- not under no_grad: for gradgradcheck, f itself takes gradients
  local numeric_f = function() return scalar_of(f, inputs, weights):item() end
  for i, x in ipairs(inputs) do
    for _, k in ipairs(probe_indices(x:numel(), o.max_elements, gen)) do
      local v = x:get(k)
      local h = o.eps * math.max(1, math.abs(v))
      x:set(v + h, k)
      local fp = numeric_f()
      x:set(v - h, k)
      local fm = numeric_f()
      x:set(v, k)
      local numeric = (fp - fm) / (2 * h)
      local a = analytic[i] and analytic[i]:get(k) or 0
      -- (written so that a NaN on either side fails: every comparison with NaN is false)
      local tol = o.atol * scale + o.rtol * math.max(math.abs(a), math.abs(numeric))
      if not (math.abs(a - numeric) <= tol and tol < math.huge) then
        error(("gradcheck: input %d (shape {%s}) element %d: analytic %.6g vs numeric %.6g"):format(
          i, table.concat(x:shape(), ", "), k, a, numeric), 2)
      end
    end
  end
  return true
end

function M.gradgradcheck(f, inputs, opts)
  check_call("gradgradcheck", f, inputs)
  local o = with_defaults("gradgradcheck", options.check("gradgradcheck", 3, opts, spec))
  local gen = T.generator(o.seed + 1)
  local weights = { gen = gen }
  local directions = {}
  for i, x in ipairs(inputs) do directions[i] = T.rand(x:shape(), gen) - 0.5 end
  -- h(x) = sum_i <grad_i(x), v_i>: differentiable because of create_graph. Every gradient counts,
  -- also one that does not require grad: for a linear f it is a constant (h's differences are 0, as
  -- its analytic gradient), for any other f a detached gradient fails the comparison.
  local function h(...)
    local xs = { ... }
    local out = scalar_of(f, xs, weights)
    if not out:requires_grad() then return T.zeros {} end -- f does not depend on any input
    local grads = ag.grad(out, xs, { create_graph = true, allow_unused = true })
    local total = T.zeros {}
    for i = 1, #xs do -- not ipairs: grads has holes (nil) for unused inputs
      local g = grads[i]
      if g then total = total + (g * directions[i]):sum() end
    end
    return total
  end
  return M.gradcheck(h, inputs, opts)
end

return M
