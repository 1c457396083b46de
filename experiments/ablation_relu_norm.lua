-- Ablation of omniglot5w1s.lua: conv -> ReLU -> BN (the seed tutorial's and the peer's order) instead of conv -> BN -> ReLU.
local experiment = require "experiment"
local base = experiment.config "experiments/omniglot5w1s.lua"
return experiment.run(experiment.extend(base, {
  name = "ablation_relu_norm",
  order = "relu_norm",
}))
