-- sinusoid: the MAML paper's regression tasks as a task source (no dataset needed).
--
--   local sinusoid = require "sinusoid"
--   local source = sinusoid.new{amplitude = {0.1, 5}, phase = {0, math.pi}, x = {-5, 5}}
--   local batch = source:sample("train", 25, gen, {shots = 10, queries = 10})
--   -- batch.support_x (25, 10, 1), batch.support_y (25, 10, 1), batch.query_x, batch.query_y
--
-- A task is y = amplitude * sin(x - phase) with amplitude ~ U(amplitude), phase ~ U(phase), and its
-- inputs x ~ U(x) drawn independently for the support and the query points. All splits draw from the
-- same distribution (the tasks are infinitely many), so `split` only exists for the task-source
-- interface shared with Omniglot: source:sample(split, n_tasks, gen, {shots=, queries=}).
local T = require "tensor"
local options = require "options"

local M = {}

local Source = {}
Source.__index = Source

--- A sinusoid task source. Ranges are {low, high} pairs (defaults: the paper's).
function M.new(opts)
  opts = options.check("sinusoid.new", 1, opts, {amplitude = "table", phase = "table", x = "table"})
  local self = setmetatable({
    kind = "regression",
    loss = "mse",          -- the loss the learner uses (T.mse_loss, mean over points)
    metric = "mse",        -- what evaluation reports (lower is better)
    amplitude = opts.amplitude or {0.1, 5.0},
    phase = opts.phase or {0, math.pi},
    x = opts.x or {-5.0, 5.0},
  }, Source)
  return self
end

local function uniform(gen, range)
  return range[1] + (range[2] - range[1]) * gen:uniform()
end

--- One task's parameters (amplitude, phase) drawn from gen.
function Source:task_parameters(gen)
  return uniform(gen, self.amplitude), uniform(gen, self.phase)
end

--- n_tasks tasks with `shots` support and `queries` query points each.
function Source:sample(split, n_tasks, gen, shape) -- luacheck: ignore split
  local shots, queries = shape.shots, shape.queries
  local sx, sy, qx, qy = {}, {}, {}, {}
  for _ = 1, n_tasks do
    local amplitude, phase = self:task_parameters(gen)
    for _, part in ipairs{{sx, sy, shots}, {qx, qy, queries}} do
      local xs, ys, n = part[1], part[2], part[3]
      for _ = 1, n do
        local x = uniform(gen, self.x)
        xs[#xs + 1] = x
        ys[#ys + 1] = amplitude * math.sin(x - phase)
      end
    end
  end
  local function as(list, n) return T.tensor(list):reshape{n_tasks, n, 1} end
  return {support_x = as(sx, shots), support_y = as(sy, shots),
          query_x = as(qx, queries), query_y = as(qy, queries)}
end

return M
