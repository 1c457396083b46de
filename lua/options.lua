-- options: the options tables of the Lua library, checked in one place. A key that is not an option
-- of the function (a typo such as {wyas = 5}) or a value of the wrong type is an error naming the
-- function, the argument, the key and the valid keys, in the form the C bindings use (vm/lua_check.c):
--
--   bad argument #3 to 'tasks.sampler' (unknown option 'wyas'; valid options: generator, labels, ...)
--
--   local options = require "options"
--   function M.sampler(ds, classes, opts)
--     opts = options.check("tasks.sampler", 3, opts, {ways = "integer", generator = "generator", ...})
--
-- Types: "number", "integer" (a number with an integral value), "boolean", "string", "table",
-- "function", "tensor", "generator", "any", or alternatives such as "string|function".
local M = {}

local articles = {integer = "an", any = "any"}

-- the type of v as the checks name it: a userdata's metatable __name ("tensor"), else type(v)
local function type_name(v)
  local mt = getmetatable(v)
  local name = type(mt) == "table" and rawget(mt, "__name")
  if type(v) == "userdata" and type(name) == "string" then return name end
  return type(v)
end

local function has_type(v, want)
  for w in want:gmatch("[^|]+") do
    if w == "any" or w == type_name(v) then return true end
    if w == "integer" and type(v) == "number" and v == math.floor(v) then return true end
  end
  return false
end

local function describe(want)
  local parts = {}
  for w in want:gmatch("[^|]+") do parts[#parts + 1] = (articles[w] or "a") .. " " .. w end
  return table.concat(parts, " or ")
end

-- the sorted keys of spec, for messages
local function valid_keys(spec)
  local keys = {}
  for k in pairs(spec) do keys[#keys + 1] = k end
  table.sort(keys)
  return table.concat(keys, ", ")
end

local function bad(fn, arg, fmt, ...)
  error(string.format("bad argument #%d to '%s' (" .. fmt .. ")", arg, fn, ...), 4)
end

--- options.check(fn, arg, opts, spec) -> opts, or {} when opts is nil. spec maps each valid key to
--- its type. The error is raised at the caller of fn.
function M.check(fn, arg, opts, spec)
  if opts == nil then return {} end
  if type(opts) ~= "table" then bad(fn, arg, "expected a table of options, got %s", type_name(opts)) end
  for k, v in pairs(opts) do
    if type(k) ~= "string" then bad(fn, arg, "option names must be strings, got %s", type_name(k)) end
    local want = spec[k]
    if want == nil then bad(fn, arg, "unknown option '%s'; valid options: %s", k, valid_keys(spec)) end
    if not has_type(v, want) then
      bad(fn, arg, "option '%s' must be %s, got %s", k, describe(want), type_name(v))
    end
  end
  return opts
end

-- an error kind the host (vm/main.c) knows by its metatable's __name: a table {message = msg} whose
-- tostring is msg, printed without a traceback
local function error_kind(name)
  local kind = {__name = name, __tostring = function(e) return e.message end}
  return function(msg) error(setmetatable({message = msg}, kind)) end,
         function(err) return getmetatable(err) == kind end
end

--- options.usage_error(msg): raise a mistake of the user's rather than of the script, such as a
--- mistyped key=value on the command line (__name "mamlrun.usage_error"): the host prints the message
--- without a traceback and exits with status 2, as for a bad command line.
--- options.is_usage_error(err): whether err was raised by usage_error.
M.usage_error, M.is_usage_error = error_kind("mamlrun.usage_error")

--- options.script_keys(name, overrides, defaults) -> a new table: defaults with the overrides (a script's
--- key=value arguments, its first vararg) over them, for scripts that are not experiments (bench/). A key
--- not in defaults, or a value of another type than its default (a string default takes a number as its
--- text), is a usage error naming the script, the key and the valid keys: never a key taken and unread.
function M.script_keys(name, overrides, defaults)
  local out = {}
  for k, v in pairs(defaults) do out[k] = v end
  for k, v in pairs(overrides or {}) do
    local default = defaults[k]
    if default == nil then
      M.usage_error(string.format("%s: unknown key '%s'; valid keys: %s", name, tostring(k), valid_keys(defaults)))
    end
    if type(default) == "string" and type(v) == "number" then v = tostring(v) end
    if type(v) ~= type(default) or (math.type(default) == "integer" and math.type(v) ~= "integer") then
      M.usage_error(string.format("%s: key '%s' expects %s (like its default %s), got %s %s", name, tostring(k),
        math.type(default) == "integer" and "an integer" or "a " .. type(default), tostring(default), type(v),
        tostring(v)))
    end
    out[k] = v
  end
  return out
end

--- options.input_error(msg): raise a problem with a file or folder the user named rather than with the
--- script: a dataset folder without Omniglot, a checkpoint that is truncated or of another network, a run
--- folder without a checkpoint. msg says which file and what was expected of it (__name
--- "mamlrun.input_error"): the host prints the message without a traceback (the traceback of our code
--- says nothing about the file) and exits with status 1.
--- options.is_input_error(err): whether err was raised by input_error.
M.input_error, M.is_input_error = error_kind("mamlrun.input_error")

--- options.run_stopped(msg): end a run that cannot go on, for the reason msg gives and with what to do
--- (a non-finite meta-loss, a signal whose checkpoint could not be saved): no fault of the code, so the
--- host prints the message without a traceback (__name "mamlrun.run_stopped") and exits with status 1.
--- options.is_run_stopped(err): whether err was raised by run_stopped.
M.run_stopped, M.is_run_stopped = error_kind("mamlrun.run_stopped")

-- the edit distance of two strings (insertions, deletions, substitutions, and swaps of neighbours)
local function distance(a, b)
  local prev2, prev, cur = {}, {}, {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    cur = {[0] = i}
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      if i > 1 and j > 1 and a:byte(i) == b:byte(j - 1) and a:byte(i - 1) == b:byte(j) then
        cur[j] = math.min(cur[j], prev2[j - 2] + 1)
      end
    end
    prev2, prev = prev, cur
  end
  return prev[#b]
end

--- options.closest(name, candidates): the candidate (a list of strings) that name is probably a typo
--- of (within 2 edits, and fewer than half its letters), or nil: for "did you mean" in messages.
function M.closest(name, candidates)
  local best, best_d
  for _, c in ipairs(candidates) do
    local d = distance(name, c)
    if c ~= name and d <= 2 and d * 2 < #c and (best_d == nil or d < best_d) then best, best_d = c, d end
  end
  return best
end

--- options.unknown_field(t, fields): the first key of table t (in sorted order) that is not in the list
--- fields, as text for a message: "'check_confg' (did you mean check_config?)", or nil when there is none.
function M.unknown_field(t, fields)
  local known, stray = {}, {}
  for _, f in ipairs(fields) do known[f] = true end
  for k in pairs(t) do
    if not known[k] then stray[#stray + 1] = tostring(k) end
  end
  if #stray == 0 then return nil end
  table.sort(stray)
  local near = M.closest(stray[1], fields)
  return string.format("'%s'%s", stray[1], near and string.format(" (did you mean %s?)", near) or "")
end

--- options.without_position(msg): msg without the "file.lua:LINE: " an error() or a C binding put
--- before it, for a message shown to the user, where the place in our code says nothing.
function M.without_position(msg)
  return (tostring(msg):gsub("^[^:\n]+%.lua:%d+: ", ""))
end

return M
