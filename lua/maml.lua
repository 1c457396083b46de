-- maml: MAML (Finn et al. 2017) as a library call, for scripts and tests that build a learner by hand.
--
--   local maml = require "maml"
--   local learner = maml.new{net = net, inner_lr = 0.4, steps = 1, loss = "cross_entropy",
--                            inner_loss_scale = 5, first_order = false, bn_mode = "batch"}
--   local stats, grads = learner:meta_gradient(batch)     -- batch: support_x (B, ...), ...
--   opt:step(learner.meta_params, grads)                   -- e.g. optim.adam
--   local per_step = learner:finetune(learner.meta_params, sx, sy, qx, qy, 3)   -- metric after 0..3 steps
--
-- maml.new{net=, ...} is algorithm.build("maml", net, options): the algorithm itself is
-- lua/algorithms/maml.lua, and its variants (meta_sgd, anil, reptile, ...) are the other files there
-- (lua/algorithm.lua says how to write one). A learner runs its tasks on the `parallel` module's
-- threads, each of which rebuilds it by name; a learner edited after maml.new (its `adapted` list,
-- a replaced method) is refused there with an error rather than run as plain MAML.
local algorithm = require "algorithm"

local M = {}

M.losses, M.metrics, M.summarize = algorithm.losses, algorithm.metrics, algorithm.summarize

--- maml.new{net=, inner_lr=, steps=1, loss="cross_entropy"|"mse"|fn, metric="accuracy"|"mse"|fn,
---          inner_loss_scale=1, first_order=false, bn_mode="batch"|"running", ways=}
function M.new(opts)
  opts = require("options").check("maml.new", 1, opts, {net = "table", inner_lr = "number", steps = "integer",
    loss = "string|function", metric = "string|function", inner_loss_scale = "number|string", first_order = "boolean",
    bn_mode = "string", ways = "integer", inner_optimizer = "string", inner_momentum = "number"})
  local options = {}
  for k, v in pairs(opts) do
    if k ~= "net" then options[k] = v end
  end
  local net = opts.net or error("maml.new: 'net' is required", 2)
  if options.inner_lr == nil then error("maml.new: 'inner_lr' is required", 2) end
  return algorithm.build("maml", net, options)
end

return M
