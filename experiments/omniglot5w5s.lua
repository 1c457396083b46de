-- MAML, Omniglot 5-way 5-shot (Finn et al. 2017, Table 1: 99.9 +- 0.1 %).
-- The paper's 5-way settings (omniglot5w1s.lua) with 5 shots, and as many queries per class as the
-- paper's code takes.
local experiment = require "experiment"
local base = experiment.config "experiments/omniglot5w1s.lua"
return experiment.run(experiment.extend(base, {
  name             = "omniglot5w5s",
  shots            = 5,           -- K
  queries          = 5,           -- query images per class in training (the paper's code: = K)
  queries_test     = 5,           -- query images per class of a test task (the paper's code: = K)
}))
