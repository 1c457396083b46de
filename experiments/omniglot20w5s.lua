-- MAML, Omniglot 20-way 5-shot (Finn et al. 2017, Table 1: 98.9 +- 0.2 %).
-- The paper's 20-way settings (omniglot20w1s.lua) with 5 shots, and as many queries per class.
local experiment = require "experiment"
local base = experiment.config "experiments/omniglot20w1s.lua"
return experiment.run(experiment.extend(base, {
  name             = "omniglot20w5s",
  shots            = 5,           -- K
  queries          = 5,           -- query images per class in training (the paper's code: = K)
  queries_test     = 5,           -- query images per class of a test task (the paper's code: = K)
}))
