-- tests/lua/experiment_spec.lua: the experiment runner (lua/experiment.lua) on a tiny synthetic task
-- source (no dataset): config resolution and override errors, run folder contents, checkpoints
-- (round trip, corruption, shape mismatch), resume equal to an uninterrupted run, Ctrl-C, NaN handling,
-- eval_only; plus lua/json.lua and lua/checkpoint.lua.
local T = require "tensor"
local experiment = require "experiment"
local checkpoint = require "checkpoint"
local json = require "json"
local options = require "options"

-- experiment.run sets the global thread count (parallel.set_threads) and leaves it set: put it back
-- after each test, so that no test depends on which ran before it
local parallel = require "parallel"
local threads_before
before_each(function() threads_before = parallel.threads() end)
after_each(function() parallel.set_threads(threads_before) end)

local made = {}
local function tmpdir()
  local dir = require("tests.lua.helpers").tmpdir("experiment-spec")
  made[#made + 1] = dir
  return dir
end

teardown(function()
  for _, dir in ipairs(made) do os.execute("rm -rf '" .. dir .. "'") end
end)

local read = require("tests.lua.helpers").read

local write = require("tests.lua.helpers").write

local synthetic_source = require("tests.lua.helpers").synthetic_source

-- the message of a failed pcall that raised options.input_error (a problem of a file the user named:
-- the host prints it without a traceback)
local function input_error(ok, err)
  assert.is_false(ok)
  assert.is_true(options.is_input_error(err), tostring(err))
  return err.message
end

local tiny = {
  name = "tiny", task = "custom", model = "conv4", channels = 4, ways = 3, shots = 1, queries = 2,
  queries_test = 2, meta_batch = 2, steps = 1, steps_test = 1, steps_test_max = 2, inner_lr = 0.4,
  iterations = 6, eval_every = 3, val_tasks = 3, test_tasks = 4, checkpoint_every = 3, log_every = 1,
  progress = "none",
}

local function run_tiny(dir, overrides, opts)
  opts = opts or {}
  local o = {out_dir = dir}
  if overrides and overrides.resume then o = {} end -- (a resumed run goes on in its own folder)
  for k, v in pairs(overrides or {}) do o[k] = v end
  return experiment.run(tiny, {overrides = o, source = opts.source or synthetic_source(opts.poison),
    host = opts.host, after_iteration = opts.after_iteration, print = opts.print})
end

local function params_of(result)
  local out = {}
  for i, p in ipairs(result.net:parameters()) do out[i] = p:totable() end
  for i, b in ipairs(result.net:buffers()) do out[#out + 1] = b:totable(); local _ = i end
  return out
end

-- metrics records without the wall-clock fields
local function records(dir)
  local out = {}
  for line in read(dir .. "/metrics.jsonl"):gmatch("[^\n]+") do
    local r = json.decode(line)
    r.time, r.it_per_s, r.seconds = nil, nil, nil
    r.date, r.machine = nil, nil -- (a start record's clock and threads)
    out[#out + 1] = r
  end
  return out
end

-- records without the start records, and the start records alone
local function split_starts(recs)
  local rest, starts = {}, {}
  for _, r in ipairs(recs) do
    if r.type == "start" then starts[#starts + 1] = r else rest[#rest + 1] = r end
  end
  return rest, starts
end

describe("experiment config", function()
  it("takes overrides with their types and fills defaults", function()
    local cfg = experiment.resolve({name = "x", ways = 5}, {iterations = 2000, inner_lr = 0.1, seed = 3,
      first_order = true, bn_mode = "running", inner_loss_scale = 1})
    assert.equals(2000, cfg.iterations)
    assert.equals("integer", math.type(cfg.iterations))
    assert.equals(0.1, cfg.inner_lr)
    assert.is_true(cfg.first_order)
    assert.equals("running", cfg.bn_mode)
    assert.equals(1, cfg.inner_loss_scale)
    assert.equals(32, cfg.meta_batch) -- a default
    assert.equals("conv4", cfg.model)
  end)

  it("accepts 2e3 for an integer key and a comma list for hidden sizes", function()
    assert.equals(2000, experiment.resolve({}, {iterations = 2e3}).iterations)
    assert.same({20, 30}, experiment.resolve({task = "sinusoid"}, {hidden = "20,30"}).hidden)
  end)

  it("rejects an unknown key and lists the valid ones", function()
    local ok, err = pcall(experiment.resolve, {name = "x"}, {inner_lrr = 0.1})
    assert.is_false(ok)
    -- (a mistake on the command line is a usage error object: the host prints it without a traceback)
    assert.is_true(require("options").is_usage_error(err))
    err = tostring(err)
    assert.truthy(err:find("unknown config key 'inner_lrr' on the command line", 1, true))
    assert.truthy(err:find("valid keys: ", 1, true))
    assert.truthy(err:find("inner_lr,", 1, true))
    ok, err = pcall(experiment.resolve, {name = "x", itterations = 5}, {})
    assert.truthy(err:find("unknown config key 'itterations' in the experiment script", 1, true))
  end)

  it("rejects a value of the wrong type, naming the key", function()
    local cases = {
      {{iterations = "abc"}, "config key 'iterations' expects an integer, got string \"abc\""},
      {{iterations = 2.5}, "config key 'iterations' expects an integer, got number 2.5"},
      {{inner_lr = true}, "config key 'inner_lr' expects a number, got boolean true"},
      {{first_order = "yes"}, "config key 'first_order' expects a boolean (true or false), got string \"yes\""},
      {{bn_mode = "train"}, "config key 'bn_mode' expects one of batch, running, got string \"train\""},
      {{inner_loss_scale = "n"}, "config key 'inner_loss_scale' expects a number or \"ways\""},
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(experiment.resolve, {}, case[1])
      assert.is_false(ok)
      assert.is_true(require("options").is_usage_error(err))
      err = tostring(err)
      assert.truthy(err:find(case[2], 1, true), err)
    end
  end)

  it("keys of another model are an error on the command line", function()
    local ok, err = pcall(experiment.resolve, {task = "sinusoid"}, {bn_scale = true})
    assert.is_false(ok)
    err = tostring(err)
    assert.truthy(err:find("unknown config key 'bn_scale'", 1, true))
  end)

  it("a key set where it has no effect is an error naming it and what it needs", function()
    local usage = require("options").is_usage_error
    local function fails(script, overrides, want, want_usage, opts)
      local ok, err = pcall(experiment.resolve, script, overrides, opts)
      assert.is_false(ok, want)
      assert.equals(want_usage, usage(err), want)
      assert.truthy(tostring(err):find(want, 1, true), tostring(err))
    end
    -- inner_momentum with the plain SGD inner loop, on the command line and in a script
    fails({}, {inner_momentum = 0.5}, "config key 'inner_momentum' (set on the command line) has no effect with "
      .. "inner_optimizer=sgd: it is used only with inner_optimizer=momentum|adam; remove it, or set inner_optimizer",
      true)
    fails({inner_momentum = 0.5}, {}, "config key 'inner_momentum' (set in the experiment script) has no effect", false)
    assert.equals(0.5, experiment.resolve({}, {inner_momentum = 0.5, inner_optimizer = "adam"}).inner_momentum)
    assert.equals(0.5, experiment.resolve({inner_optimizer = "momentum", inner_momentum = 0.5}, {}).inner_momentum)
    -- MAML++'s annealings: a setting of one that is switched off
    fails({algorithm = "mamlpp"}, {cosine_lr = false, min_meta_lr = 1e-4},
      "config key 'min_meta_lr' (set on the command line) has no effect with cosine_lr=false", true)
    fails({algorithm = "mamlpp", multi_step_loss = false, msl_epochs = 5}, {},
      "config key 'msl_epochs' (set in the experiment script) has no effect with multi_step_loss=false", false)
    fails({algorithm = "mamlpp"}, {first_order = true, second_order_epoch = 3},
      "config key 'second_order_epoch' (set on the command line) has no effect with first_order=true", true)
    -- a script's key that the command line switches off is what the user asked for
    local cfg = experiment.resolve({algorithm = "mamlpp", min_meta_lr = 1e-5, msl_epochs = 20}, {cosine_lr = false,
      multi_step_loss = false})
    assert.is_false(cfg.cosine_lr)
    -- a run's own resolved config (resume=) holds every key; only the overrides count there
    local saved = experiment.resolve({}, {})
    assert.equals(0.9, saved.inner_momentum)
    assert.equals("sgd", saved.inner_optimizer)
    assert.equals(0.9, experiment.resolve(saved, {iterations = 5}, {resolved = true}).inner_momentum)
    fails(saved, {inner_momentum = 0.5}, "config key 'inner_momentum' (set on the command line) has no effect", true,
      {resolved = true})
    -- validation tasks without validation
    fails({}, {eval_every = 0, val_tasks = 50}, "config key 'val_tasks' (set on the command line) has no effect with "
      .. "eval_every=0: it is used only with eval_every other than 0; remove it, or set eval_every", true)
    assert.equals(0, experiment.resolve({val_tasks = 50}, {eval_every = 0}).eval_every)
    assert.equals(50, experiment.resolve({}, {eval_every = 10, val_tasks = 50}).val_tasks)
    -- a checkpoint is read by eval_only alone (a run continues with resume=)
    fails({}, {checkpoint = "x.bin"}, "config key 'checkpoint' (set on the command line) has no effect with "
      .. "eval_only=false", true)
    assert.equals("x.bin", experiment.resolve({}, {checkpoint = "x.bin", eval_only = true}).checkpoint)
    -- and a key of meta-training alone changes nothing in a test of a checkpoint: the error names the key the
    -- test uses instead, where there is one
    local ev = {checkpoint = "x.bin", eval_only = true}
    local function with(k, v) local o = {[k] = v}; for a, b in pairs(ev) do o[a] = b end; return o end
    fails({}, with("steps", 10), "config key 'steps' (set on the command line) has no effect with eval_only=true: "
      .. "it is used only with eval_only=false; remove it, or set eval_only (with eval_only=true the key in effect "
      .. "is steps_test)", true)
    fails({}, with("queries", 5), "(with eval_only=true the key in effect is queries_test)", true)
    for _, k in ipairs{"first_order", "iterations", "meta_batch", "meta_lr", "max_minutes", "checkpoint_every",
        "eval_every", "log_every", "on_nonfinite"} do
      local v = ({first_order = true, meta_lr = 0.01, max_minutes = 5, on_nonfinite = "skip"})[k] or 7
      fails({}, with(k, v), "config key '" .. k .. "' (set on the command line) has no effect with eval_only=true",
        true)
    end
    fails({task = "sinusoid", model = "mlp"}, with("shots", 5), "(with eval_only=true the key in effect is shots_test)",
      true)
    -- an algorithm's `only` is checked: a misspelt field (instead) would silently drop the hint
    local algorithm = require "algorithm"
    for name, only in pairs{only_stray = {key = "eval_only", values = {false}, insted = "steps_test"},
        only_instead_number = {key = "eval_only", values = {false}, instead = 3}} do
      local A = algorithm.define{name = name, doc = "a test algorithm with a bad only", keys = {
        {name = "k", type = "integer", default = 1, doc = "a key", only = only}}}
      A.new = function() end
      A.Learner.task_meta_gradient, A.Learner.finetune = function() end, function() end
      package.loaded[name] = A
      local ok, err = pcall(experiment.algorithm_keys, name)
      package.loaded[name] = nil
      assert.is_false(ok, name)
      assert.truthy(tostring(err):find("algorithm " .. name .. ": key 'k' has a bad 'only'", 1, true), tostring(err))
      if name == "only_stray" then assert.truthy(tostring(err):find("unknown field 'insted'", 1, true), err) end
    end
    -- the script's own training keys are the experiment's, not a request: eval_only on the command line tests them
    local e = experiment.resolve({steps = 5, iterations = 100, queries = 5}, ev)
    assert.equals(5, e.steps)
    assert.equals(5, experiment.resolve({}, with("steps_test", 5)).steps_test)
    -- ANIL adapts the head alone: the batch-norm shifts of the body are not its to adapt
    fails({algorithm = "anil"}, {bn_adapt = true}, "config key 'bn_adapt' has no effect with algorithm anil", true)
    assert.is_false(experiment.resolve({algorithm = "anil", bn_adapt = false}, {}).bn_adapt)
    -- a script's key that the algorithm chosen on the command line refuses is the command line's mistake
    fails({bn_adapt = true}, {algorithm = "anil"}, "config key 'bn_adapt' has no effect with algorithm anil", true)
    -- (and the message says how: the script's key cannot be removed from the command line, but overridden)
    fails({bn_adapt = true}, {algorithm = "anil"}, "(bn_adapt=true is the experiment script's: override it on the "
      .. "command line, bn_adapt=false)", true)
    -- Reptile and MAML++ meta-test with batch statistics alone: refused before any data is loaded
    fails({}, {algorithm = "reptile", bn_mode = "running"}, "config key 'bn_mode' must be batch with algorithm "
      .. "reptile, whose network normalises with batch statistics at meta-training and meta-test: remove "
      .. "bn_mode=running", true)
    fails({bn_mode = "running"}, {algorithm = "mamlpp"}, "config key 'bn_mode' must be batch with algorithm mamlpp",
      true)
    fails({algorithm = "mamlpp", bn_mode = "running"}, {}, "config key 'bn_mode' must be batch with algorithm mamlpp",
      false)
    -- Reptile's outer step is SGD at meta_step: meta_lr (Adam's) is not used
    fails({algorithm = "reptile"}, {meta_lr = 0.01}, "config key 'meta_lr' has no effect with algorithm reptile, "
      .. "whose outer step is SGD at meta_step (decaying linearly to meta_step_final), not Adam: remove it, or set "
      .. "meta_step", true)
    fails({algorithm = "reptile", meta_lr = 0.01}, {}, "config key 'meta_lr' has no effect with algorithm reptile",
      false)
    assert.equals("reptile", experiment.resolve({meta_lr = 0.01}, {algorithm = "reptile"}).algorithm)
    local saved = experiment.resolve({algorithm = "reptile"}, {})
    assert.equals(0.001, experiment.resolve(saved, {iterations = 3}, {resolved = true}).meta_lr)
    -- the Vinyals split has its own validation characters
    fails({val_classes = 100}, {split = "vinyals"}, "config key 'val_classes' (set in the experiment script) must be "
      .. "0 with split=vinyals, which has its own 172 validation characters; got 100: add val_classes=0", true)
    fails({split = "vinyals", val_classes = 100}, {}, "must be 0 with split=vinyals", false)
    assert.equals(0, experiment.resolve({val_classes = 100}, {split = "vinyals", val_classes = 0}).val_classes)
  end)

  it("the run's header names the algorithm's settings in effect, not those its choices switch off", function()
    local sgd = experiment.algorithm_text(experiment.resolve({}, {}))
    assert.truthy(sgd:find("inner_optimizer sgd", 1, true), sgd)
    assert.falsy(sgd:find("inner_momentum", 1, true), sgd)
    local adam = experiment.algorithm_text(experiment.resolve({}, {inner_optimizer = "adam", inner_momentum = 0.8}))
    assert.truthy(adam:find("inner_optimizer adam, inner_momentum 0.8", 1, true), adam)
    local plain = experiment.algorithm_text(experiment.resolve({algorithm = "mamlpp"}, {cosine_lr = false}))
    assert.falsy(plain:find("min_meta_lr", 1, true), plain)
    assert.truthy(experiment.algorithm_text(experiment.resolve({algorithm = "mamlpp"}, {})):find("min_meta_lr", 1,
      true))
  end)

  it("extra.* is free-form in the script, typed by its values, and the command line sets only those", function()
    local cfg = experiment.resolve({extra = {alpha = 0.5, beta = "a", sub = {k = 1}}},
      {extra = {alpha = 2, beta = "b", sub = {k = 3}}})
    assert.equals(2, cfg.extra.alpha)
    assert.equals("b", cfg.extra.beta)
    assert.equals(3, cfg.extra.sub.k)
    assert.error_matches(function() experiment.resolve({extra = {alpha = 0.5}}, {extra = {alpha = "x"}}) end, "config key 'extra.alpha' expects a number (like its value 0.5), got string \"x\"", 1, true)
    -- an extra key the script does not declare is one nothing reads: refused (it was taken without a word)
    assert.error_matches(function() experiment.resolve({extra = {alpha = 0.5}}, {extra = {beta = 1}}) end,
      "unknown config key 'extra.beta' on the command line: the experiment script's extra table declares only "
      .. "extra.alpha, and nothing reads an extra key it does not declare", 1, true)
    assert.error_matches(function() experiment.resolve({}, {extra = {alpha = 1}}) end,
      "unknown config key 'extra.alpha' on the command line: the experiment script's extra table declares none", 1, true)
    assert.error_matches(function() experiment.resolve({extra = {sub = {k = 1}}}, {extra = {sub = {j = 1}}}) end,
      "unknown config key 'extra.sub.j' on the command line: the experiment script's extra.sub table declares only "
      .. "extra.sub.k", 1, true)
  end)

  it("loads every experiment script in config-only mode, and each resolves", function()
    local p = io.popen("ls experiments/*.lua")
    local n = 0
    for path in p:lines() do
      local cfg = experiment.config(path)
      assert.is_string(cfg.name, path)
      local resolved = experiment.resolve(cfg, {})
      assert.equals(cfg.name, resolved.name)
      n = n + 1
    end
    p:close()
    assert.is_true(n >= 10)
  end)

  it("the paper's settings are in the Omniglot scripts", function()
    local c = experiment.resolve(experiment.config("experiments/omniglot5w1s.lua"), {})
    assert.same({5, 1, 32, 1, 3, 0.4, 1e-3, 60000, "ways", false, false, "task"},
      {c.ways, c.shots, c.meta_batch, c.steps, c.steps_test, c.inner_lr, c.meta_lr, c.iterations,
       c.inner_loss_scale, c.bn_scale, c.bn_adapt, c.rotation})
    c = experiment.resolve(experiment.config("experiments/omniglot20w5s.lua"), {})
    assert.same({20, 5, 16, 5, 0.1}, {c.ways, c.shots, c.meta_batch, c.steps, c.inner_lr})
  end)

  it("an ablation extends its base in a few keys", function()
    local base = experiment.config("experiments/omniglot5w1s.lua")
    local abl = experiment.config("experiments/ablation_first_order.lua")
    assert.is_true(abl.first_order)
    for k, v in pairs(base) do
      if k ~= "name" and k ~= "first_order" then assert.same(v, abl[k], k) end
    end
  end)

  it("help lists every key with its default", function()
    local text = experiment.help("omniglot", "conv4")
    assert.truthy(text:find("inner_loss_scale", 1, true))
    assert.truthy(text:find("bn_mode", 1, true))
  end)
end)

describe("json", function()
  it("round-trips configs and metrics", function()
    local v = {a = 1, b = 0.1, c = {1, 2.5, "x"}, d = {e = true, f = false}, s = "q\"\n\t"}
    assert.same(v, json.decode(json.encode(v)))
    assert.equals('{"a":[1,2],"b":null}', json.encode{a = {1, 2}, b = 0 / 0})
    assert.equals(1 / 3, json.decode(json.encode(1 / 3)))
    assert.error_matches(function() json.decode("{") end, "json.decode: expected a string key at line 1, position 2", 1, true)
    assert.error_matches(function() json.encode{f = print} end, "json.encode: cannot encode a function at $.f", 1, true)
  end)
end)

describe("checkpoint files", function()
  it("round-trip a tree of numbers, strings and tensors", function()
    local dir = tmpdir()
    local x = T.randn{2, 3}
    local tree = {iteration = 7, lr = 1e-3, name = "a\0b", flag = true, list = {x, T.zeros{0}}, nested = {k = {1, 2}}}
    checkpoint.save(dir .. "/c.bin", tree)
    local back = checkpoint.load(dir .. "/c.bin")
    assert.equals(7, back.iteration)
    assert.equals("integer", math.type(back.iteration))
    assert.equals(1e-3, back.lr)
    assert.equals("a\0b", back.name)
    assert.is_true(back.flag)
    assert.same(x:totable(), back.list[1]:totable())
    assert.same({1, 2}, back.nested.k)
  end)

  it("refuse a corrupt, truncated or foreign file with a reason", function()
    local dir = tmpdir()
    checkpoint.save(dir .. "/c.bin", {w = T.randn{4}})
    local bytes = read(dir .. "/c.bin")
    write(dir .. "/flip.bin", bytes:sub(1, 40) .. string.char((bytes:byte(41) + 1) % 256) .. bytes:sub(42))
    local ok, err = pcall(checkpoint.load, dir .. "/flip.bin")
    assert.equals(dir .. "/flip.bin is corrupt (checksum mismatch)", input_error(ok, err))
    write(dir .. "/short.bin", bytes:sub(1, #bytes - 3))
    ok, err = pcall(checkpoint.load, dir .. "/short.bin")
    assert.truthy(input_error(ok, err):find("short.bin is truncated", 1, true))
    write(dir .. "/other.bin", "hello world, this is not a checkpoint")
    ok, err = pcall(checkpoint.load, dir .. "/other.bin")
    assert.truthy(input_error(ok, err):find("other.bin is not a mamlrun checkpoint", 1, true))
    ok, err = pcall(checkpoint.load, dir .. "/missing.bin")
    assert.truthy(input_error(ok, err):find("cannot open checkpoint: " .. dir .. "/missing.bin", 1, true))
    -- a body that does not parse, under a valid header: the file is named
    local body = "T\1\0\0\0" -- a table of one pair, cut off
    write(dir .. "/body.bin", checkpoint.MAGIC .. string.pack("<I4I4I8", checkpoint.VERSION, T.crc32(body), #body) .. body)
    ok, err = pcall(checkpoint.load, dir .. "/body.bin")
    assert.truthy(input_error(ok, err):find("body.bin: the checkpoint body is malformed", 1, true))
  end)
end)

describe("experiment runs", function()
  local dir, full

  setup(function()
    dir = tmpdir()
    full = run_tiny(dir .. "/full")
  end)

  it("write config, metrics, checkpoint, curves and summary into the run folder", function()
    local run = full.dir
    assert.truthy(run:find(dir .. "/full/tiny-", 1, true))
    local cfg = dofile(run .. "/config.lua")
    assert.equals("tiny", cfg.name)
    assert.equals(6, cfg.iterations)
    assert.equals("tiny", json.decode(read(run .. "/config.json")).name)
    local recs = records(run)
    local kinds = {}
    for _, r in ipairs(recs) do kinds[r.type] = (kinds[r.type] or 0) + 1 end
    assert.equals(6, kinds.train)
    assert.equals(2, kinds.val) -- at 3 and 6
    assert.equals(1, kinds.test)
    assert.truthy(read(run .. "/curves.svg"):find("<svg", 1, true))
    local summary = json.decode(read(run .. "/summary.json"))
    assert.equals(4, summary.test.tasks)
    assert.equals(3, #summary.test.mean) -- steps 0..2
    -- the machine it ran on: the OpenBLAS core this process runs, the threads, one rank
    assert.equals(require("mamlrun").blas.core, summary.machine.blas_core)
    assert.equals(require("mamlrun").blas.set_by, summary.machine.blas_core_set_by)
    assert.equals(1, summary.machine.ranks)
    assert.is_true(summary.machine.threads >= 1)
    assert.truthy(read(run .. "/summary.txt"):find("95% CI", 1, true))
    assert.equals(6, checkpoint.load(run .. "/checkpoint.bin").iteration)
    assert.equals(4, full.test.n)
  end)

  it("are reproducible with the same seed", function()
    local again = run_tiny(dir .. "/again")
    assert.same(params_of(full), params_of(again))
  end)

  it("bn_mode=running trains on one thread: threads=2 is refused, threads=0 says so and records it", function()
    local ok, err = pcall(run_tiny, dir .. "/bn_running2", {bn_mode = "running", threads = 2})
    assert.is_false(ok)
    assert.is_true(options.is_usage_error(err), tostring(err))
    assert.truthy(tostring(err):find("config key 'threads' is 2, but with bn_mode=running the tasks of a meta-batch "
      .. "run one after another on one thread", 1, true), tostring(err))
    parallel.set_threads(2) -- (threads=0: the pool as it is)
    local said = {}
    local result = run_tiny(dir .. "/bn_running0", {bn_mode = "running", threads = 0, progress = "log"},
      {print = function(s) said[#said + 1] = s end})
    assert.truthy(table.concat(said):find("bn_mode=running: the tasks of each meta-batch run on one thread", 1, true))
    local summary = json.decode(read(result.dir .. "/summary.json"))
    assert.equals(1, summary.machine.training_threads)
    assert.equals(2, summary.machine.threads)
  end)

  it("give the same meta-parameters on 1 and 2 threads, bit for bit", function()
    local one = run_tiny(dir .. "/one_thread", {threads = 1})
    parallel.reset_stats()
    local two = run_tiny(dir .. "/two_threads", {threads = 2})
    local stats = parallel.stats()
    local p1, p2 = one.net:parameters(), two.net:parameters()
    assert.equals(#p1, #p2)
    for i = 1, #p1 do assert.same(p1[i]:totable(), p2[i]:totable()) end
    assert.same(records(one.dir), records(two.dir))
    -- and the two-thread run did take the threaded path: its tasks went through the pool
    assert.is_true(stats.threaded_maps >= 1, "the two-thread run made no parallel.map with worker threads")
    assert.is_true(stats.jobs >= 1)
  end)

  it("max_minutes ends training at the wall-time limit, then checkpoints and tests as at the end", function()
    local dir = tmpdir()
    local clock = 0
    local host = {time = function() clock = clock + 10; return clock end} -- every reading 10 s later
    local result = run_tiny(dir, {max_minutes = 1, iterations = 50, eval_every = 0}, {host = host})
    assert.is_false(result.interrupted)
    assert.is_true(result.iteration > 1 and result.iteration < 50, "stopped at " .. result.iteration)
    local seen = {}
    for _, r in ipairs(records(result.dir)) do seen[r.type] = r end
    assert.equals(result.iteration, seen.time_limit.iter)
    assert.equals(result.iteration, seen.test.iter)
    assert.equals(result.iteration, experiment.load_tree(result.dir .. "/checkpoint.bin").iteration)
  end)

  it("resume: 3 iterations, then resume to 6, equals the uninterrupted run", function()
    local first = run_tiny(dir .. "/part", {iterations = 3})
    assert.equals(3, first.iteration)
    local resumed = run_tiny(dir .. "/unused", {resume = first.dir, iterations = 6})
    assert.equals(first.dir, resumed.dir)
    assert.equals(6, resumed.iteration)
    assert.same(params_of(full), params_of(resumed))
    local a, starts_a = split_starts(records(full.dir))
    local b, starts_b = split_starts(records(resumed.dir))
    assert.same(a, b)
    -- one start record per session: where each began, and on what
    local version = require("mamlrun").version
    assert.same({{type = "start", iter = 0, resumed = false, version = version}}, starts_a)
    assert.same({{type = "start", iter = 0, resumed = false, version = version},
                 {type = "start", iter = 3, resumed = true, version = version,
                  changed = {iterations = {3, 6}}}}, starts_b)
    local raw = {}
    for line in read(resumed.dir .. "/metrics.jsonl"):gmatch("[^\n]+") do
      local r = json.decode(line)
      if r.type == "start" then raw[#raw + 1] = r end
    end
    for _, r in ipairs(raw) do
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", r.date)
      assert.equals(require("mamlrun").conv, r.machine.conv)
      assert.equals("number", type(r.machine.threads))
      assert.equals(1, r.machine.ranks)
    end
  end)

  it("resume: a key the checkpoint fixes (seed, init, out_dir, name) is refused, not recorded as a change", function()
    local first = run_tiny(dir .. "/fixed", {iterations = 2})
    for k, v in pairs{seed = 7, init = "kaiming", out_dir = dir .. "/elsewhere", name = "other"} do
      local ok, err = pcall(run_tiny, dir .. "/fixed", {resume = first.dir, iterations = 3, [k] = v})
      assert.is_false(ok, k)
      assert.is_true(options.is_usage_error(err), tostring(err))
      assert.truthy(err.message:find("resume: " .. k .. " cannot change when a run continues", 1, true), err.message)
    end
    -- the run is as it was: its checkpoint still at iteration 2
    assert.equals(2, experiment.load_tree(first.dir .. "/checkpoint.bin").iteration)
  end)

  it("resume: what the command line changes is said and kept in the session's start record", function()
    local first = run_tiny(dir .. "/change", {iterations = 2})
    local lines = {}
    local resumed = run_tiny(dir .. "/change", {resume = first.dir, iterations = 3, inner_lr = 0.1, progress = "log"},
      {print = function(s) lines[#lines + 1] = s end})
    assert.equals(0.1, resumed.cfg.inner_lr)
    local text = table.concat(lines)
    assert.truthy(text:find("resuming " .. first.dir .. " at iteration 2 of 3; changed on the command line: "
      .. "inner_lr 0.4 -> 0.1, iterations 2 -> 3, progress \"none\" -> \"log\"\n", 1, true), text)
    local _, starts = split_starts(records(first.dir))
    assert.is_nil(starts[1].changed)
    assert.same({inner_lr = {0.4, 0.1}, iterations = {2, 3}, progress = {"none", "log"}}, starts[2].changed)
    -- an override that gives another network is a usage error saying which one changed it
    local ok, err = pcall(run_tiny, dir .. "/change", {resume = first.dir, ways = 4})
    assert.is_false(ok)
    assert.is_true(require("options").is_usage_error(err))
    assert.truthy(tostring(err):find("does not fit this experiment's network", 1, true), tostring(err))
    assert.truthy(tostring(err):find("(changed on the command line: ways 3 -> 4; a resumed run keeps its network: "
      .. "start a new run for another)", 1, true), tostring(err))
    -- nothing changed: no change list
    local again = run_tiny(dir .. "/change", {resume = first.dir, out_dir = dir .. "/change"})
    local _, starts3 = split_starts(records(again.dir))
    assert.is_nil(starts3[3].changed)
  end)

  it("Ctrl-C saves a checkpoint and stops; resuming gives the uninterrupted result", function()
    local fire = false
    local host = {signal_pending = function() return fire and "SIGINT" or nil end, on_signal = function() end}
    local lines = {}
    local stopped = run_tiny(dir .. "/sig", {progress = "log"}, {host = host,
      after_iteration = function(_, it) if it == 4 then fire = true end end,
      print = function(s) lines[#lines + 1] = s end})
    assert.is_true(stopped.interrupted)
    assert.equals(4, stopped.iteration)
    assert.equals(4, checkpoint.load(stopped.dir .. "/checkpoint.bin").iteration)
    assert.truthy(table.concat(lines):find("SIGINT: stopped at iteration 4", 1, true))
    local resumed = run_tiny(dir .. "/unused", {resume = stopped.dir, progress = "none"})
    assert.equals(6, resumed.iteration)
    assert.same(params_of(full), params_of(resumed))
  end)

  it("Ctrl-C during a validation: resuming runs that validation first, and the records are the uninterrupted run's", function()
    local fire = false
    local host = {signal_pending = function() return fire and "SIGINT" or nil end, on_signal = function() end}
    local source = synthetic_source()
    local sample = source.sample
    source.sample = function(self, split, ...)
      if split == "val" then fire = true end -- (the first validation, at iteration 3, is cut short)
      return sample(self, split, ...)
    end
    local stopped = experiment.run(tiny, {overrides = {out_dir = dir .. "/sig-val"}, source = source, host = host})
    assert.is_true(stopped.interrupted)
    assert.equals(3, stopped.iteration)
    local lines = {}
    local resumed = experiment.run(tiny, {overrides = {resume = stopped.dir, progress = "log"}, source = synthetic_source(),
      print = function(s) lines[#lines + 1] = s end})
    assert.truthy(table.concat(lines):find("the validation at iteration 3 was interrupted: it runs now", 1, true))
    assert.same(params_of(full), params_of(resumed))
    local a = split_starts(records(full.dir))
    local b = split_starts(records(resumed.dir))
    assert.same(a, b)
  end)

  it("eval_only evaluates a saved model like the end of its run", function()
    local result = run_tiny(dir .. "/eval", {eval_only = true, checkpoint = full.dir .. "/checkpoint.bin"})
    assert.same(full.test.mean, result.test.mean)
    assert.truthy(read(result.dir .. "/summary.txt"):find("95% CI", 1, true))
  end)

  it("eval_only tests a checkpoint as it was trained: a script's other setting is an error, an override is a choice", function()
    local ck = full.dir .. "/checkpoint.bin"
    local other = experiment.extend(tiny, {inner_lr = 0.3, inner_optimizer = "momentum"})
    local function eval_other(overrides)
      local o = {out_dir = dir .. "/eval-other", eval_only = true, checkpoint = ck}
      for k, v in pairs(overrides) do o[k] = v end
      return experiment.run(other, {overrides = o, source = synthetic_source()})
    end
    local ok, err = pcall(eval_other, {})
    assert.is_false(ok)
    assert.is_true(options.is_usage_error(err), tostring(err))
    assert.truthy(err.message:find("inner_lr 0.3 (the checkpoint's run: 0.4), inner_optimizer \"momentum\" "
      .. "(the checkpoint's run: \"sgd\")", 1, true), err.message)
    assert.truthy(err.message:find("To test it as trained add inner_lr=0.4 inner_optimizer=sgd;", 1, true), err.message)
    -- the keys set on the command line: tested as asked (as trained here, so the run's own result)
    local result = eval_other({inner_lr = 0.4, inner_optimizer = "sgd"})
    assert.same(full.test.mean, result.test.mean)
    -- a setting of meta-training alone may differ (the checkpoint holds what it made)
    result = experiment.run(experiment.extend(tiny, {iterations = 99, meta_lr = 0.5, val_tasks = 7}), {overrides = {
      out_dir = dir .. "/eval-other", eval_only = true, checkpoint = ck}, source = synthetic_source()})
    assert.same(full.test.mean, result.test.mean)
    -- and the eval folder records how the checkpoint was trained, not the script's values that trained nothing
    local recorded = dofile(result.dir .. "/config.lua")
    assert.same({6, 1e-3, 3}, {recorded.iterations, recorded.meta_lr, recorded.val_tasks})
    assert.equals(6, json.decode(read(result.dir .. "/summary.json")).iterations)
  end)

  it("eval_only refuses validation keys on the command line (no test reads them) and resume= beside it", function()
    local ck = full.dir .. "/checkpoint.bin"
    for _, k in ipairs{"val_tasks"} do -- (val_classes, a key of the Omniglot task, is refused by the same loop)
      local ok, err = pcall(run_tiny, dir .. "/eval-val", {eval_only = true, checkpoint = ck, [k] = 5})
      assert.is_false(ok)
      assert.equals("config key '" .. k .. "' (set on the command line) has no effect with eval_only=true: the test "
        .. "draws test_tasks tasks of the test classes; remove it", tostring(err))
    end
    local ok, err = pcall(run_tiny, dir .. "/eval-val", {eval_only = true, checkpoint = ck, resume = full.dir})
    assert.is_false(ok)
    assert.is_true(options.is_usage_error(err), tostring(err))
    assert.truthy(tostring(err):find("resume=" .. full.dir .. " has no effect with eval_only=true", 1, true))
  end)

  it("eval_only refuses a key of meta-training alone set on the command line: seed, init, Reptile's and MAML++'s", function()
    for _, o in ipairs{{seed = 3}, {init = "kaiming"}, {algorithm = "reptile", meta_step = 0.5},
                       {algorithm = "reptile", inner_batch = 3}, {algorithm = "reptile", train_shots = 4},
                       {algorithm = "mamlpp", cosine_lr = false}, {algorithm = "mamlpp", epoch_iterations = 7},
                       {algorithm = "mamlpp", steps = 2}} do
      o.eval_only, o.checkpoint = true, full.dir .. "/checkpoint.bin"
      local ok, err = pcall(run_tiny, dir .. "/eval-training", o)
      assert.is_false(ok)
      assert.is_true(options.is_usage_error(err), tostring(err))
      assert.truthy(err.message:find("has no effect with eval_only=true", 1, true), err.message)
    end
  end)

  it("refuses a checkpoint of a network with other shapes, saying what differs", function()
    local ok, err = pcall(run_tiny, dir .. "/eval", {eval_only = true, ways = 4,
      checkpoint = full.dir .. "/checkpoint.bin"})
    err = input_error(ok, err)
    assert.truthy(err:find("does not fit this experiment's network", 1, true), err)
    assert.truthy(err:find("fc.weight (3, 4), this experiment fc.weight (4, 4)", 1, true), err)
  end)

  it("a NaN meta-loss stops the run naming the iteration and the last good checkpoint", function()
    local ok, err = pcall(run_tiny, dir .. "/nan", {checkpoint_every = 1}, {poison = 3})
    assert.is_false(ok)
    -- a run that cannot go on, not a fault of the code: the host prints it without a traceback
    assert.is_true(options.is_run_stopped(err), tostring(err))
    err = err.message
    -- (the loss or, when ReLU maps NaN to 0, the meta-gradient)
    assert.truthy(err:match("non%-finite meta%-[%a ]+ %(%-?nan%) at iteration 3;"), err)
    assert.truthy(err:find("checkpoint.bin (iteration 2)", 1, true), err)
  end)

  it("on_nonfinite=skip skips that update and goes on", function()
    local result = run_tiny(dir .. "/skip", {on_nonfinite = "skip"}, {poison = 2})
    assert.equals(6, result.iteration)
    assert.equals(1, json.decode(read(result.dir .. "/summary.json")).skipped_updates)
    local skipped = 0
    for _, r in ipairs(records(result.dir)) do skipped = skipped + (r.type == "skipped" and 1 or 0) end
    assert.equals(1, skipped)
  end)

  it("shows a live progress line with \\r on a terminal", function()
    local out = {}
    run_tiny(dir .. "/tty", {progress = "auto", iterations = 2, eval_every = 0},
      {host = {is_tty = function() return true end}, print = function(s) out[#out + 1] = s end})
    local text = table.concat(out)
    assert.truthy(text:find("\riter 2/2", 1, true), text)
    assert.truthy(text:find("it/s", 1, true))
    assert.truthy(text:find("ETA", 1, true))
  end)

  it("says which keys of the script another model does not use, under progress=none too (a warning)", function()
    local script, said, warned = {}, {}, {}
    for k, v in pairs(tiny) do script[k] = v end
    script.bn_scale = true -- a key of conv4's
    local source = synthetic_source()
    source.image_size = 28 -- (the peer's network takes 28x28 images: --check runs it once on two)
    experiment.run(script, {overrides = {model = "peer_net", check = true, out_dir = dir .. "/note"},
      source = source, print = function(s) said[#said + 1] = s end,
      warn = function(s) warned[#warned + 1] = s end})
    assert.equals("note: keys of the script not used with task custom and model peer_net: bn_scale, channels\n",
      table.concat(warned))
    assert.truthy(table.concat(said):find("^check: tiny"), table.concat(said))
  end)

  it("a network that cannot take the task's examples is refused before anything is written (--check too)", function()
    for _, case in ipairs{
        {{model = "peer_net"}, "network peer_net cannot take this task's examples (2x1x8x8, image=8): bad argument #2 "
          .. "to 'conv2d' (kernel 3x3 is larger than the padded input 1x1)"},
        {{model = "mlp"}, "network mlp cannot take this task's examples (2x1x8x8, image=8): bad argument #1 to "
          .. "'linear' (expected input (..., 1) for weight (40, 1), got (2, 1, 8, 8))"},
        {{pool = "max", check = true}, "network conv4 cannot take this task's examples (2x1x8x8, image=8): bad "
          .. "argument #2 to 'max_pool2d'"}} do
      local overrides = {out_dir = dir .. "/probe"}
      for k, v in pairs(case[1]) do overrides[k] = v end
      local ok, err = pcall(experiment.run, tiny, {overrides = overrides, source = synthetic_source()})
      assert.is_false(ok)
      assert.is_true(options.is_usage_error(err), tostring(err))
      assert.truthy(tostring(err):find(case[2], 1, true), tostring(err))
    end
    assert.is_nil(io.open(dir .. "/probe")) -- (no run folder)
  end)

  it("resume with an algorithm of another outer optimizer is a usage error naming both (not a traceback)", function()
    local first = run_tiny(dir .. "/other_alg", {iterations = 2})
    local ok, err = pcall(run_tiny, dir .. "/unused", {resume = first.dir, iterations = 4, algorithm = "reptile"})
    assert.is_false(ok)
    assert.is_true(options.is_usage_error(err), tostring(err))
    assert.equals("resume: the run's outer optimizer is adam (algorithm maml), but algorithm reptile steps with sgd: a "
      .. "resumed run keeps its outer optimizer and its state; resume it with algorithm=maml, or start a new run for "
      .. "another algorithm", tostring(err))
  end)

  it("resume of a folder without a checkpoint is an error", function()
    local ok, err = pcall(run_tiny, dir .. "/x", {resume = dir .. "/nothing-here"})
    assert.equals("resume: no such run folder: " .. dir .. "/nothing-here", input_error(ok, err))
    os.execute("mkdir -p '" .. dir .. "/empty-run'")
    ok, err = pcall(run_tiny, dir .. "/x", {resume = dir .. "/empty-run"})
    assert.truthy(input_error(ok, err):find("resume: " .. dir .. "/empty-run has no checkpoint.bin", 1, true))
  end)
end)
