-- Ablation of omniglot5w1s.lua: 5 inner steps in meta-training instead of 1 (and 5 at test).
local experiment = require "experiment"
local base = experiment.config "experiments/omniglot5w1s.lua"
return experiment.run(experiment.extend(base, {
  name = "ablation_inner_steps",
  steps = 5,
  steps_test = 5,
}))
