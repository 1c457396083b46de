-- optim: optimizers that update a list of parameter tensors in place from a list of gradients.
--
--   local optim = require "optim"
--   local opt = optim.adam{lr = 1e-3}
--   opt:step(params, grads)          -- params[i] updated in place from grads[i] (nil grad: skipped)
--   local s = opt:state()            -- plain table of numbers and tensors (copies), for checkpoints
--   opt:load_state(s)                -- restore it (checks kind and shapes)
--
-- The per-parameter state is indexed by position in the params list, so always pass the same list
-- in the same order. Updates use the in-place tensor methods and never record autograd history.
local T = require "tensor"
local options = require "options"

local M = {}

local function shape_str(t) return "(" .. table.concat(t:shape(), ", ") .. ")" end

local function check_lists(name, params, grads)
  if type(params) ~= "table" or type(grads) ~= "table" then
    error(name .. ":step: expected (params, grads) lists", 3)
  end
  if #grads > #params then
    error(string.format("%s:step: %d gradients for %d parameters", name, #grads, #params), 3)
  end
  for i, p in ipairs(params) do
    local g = grads[i]
    if not T.is_tensor(p) then error(string.format("%s:step: parameter %d is a %s, not a tensor", name, i, type(p)), 3) end
    if g ~= nil and not T.is_tensor(g) then
      error(string.format("%s:step: gradient %d is a %s, not a tensor (nil: no gradient)", name, i, type(g)), 3)
    end
    if g ~= nil and table.concat(g:shape(), "x") ~= table.concat(p:shape(), "x") then
      error(string.format("%s:step: gradient %d has shape (%s), its parameter (%s)", name, i,
        table.concat(g:shape(), "x"), table.concat(p:shape(), "x")), 3)
    end
  end
end

local function clone_list(list)
  local out = {}
  for i, t in pairs(list) do out[i] = t:clone() end
  return out
end

-- restore a list of tensors saved by clone_list, checking shapes against the parameters' when known
local function load_list(name, field, saved)
  local out = {}
  for i, t in pairs(saved or {}) do
    if not T.is_tensor(t) then
      error(string.format("%s:load_state: %s[%s] is a %s, expected a tensor", name, field, tostring(i),
        type(t)), 3)
    end
    out[i] = t:clone()
  end
  return out
end

-- ------------------------------------------------------------------ SGD

--- optim.sgd{lr=, momentum=0, weight_decay=0}: p -= lr * v, with v = momentum * v + (g + wd * p)
--- (v = g + wd * p without momentum), PyTorch's convention.
function M.sgd(opts)
  opts = options.check("optim.sgd", 1, opts, {lr = "number", momentum = "number", weight_decay = "number"})
  local self = {
    kind = "sgd",
    lr = opts.lr or error("optim.sgd: 'lr' is required", 2),
    momentum = opts.momentum or 0,
    weight_decay = opts.weight_decay or 0,
    velocity = {},
    steps = 0,
  }
  function self:step(params, grads)
    check_lists("sgd", params, grads)
    for i, p in ipairs(params) do
      local g = grads[i]
      if g ~= nil then
        if self.weight_decay ~= 0 then g = g + p * self.weight_decay end
        if self.momentum ~= 0 then
          local v = self.velocity[i]
          if v == nil then
            v = g:clone()
            self.velocity[i] = v
          else
            v:mul_(self.momentum)
            v:add_(g)
          end
          g = v
        end
        p:add_(g, -self.lr)
      end
    end
    self.steps = self.steps + 1
  end
  function self:state()
    return {kind = "sgd", lr = self.lr, momentum = self.momentum, weight_decay = self.weight_decay,
      steps = self.steps, velocity = clone_list(self.velocity)}
  end
  function self:load_state(s)
    if type(s) ~= "table" or s.kind ~= "sgd" then
      error("sgd:load_state: not an sgd state (kind " .. tostring(type(s) == "table" and s.kind) .. ")", 2)
    end
    self.lr, self.momentum, self.weight_decay = s.lr, s.momentum, s.weight_decay
    self.steps = s.steps or 0
    self.velocity = load_list("sgd", "velocity", s.velocity)
  end
  return self
end

-- ------------------------------------------------------------------ Adam

--- optim.adam{lr=1e-3, betas={0.9, 0.999}, eps=1e-8, weight_decay=0} (Kingma & Ba, with bias
--- correction): m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
--- p -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)   (PyTorch's formula).
function M.adam(opts)
  opts = options.check("optim.adam", 1, opts, {lr = "number", betas = "table", eps = "number",
    weight_decay = "number"})
  local betas = opts.betas or {0.9, 0.999}
  local self = {
    kind = "adam",
    lr = opts.lr or 1e-3,
    beta1 = betas[1], beta2 = betas[2],
    eps = opts.eps or 1e-8,
    weight_decay = opts.weight_decay or 0,
    t = 0, m = {}, v = {},
  }
  function self:step(params, grads)
    check_lists("adam", params, grads)
    self.t = self.t + 1
    local b1, b2 = self.beta1, self.beta2
    local bias1 = 1 - b1 ^ self.t
    local bias2 = 1 - b2 ^ self.t
    for i, p in ipairs(params) do
      local g = grads[i]
      if g ~= nil then
        if self.weight_decay ~= 0 then g = g + p * self.weight_decay end
        local m, v = self.m[i], self.v[i]
        if m == nil then
          m, v = T.zeros(p:shape()), T.zeros(p:shape())
          self.m[i], self.v[i] = m, v
        end
        m:mul_(b1)
        m:add_(g, 1 - b1)
        v:mul_(b2)
        v:addcmul_(g, g, 1 - b2)
        local denom = (v / bias2):sqrt() + self.eps
        p:addcdiv_(m, denom, -self.lr / bias1)
      end
    end
  end
  function self:state()
    return {kind = "adam", lr = self.lr, beta1 = self.beta1, beta2 = self.beta2, eps = self.eps,
      weight_decay = self.weight_decay, t = self.t, m = clone_list(self.m), v = clone_list(self.v)}
  end
  function self:load_state(s)
    if type(s) ~= "table" or s.kind ~= "adam" then
      error("adam:load_state: not an adam state (kind " .. tostring(type(s) == "table" and s.kind) .. ")", 2)
    end
    self.lr, self.beta1, self.beta2, self.eps = s.lr, s.beta1, s.beta2, s.eps
    self.weight_decay = s.weight_decay or 0
    self.t = s.t
    self.m = load_list("adam", "m", s.m)
    self.v = load_list("adam", "v", s.v)
  end
  return self
end

--- Check that an optimizer state fits a list of parameters (same shapes), returning nil or a message.
function M.check_state(s, params, names)
  for _, field in ipairs{"m", "v", "velocity"} do
    for i, t in pairs(s[field] or {}) do
      local p = params[i]
      local name = names and names[i] or ("#" .. tostring(i))
      if p == nil then
        return string.format("optimizer %s state for parameter %s, which does not exist", field, name)
      end
      if shape_str(p) ~= shape_str(t) then
        return string.format("optimizer %s state of %s is %s, the parameter is %s", field, name,
          shape_str(t), shape_str(p))
      end
    end
  end
  return nil
end

return M
