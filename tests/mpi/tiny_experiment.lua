-- tests/mpi/tiny_experiment.lua: a tiny second-order MAML run on synthetic 3-way tasks (8x8 images,
-- conv4 with 4 channels; no dataset), for tests/suites.d/mpi.sh. Run alone or under
-- `mpirun -np P`; rank 0 prints what must not depend on P: a checksum of the trained
-- meta-parameters, the test accuracies and the metrics records (without wall-clock fields).
--   mamlrun tests/mpi/tiny_experiment.lua out_dir=/tmp/x [key=value ...]
local T = require "tensor"
local experiment = require "experiment"
local json = require "json"
local distributed = require "distributed"

-- each class a random prototype, examples = prototype + noise
local source = {
  kind = "classification", loss = "cross_entropy", metric = "accuracy", image_size = 8, channels = 1,
  sample = function(_, _, n_tasks, gen, shape)
    local protos = {}
    for t = 1, n_tasks do
      protos[t] = {}
      for c = 1, shape.ways do protos[t][c] = T.randn({1, 8, 8}, gen) end
    end
    local function part(per)
      local xs, ys = {}, {}
      for t = 1, n_tasks do
        local imgs, labels = {}, {}
        for j = 1, shape.ways * per do
          local c = (j - 1) % shape.ways + 1
          imgs[j], labels[j] = protos[t][c] + T.randn({1, 8, 8}, gen) * 0.5, c
        end
        xs[t], ys[t] = T.stack(imgs, 1), T.tensor(labels)
      end
      return T.stack(xs, 1), T.stack(ys, 1)
    end
    local sx, sy = part(shape.shots)
    local qx, qy = part(shape.queries)
    return {support_x = sx, support_y = sy, query_x = qx, query_y = qy}
  end,
}

local result = experiment.run({
  name = "mpi_tiny", task = "custom", model = "conv4", channels = 4, ways = 3, shots = 1, queries = 2,
  queries_test = 2, meta_batch = 5, steps = 1, steps_test = 1, steps_test_max = 2, inner_lr = 0.4,
  iterations = 4, eval_every = 2, val_tasks = 5, test_tasks = 7, checkpoint_every = 2, log_every = 1,
  progress = "none",
}, {source = source})

local comm = distributed.communicator()
if (comm == nil or comm.rank == 0) and result.interrupted then
  print(string.format("interrupted at iteration %d", result.iteration))
elseif comm == nil or comm.rank == 0 then
  if result.net then print("params " .. distributed.checksum(result.net:parameters())) end -- (not eval_only)
  if result.net then -- every meta-parameter (an algorithm's own too), as checkpointed
    print("meta " .. distributed.checksum(experiment.load_tree(result.dir .. "/checkpoint.bin").params))
  end
  local means = {}
  for i, m in ipairs(result.test.mean) do means[i] = string.format("%.17g", m) end
  print("test " .. table.concat(means, " "))
  for line in io.lines(result.dir .. "/metrics.jsonl") do
    local r = json.decode(line)
    r.time, r.it_per_s, r.seconds = nil, nil, nil
    r.date, r.machine = nil, nil -- (a start record's clock, threads and ranks)
    print(json.encode(r))
  end
end
