-- Ablation of omniglot5w1s.lua: batch norm with running statistics at meta-test (not transductive).
local experiment = require "experiment"
local base = experiment.config "experiments/omniglot5w1s.lua"
return experiment.run(experiment.extend(base, {
  name = "ablation_bn_running",
  bn_mode = "running",
}))
