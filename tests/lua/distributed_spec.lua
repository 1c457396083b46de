-- tests/lua/distributed_spec.lua: lua/distributed.lua without MPI: how tasks are shared among ranks,
-- the packing of the running sum of gradients, and evaluation rows through a fake allgather (every
-- rank gives the same values). The runs on real ranks are tests/suites.d/mpi.sh.
local T = require "tensor"
local distributed = require "distributed"

-- a communicator of `size` ranks whose every rank gives what this one gives
local function fake_comm(size)
  local mpi = {allgather = function(x)
    local out = {}
    for r = 1, size do out[r] = type(x) == "string" and x or x:reshape{x:numel()} * 1 end
    return out
  end}
  return distributed._comm(mpi, 0, size)
end

describe("distributed", function()
  it("shares n tasks among ranks in contiguous blocks that cover them once", function()
    for _, n in ipairs{0, 1, 5, 7, 32, 600} do
      for size = 1, 9 do
        local next_task = 1
        for rank = 0, size - 1 do
          local first, last = distributed.share(n, rank, size)
          assert.equals(next_task, first)
          assert.is_true(last - first + 1 >= n // size and last - first + 1 <= n // size + 1)
          next_task = last + 1
        end
        assert.equals(n + 1, next_task)
      end
    end
  end)

  it("has no communicator in one process", function()
    assert.is_nil(distributed.communicator())
  end)

  it("packs a running sum of gradients and unpacks it, keeping values and missing gradients", function()
    local params = {T.zeros{2, 3}, T.zeros{4}, T.zeros{}}
    local g = T.tensor{{1, 2, 3}, {4, 5, 6}}
    local head, flat = distributed._pack_sum(params, {g, nil, T.tensor(7)}, 1.25, 1 / 3)
    assert.equals(7, flat:numel())
    local grads, loss, metric = distributed._unpack_sum(params, head, flat)
    assert.equals(1.25, loss)
    assert.equals(1 / 3, metric)
    assert.same(g:totable(), grads[1]:totable())
    assert.is_nil(grads[2])
    assert.same({}, grads[3]:shape())
    assert.equals(7, grads[3]:item())
    head, flat = distributed._pack_sum(params, {}, 0 / 0, 0)
    grads, loss = distributed._unpack_sum(params, head, flat)
    assert.same({}, grads)
    assert.is_true(loss ~= loss) -- NaN stays NaN
    assert.has_error(function() distributed._unpack_sum({params[1]}, head, flat) end,
      "distributed: a running sum of 3 tensors (0 values) does not fit 1 parameters")
  end)

  it("gathers evaluation rows in rank order", function()
    local comm = fake_comm(3)
    local rows = {{0.2, 0.4, 0.6}, {1 / 3, 0, 1}}
    local all = comm:gather_rows(rows)
    assert.equals(6, #all)
    for k = 0, 2 do
      assert.same(rows[1], all[2 * k + 1])
      assert.same(rows[2], all[2 * k + 2])
    end
    assert.same({}, comm:gather_rows({}))
  end)

  it("agrees on the first value given, and checks that ranks give the same", function()
    local comm = fake_comm(2)
    assert.is_nil(comm:agree(nil))
    assert.equals("SIGINT", comm:agree("SIGINT"))
    comm:check_same("thing", "abc")
    local differs = distributed._comm({allgather = function(s) return {s, s .. "x"} end}, 0, 2)
    assert.has_error(function() differs:check_same("config", "abc") end,
      "distributed: the config of rank 0 differs from rank 1's (every rank must run the same experiment "
      .. "with the same files)")
  end)
end)

describe("the mpi module's own messages", function()
  it("allreduce_sum refuses more elements than MPI's int counts, saying how many (a C %lld format once broke it)",
    function()
    local t = T.zeros { 1000000 }
    local list = {}
    for i = 1, 2200 do list[i] = t end -- 2.2e9 elements, one 4 MB tensor
    local ok, err = pcall(require("mpi").allreduce_sum, list)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'allreduce_sum' %(2200000000 elements: too many%)", err)
  end)
end)
