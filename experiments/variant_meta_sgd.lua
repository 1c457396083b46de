-- Meta-SGD (Li et al. 2017) on 5-way 1-shot Omniglot: a learned inner step size per weight.
-- MAML with a meta-learned inner step size per adapted weight (initialised to inner_lr), updated by Adam with the network's weights, saved in the
-- checkpoints and sent to every worker thread (lua/algorithms/meta_sgd.lua).
local experiment = require "experiment"
local base = experiment.config "experiments/omniglot5w1s.lua"
return experiment.run(experiment.extend(base, {name = "variant_meta_sgd", algorithm = "meta_sgd"}))
