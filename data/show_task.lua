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
local overrides = ... or {}
if overrides.help then
  for line in io.lines(arg[0]) do
    if not line:match("^%-%-") then break end
    print((line:gsub("^%-%- ?", "")))
  end
  return
end
local T = require "tensor"
local tasks = require "tasks"

local out = overrides.out or "task.png"
local ds = tasks.load{root = overrides.root, size = overrides.size}
local split = tasks.split(ds, {kind = overrides.split or "maml"})
local set = overrides.set or "train"
local classes = split[set]
if not classes or #classes == 0 then error("show_task: set must be train or test (or val with split=vinyals), got " .. tostring(set), 0) end
local sampler = tasks.sampler(ds, classes, {
  ways = overrides.ways or 5, shots = overrides.shots or 1, queries = overrides.queries or 2,
  rotation = overrides.rotation or "task", generator = T.generator(overrides.seed or 1),
})
local batch = sampler:sample(1)
tasks.picture(batch, out, {scale = overrides.scale or 3})

local names = {}
for l, c in ipairs(batch.classes[1]) do
  names[l] = string.format("%d=%s/%s%s", l, ds.alphabets[c], ds.characters[c],
    batch.rotations[1][l] ~= 0 and string.format(" (rotated %d)", 90 * batch.rotations[1][l]) or "")
end
print(string.format("wrote %s: %d-way %d-shot, %d queries per class, %s classes of the '%s' split",
  out, batch.ways, batch.shots, batch.queries, set, split.kind))
for _, line in ipairs(names) do print("  " .. line) end
