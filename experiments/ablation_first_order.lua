-- Ablation of omniglot5w1s.lua: first-order MAML (FOMAML): the inner gradients are constants, no second-order term.
local experiment = require "experiment"
local base = experiment.config "experiments/omniglot5w1s.lua"
return experiment.run(experiment.extend(base, {
  name = "ablation_first_order",
  first_order = true,
}))
