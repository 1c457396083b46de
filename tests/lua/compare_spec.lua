-- tests/lua/compare_spec.lua: `mamlrun --compare` (lua/compare.lua) on tiny run folders made by the
-- experiment runner (a synthetic task source, as in experiment_spec.lua) and on hand-written ones:
-- the table (the settings that differ and nothing else, the test numbers from summary.json, "not
-- tested", training time over resumed sessions, Markdown), the plot (one curve per run), and the
-- errors (not a run folder, corrupt metrics/summary/config, usage), through the module and through
-- the binary.
local T = require "tensor"
local experiment = require "experiment"
local compare = require "compare"
local json = require "json"

local made = {}
local function tmpdir()
  local dir = require("tests.lua.helpers").tmpdir("compare-spec")
  made[#made + 1] = dir
  return dir
end
teardown(function()
  for _, dir in ipairs(made) do os.execute("rm -rf '" .. dir .. "'") end
end)

local read = require("tests.lua.helpers").read
local write = require("tests.lua.helpers").write

-- N-way tasks on 4x4 images: a random prototype per class plus noise
local function synthetic_source()
  return {
    kind = "classification", loss = "cross_entropy", metric = "accuracy", image_size = 4, channels = 1,
    sample = function(_, _, n_tasks, gen, shape)
      local function part(per, protos)
        local xs, ys = {}, {}
        for t = 1, n_tasks do
          local imgs, labels = {}, {}
          for j = 1, shape.ways * per do
            local c = (j - 1) % shape.ways + 1
            imgs[j], labels[j] = protos[t][c] + T.randn({1, 4, 4}, gen) * 0.5, c
          end
          xs[t], ys[t] = T.stack(imgs, 1), T.tensor(labels)
        end
        return T.stack(xs, 1), T.stack(ys, 1)
      end
      local protos = {}
      for t = 1, n_tasks do
        protos[t] = {}
        for c = 1, shape.ways do protos[t][c] = T.randn({1, 4, 4}, gen) end
      end
      local sx, sy = part(shape.shots, protos)
      local qx, qy = part(shape.queries, protos)
      return {support_x = sx, support_y = sy, query_x = qx, query_y = qy}
    end,
  }
end

local tiny = {
  name = "tiny", task = "custom", model = "conv4", channels = 2, ways = 2, shots = 1, queries = 1,
  queries_test = 1, meta_batch = 2, steps = 1, steps_test = 1, steps_test_max = 2, inner_lr = 0.4,
  iterations = 4, eval_every = 2, val_tasks = 2, test_tasks = 3, checkpoint_every = 0, log_every = 1,
  progress = "none", threads = 1,
}

local function run_tiny(out_dir, overrides)
  local o = {out_dir = out_dir}
  for k, v in pairs(overrides or {}) do o[k] = v end
  return experiment.run(tiny, {overrides = o, source = synthetic_source()}).dir
end

local function lines_of(s)
  local out = {}
  for line in s:gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

local function cells(line) -- the cells of a plain table line (two or more spaces between them)
  local out = {}
  for c in (line .. "  "):gmatch("(.-)%s%s+") do out[#out + 1] = c end
  return out
end

local mamlrun = os.getenv("MAMLRUN") or "./mamlrun"
-- the binary on args; returns exit status, stdout, stderr
local function cli(args)
  local dir = tmpdir()
  local cmd = string.format("%s --compare %s > %s/out 2> %s/err", mamlrun, args, dir, dir)
  local _, _, status = os.execute(cmd)
  return status, read(dir .. "/out"), read(dir .. "/err")
end

describe("mamlrun --compare", function()
  local root, base, fo, lr, stopped
  setup(function()
    root = tmpdir()
    base = run_tiny(root .. "/a", {name = "base"})
    fo = run_tiny(root .. "/b", {name = "first_order", first_order = true})
    lr = run_tiny(root .. "/c", {name = "lr", inner_lr = 0.2, iterations = 6})
    stopped = run_tiny(root .. "/d", {name = "stopped", inner_lr = 0.2})
    os.remove(stopped .. "/summary.json") -- as a run that has not finished yet
  end)

  it("tables the settings that differ and the final test numbers", function()
    local runs = {compare.load(base), compare.load(fo), compare.load(lr)}
    assert.same({"first_order", "inner_lr", "iterations"}, compare.differing(runs))
    local text = compare.table(runs)
    local lines = lines_of(text)
    assert.equals(5, #lines)
    assert.same({"run", "first_order", "inner_lr", "iterations", "reached", "train time", "test (steps_test)",
      "test (last step)"}, cells(lines[1]))
    assert.matches("^%-+  %-+", lines[2])
    for i, dir in ipairs{base, fo, lr} do
      local row = cells(lines[2 + i])
      assert.equals(dir:match("[^/]+$"), row[1])
      local s = json.decode(read(dir .. "/summary.json"))
      local expect = string.format("%.2f%% ± %.2f%% (1 step)", 100 * s.test.mean[2], 100 * s.test.ci95[2])
      assert.equals(expect, row[7])
      assert.equals(s.test_at_steps_test.mean, s.test.mean[2]) -- (steps_test = 1: the headline number)
      assert.equals(string.format("%.2f%% ± %.2f%% (2 steps)", 100 * s.test.mean[3], 100 * s.test.ci95[3]), row[8])
      assert.equals(tostring(s.iteration), row[5])
      assert.matches("^[%d.]+ s$", row[6]) -- (seconds: tiny runs)
    end
    assert.same({"false", "0.4", "4"}, {cells(lines[3])[2], cells(lines[3])[3], cells(lines[3])[4]})
    assert.same({"true", "0.4", "4"}, {cells(lines[4])[2], cells(lines[4])[3], cells(lines[4])[4]})
    assert.same({"false", "0.2", "6"}, {cells(lines[5])[2], cells(lines[5])[3], cells(lines[5])[4]})
    -- name, out_dir and the like differ, but are not settings that change results
    assert.is_nil(text:find("out_dir", 1, true))
  end)

  it("says 'not tested' for a run without a summary, and Markdown on request", function()
    local runs = {compare.load(lr), compare.load(stopped)}
    assert.same({"iterations"}, compare.differing(runs))
    local lines = lines_of(compare.table(runs, {markdown = true}))
    assert.equals("| run | iterations | reached | train time | test (steps_test) | test (last step) |", lines[1])
    assert.equals("| --- | --- | --- | --- | --- | --- |", lines[2])
    assert.matches("^| " .. stopped:match("[^/]+$"):gsub("%-", "%%-") .. " | 4 | 4 | [%d.]+ s | not tested | not tested |$",
      lines[4])
    assert.is_nil(lines[3]:find("not tested", 1, true))
  end)

  it("writes one SVG with every run's validation curve", function()
    local dir = tmpdir()
    local runs = {compare.load(base), compare.load(fo), compare.load(lr)}
    compare.plot(runs, dir .. "/cmp.svg")
    local svg = read(dir .. "/cmp.svg")
    assert.matches("^<svg ", svg)
    assert.matches("</svg>\n$", svg)
    -- two panels (against iterations and against hours), a curve and a legend entry per run in each
    assert.equals(6, select(2, svg:gsub("<polyline", "")))
    for _, d in ipairs{base, fo, lr} do
      assert.equals(2, select(2, svg:gsub(d:match("[^/]+$"):gsub("%-", "%%-"), "")))
    end
    assert.truthy(svg:find("validation accuracy (%) after steps_test inner steps", 1, true))
    -- the curve of a run: its val records, in percent
    local spec = compare.plot_spec(runs)
    local vals = {}
    for line in read(lr .. "/metrics.jsonl"):gmatch("[^\n]+") do
      local r = json.decode(line)
      if r.type == "val" then vals[#vals + 1] = {r.iter, 100 * r.acc_steps_test} end
    end
    assert.equals(3, #vals)
    local series = spec.panels[1].series[3]
    for i, v in ipairs(vals) do
      assert.equals(v[1], series.x[i])
      assert.equals(v[2], series.y[i])
    end
  end)

  it("sums the training time over resumed sessions; reads an eval_only folder's config.lua", function()
    local dir = tmpdir() .. "/resumed-1"
    os.execute("mkdir -p '" .. dir .. "'")
    write(dir .. "/config.json", json.encode{name = "r", steps_test = 1, steps_test_max = 2, inner_lr = 0.4,
      hidden = {40, 40}, extra = {}} .. "\n")
    local recs = {
      {type = "train", iter = 10, loss = 1, acc = 0.5, time = 1000},
      {type = "train", iter = 20, loss = 1, acc = 0.5, time = 1800},
      {type = "val", iter = 20, acc = {0.2, 0.6}, acc_ci95 = {0.1, 0.1}, acc_steps_test = 0.6, tasks = 2},
      {type = "train", iter = 30, loss = 1, acc = 0.5, time = 900}, -- resumed at 20: the clock restarts
      {type = "val", iter = 30, acc = {0.2, 0.7}, acc_ci95 = {0.1, 0.1}, acc_steps_test = 0.7, tasks = 2},
    }
    local text = {}
    for i, r in ipairs(recs) do text[i] = json.encode(r) end
    write(dir .. "/metrics.jsonl", table.concat(text, "\n") .. "\n")
    local run = compare.load(dir)
    assert.equals(30, run.reached)
    assert.equals(2700, run.train_seconds)
    assert.same({20, 30}, run.val.iter)
    assert.same({1800, 2700}, run.val.seconds)
    local spec = compare.plot_spec{run}
    assert.equals("minutes of training", spec.panels[2].xlabel)
    assert.same({30, 45}, spec.panels[2].series[1].x)
    assert.same({60, 70}, spec.panels[2].series[1].y)
    assert.is_nil(run.test)
    assert.equals("40,40", run.settings.hidden)
    assert.is_nil(run.settings.extra)

    local ev = tmpdir() .. "/r-eval-1"
    os.execute("mkdir -p '" .. ev .. "'")
    write(ev .. "/config.lua", "return {name = 'r-eval', steps_test = 1, steps_test_max = 2, inner_lr = 0.5, "
      .. "hidden = {40, 40}}\n")
    write(ev .. "/metrics.jsonl", json.encode{type = "test", iter = 30, acc = {0.2, 0.9, 0.95}, tasks = 3} .. "\n")
    write(ev .. "/summary.json", json.encode{metric = "acc", steps_test = 1, iteration = 30,
      test = {tasks = 3, mean = {0.2, 0.9, 0.95}, ci95 = {0.01, 0.02, 0.03}}} .. "\n")
    local lines = lines_of(compare.table{run, compare.load(ev)})
    assert.same({"run", "inner_lr", "reached", "train time", "test (steps_test)", "test (last step)"}, cells(lines[1]))
    assert.same({"resumed-1", "0.4", "30", "45.0 min", "not tested", "not tested"}, cells(lines[3]))
    assert.same({"r-eval-1", "0.5", "30", "-", "90.00% ± 2.00% (1 step)", "95.00% ± 3.00% (2 steps)"}, cells(lines[4]))
    assert.equals("(all settings are the same)", lines_of(compare.table{run, run})[5])
    -- a mean that was not finite is a JSON null, a hole in the list
    write(ev .. "/summary.json", '{"metric":"acc","steps_test":1,"iteration":30,"test":{"tasks":3,'
      .. '"mean":[0.2,0.9,null],"ci95":[0.01,0.02,null]}}\n')
    assert.equals("not finite (2 steps)", cells(lines_of(compare.table{compare.load(ev)})[3])[5])
  end)

  it("lists each run's sessions: where the first and every resume began, and on what", function()
    local dir = run_tiny(tmpdir(), {name = "sessions", iterations = 2})
    experiment.run(tiny, {overrides = {resume = dir, iterations = 4, threads = 2}, source = synthetic_source()})
    local run = compare.load(dir)
    assert.equals(2, #run.sessions)
    assert.same({0, false}, {run.sessions[1].iter, run.sessions[1].resumed})
    assert.same({2, true}, {run.sessions[2].iter, run.sessions[2].resumed})
    local lines = lines_of(compare.sessions{run})
    assert.equals(3, #lines)
    assert.equals(dir:match("[^/]+$") .. ": 2 sessions", lines[1])
    local conv = require("mamlrun").conv
    assert.matches("^    from iteration 0 %(%d%d%d%d%-%d%d%-%d%dT[%d:]+Z%): .*1 thread, .*convolutions: ", lines[2])
    assert.truthy(lines[2]:find(conv .. ", mamlrun " .. require("mamlrun").version, 1, true), lines[2])
    assert.matches("^    from iteration 2 %(.-%): .*2 threads, ", lines[3])
    assert.truthy(lines[3]:find("; changed on the command line: iterations 2 -> 4, threads 1 -> 2", 1, true), lines[3])
    -- a session like the one before says so; Markdown is a nested list
    local recs = {
      {type = "start", iter = 0, resumed = false, machine = {cpu = "CPU A", threads = 2, conv = "gemm"}},
      {type = "train", iter = 10, loss = 1, acc = 0.5, time = 10},
      {type = "start", iter = 10, resumed = true, machine = {cpu = "CPU A", threads = 2, conv = "gemm"},
       changed = {meta_lr = {0.001, 0.0005}}},
      {type = "start", iter = 20, resumed = true, machine = {cpu = "CPU B", threads = 1, ranks = 4, conv = "dnnl"},
       version = "9.9"},
    }
    local hand = tmpdir() .. "/hand-1"
    os.execute("mkdir -p '" .. hand .. "'")
    write(hand .. "/config.json", json.encode{name = "hand", steps_test = 1} .. "\n")
    local text = {}
    for i, r in ipairs(recs) do text[i] = json.encode(r) end
    write(hand .. "/metrics.jsonl", table.concat(text, "\n") .. "\n")
    assert.same({"- hand-1: 3 sessions",
      "  - from iteration 0: CPU A, 2 threads, convolutions: gemm",
      "  - from iteration 10: the same as before; changed on the command line: meta_lr 0.001 -> 0.0005",
      "  - from iteration 20: CPU B, 1 thread, 4 MPI processes, convolutions: dnnl, mamlrun 9.9"},
      lines_of(compare.sessions({compare.load(hand)}, {markdown = true})))
    -- a run written before start records existed has none, and says nothing
    local old = tmpdir() .. "/old-1"
    os.execute("mkdir -p '" .. old .. "'")
    write(old .. "/config.json", json.encode{name = "old"} .. "\n")
    write(old .. "/metrics.jsonl", json.encode(recs[2]) .. "\n")
    assert.equals("", compare.sessions{compare.load(old)})
    -- the command prints them after the table
    local status, out = cli("'" .. dir .. "'")
    assert.equals(0, status)
    assert.truthy(out:find("\n\n" .. dir:match("[^/]+$") .. ": 2 sessions\n", 1, true), out)
  end)

  it("names the file that is wrong", function()
    local dir = tmpdir()
    local function err_of(d)
      local ok, e = pcall(compare.load, d)
      assert.is_false(ok)
      return e
    end
    assert.equals(dir .. "/none: no such folder", err_of(dir .. "/none"))
    assert.equals(dir .. " is not a run folder: no config.json or config.lua", err_of(dir))
    write(dir .. "/config.json", "{\"name\": \"x\"}\n")
    assert.equals(dir .. " is not a run folder: no metrics.jsonl", err_of(dir))
    local good = read(base .. "/metrics.jsonl"):gsub('[^\n]*"type":"start"[^\n]*\n', "") -- (line 1: a train record)
    local first, rest = good:match("^([^\n]*\n)(.*)$")
    write(dir .. "/metrics.jsonl", first .. "{\"type\":\"train\",\"iter\":2,\"loss\":\n" .. rest)
    assert.matches("^" .. dir:gsub("%p", "%%%0") .. "/metrics.jsonl:2: json.decode: ", err_of(dir))
    write(dir .. "/metrics.jsonl", first .. "[1, 2]\n")
    assert.matches("^" .. dir:gsub("%p", "%%%0") .. "/metrics.jsonl:2: expected a JSON object", err_of(dir))
    write(dir .. "/metrics.jsonl", first .. "{\"type\":\"val\",\"acc_steps_test\":0.5}\n")
    assert.equals(dir .. "/metrics.jsonl:2: a val record without an integer \"iter\"", err_of(dir))
    -- an unfinished last line (a run still writing it) is skipped, with a note
    write(dir .. "/metrics.jsonl", first .. "{\"type\":\"train\",\"it")
    local notes = {}
    local run = compare.load(dir, {warn = function(m) notes[#notes + 1] = m end})
    assert.equals(1, run.reached)
    assert.same({dir .. "/metrics.jsonl:2: unfinished last line skipped (a run still writing?)"}, notes)
    write(dir .. "/metrics.jsonl", good)
    write(dir .. "/summary.json", "{\"test\": [1,")
    assert.matches("^" .. dir:gsub("%p", "%%%0") .. "/summary.json: json.decode: ", err_of(dir))
    os.remove(dir .. "/summary.json")
    write(dir .. "/config.json", "{\"name\": }")
    assert.matches("^" .. dir:gsub("%p", "%%%0") .. "/config.json: json.decode: ", err_of(dir))
    write(dir .. "/config.json", "[1, 2]")
    assert.equals(dir .. "/config.json: expected a config object, got an array", err_of(dir))
    write(dir .. "/config.json", "[]")
    assert.equals(dir .. "/config.json: expected a config object, got an empty one", err_of(dir))
    -- a summary that reads wrong is an error, not "not tested" or "not finite"
    write(dir .. "/config.json", "{\"name\": \"x\"}\n")
    for text, msg in pairs{["[1,2,3]"] = "expected a JSON object",
        ['{"test": {"mean": "abc"}}'] = "test.mean must be a list of numbers (the metric after 0, 1, ... steps)",
        ['{"test": {"mean": [0.5, "x"]}}'] = "test.mean must be a list of numbers (the metric after 0, 1, ... steps)",
        ['{"steps_test": 7, "test": {"mean": [0.5, 0.6]}}'] = "steps_test 7 is not one of the test's steps (0..1)"} do
      write(dir .. "/summary.json", text)
      assert.equals(dir .. "/summary.json: " .. msg, err_of(dir), text)
    end
    os.remove(dir .. "/summary.json")
  end)

  it("is one command: table, plot, exit statuses", function()
    local out_dir = tmpdir()
    local status, out, err = cli(string.format("'%s' '%s/' '%s' --plot '%s/p.svg'", base, fo, stopped, out_dir))
    assert.equals(0, status, err)
    local lines = lines_of(out)
    assert.equals(12, #lines) -- the table (5), each run's one session (3 x 2), the plot
    assert.same({"run", "first_order", "inner_lr", "reached", "train time", "test (steps_test)",
      "test (last step)"}, cells(lines[1]))
    assert.equals("not tested", cells(lines[5])[6])
    for i, d in ipairs{base, fo, stopped} do
      assert.equals(d:match("[^/]+$") .. ": 1 session", lines[4 + 2 * i])
      assert.matches("^    from iteration 0 ", lines[5 + 2 * i])
    end
    assert.equals("plot: " .. out_dir .. "/p.svg", lines[12])
    assert.matches("^<svg", read(out_dir .. "/p.svg"))
    status, out = cli(string.format("--markdown '%s' '%s'", base, fo))
    assert.equals(0, status)
    assert.matches("^| run | first_order |", out)

    status, out, err = cli(string.format("'%s' '%s'", base, out_dir))
    assert.equals(1, status)
    assert.equals("", out)
    assert.equals("mamlrun --compare: " .. out_dir .. " is not a run folder: no config.json or config.lua\n", err)
    local bad = tmpdir()
    os.execute(string.format("cp '%s/config.json' '%s/metrics.jsonl' '%s/'", base, base, bad))
    write(bad .. "/metrics.jsonl", "{\"type\":\"train\",\"iter\":1}\nnot json\n" .. read(base .. "/metrics.jsonl"))
    status, _, err = cli(string.format("'%s' '%s' --plot '%s/q.svg'", base, bad, out_dir))
    assert.equals(1, status)
    assert.matches("^mamlrun %-%-compare: " .. bad:gsub("%p", "%%%0") .. "/metrics.jsonl:2: json.decode: ", err)
    assert.is_nil(io.open(out_dir .. "/q.svg"), "no plot after an error")

    for _, args in ipairs{"", "--plot", "--bogus '" .. base .. "'", "'" .. base .. "' --plot ''", "a=b"} do
      status, out, err = cli(args)
      assert.equals(2, status, args)
      assert.equals("", out)
      assert.matches("usage: mamlrun %-%-compare RUN_FOLDER%.%.%. %[%-%-plot FILE%.svg%]", err)
    end
    -- an option given twice: refused, not the second taken without a word
    status, out, err = cli(string.format("'%s' --plot '%s/a.svg' --plot='%s/b.svg'", base, out_dir, out_dir))
    assert.equals(2, status)
    assert.equals("", out)
    assert.matches("^mamlrun %-%-compare: %-%-plot given twice %(.*/a%.svg, then .*/b%.svg%): give it once\n", err)
    -- the plot is an SVG: another name would not open as what it says
    status, out, err = cli(string.format("'%s' --plot '%s/curves.png'", base, out_dir))
    assert.equals(2, status)
    assert.equals("mamlrun --compare: --plot " .. out_dir .. "/curves.png: the plot is an SVG picture: give a file name "
      .. "ending in .svg\n", err)
    assert.is_nil(io.open(out_dir .. "/curves.png"))
    status, out, err = cli(string.format("'%s' --target 95%% --target=0.9", base))
    assert.equals(2, status)
    assert.matches("^mamlrun %-%-compare: %-%-target given twice %(95%%, then 0%.9%)", err)
    status, out = cli("--help")
    assert.equals(0, status)
    assert.matches("^usage: mamlrun %-%-compare", out)
  end)

  it("gives the time to a target: the first validation at it, in iterations and training time", function()
    local function fake(name, metric, vals)
      local dir = tmpdir() .. "/" .. name
      os.execute("mkdir -p '" .. dir .. "'")
      write(dir .. "/config.json", json.encode{name = name, steps_test = 1} .. "\n")
      local text = {}
      for i, v in ipairs(vals) do
        text[#text + 1] = json.encode{type = "train", iter = 10 * i, loss = 1, time = 60 * i}
        text[#text + 1] = json.encode{type = "val", iter = 10 * i, [metric .. "_steps_test"] = v, tasks = 2}
      end
      write(dir .. "/metrics.jsonl", table.concat(text, "\n") .. "\n")
      write(dir .. "/summary.json", json.encode{metric = metric, iteration = 10 * #vals} .. "\n")
      return dir
    end
    local up = compare.load(fake("up", "acc", {0.5, 0.9, 0.96, 0.97}))
    local at = compare.first_reaching(up, 0.958)
    assert.same({iter = 30, seconds = 180, value = 0.96}, at)
    local short = compare.load(fake("short", "acc", {0.5, 0.93, 0.92}))
    local none, best, best_iter = compare.first_reaching(short, 0.958)
    assert.is_nil(none)
    assert.same({0.93, 20}, {best, best_iter})
    -- a mean over tasks that is the target but for rounding (a 20w1s run's validation at 39,000) reaches it
    local rounded = compare.load(fake("rounded", "acc", {0.9, 0.9579999999999994}))
    assert.equals(20, (compare.first_reaching(rounded, 0.958) or {}).iter)
    assert.is_nil(compare.first_reaching(rounded, 0.9581))
    -- the best not reached is its first record: a later one that is the same but for rounding (5w1s: 0.998 at
    -- 34,000, 0.9980000000000001 at 38,000) is not a new best
    local flat = compare.load(fake("flat", "acc", {0.9, 0.998, 0.9980000000000001, 0.997}))
    assert.same({0.998, 20}, {select(2, compare.first_reaching(flat, 0.999))})
    local lossy = compare.load(fake("lossy", "mse", {0.5, 0.2, 0.19999999999999998, 0.1999}))
    assert.same({0.1999, 40}, {select(2, compare.first_reaching(lossy, 0.1))})
    -- a loss is reached from above
    local mse = compare.load(fake("mse", "mse", {2.0, 0.8, 0.5}))
    assert.equals(30, compare.first_reaching(mse, 0.6).iter)
    assert.equals(20, compare.first_reaching(mse, 0.8).iter)
    -- the command: a percentage or a number, the column between training time and test
    local status, out, err = cli(string.format("'%s' '%s' --target 95.8%%", up.dir, short.dir))
    assert.equals(0, status, err)
    local lines = lines_of(out)
    assert.same({"run", "reached", "train time", "validation first at 95.80%", "test (steps_test)",
      "test (last step)"}, cells(lines[1]))
    assert.equals("iteration 30, 3.0 min (96.00%)", cells(lines[3])[4])
    assert.equals("not reached (best 93.00% at 20)", cells(lines[4])[4])
    status, out = cli(string.format("'%s' --target=0.9 --markdown", up.dir))
    assert.equals(0, status)
    assert.truthy(out:find("| iteration 20, 2.0 min (90.00%) |", 1, true), out)
    for _, bad in ipairs{"--target", "--target x", "--target=", "--target nan"} do
      status, out, err = cli(string.format("'%s' %s", up.dir, bad))
      assert.equals(2, status, bad)
      assert.matches("%-%-target needs a number", err)
    end
  end)

  -- a run folder with one validation record of metric (0.5 at iteration 10)
  local function one_record_run(name, metric)
    local dir = tmpdir() .. "/" .. name
    os.execute("mkdir -p '" .. dir .. "'")
    write(dir .. "/config.json", json.encode{name = name, steps_test = 1} .. "\n")
    write(dir .. "/metrics.jsonl", json.encode{type = "val", iter = 10, [metric .. "_steps_test"] = 0.5, tasks = 2} .. "\n")
    write(dir .. "/summary.json", json.encode{metric = metric, iteration = 10} .. "\n")
    return dir
  end

  it("refuses a --target that cannot be read against the runs' metric (it was read as another's)", function()
    local acc, mse = one_record_run("acc_run", "acc"), one_record_run("mse_run", "mse")
    -- runs of two metrics: no one target (the accuracy's 95% was a loss of 0.95 for the other)
    local status, out, err = cli(string.format("'%s' '%s' --target 95%%", acc, mse))
    assert.equals(2, status, err)
    assert.equals("", out)
    assert.truthy(err:find("--target 95% is a value of one metric, but these runs have acc (acc_run) and mse "
      .. "(mse_run): compare runs of one metric with --target, or leave it out", 1, true), err)
    -- a percentage of a loss
    status, out, err = cli(string.format("'%s' --target 95%%", mse))
    assert.equals(2, status, err)
    assert.truthy(err:find("--target 95% is a percentage of an accuracy, but the runs' metric is mse: give the mse "
      .. "to reach as a number", 1, true), err)
    -- a number against a loss, and both metrics without --target, are fine
    status, out, err = cli(string.format("'%s' --target 0.6", mse))
    assert.equals(0, status, err)
    assert.truthy(out:find("iteration 10", 1, true), out)
    status, out, err = cli(string.format("'%s' '%s'", acc, mse))
    assert.equals(0, status, err)
  end)

  it("refuses a --target no run can reach or every run reaches at once (95.8 meant as 95.8%)", function()
    local acc, mse = one_record_run("acc_run", "acc"), one_record_run("mse_run", "mse")
    local function refused(dir, target, message)
      local status, out, err = cli(string.format("'%s' --target %s", dir, target))
      assert.equals(2, status, target .. ": " .. err)
      assert.equals("", out)
      assert.truthy(err:find("mamlrun --compare: " .. message, 1, true), err)
      assert.matches("usage: mamlrun %-%-compare", err)
    end
    -- an accuracy given as a percentage without its sign was "not reached" in every run
    refused(acc, "95.8", "--target 95.8 is above 1, but an accuracy is a fraction: give 0.958 or 95.8%")
    refused(acc, "200%", "--target 200% is no accuracy to reach: give one above 0 and at most 1 (or 100%)")
    refused(acc, "101", "--target 101 is no accuracy to reach")
    refused(acc, "0", "--target 0 is no accuracy to reach")
    refused(acc, "-5%", "--target -5% is no accuracy to reach")
    refused(mse, "-0.1", "--target -0.1 is below 0, where a loss (mse) never is: give the mse to reach, 0 or above")
    for _, ok_target in ipairs{"1", "100%", "0.5", "50%"} do
      local status, _, err = cli(string.format("'%s' --target %s", acc, ok_target))
      assert.equals(0, status, ok_target .. ": " .. err)
    end
    local status, _, err = cli(string.format("'%s' --target 2.5", mse))
    assert.equals(0, status, err)
  end)

  it("names the plot it cannot write, without a position in its code", function()
    local status, _, err = cli(string.format("'%s' --plot /nonexistent-folder/p.svg", base))
    assert.equals(1, status)
    assert.matches("^mamlrun %-%-compare: %-%-plot /nonexistent%-folder/p%.svg: write_atomic: cannot create "
      .. "'/nonexistent%-folder/p%.svg%.tmp%.%d+': No such file or directory %(the previous file is unchanged%)\n$", err)
  end)

  it("tells runs with the same folder name apart by their paths", function()
    local a, b = tmpdir() .. "/same", tmpdir() .. "/same"
    for _, d in ipairs{a, b} do
      os.execute("mkdir -p '" .. d .. "'")
      os.execute(string.format("cp '%s/config.json' '%s/metrics.jsonl' '%s/'", base, base, d))
    end
    local lines = lines_of(compare.table{compare.load(a), compare.load(b)})
    assert.equals(a, cells(lines[3])[1])
    assert.equals(b, cells(lines[4])[1])
  end)
end)
