-- Ablation of omniglot5w1s.lua: 15 query images per class in meta-training (the seed's choice) instead of 1 (the paper's code).
local experiment = require "experiment"
local base = experiment.config "experiments/omniglot5w1s.lua"
return experiment.run(experiment.extend(base, {
  name = "ablation_queries15",
  queries = 15,
}))
