-- compare: several run folders side by side, as one table and one plot.
--
--   mamlrun --compare runs/omniglot5w1s-A runs/ablation_first_order-B [--plot cmp.svg] [--markdown]
--
--   local compare = require "compare"
--   local runs = {compare.load("runs/a"), compare.load("runs/b")}
--   print(compare.table(runs))             -- the settings that differ, and the final test numbers
--   compare.plot(runs, "cmp.svg")          -- their validation curves overlaid
--
-- A run folder is what lua/experiment.lua writes: config.json (or config.lua, for eval_only runs),
-- metrics.jsonl, and summary.json once the run is over. The table has a row per run: the folder's
-- name, every config key whose value is not the same in all of the runs (except the ones that do not
-- change results: name, out_dir, progress, resume, threads), the iteration reached, the training wall
-- time (the sum over the sessions of a resumed run, from the train records), and the test metric with
-- its 95% interval after the run's steps_test inner steps and after the last step evaluated ("not
-- tested" when the folder has no summary.json or its summary has no test, e.g. a run stopped early).
-- The plot has the validation metric after steps_test steps against iterations and against training
-- time, one curve per run. A folder that is not a run folder, and a metrics, config or summary file
-- that does not parse, are errors naming the file (an unfinished last line of metrics.jsonl, as in a
-- run still being written, is skipped with a note).
local json = require "json"
local plot = require "plot"
local without_position = require("options").without_position

local M = {}

--- Config keys left out of the table: they do not change what a run computes.
M.IGNORED_KEYS = {name = true, out_dir = true, progress = true, resume = true, threads = true}

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local is_dir = require("locate").is_dir

local function fail(fmt, ...)
  error(string.format(fmt, ...), 0)
end

-- the value of a config key as the table shows it
local function show(v)
  if v == nil then return "-" end
  if math.type(v) == "integer" then return string.format("%d", v) end
  if type(v) == "number" then return string.format("%.10g", v) end
  return tostring(v)
end

-- {dotted key = shown value} of a config table (arrays become comma lists)
local function flatten(t, prefix, out)
  out = out or {}
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  if n == 0 then return out end -- (an empty table, such as extra = {}, sets nothing)
  if n == #t then
    if prefix == nil then fail("expected a config object, got an array") end
    local parts = {}
    for i, v in ipairs(t) do parts[i] = type(v) == "table" and json.encode(v) or show(v) end
    out[prefix] = table.concat(parts, ",")
    return out
  end
  for k, v in pairs(t) do
    local key = prefix and prefix .. "." .. tostring(k) or tostring(k)
    if type(v) == "table" then flatten(v, key, out) else out[key] = show(v) end
  end
  return out
end

