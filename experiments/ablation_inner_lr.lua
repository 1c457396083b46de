-- Ablation of omniglot5w1s.lua: the published inner lr 0.4 on a plain mean cross-entropy (a reimplementation's drift).
-- The paper's code steps on N x the mean, so its 0.4 is 2.0 on the mean.
local experiment = require "experiment"
local base = experiment.config "experiments/omniglot5w1s.lua"
return experiment.run(experiment.extend(base, {
  name = "ablation_inner_lr",
  inner_loss_scale = 1,
}))
