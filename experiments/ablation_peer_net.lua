-- Ablation of omniglot5w1s.lua: the PyTorch peer's network (dragen1860's: conv stride 2 pad 0 -> ReLU -> BN with scale, all adapted).
local experiment = require "experiment"
local base = experiment.config "experiments/omniglot5w1s.lua"
return experiment.run(experiment.extend(base, {
  name = "ablation_peer_net",
  model = "peer_net",
}))
