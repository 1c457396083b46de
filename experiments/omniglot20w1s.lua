-- MAML, Omniglot 20-way 1-shot (Finn et al. 2017, Table 1: 95.8 +- 0.3 %).
-- The paper's 20-way settings: omniglot5w1s.lua with 20 classes, meta-batch 16, 5 inner steps at 0.1.
local experiment = require "experiment"
local base = experiment.config "experiments/omniglot5w1s.lua"
return experiment.run(experiment.extend(base, {
  name             = "omniglot20w1s",
  ways             = 20,          -- N
  meta_batch       = 16,
  steps            = 5,           -- inner steps in meta-training
  steps_test       = 5,           -- inner steps at meta-test
  inner_lr         = 0.1,         -- on N x mean cross-entropy (= 2.0 on a plain mean)
}))
