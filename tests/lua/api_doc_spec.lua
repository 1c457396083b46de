-- tests/lua/api_doc_spec.lua: docs/LUA_API.md documents every function a script can call. The spec
-- walks the registered modules (the C modules, the tensor methods, the generator methods and the
-- Lua library) as api_misuse_spec.lua walks them, and fails for a function without an entry: a
-- code span that starts with its call, `T.name(`, `x:name(`, `gen:name(`, `ag.name(` or
-- `<module>.name(` (or `name{` for a call with a table).
local mamlrun = require "mamlrun"
local T = require "tensor"

local root = (mamlrun.root and mamlrun.root .. "/..") or "."
local f = assert(io.open(root .. "/docs/LUA_API.md"))
local doc = f:read("a")
f:close()

local function has_entry(call)
  return doc:find("`" .. call .. "(", 1, true) ~= nil or doc:find("`" .. call .. "{", 1, true) ~= nil
end

-- the functions of a table, sorted (metamethods and _private ones left out)
local function functions_of(t)
  local names = {}
  for k, v in pairs(t) do
    if type(k) == "string" and type(v) == "function" and not k:match("^_") then names[#names + 1] = k end
  end
  table.sort(names)
  return names
end

local function undocumented(t, prefix)
  local missing = {}
  for _, name in ipairs(functions_of(t)) do
    if not has_entry(prefix .. name) then missing[#missing + 1] = prefix .. name end
  end
  return missing
end

describe("docs/LUA_API.md", function()
  local cases = {
    {"tensor functions", T, "T."},
    {"tensor methods", T.methods, "x:"},
    {"generator methods", getmetatable(T.generator(1)).__index, "gen:"},
    {"autograd", require "autograd", "ag."},
  }
  for _, name in ipairs { "omniglot", "parallel", "mpi", "mamlrun", "nn", "optim", "maml", "tasks", "sinusoid",
    "gradcheck", "checkpoint", "json", "plot", "distributed", "options", "experiment", "algorithm", "compare",
    "locate" } do
    cases[#cases + 1] = {name, require(name), name .. "."}
  end
  for _, c in ipairs(cases) do
    it("documents every function of " .. c[1], function()
      assert.is_true(#functions_of(c[2]) > 0, "no functions found in " .. c[1])
      assert.same({}, undocumented(c[2], c[3]))
    end)
  end

  it("the check fails for a function that is not there", function()
    assert.same({"T.no_such_function"}, undocumented({no_such_function = print}, "T."))
  end)
end)