local function read_config(dir)
  local path = dir .. "/config.json"
  local text = read_file(path)
  local cfg
  if text then
    local ok, v = pcall(json.decode, text)
    if not ok then fail("%s: %s", path, v) end
    cfg = v
  else
    path = dir .. "/config.lua"
    text = read_file(path)
    if not text then return nil end
    local chunk, err = load(text, "@" .. path, "t", {})
    if not chunk then fail("%s: %s", path, err) end
    local ok, v = pcall(chunk)
    if not ok then fail("%s: %s", path, tostring(v)) end
    cfg = v
  end
  if type(cfg) ~= "table" then fail("%s: expected a config table, got %s", path, type(cfg)) end
  -- (an empty one, [] or {}, is no run's config: its row would be all '-'; a list is refused by flatten)
  if next(cfg) == nil then fail("%s: expected a config object, got an empty one", path) end
  return cfg, path
end

-- the records of metrics.jsonl; warn(msg) for a skipped unfinished last line
local function read_metrics(dir, warn)
  local path = dir .. "/metrics.jsonl"
  local text = read_file(path)
  if not text then fail("%s is not a run folder: no metrics.jsonl", dir) end
  local records, n = {}, 0
  local pos = 1
  while pos <= #text do
    local nl = text:find("\n", pos, true)
    local line = text:sub(pos, (nl or #text + 1) - 1)
    n = n + 1
    if line:match("%S") then
      local ok, rec = pcall(json.decode, line)
      if ok and (type(rec) ~= "table" or rec[1] ~= nil) then
        ok, rec = false, "expected a JSON object, got " .. line:sub(1, 40)
      end
      if not ok then
        if nl then fail("%s:%d: %s", path, n, rec) end
        warn(string.format("%s:%d: unfinished last line skipped (a run still writing?)", path, n))
      elseif rec.type == nil then
        fail("%s:%d: a record without \"type\"", path, n)
      else
        if (rec.type == "train" or rec.type == "val") and math.type(rec.iter) ~= "integer" then
          fail("%s:%d: a %s record without an integer \"iter\"", path, n, rec.type)
        end
        records[#records + 1] = rec
      end
    end
    pos = (nl or #text) + 1
  end
  return records, path
end

--- Read a run folder. opts.warn(msg) gets notes (default: stderr). Returns {dir=, label=, config=
--- (the table), settings= (flattened, shown values), metric= ("acc", "mse", ...), val = {iter=, value=,
--- seconds= (of training before it)}, reached=, train_seconds=, summary=, test = nil or {steps=, mean=, ci95=, last_steps=,
--- last_mean=, last_ci95=, tasks=}}.
function M.load(dir, opts)
  opts = opts or {}
  local warn = opts.warn or function(msg) io.stderr:write(msg, "\n") end
  dir = dir:gsub("(.)/+$", "%1")
  if not is_dir(dir) then fail("%s: no such folder", dir) end
  local cfg, cfg_path = read_config(dir)
  if not cfg then fail("%s is not a run folder: no config.json or config.lua", dir) end
  local flat_ok, settings = pcall(flatten, cfg)
  if not flat_ok then fail("%s: %s", cfg_path, settings) end
  local records = read_metrics(dir, warn)
  local run = {dir = dir, label = dir:match("[^/]+$"), config = cfg, settings = settings}

  local summary_path = dir .. "/summary.json"
  local text = read_file(summary_path)
  if text then
    local ok, s = pcall(json.decode, text)
    if not ok then fail("%s: %s", summary_path, s) end
    if type(s) ~= "table" or #s > 0 then fail("%s: expected a JSON object", summary_path) end
    local t = s.test
    if t ~= nil then -- (a test that reads wrong is an error, not "not tested" or "not finite")
      local ok_t = type(t) == "table" and type(t.mean) == "table" and #t.mean > 0
      for _, v in pairs(ok_t and t.mean or {}) do ok_t = ok_t and type(v) == "number" end
      if not ok_t then fail("%s: test.mean must be a list of numbers (the metric after 0, 1, ... steps)", summary_path) end
      local n = 0
      for k in pairs(t.mean) do if math.type(k) == "integer" and k > n then n = k end end
      if s.steps_test ~= nil and (math.type(s.steps_test) ~= "integer" or s.steps_test < 0 or s.steps_test >= n) then
        fail("%s: steps_test %s is not one of the test's steps (0..%d)", summary_path, tostring(s.steps_test), n - 1)
      end
    end
    run.summary = s
  end

  -- the metric: the summary's, else the one the val records carry
  run.metric = run.summary and run.summary.metric
  if not run.metric then
    for _, r in ipairs(records) do
      for k in pairs(r) do
        local m = r.type == "val" and type(k) == "string" and k:match("^(.+)_steps_test$")
        if m then run.metric = m end
      end
      if run.metric then break end
    end
  end
  run.metric = run.metric or "acc"

  -- the sessions of training: a start record begins each (the first and every resume) with what it
  -- ran on (runs written before mamlrun recorded them have none)
  run.sessions = {}
  for _, r in ipairs(records) do
    if r.type == "start" and math.type(r.iter) == "integer" then
      run.sessions[#run.sessions + 1] = {iter = r.iter, date = r.date, resumed = r.resumed == true,
        machine = type(r.machine) == "table" and r.machine or {}, version = r.version,
        changed = type(r.changed) == "table" and r.changed or nil}
    end
  end

  -- training time: the train records' `time` counts from the start of each session (it restarts
  -- when a run is resumed), so sessions are summed; a val record gets the time of the train record
  -- before it
  local offset, last_time, now = 0, 0, nil
  run.val = {iter = {}, value = {}, seconds = {}}
  run.reached = 0
  for _, r in ipairs(records) do
    if r.type == "train" then
      if type(r.time) == "number" then
        if r.time < last_time then offset = offset + last_time end
        last_time = r.time
        now = offset + r.time
      end
      run.reached = math.max(run.reached, r.iter)
    elseif r.type == "val" then
      local v = r[run.metric .. "_steps_test"]
      if type(v) == "number" then
        local i = #run.val.iter + 1
        run.val.iter[i], run.val.value[i], run.val.seconds[i] = r.iter, v, now or 0 / 0
      end
      run.reached = math.max(run.reached, r.iter)
    end
  end
  run.train_seconds = now and offset + last_time or nil
  if run.summary and math.type(run.summary.iteration) == "integer" then run.reached = run.summary.iteration end

  local t = run.summary and run.summary.test
  if type(t) == "table" and type(t.mean) == "table" and #t.mean > 0 then
    local steps = math.type(run.summary.steps_test) == "integer" and run.summary.steps_test
      or math.type(cfg.steps_test) == "integer" and cfg.steps_test or 0
    local ci = type(t.ci95) == "table" and t.ci95 or {}
    -- steps 0..max(steps_test, steps_test_max) were evaluated; a non-finite mean is a JSON null,
    -- missing from the decoded list, so its length is not enough
    local n = 0
    for k in pairs(t.mean) do if math.type(k) == "integer" and k > n then n = k end end
    if math.type(cfg.steps_test_max) == "integer" then n = math.max(n, steps + 1, cfg.steps_test_max + 1) end
    run.test = {steps = steps, mean = t.mean[steps + 1], ci95 = ci[steps + 1], last_steps = n - 1,
                last_mean = t.mean[n], last_ci95 = ci[n], tasks = t.tasks}
  end
  return run
end

-- ------------------------------------------------------------------ the table

local function fmt_metric(metric, mean, ci)
  if type(mean) ~= "number" or mean ~= mean then return "not finite" end
  if metric == "acc" then
    return string.format("%.2f%% ± %.2f%%", 100 * mean, 100 * (ci or 0 / 0))
  end
  return string.format("%.4f ± %.4f", mean, ci or 0 / 0)
end

local function fmt_duration(seconds)
  if not seconds or seconds ~= seconds then return "-" end
  if seconds < 10 then return string.format("%.1f s", seconds) end
  if seconds < 60 then return string.format("%.0f s", seconds) end
  if seconds < 3600 then return string.format("%.1f min", seconds / 60) end
  return string.format("%.2f h", seconds / 3600)
end

--- The config keys whose shown value differs between the runs (sorted), without IGNORED_KEYS.
function M.differing(runs)
  local keys, seen = {}, {}
  for _, run in ipairs(runs) do
    for k in pairs(run.settings) do
      if not seen[k] and not M.IGNORED_KEYS[k] then
        seen[k] = true
        local first = runs[1].settings[k]
        for _, other in ipairs(runs) do
          if other.settings[k] ~= first then
            keys[#keys + 1] = k
            break
          end
        end
      end
    end
  end
  table.sort(keys)
  return keys
end

-- the runs' names in the table and the legend: the folder's name, or its path when two have the same
local function labels(runs)
  local out, count = {}, {}
  for _, run in ipairs(runs) do count[run.label] = (count[run.label] or 0) + 1 end
  for i, run in ipairs(runs) do out[i] = count[run.label] > 1 and run.dir or run.label end
  return out
end

--- Time to a target: the first validation record of the run at or past `target` (at least it for
--- acc, at most it for a loss such as mse), as {iter=, seconds=, value=}; nil when none is, with
--- the best validation value and its iteration as second and third results.
function M.first_reaching(run, target)
  local higher = run.metric == "acc"
  local best, best_iter
  -- (a mean over tasks carries rounding: 3832 of 4000 queries right is 0.95799999999999940 there, and is
  -- the target 95.8%; a difference of a billionth is equality)
  local function rounding(x) return 1e-9 * math.max(1, math.abs(x)) end
  local slack = rounding(target)
  for i, v in ipairs(run.val.value) do
    if higher and v >= target - slack or not higher and v <= target + slack then
      return {iter = run.val.iter[i], seconds = run.val.seconds[i], value = v}
    end
    -- (the best is its first record: a later one better by no more than the rounding is the same value)
    if best == nil or (higher and v > best + rounding(best)) or (not higher and v < best - rounding(best)) then
      best, best_iter = v, run.val.iter[i]
    end
  end
  return nil, best, best_iter
end

local function fmt_value(metric, v)
  return metric == "acc" and string.format("%.2f%%", 100 * v) or string.format("%.4g", v)
end

--- The header and rows of the comparison, as lists of strings. opts.target: add the column of
--- M.first_reaching (validation first at the target: its iteration and training time).
function M.rows(runs, opts)
  opts = opts or {}
  local keys = M.differing(runs)
  local labels = labels(runs)
  local header = {"run"}
  for _, k in ipairs(keys) do header[#header + 1] = k end
  for _, h in ipairs{"reached", "train time"} do header[#header + 1] = h end
  if opts.target then
    header[#header + 1] = string.format("validation first at %s", fmt_value(runs[1] and runs[1].metric, opts.target))
  end
  for _, h in ipairs{"test (steps_test)", "test (last step)"} do header[#header + 1] = h end
  local rows = {}
  for i, run in ipairs(runs) do
    local row = {labels[i]}
    for _, k in ipairs(keys) do row[#row + 1] = run.settings[k] or "-" end
    row[#row + 1] = string.format("%d", run.reached)
    row[#row + 1] = fmt_duration(run.train_seconds)
    if opts.target then
      local at, best, best_iter = M.first_reaching(run, opts.target)
      if at then
        row[#row + 1] = string.format("iteration %d, %s (%s)", at.iter, fmt_duration(at.seconds),
          fmt_value(run.metric, at.value))
      elseif best then
        row[#row + 1] = string.format("not reached (best %s at %d)", fmt_value(run.metric, best), best_iter)
      else
        row[#row + 1] = "no validation"
      end
    end
    local t = run.test
    if t then
      row[#row + 1] = string.format("%s (%d step%s)", fmt_metric(run.metric, t.mean, t.ci95), t.steps,
        t.steps == 1 and "" or "s")
      row[#row + 1] = string.format("%s (%d step%s)", fmt_metric(run.metric, t.last_mean, t.last_ci95),
        t.last_steps, t.last_steps == 1 and "" or "s")
    else
      row[#row + 1] = "not tested"
      row[#row + 1] = "not tested"
    end
    rows[i] = row
  end
  return header, rows, keys
end

local function width(s) return utf8.len(s) or #s end

--- The comparison table as text: columns aligned (default) or a Markdown table (opts.markdown).
function M.table(runs, opts)
  opts = opts or {}
  local header, rows, keys = M.rows(runs, opts)
  local lines = {}
  if opts.markdown then
    local function line(cells)
      local esc = {}
      for i, c in ipairs(cells) do esc[i] = c:gsub("|", "\\|") end
      return "| " .. table.concat(esc, " | ") .. " |"
    end
    lines[1] = line(header)
    local sep = {}
    for i = 1, #header do sep[i] = "---" end
    lines[2] = line(sep)
    for _, row in ipairs(rows) do lines[#lines + 1] = line(row) end
  else
    local w = {}
    for i, h in ipairs(header) do
      w[i] = width(h)
      for _, row in ipairs(rows) do w[i] = math.max(w[i], width(row[i])) end
    end
    local function line(cells)
      local out = {}
      for i, c in ipairs(cells) do out[i] = c .. string.rep(" ", w[i] - width(c)) end
      return (table.concat(out, "  "):gsub("%s+$", ""))
    end
    lines[1] = line(header)
    local rule = {}
    for i = 1, #header do rule[i] = string.rep("-", w[i]) end
    lines[2] = line(rule)
    for _, row in ipairs(rows) do lines[#lines + 1] = line(row) end
  end
  if #keys == 0 then lines[#lines + 1] = "(all settings are the same)" end
  return table.concat(lines, "\n") .. "\n"
end

-- what a session ran on, in words
local function machine_text(m, version)
  local parts = {}
  if type(m.cpu) == "string" then parts[#parts + 1] = m.cpu end
  if math.type(m.threads) == "integer" then
    parts[#parts + 1] = m.threads .. (m.threads == 1 and " thread" or " threads")
  end
  if math.type(m.ranks) == "integer" and m.ranks > 1 then parts[#parts + 1] = m.ranks .. " MPI processes" end
  if type(m.blas_core) == "string" then parts[#parts + 1] = "OpenBLAS " .. m.blas_core end
  if type(m.conv) == "string" then parts[#parts + 1] = "convolutions: " .. m.conv end
  if type(version) == "string" then parts[#parts + 1] = "mamlrun " .. version end
  return #parts > 0 and table.concat(parts, ", ") or "(not recorded)"
end

-- a resumed session's config changes ({key = {from, to}}) as "; changed on the command line: k a -> b"
local function changed_text(changed)
  if not changed then return "" end
  local keys, parts = {}, {}
  for k in pairs(changed) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local c = changed[k]
    local from, to = type(c) == "table" and c[1], type(c) == "table" and c[2]
    parts[#parts + 1] = string.format("%s %s -> %s", k, tostring(from), tostring(to))
  end
  return #parts > 0 and "; changed on the command line: " .. table.concat(parts, ", ") or ""
end

--- The sessions of each run (its start records), as lines: where each session began and what it ran
--- on; a session on the same machine, threads, backends and version as the one before says so. Runs
--- without start records (written before they existed) are left out. Empty when no run has any.
function M.sessions(runs, opts)
  opts = opts or {}
  local lines = {}
  for _, run in ipairs(runs) do
    if #run.sessions > 0 then
      local n = #run.sessions
      lines[#lines + 1] = string.format("%s%s: %d %s", opts.markdown and "- " or "", run.label, n,
        n == 1 and "session" or "sessions")
      local before
      for _, ses in ipairs(run.sessions) do
        local what = machine_text(ses.machine, ses.version)
        lines[#lines + 1] = string.format("%sfrom iteration %d%s: %s%s", opts.markdown and "  - " or "    ",
          ses.iter, type(ses.date) == "string" and " (" .. ses.date .. ")" or "",
          what == before and "the same as before" or what, changed_text(ses.changed))
        before = what
      end
    end
  end
  return #lines > 0 and table.concat(lines, "\n") .. "\n" or ""
end

-- ------------------------------------------------------------------ the plot

--- The plot spec (lua/plot.lua) of the runs' validation curves: per metric, the value after
--- steps_test steps against iterations and against training time (hours, or minutes or seconds
--- when every run is shorter than 2 hours or 2 minutes).
function M.plot_spec(runs, opts)
  opts = opts or {}
  local longest_time = 0
  for _, run in ipairs(runs) do
    for _, t in ipairs(run.val.seconds) do if t == t then longest_time = math.max(longest_time, t) end end
  end
  local unit, per = "hours", 3600
  if longest_time < 120 then unit, per = "seconds", 1 elseif longest_time < 7200 then unit, per = "minutes", 60 end
  local metrics, by_metric = {}, {}
  local longest = 0
  local names = labels(runs)
  for i, run in ipairs(runs) do
    if not by_metric[run.metric] then
      metrics[#metrics + 1] = run.metric
      by_metric[run.metric] = {}
    end
    local list = by_metric[run.metric]
    list[#list + 1] = {run = run, label = names[i]}
    longest = math.max(longest, width(names[i]))
  end
  local panels = {}
  for _, metric in ipairs(metrics) do
    local pct = metric == "acc"
    local name = pct and "accuracy (%)" or metric
    local by_iter, by_time = {}, {}
    local timed = false
    for _, entry in ipairs(by_metric[metric]) do
      local run, label = entry.run, entry.label
      local y = {}
      for i, v in ipairs(run.val.value) do y[i] = pct and 100 * v or v end
      by_iter[#by_iter + 1] = {name = label, x = run.val.iter, y = y, marker = true}
      local x = {}
      for i, t in ipairs(run.val.seconds) do
        x[i] = t / per
        if t == t then timed = true end
      end
      by_time[#by_time + 1] = {name = label, x = x, y = y, marker = true}
    end
    panels[#panels + 1] = {title = string.format("validation %s after steps_test inner steps", name),
      xlabel = "iteration", ylabel = name, series = by_iter}
    if timed then
      panels[#panels + 1] = {title = string.format("validation %s against training time", name),
        xlabel = unit .. " of training", ylabel = name, series = by_time}
    end
  end
  local legend = math.max(160, 45 + 7 * longest) -- (about 7 pixels a character at font size 12)
  return {title = opts.title or string.format("%d runs compared", #runs), panels = panels,
          width = 640 + legend, legend_width = legend}
end

--- Write the SVG plot of the runs' validation curves to path.
function M.plot(runs, path, opts)
  local ok, msg = pcall(plot.write, path, M.plot_spec(runs, opts))
  if not ok then error(string.format("--plot %s: %s", path, without_position(msg)), 0) end
  return path
end

-- ------------------------------------------------------------------ the command

-- --target's value: a number (0.958), or a percentage (95.8%) of an accuracy
local function parse_target(v)
  local pct = v:match("^(.-)%%$")
  local x = tonumber(pct or v)
  if x == nil or x ~= x then return nil end
  return pct and x / 100 or x
end

--- Why one --target (as given: "95.8%", "0.958") cannot be read against these runs, or nil: the runs
--- have more than one metric (a target is a value of one), or it is a percentage and their metric is
--- not an accuracy (a loss such as mse has no percentage).
function M.target_problem(runs, target_text)
  local by_metric, order = {}, {}
  for _, run in ipairs(runs) do
    if not by_metric[run.metric] then
      by_metric[run.metric] = {}
      order[#order + 1] = run.metric
    end
    table.insert(by_metric[run.metric], run.label or run.dir)
  end
  if #order > 1 then
    local parts = {}
    for _, metric in ipairs(order) do
      parts[#parts + 1] = string.format("%s (%s)", metric, table.concat(by_metric[metric], ", "))
    end
    return string.format("--target %s is a value of one metric, but these runs have %s: compare runs of one "
      .. "metric with --target, or leave it out", target_text, table.concat(parts, " and "))
  end
  if target_text:match("%%$") and order[1] ~= "acc" then
    return string.format("--target %s is a percentage of an accuracy, but the runs' metric is %s: give the %s "
      .. "to reach as a number (--target 0.5)", target_text, order[1], order[1])
  end
  -- (a target no run can reach, or every run reaches at its first record, answers nothing)
  local target = parse_target(target_text)
  if order[1] == "acc" then
    local pct = target_text:match("%%$")
    if target > 1 and not pct and target <= 100 then
      return string.format("--target %s is above 1, but an accuracy is a fraction: give %g or %s%%",
        target_text, target / 100, target_text)
    elseif target > 1 or target <= 0 then
      return string.format("--target %s is no accuracy to reach: give one above 0 and at most 1 (or 100%%)",
        target_text)
    end
  elseif target < 0 then
    return string.format("--target %s is below 0, where a loss (%s) never is: give the %s to reach, 0 or above",
      target_text, order[1], order[1])
  end
  return nil
end

M.USAGE = "usage: mamlrun --compare RUN_FOLDER... [--plot FILE.svg] [--markdown] [--target VALUE]"

--- The command line: args = {RUN..., "--plot", FILE, "--markdown", "--target", VALUE} (any order). opts: print(s)
--- (stdout), warn(s) (stderr). Returns the exit status: 0, 1 (a run folder or file is unusable),
--- 2 (a usage error).
function M.cli(args, opts)
  opts = opts or {}
  local out = opts.print or function(s) io.stdout:write(s) end
  local err = opts.warn or function(s) io.stderr:write(s) end
  local dirs, plot_path, markdown, target, target_text = {}, nil, false, nil, nil
  -- (an option given twice is refused: the second would replace the first without a word)
  local given = {}
  local function twice(name, value)
    if given[name] then
      err(string.format("mamlrun --compare: %s given twice (%s, then %s): give it once\n%s\n", name, given[name],
        tostring(value), M.USAGE))
      return true
    end
    given[name] = tostring(value)
  end
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--plot" or a:match("^%-%-plot=") then
      local v
      if a == "--plot" then v, i = args[i + 1], i + 1 else v = a:sub(8) end
      if not v then
        err("mamlrun --compare: --plot needs a file name\n" .. M.USAGE .. "\n")
        return 2
      end
      if twice("--plot", v) then return 2 end
      plot_path = v
    elseif a == "--markdown" then
      markdown = true
    elseif a == "--target" or a:match("^%-%-target=") then
      local v
      if a == "--target" then v, i = args[i + 1], i + 1 else v = a:sub(10) end
      target = v and parse_target(v)
      target_text = v
      if not target then
        err(string.format("mamlrun --compare: --target needs a number (0.958) or a percentage (95.8%%), got %s\n%s\n",
          v and ("'" .. v .. "'") or "nothing", M.USAGE))
        return 2
      end
      if twice("--target", v) then return 2 end
    elseif a == "-h" or a == "--help" then
      out(M.USAGE .. "\n")
      return 0
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      err(string.format("mamlrun --compare: unknown option '%s'\n%s\n", a, M.USAGE))
      return 2
    else
      dirs[#dirs + 1] = a
    end
    i = i + 1
  end
  if #dirs == 0 then
    err("mamlrun --compare: no run folders given\n" .. M.USAGE .. "\n")
    return 2
  end
  if plot_path == "" then
    err("mamlrun --compare: --plot needs a file name\n" .. M.USAGE .. "\n")
    return 2
  end
  if plot_path and not plot_path:lower():match("%.svg$") then -- (an SVG under a .png name would not open as one)
    err(string.format("mamlrun --compare: --plot %s: the plot is an SVG picture: give a file name ending in .svg\n",
      plot_path))
    return 2
  end
  local runs = {}
  local ok, msg = pcall(function()
    for j, dir in ipairs(dirs) do runs[j] = M.load(dir, {warn = function(s) err("note: " .. s .. "\n") end}) end
  end)
  if not ok then
    err("mamlrun --compare: " .. tostring(msg) .. "\n")
    return 1
  end
  if target then
    local problem = M.target_problem(runs, target_text)
    if problem then
      err("mamlrun --compare: " .. problem .. "\n" .. M.USAGE .. "\n")
      return 2
    end
  end
  ok, msg = pcall(function()
    out(M.table(runs, {markdown = markdown, target = target}))
    local sessions = M.sessions(runs, {markdown = markdown})
    if sessions ~= "" then out("\n" .. sessions) end
    if plot_path then
      M.plot(runs, plot_path)
      out("plot: " .. plot_path .. "\n")
    end
  end)
  if not ok then
    err("mamlrun --compare: " .. tostring(msg) .. "\n")
    return 1
  end
  return 0
end

--- For the host (vm/main.c, `mamlrun --compare ...`): runs M.cli on the global arg list and exits
--- with its status when it is not 0.
function M.main(args)
  local list = {}
  for i = 1, #(args or {}) do list[i] = args[i] end
  local ok, host = pcall(require, "mamlrun")
  if ok and type(host.overrides) == "table" and next(host.overrides) then
    -- (the host took them as key=value overrides: they are not in arg)
    io.stderr:write("mamlrun --compare: an argument of the form key=value is not a run folder (write it "
      .. "as ./key=value)\n" .. M.USAGE .. "\n")
    os.exit(2)
  end
  local status = M.cli(list)
  io.stdout:flush()
  if status ~= 0 then os.exit(status) end
end

return M
