-- A variant written in Lua only: Meta-SGD (Li et al. 2017) on 5-way 1-shot Omniglot. The inner
-- step size is a meta-learned tensor per adapted parameter (initialised to inner_lr), updated by
-- Adam together with the network's weights and saved in the checkpoints.
local T = require "tensor"
local experiment = require "experiment"

local function meta_sgd_learner(cfg, net, source)
  local learner = experiment.build_learner(cfg, net, source)
  local step_sizes = {}
  for i, p in ipairs(learner.params) do
    if learner.adapted[i] then
      step_sizes[i] = learner:add_meta_parameter(learner.names[i] .. ".step_size",
        T.full(p:shape(), cfg.inner_lr))
    end
  end
  function learner:inner_step(i, w, g) return w - g * step_sizes[i] end -- luacheck: ignore self
  return learner
end

local base = experiment.config "experiments/omniglot5w1s.lua"
return experiment.run(experiment.extend(base, {name = "variant_meta_sgd"}), {build_learner = meta_sgd_learner})
