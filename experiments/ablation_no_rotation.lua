-- Ablation of omniglot5w1s.lua: no rotation augmentation.
local experiment = require "experiment"
local base = experiment.config "experiments/omniglot5w1s.lua"
return experiment.run(experiment.extend(base, {
  name = "ablation_no_rotation",
  rotation = "none",
}))
