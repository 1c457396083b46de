-- Meta-SGD (Li et al. 2017), Algorithm 1: MAML whose inner step size is itself meta-learned, one
-- step size per element of every adapted parameter (initialised to inner_lr):
--
--   theta_i' = theta - alpha (.) grad_theta L_support(f_theta)      ((.): elementwise)
--   (theta, alpha) <- Adam((theta, alpha), mean_i grad_(theta, alpha) L_query(f_theta_i'))
--
-- The step sizes are meta-parameters "<parameter>.step_size": the outer optimizer updates them,
-- checkpoints hold them, and they travel to the worker threads with the network's weights.
local T = require "tensor"
local algorithm = require "algorithm"
local maml = require "algorithms.maml"

local A = algorithm.define{
  name = "meta_sgd", base = maml,
  doc = "Meta-SGD (Li et al. 2017): MAML with a meta-learned step size per adapted weight",
  keys = maml.keys, -- inner_lr is the step sizes' initial value
}
local Learner = A.Learner

function A.new(net, o)
  local self = algorithm.instance(A, net, o)
  maml.setup(self, o)
  self.step_size_index = {}
  for i, p in ipairs(self.params) do
    if self.adapted[i] then
      local name = self.names[i] .. ".step_size"
      self:add_meta_parameter(name, T.full(p:shape(), self.inner_lr))
      self.step_size_index[i] = self.meta_index[name]
    end
  end
  return self
end

function Learner:inner_step(i, w, g, meta)
  return w - g * meta[self.step_size_index[i]]
end

return A
