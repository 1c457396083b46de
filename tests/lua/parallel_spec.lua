-- tests/lua/parallel_spec.lua: the thread pool (vm/parallel.c): results in job order, errors named,
-- and parallel.stats(), the observable the other specs use to show that a run took the threaded path.
local parallel = require "parallel"

describe("parallel.map", function()
  local before
  before_each(function() before = parallel.threads() end)
  after_each(function() parallel.set_threads(before) end)

  it("returns every job's results in job order", function()
    parallel.set_threads(2)
    local jobs = {}
    for i = 1, 6 do jobs[i] = {0, i} end
    local results = parallel.map("tests.lua.helpers", "busy_job", jobs)
    for i = 1, 6 do assert.same({2 * i}, results[i]) end
  end)

  it("workers_only: the worker threads run every job, the caller none; refused without workers", function()
    parallel.set_threads(2)
    parallel.reset_stats()
    local results = parallel.map("tests.lua.helpers", "busy_job", {{0, 1}, {0, 2}, {0, 3}}, {workers_only = true})
    assert.same({{2}, {4}, {6}}, results)
    assert.same({maps = 1, threaded_maps = 1, jobs = 3, worker_jobs = 3}, parallel.stats())
    assert.error_matches(function() parallel.map("tests.lua.helpers", "busy_job", {{0, 1}}, {worker_only = true}) end,
      "bad argument #4 to 'map' (unknown option 'worker_only'; valid options: workers_only)", 1, true)
    parallel.set_threads(1)
    assert.error_matches(function() parallel.map("tests.lua.helpers", "busy_job", {{0, 1}}, {workers_only = true}) end,
      "bad argument #4 to 'map' (option 'workers_only' needs worker threads, but the pool has none "
      .. "(parallel.threads() is 1))", 1, true)
  end)

  it("names the job and the error of a failing job", function()
    parallel.set_threads(2)
    -- (pcall, not error_matches: busted would strip the message up to the job's own "file:line: ")
    local ok, err = pcall(parallel.map, "tests.lua.helpers", "busy_job", {{0, 1}, {0, "x"}})
    assert.is_false(ok)
    assert.matches("parallel.map: job 2 (tests.lua.helpers.busy_job) failed: ", err, 1, true)
    assert.matches("attempt to mul a 'string' with a 'number'", err, 1, true)
    assert.error_matches(function() parallel.map("tests.lua.helpers", "no_such_job", {{0, 1}}) end,
      "parallel.map: job 1 (tests.lua.helpers.no_such_job) failed: the function named is not in the module", 1, true)
  end)
end)

describe("parallel.stats", function()
  local before
  before_each(function() before = parallel.threads() end)
  after_each(function() parallel.set_threads(before) end)

  it("counts maps, jobs and the jobs worker threads ran; reset_stats starts again from 0", function()
    parallel.set_threads(2)
    parallel.reset_stats()
    assert.same({maps = 0, threaded_maps = 0, jobs = 0, worker_jobs = 0}, parallel.stats())
    -- jobs of some 20-50 ms each: the caller cannot finish all eight before the worker wakes up
    local jobs = {}
    for i = 1, 8 do jobs[i] = {2000000, i} end
    parallel.map("tests.lua.helpers", "busy_job", jobs)
    local s = parallel.stats()
    assert.equals(1, s.maps)
    assert.equals(1, s.threaded_maps)
    assert.equals(8, s.jobs)
    assert.is_true(s.worker_jobs >= 1 and s.worker_jobs <= 8, "worker_jobs " .. s.worker_jobs)
  end)

  it("on one thread: maps and jobs count, nothing threaded (the observable can tell the paths apart)", function()
    parallel.set_threads(1)
    parallel.reset_stats()
    parallel.map("tests.lua.helpers", "busy_job", {{0, 1}, {0, 2}, {0, 3}})
    assert.same({maps = 1, threaded_maps = 0, jobs = 3, worker_jobs = 0}, parallel.stats())
  end)
end)
