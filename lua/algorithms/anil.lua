-- ANIL, "almost no inner loop" (Raghu et al. 2020): MAML whose inner loop adapts only the head (the
-- network's last layer with parameters); the body is learned by the outer loop alone.
--
--   for each task i:  phi_i' = phi - alpha * grad_phi L_support(head_phi(body_theta(x)))   (`steps` times)
--                     g_i = grad_(theta, phi) L_query(head_phi_i'(body_theta(x)))
--   (theta, phi) <- Adam((theta, phi), mean_i g_i)
--
-- The body's features do not change in the inner loop, so they are computed once per task (support
-- and query), and the inner steps run on the head alone: the same gradients as MAML with every body
-- parameter frozen in the inner loop, at a fraction of the cost.
local ag = require "autograd"
local algorithm = require "algorithm"
local maml = require "algorithms.maml"

local A = algorithm.define{
  name = "anil", base = maml,
  doc = "ANIL (Raghu et al. 2020): MAML adapting only the head in the inner loop",
  keys = maml.keys,
  -- the batch-norm shifts are in the body, which the inner loop leaves alone
  check_config = function(cfg)
    if cfg.bn_adapt then
      return "bn_adapt", "config key 'bn_adapt' has no effect with algorithm anil, whose inner loop adapts only "
        .. "the head (the batch-norm parameters are in the body): remove it, or use algorithm maml"
    end
  end,
}
local Learner = A.Learner

-- the children of a sequential before its head, the head, and the index of the head's first parameter
local function split_head(net)
  local children = net.children or {}
  local head_at
  for i = #children, 1, -1 do
    if children[i]:num_parameters() > 0 then
      head_at = i
      break
    end
  end
  if not net.counts or not head_at then
    error("anil: the network must be an nn.sequential whose last layer with parameters is the head", 0)
  end
  local first = 1
  for i = 1, head_at - 1 do first = first + net.counts[i] end
  return head_at, first
end

function A.new(net, o)
  local self = algorithm.instance(A, net, o)
  maml.setup(self, o)
  self.head_layer, self.head_first = split_head(net)
  for i in ipairs(self.adapted) do self.adapted[i] = i >= self.head_first end
  return self
end

-- the body's output on x with the network parameters `p` (the children before the head), and the
-- rest of the network after it (children after the head: none in conv4)
function Learner:features(x, p)
  local net, k = self.net, 1
  for i = 1, self.head_layer - 1 do
    x = net.children[i]:apply(x, p, k)
    k = k + net.counts[i]
  end
  return x
end

function Learner:head(features, p)
  local net, k = self.net, self.head_first
  for i = self.head_layer, #net.children do
    features = net.children[i]:apply(features, p, k)
    k = k + net.counts[i]
  end
  return features
end

function Learner:task_meta_gradient(meta, sx, sy, qx, qy, ctx)
  meta = self:complete(meta)
  self.net:train(true)
  self.net:update_buffers(self.comm == nil)
  local fast = self:net_params(meta)
  local support = self:features(sx, fast)
  local query = self:features(qx, fast)
  local idx = {}
  for i = self.head_first, #fast do idx[#idx + 1] = i end
  local create_graph = not self:is_first_order(ctx)
  local state = self:inner_state()
  for s = 1, self.steps do
    local list = {}
    for n, i in ipairs(idx) do list[n] = fast[i] end
    local loss = self.loss(self:head(support, fast), sy)
    if self.inner_loss_scale ~= 1 then loss = loss * self.inner_loss_scale end
    local grads = ag.grad(loss, list, {create_graph = create_graph, allow_unused = true})
    for n, i in ipairs(idx) do
      if grads[n] ~= nil then fast[i] = self:inner_step(i, fast[i], self:inner_direction(i, grads[n], s, state), meta, s) end
    end
  end
  local out = self:head(query, fast)
  local loss = self.loss(out, qy)
  local grads = ag.grad(loss, meta, {allow_unused = true})
  return loss:item(), ag.no_grad(self.metric, out:detach(), qy), grads
end

return A
