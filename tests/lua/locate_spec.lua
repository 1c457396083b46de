-- tests/lua/locate_spec.lua: lua/locate.lua, where scripts and the shipped experiments are found, on a
-- project tree of its own (opts.root); the dataset folder and the installed layout end to end are in
-- tests/sh/install.sh.
local locate = require "locate"
local helpers = require "tests.lua.helpers"

local function write(path, text)
  assert(os.execute("mkdir -p '" .. path:match("^(.*)/") .. "'"))
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

describe("locate", function()
  local dir, project, opts
  setup(function()
    dir = helpers.tmpdir("locate-spec")
    project = dir .. "/share/mamlrun"
    opts = {root = project .. "/lua"}
    write(project .. "/lua/experiment.lua", "return {}\n")
    write(project .. "/experiments/alpha.lua", "-- Alpha: the first one.\n-- more\nreturn 1\n")
    write(project .. "/experiments/beta.lua", "#!/usr/bin/env mamlrun\n\n--   Beta, indented  \nreturn 2\n")
    write(project .. "/experiments/plain.lua", "return 3\n-- a comment after code\n")
    write(project .. "/experiments/notes.txt", "-- not a script\n")
    assert(os.execute("mkdir -p '" .. project .. "/experiments/folder.lua'"))
    write(project .. "/data/show.lua", "return 4\n")
    write(dir .. "/mine/alpha.lua", "-- my own alpha\n")
  end)
  teardown(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("knows the project folder and whether it is installed", function()
    assert.equals(project, locate.project(opts))
    assert.is_true(locate.installed(opts))
    assert.equals("/src/mamlrun", locate.project{root = "/src/mamlrun/lua/"})
    assert.is_false(locate.installed{root = "/src/mamlrun/lua"})
  end)

  it("finds a shipped experiment by name, with or without .lua", function()
    assert.equals(project .. "/experiments/alpha.lua", locate.script("alpha", opts))
    assert.equals(project .. "/experiments/alpha.lua", locate.script("alpha.lua", opts))
  end)

  it("finds a path under the project folder", function()
    assert.equals(project .. "/experiments/beta.lua", locate.script("experiments/beta.lua", opts))
    assert.equals(project .. "/experiments/beta.lua", locate.script("experiments/beta", opts))
    assert.equals(project .. "/data/show.lua", locate.script("data/show.lua", opts))
  end)

  it("takes a file as given first, then one beside the calling script", function()
    local mine = dir .. "/mine/alpha.lua"
    assert.equals(mine, locate.script(mine, opts))
    assert.equals(dir .. "/mine/alpha.lua", locate.script("alpha", {root = opts.root, beside = dir .. "/mine"}))
    -- relative to the current folder (busted runs in the checkout): its own README.md beats anything else
    assert.equals("README.md", locate.script("README.md", opts))
  end)

  it("does not take a folder for a script, nor a bare name for a file of the project root", function()
    local path, err = locate.script("folder", opts)
    assert.is_nil(path)
    assert.matches("no such script", err)
    -- a path: the current folder's (busted runs in the checkout) before the project's
    assert.equals("lua/experiment.lua", locate.script("lua/experiment", opts))
    write(project .. "/lua/only_here.lua", "return {}\n")
    assert.equals(project .. "/lua/only_here.lua", locate.script("lua/only_here", opts))
    assert.is_nil(locate.script("experiment", opts)) -- a bare name is an experiment's, not lua/'s
  end)

  it("lists every place it looked in when nothing is found", function()
    local path, err = locate.script("nosuch", {root = opts.root, beside = dir .. "/mine"})
    assert.is_nil(path)
    assert.equals(string.format("cannot open nosuch: no such script; looked for nosuch, nosuch.lua, "
      .. "%s/mine/nosuch, %s/mine/nosuch.lua, %s/experiments/nosuch, %s/experiments/nosuch.lua "
      .. "(`mamlrun --list` shows the shipped experiments)", dir, dir, project, project), err)
    path, err = locate.script("/abs/nosuch.lua", opts)
    assert.is_nil(path)
    assert.equals("cannot open /abs/nosuch.lua: no such script; looked for /abs/nosuch.lua "
      .. "(`mamlrun --list` shows the shipped experiments)", err)
    path, err = locate.script("", opts)
    assert.is_nil(path)
    assert.matches("expected a script name", err)
  end)

  it("lists the shipped experiments with their first comment lines", function()
    local list = locate.experiments(opts)
    local names, about = {}, {}
    for i, e in ipairs(list) do
      names[i] = e.name
      about[e.name] = e.description
      assert.equals(project .. "/experiments/" .. e.name .. ".lua", e.path)
    end
    assert.same({"alpha", "beta", "plain"}, names)
    assert.same({alpha = "Alpha: the first one.", beta = "Beta, indented", plain = ""}, about)
    local text = locate.list_text(opts)
    assert.truthy(text:find("  alpha  Alpha: the first one.\n", 1, true))
    assert.truthy(text:find("mamlrun NAME --help", 1, true))
    assert.has_error(function() locate.experiments{root = dir .. "/nowhere/lua"} end)
  end)

  it("reads a description only from the comments at the top", function()
    assert.is_nil(locate.description(project .. "/experiments/plain.lua"))
    assert.is_nil(locate.description(dir .. "/no-such-file.lua"))
    assert.equals("my own alpha", locate.description(dir .. "/mine/alpha.lua"))
  end)

  it("puts the per-user data under mamlrun/", function()
    local user = locate.user_data_dir()
    if user then assert.matches("/mamlrun$", user) end
  end)
end)

describe("the shipped experiments of this checkout", function()
  it("each has a first comment line that describes it", function()
    local list = locate.experiments()
    assert.is_true(#list >= 10)
    for _, e in ipairs(list) do
      assert.is_true(#e.description > 10, e.name .. " has no description")
    end
  end)
end)
