-- ANIL (Raghu et al. 2020) on 5-way 1-shot Omniglot: MAML's settings, only the head adapted.
-- The settings of omniglot5w1s.lua, with an inner loop that adapts only the last layer
-- (lua/algorithms/anil.lua).
local experiment = require "experiment"
local base = experiment.config "experiments/omniglot5w1s.lua"
return experiment.run(experiment.extend(base, {name = "anil_omniglot5w1s", algorithm = "anil"}))
