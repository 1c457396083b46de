-- locate: where mamlrun finds an experiment script, the shipped experiments and the Omniglot dataset.
--
-- The project folder is the one above the Lua library: a checkout (./mamlrun beside lua/), or
-- <prefix>/share/mamlrun when installed (bin/mamlrun, share/mamlrun/{lua,experiments,data}).
--
--   locate.script("omniglot5w1s")                 -- a script: a user's file first, then a shipped one
--   locate.experiments()                          -- the shipped experiments: {name=, path=, description=}
--   locate.omniglot_dir()                         -- the Omniglot folder ($OMNIGLOT_DIR, per-user, checkout)
--
-- A script NAME is looked for, in this order (the first regular file wins; nothing else is tried):
--   NAME, then NAME.lua (when NAME does not end in .lua), relative to the current folder;
--   the same beside the calling script (opts.beside; experiment.config passes the running script's folder);
--   a NAME with a "/": <project>/NAME(.lua), a path under the install or the checkout, e.g.
--   experiments/omniglot5w1s.lua or data/show_task.lua; a NAME without: <project>/experiments/NAME(.lua),
--   a shipped experiment by name.
-- Each function takes the project's Lua library folder as opts.root (default: require("mamlrun").root).
local M = {}

local function host_root()
  local ok, host = pcall(require, "mamlrun")
  if ok and type(host) == "table" then return host.root end
  return nil
end

local function dirname(path)
  local dir = path:match("^(.*)/[^/]*$")
  if dir == nil then return "." end
  if dir == "" then return "/" end
  return dir
end

--- Whether path names a regular file that can be read (a folder opens but does not read); false and
--- the system's message when it exists but cannot be opened (no permission, ...).
function M.is_file(path)
  local f, err, code = io.open(path, "r")
  if not f then
    if code == 2 or code == 20 then return false end -- ENOENT, ENOTDIR: not there at all
    return false, err
  end
  local _, read_err = f:read(0)
  f:close()
  return read_err == nil
end

--- Whether path names a folder (one that can be opened).
function M.is_dir(path)
  local f = io.open(path .. "/.", "r")
  if f then f:close() end
  return f ~= nil
end
local is_dir = M.is_dir

--- path as an absolute path: a relative one is taken in the folder mamlrun started in (mamlrun.cwd), so
--- that a run folder's config names the same file from any folder; unchanged when that is unknown.
function M.absolute(path)
  if type(path) ~= "string" or path == "" or path:sub(1, 1) == "/" then return path end
  local ok, host = pcall(require, "mamlrun")
  local cwd = ok and type(host) == "table" and host.cwd
  if type(cwd) ~= "string" then return path end
  -- cwd is the physical folder (getcwd), so its "." and ".." can be taken away by name
  local parts = {}
  for part in (cwd .. "/" .. path):gmatch("[^/]+") do
    if part == ".." then
      parts[#parts] = nil
    elseif part ~= "." then
      parts[#parts + 1] = part
    end
  end
  return "/" .. table.concat(parts, "/")
end

--- The file a new Lua state's require(name) would load (package.path, then package.cpath), or nil: a
--- module a script made itself (package.loaded[name] = ..., package.preload) is in no file, so worker
--- threads, which start from the files, cannot load it.
function M.module_file(name)
  return package.searchpath(name, package.path) or package.searchpath(name, package.cpath)
end

--- The project folder (the one above the Lua library), or nil when there is no library.
function M.project(opts)
  local root = (opts and opts.root) or host_root()
  if root == nil then return nil end
  root = root:gsub("/+$", "")
  return dirname(root)
end

--- Whether the project folder is an installed one (<prefix>/share/mamlrun) rather than a checkout.
function M.installed(opts)
  local project = M.project(opts)
  return project ~= nil and project:match("/share/mamlrun$") ~= nil
end

--- The path of the script NAME (see the order above), or nil and a message that lists every place
--- looked in. opts: root (the Lua library), beside (a folder looked in after the current one).
function M.script(name, opts)
  opts = opts or {}
  if type(name) ~= "string" or name == "" then
    return nil, "expected a script name or path, got " .. (type(name) == "string" and "\"\"" or type(name))
  end
  local candidates, seen = {}, {}
  local function add(path)
    if not seen[path] then
      seen[path] = true
      candidates[#candidates + 1] = path
    end
  end
  local function add_both(prefix)
    add(prefix .. name)
    if not name:match("%.lua$") then add(prefix .. name .. ".lua") end
  end
  add_both("")
  if name:sub(1, 1) ~= "/" then
    if opts.beside and opts.beside ~= "" and opts.beside ~= "." then add_both(opts.beside .. "/") end
    local project = M.project(opts)
    if project and name:find("/", 1, true) then
      add_both(project .. "/")
    elseif project then
      add_both(project .. "/experiments/")
    end
  end
  for _, path in ipairs(candidates) do
    local found, err = M.is_file(path)
    if found then return path end
    if err then return nil, "cannot open " .. name .. ": " .. err end -- there, but not readable
  end
  local hint = M.project(opts) and " (`mamlrun --list` shows the shipped experiments)" or ""
  return nil, string.format("cannot open %s: no such script; looked for %s%s", name,
    table.concat(candidates, ", "), hint)
end

--- The first comment line of a Lua file without its "--", or nil.
function M.description(path)
  local f = io.open(path, "r")
  if not f then return nil end
  for line in f:lines() do
    local text = line:match("^%s*%-%-+%s*(.-)%s*$")
    if text and text ~= "" then
      f:close()
      return text
    end
    if line:match("%S") and not line:match("^%s*%-%-") and not line:match("^#!") then break end
  end
  f:close()
  return nil
end

--- The shipped experiments, sorted by name: {name=, path=, description=} for each
--- <project>/experiments/*.lua; an error when the project has no experiments folder.
function M.experiments(opts)
  local project = M.project(opts)
  if project == nil then error("locate.experiments: mamlrun found no Lua library, so no project folder", 2) end
  local dir = project .. "/experiments"
  local names, err = require("mamlrun").dir(dir)
  if not names then error("locate.experiments: cannot list " .. dir .. ": " .. tostring(err), 2) end
  local out = {}
  for _, file in ipairs(names) do
    local name = file:match("^(.+)%.lua$")
    if name and M.is_file(dir .. "/" .. file) then
      out[#out + 1] = {name = name, path = dir .. "/" .. file, description = M.description(dir .. "/" .. file) or ""}
    end
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

--- The text of `mamlrun --list`.
function M.list_text(opts)
  local list = M.experiments(opts)
  local width = 0
  for _, e in ipairs(list) do width = math.max(width, #e.name) end
  local lines = {string.format("shipped experiments (%s/experiments):", M.project(opts))}
  for _, e in ipairs(list) do
    lines[#lines + 1] = string.format("  %-" .. width .. "s  %s", e.name, e.description)
  end
  lines[#lines + 1] = "run one: mamlrun NAME [key=value ...]; its keys and values: mamlrun NAME --help"
  return table.concat(lines, "\n") .. "\n"
end

-- ------------------------------------------------------------------ the dataset

--- The per-user data folder of mamlrun: $XDG_DATA_HOME/mamlrun (an absolute XDG_DATA_HOME), else
--- $HOME/.local/share/mamlrun; nil and a reason when neither is set.
function M.user_data_dir()
  local xdg = os.getenv("XDG_DATA_HOME")
  if xdg and xdg:sub(1, 1) == "/" then return xdg .. "/mamlrun" end
  local home = os.getenv("HOME")
  if home and home ~= "" then return home .. "/.local/share/mamlrun" end
  return nil, "neither XDG_DATA_HOME nor HOME is set"
end

--- The Omniglot folder when none is given (tasks.load, the `data` config key): $OMNIGLOT_DIR when
--- set (used as is); else the first of these that holds images_background/: the per-user folder
--- (<user data folder>/omniglot, filled by `mamlrun-data`) and, for a mamlrun run from a checkout,
--- the checkout's data/omniglot (filled by `make data`). Returns nil and a message naming every
--- place looked in and how to fill it when none does. The second result says which place it is.
function M.omniglot_dir(opts)
  local env = os.getenv("OMNIGLOT_DIR")
  if env and env ~= "" then return env, "OMNIGLOT_DIR" end
  local looked = {}
  local user, why = M.user_data_dir()
  if user then
    local dir = user .. "/omniglot"
    if is_dir(dir .. "/images_background") then return dir, "per-user" end
    looked[#looked + 1] = dir .. " (the per-user folder: fill it with `mamlrun-data`)"
  else
    looked[#looked + 1] = "no per-user folder (" .. why .. ")"
  end
  local project = M.project(opts)
  if project and not M.installed(opts) then
    local dir = project .. "/data/omniglot"
    if is_dir(dir .. "/images_background") then return dir, "checkout" end
    looked[#looked + 1] = dir .. " (this checkout's: fill it with `make data`)"
  end
  return nil, "no Omniglot dataset (images_background/ and images_evaluation/) in " .. table.concat(looked, " or ")
    .. "; OMNIGLOT_ZIPS=DIR takes the two official zips from a local folder instead of downloading them, "
    .. "and OMNIGLOT_DIR=DIR or the config key data=DIR names another folder"
end

return M
