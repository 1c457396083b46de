-- Ablation of omniglot5w1s.lua: Kaiming-normal initialisation instead of the paper's Xavier conv / standard-normal linear.
local experiment = require "experiment"
local base = experiment.config "experiments/omniglot5w1s.lua"
return experiment.run(experiment.extend(base, {
  name = "ablation_init_kaiming",
  init = "kaiming",
}))
