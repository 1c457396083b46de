-- distributed: data-parallel MAML over MPI ranks (the C module `mpi`, vm/lua_mpi.c).
--
--   mpirun -np 4 mamlrun experiments/omniglot5w1s.lua
--
--   local comm = require("distributed").communicator()   -- nil in a single process
--   learner.comm = comm          -- maml: meta_gradient and evaluate split their tasks over the ranks
--
-- Every rank runs the same program on the same data: the same config, the same generator, hence the
-- same sampled meta-batch. Rank r computes the tasks comm:share(n) of each meta-batch (a contiguous
-- block, on its threads if threads > 1). Then the meta-gradient is summed exactly as one process sums
-- it, task after task: rank 0 adds its tasks' gradients and sends the running sum to rank 1, which
-- adds its own and passes it on (receive_sum, pass_sum), and the last rank's sum goes to every rank.
-- So the meta-gradient, hence the Adam update and the parameters, are the same bits for any number
-- of ranks (and of threads). Traffic per meta-iteration: one sum of the parameters' size per rank
-- and a broadcast of it (450 KB each for conv4), not the per-task gradients; the additions themselves
-- run one rank after another (a few milliseconds each).
-- Evaluation splits its tasks the same way (every rank samples all of them, to keep the generator's
-- order, and adapts its own share); gather_rows puts the per-task rows back in task order.
local T = require "tensor"

local M = {}

local Comm = {}
Comm.__index = Comm

--- The communicator of this process: nil when it runs alone (no launcher, or one process), else
--- {rank=, size=, mpi=} with the methods below. Errors when a launcher started several processes but
--- mamlrun was built without Open MPI (each would otherwise train alone).
function M.communicator()
  if not (package.loaded.mpi or package.preload.mpi) then return nil end
  local mpi = require "mpi"
  if mpi.size() <= 1 then return nil end
  return M._comm(mpi, mpi.rank(), mpi.size())
end

-- a communicator over an mpi-like module (tests give a fake one)
function M._comm(mpi, rank, size)
  return setmetatable({mpi = mpi, rank = rank, size = size}, Comm)
end

--- The tasks of this rank among n: first, last (1-based, inclusive; last < first when none).
function M.share(n, rank, size)
  return n * rank // size + 1, n * (rank + 1) // size
end

function Comm:share(n) return M.share(n, self.rank, self.size) end

-- a running sum (gradients parallel to params, nil where none yet; loss and metric totals) as a
-- string and a 1-d tensor
local function pack_sum(params, grads, loss, metric)
  local mask, flat = {}, {}
  for i = 1, #params do
    local g = grads[i]
    mask[i] = g ~= nil and "1" or "0"
    if g ~= nil then flat[#flat + 1] = g:reshape{g:numel()} end
  end
  return string.pack("<dds4", loss, metric, table.concat(mask)), #flat > 0 and T.cat(flat, 1) or T.zeros{0}
end

local function unpack_sum(params, head, flat)
  local loss, metric, mask = string.unpack("<dds4", head)
  local grads, off = {}, 0
  for i, p in ipairs(params) do
    if mask:sub(i, i) == "1" then
      grads[i] = flat:narrow(1, off + 1, p:numel()):reshape(p:shape())
      off = off + p:numel()
    end
  end
  if #mask ~= #params or off ~= flat:numel() then
    error(string.format("distributed: a running sum of %d tensors (%d values) does not fit %d parameters",
      #mask, flat:numel(), #params), 0)
  end
  return grads, loss, metric
end
M._pack_sum, M._unpack_sum = pack_sum, unpack_sum

--- The running sum of the tasks before this rank's, from the previous rank: grads (a list parallel to
--- params, nil where no task had a gradient yet), loss and metric totals. Rank 0 starts from {}, 0, 0.
function Comm:receive_sum(params)
  if self.rank == 0 then return {}, 0, 0 end
  local head = self.mpi.recv(self.rank - 1)
  return unpack_sum(params, head, self.mpi.recv(self.rank - 1))
end

--- Pass this rank's running sum (receive_sum's plus its own tasks, added in task order) on to the next
--- rank; returns the last rank's, the sum over every task, on every rank.
function Comm:pass_sum(params, grads, loss, metric)
  local head, flat = pack_sum(params, grads, loss, metric)
  local last = self.size - 1
  if self.rank < last then
    self.mpi.send(head, self.rank + 1)
    self.mpi.send(flat, self.rank + 1)
  end
  head, flat = self.mpi.bcast(head, last), self.mpi.bcast(flat, last)
  if self.rank == last then return grads, loss, metric end
  return unpack_sum(params, head, flat)
end

--- rows: lists of numbers (per task, in task order). Returns the rows of every rank in rank order.
function Comm:gather_rows(rows)
  local parts = {string.pack("<I4", #rows)}
  for _, row in ipairs(rows) do
    parts[#parts + 1] = string.pack("<I4" .. ("d"):rep(#row), #row, table.unpack(row))
  end
  local out = {}
  for _, s in ipairs(self.mpi.allgather(table.concat(parts))) do
    local count, pos = string.unpack("<I4", s)
    for _ = 1, count do
      local n
      n, pos = string.unpack("<I4", s, pos)
      local row = {string.unpack("<" .. ("d"):rep(n), s, pos)}
      pos = table.remove(row)
      out[#out + 1] = row
    end
  end
  return out
end

--- The first non-nil value (a string) given by the ranks in rank order, or nil: e.g. a signal seen by
--- any rank, so that all stop at the same iteration.
function Comm:agree(value)
  for _, v in ipairs(self.mpi.allgather(value or "")) do
    if v ~= "" then return v end
  end
  return nil
end

--- Error unless every rank gives the same string (what: its name in the message).
function Comm:check_same(what, s)
  for rank, v in ipairs(self.mpi.allgather(s)) do
    if v ~= s then
      error(string.format("distributed: the %s of rank %d differs from rank %d's (every rank must run the "
        .. "same experiment with the same files)", what, self.rank, rank - 1), 0)
    end
  end
end

--- A checksum of tensors (their bytes), for check_same.
function M.checksum(tensors)
  local parts = {}
  for i, t in ipairs(tensors) do parts[i] = string.format("%08x", T.crc32(T.serialize(t))) end
  return table.concat(parts, " ")
end

return M
