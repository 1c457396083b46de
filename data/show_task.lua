-- show_task.lua: draw one sampled Omniglot task as a PNG, to see what the learner sees.
--
--   ./mamlrun data/show_task.lua out=task.png ways=5 shots=1 queries=2
--
-- Overrides (key=value): out (task.png), ways (5), shots (1), queries (2), seed (1: the task
-- generator's), split (maml | seed | lake | vinyals), set (train | test; val with vinyals),
-- rotation (task | classes | none), scale (3: screen pixels per image pixel), size (28), root
-- (data/omniglot or $OMNIGLOT_DIR).
-- Top rows: the support images, one column per label; below the line: the query images. Each
-- image is framed in its label's color, with the label and the class number above it.
-- Without root, the Omniglot folder mamlrun finds ($OMNIGLOT_DIR, the per-user folder, a checkout's
-- data/omniglot: docs/omniglot.md). help=true (or --help) prints this header and draws nothing.
local options = require "options"
-- an unknown key or a value of another type than its default is a usage error naming the keys
local cfg = options.script_keys("show_task", ..., {out = "task.png", ways = 5, shots = 1, queries = 2, seed = 1,
  split = "maml", set = "train", rotation = "task", scale = 3, size = 28, root = "", help = false})
if cfg.help then
  for line in io.lines(arg[0]) do
    if not line:match("^%-%-") then break end
    print((line:gsub("^%-%- ?", "")))
  end
  return
end
local T = require "tensor"
local tasks = require "tasks"

-- a value the library refuses (ways=0, queries=30 with 20 images a class) is the user's: said without a traceback
local function asked(f, ...)
  local ok, result = pcall(f, ...)
  if not ok then
    if type(result) == "table" then error(result, 0) end -- (an input or usage error: as it is)
    options.usage_error("show_task: " .. options.without_position(result))
  end
  return result
end

local out = cfg.out
local ds = tasks.load{root = cfg.root ~= "" and cfg.root or nil, size = cfg.size}
local split = asked(tasks.split, ds, {kind = cfg.split})
local set = cfg.set
local classes = split[set]
if not classes or #classes == 0 then
  options.usage_error("show_task: set must be train or test (or val with split=vinyals), got " .. tostring(set))
end
local sampler = asked(tasks.sampler, ds, classes, {
  ways = cfg.ways, shots = cfg.shots, queries = cfg.queries, rotation = cfg.rotation, generator = T.generator(cfg.seed),
})
local batch = asked(sampler.sample, sampler, 1)
tasks.picture(batch, out, {scale = cfg.scale})

local names = {}
for l, c in ipairs(batch.classes[1]) do
  names[l] = string.format("%d=%s/%s%s", l, ds.alphabets[c], ds.characters[c],
    batch.rotations[1][l] ~= 0 and string.format(" (rotated %d)", 90 * batch.rotations[1][l]) or "")
end
print(string.format("wrote %s: %d-way %d-shot, %d %s per class, %s classes of the '%s' split",
  out, batch.ways, batch.shots, batch.queries, batch.queries == 1 and "query" or "queries", set, split.kind))
for _, line in ipairs(names) do print("  " .. line) end
