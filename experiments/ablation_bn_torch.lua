-- Ablation of omniglot5w1s.lua: PyTorch-style batch norm: a learned scale and shift, both adapted in the inner loop.
local experiment = require "experiment"
local base = experiment.config "experiments/omniglot5w1s.lua"
return experiment.run(experiment.extend(base, {
  name = "ablation_bn_torch",
  bn_scale = true,
  bn_adapt = true,
}))
