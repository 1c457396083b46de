-- tasks: Omniglot class splits and N-way K-shot few-shot tasks, over the C loader `omniglot`.
--
--   local tasks = require "tasks"
--   local ds = tasks.load()                                  -- the Omniglot folder, cached, 28x28
--   local split = tasks.split(ds, {kind = "maml", val = 100}) -- {train=, val=, test=} class numbers
--   local sampler = tasks.sampler(ds, split.train, {ways = 5, shots = 1, queries = 15,
--                                                   rotation = "classes", generator = T.generator(1)})
--   local batch = sampler:sample(32)
--   -- batch.support_x (32, 5, 1, 28, 28), batch.support_y (32, 5) labels 1..5 as floats,
--   -- batch.query_x (32, 75, 1, 28, 28), batch.query_y (32, 75)
--   tasks.picture(batch, "task.png")
--
-- A dataset is the table omniglot.load returns: images (classes, 20, 1, H, W) float32 with strokes 1
-- and background 0, alphabets, characters, sets ("background"/"evaluation") per class, num_classes,
-- images_per_class, size. Class numbers are 1-based positions in load order (background alphabets,
-- then evaluation; alphabets and characters sorted by byte order).
--
-- tasks.source(opts) wraps all of it as a task source for the experiment runner:
-- source:sample(split_name, n_tasks, gen, {ways=, shots=, queries=}).
local omniglot = require "omniglot"
local T = require "tensor"
local options = require "options"

local M = {}

--- The seed of the "maml" split's class permutation (the paper's code used random.seed(1)).
M.SPLIT_SEED = 1
--- Meta-training characters of the "maml" and "seed" splits (the paper: 1200 train, 423 test).
M.TRAIN_CLASSES = 1200

-- the folder when none is given: $OMNIGLOT_DIR, the per-user folder or a checkout's data/omniglot
-- (lua/locate.lua; an error naming every place it looked in when none holds the dataset)
local function default_root()
  local dir, err = require("locate").omniglot_dir()
  if not dir then options.input_error("tasks.load: " .. err) end
  return dir
end

local is_dir = require("locate").is_dir

--- Load Omniglot through the cache. opts (all optional):
---   root      folder with images_background/ and images_evaluation/ (default: $OMNIGLOT_DIR, else the
---             per-user folder ~/.local/share/mamlrun/omniglot, else a checkout's data/omniglot)
---   size      image side after resizing (28)
---   cache     cache file (root .. "/cache_<size>.bin", "_pil" added for pil_exact); false: no cache
---   pil_exact 8-bit resize bit-identical to PIL's Image.resize(LANCZOS) (false: float Lanczos)
---   threads   decoding threads (0: one per core)
---   quiet     no note on stderr when the cache is rebuilt or cannot be written
function M.load(opts)
  opts = options.check("tasks.load", 1, opts, {root = "string", size = "integer", cache = "string|boolean",
    pil_exact = "boolean", threads = "integer", images_per_class = "integer", quiet = "boolean"})
  local root = opts.root or default_root()
  local size = opts.size or omniglot.default_size
  local cache = opts.cache
  if cache == nil then
    cache = string.format("%s/cache_%d%s.bin", root, size, opts.pil_exact and "_pil" or "")
  end
  if not is_dir(root .. "/images_background") then
    options.input_error(string.format("tasks.load: no Omniglot under '%s' (expected %s/images_background/): "
      .. "`OMNIGLOT_DIR=%s mamlrun-data` (in a checkout: `OMNIGLOT_DIR=%s make data`) puts it there, "
      .. "with OMNIGLOT_ZIPS=DIR taking the two zips from a local folder; or set OMNIGLOT_DIR to another folder",
      root, root, root, root))
  end
  -- (the options are checked above: what omniglot.load refuses now is a file of the dataset, an
  -- unreadable or damaged image, which its message names)
  local ok, ds = pcall(omniglot.load, root, {size = size, cache = cache, pil_exact = opts.pil_exact,
                                             threads = opts.threads, images_per_class = opts.images_per_class})
  if not ok then options.input_error("tasks.load: omniglot." .. tostring(ds)) end
  if not opts.quiet then
    if ds.cache_status:match("^rebuilt") then
      io.stderr:write(string.format("tasks.load: cache %s %s\n", tostring(cache), ds.cache_status))
    end
    if ds.cache_error then io.stderr:write("tasks.load: " .. ds.cache_error .. " (continuing without)\n") end
  end
  return ds
end

local function sorted(list)
  table.sort(list)
  return list
end

local function range(a, b)
  local out = {}
  for i = a, b do out[#out + 1] = i end
  return out
end

--- Split the classes of a dataset. opts:
---   kind   "maml" (alias "paper"): TRAIN_CLASSES characters drawn at random with a generator seeded
---          `seed` (T.generator(seed):permutation(num_classes), the first ones), the rest meta-test;
---          "seed": the first TRAIN_CLASSES classes in load order, the rest meta-test (the seed code);
---          "lake": the background set vs the evaluation set (964 / 659);
---          "vinyals": the Vinyals et al. split, torchmeta's default: 1028 train, 172 validation and
---          423 test characters named in lua/splits/vinyals.lua (needs the full Omniglot's names)
---   seed   the "maml" permutation's seed (SPLIT_SEED = 1)
---   train  training classes before carving val, for "maml" and "seed" (TRAIN_CLASSES = 1200)
---   val    classes carved from the end of the training list (after the permutation for "maml") as
---          a validation set (0; "vinyals" has its own and takes 0 only)
--- Returns {train=, val=, test=, kind=, seed=}: sorted lists of 1-based class numbers. Splits are
--- over characters; rotation augmentation happens in the sampler, so no rotated copy of a test
--- character is ever in train.
function M.split(ds, opts)
  opts = options.check("tasks.split", 2, opts, {kind = "string", val = "integer", train = "integer",
    seed = "integer"})
  local kind = opts.kind or "maml"
  if kind == "paper" then kind = "maml" end
  local n = ds.num_classes
  local val = opts.val or 0
  if kind == "vinyals" then
    if val ~= 0 then
      error(string.format("tasks.split: kind 'vinyals' has its own 172 validation characters: expected val 0, "
        .. "got %s", tostring(val)), 2)
    end
    local ok, parts = pcall(M.vinyals_split, ds)
    if not ok then error(parts, 2) end
    return {train = parts.train, val = parts.val, test = parts.test, kind = kind}
  end
  local train, test
  if kind == "maml" or kind == "seed" then
    local n_train = opts.train or M.TRAIN_CLASSES
    if n_train < 1 or n_train >= n then
      error(string.format("tasks.split: kind '%s' needs train in 1..%d (fewer than the %d classes), got %d",
        kind, n - 1, n, n_train), 2)
    end
    local order
    if kind == "maml" then
      order = T.generator(opts.seed or M.SPLIT_SEED):permutation(n)
    else
      order = range(1, n)
    end
    train, test = {}, {}
    for i = 1, n do
      local list = i <= n_train and train or test
      list[#list + 1] = order[i]
    end
  elseif kind == "lake" then
    train, test = {}, {}
    for i = 1, n do
      local list = ds.sets[i] == "background" and train or test
      list[#list + 1] = i
    end
  else
    error(string.format("tasks.split: expected kind \"maml\", \"seed\", \"lake\" or \"vinyals\", got %q",
      tostring(kind)), 2)
  end
  if val < 0 or val >= #train then
    error(string.format("tasks.split: expected val in 0..%d (fewer than the %d training classes), got %d",
      #train - 1, #train, val), 2)
  end
  local carved = {}
  for _ = 1, val do carved[#carved + 1] = table.remove(train) end
  return {train = sorted(train), val = sorted(carved), test = sorted(test), kind = kind,
          seed = kind == "maml" and (opts.seed or M.SPLIT_SEED) or nil}
end

--- The class numbers of ds in each part of the Vinyals split: {train=, val=, test=}, sorted. Classes
--- are matched by name (set, alphabet, character folder) with the lists of lua/splits/vinyals.lua, so
--- the load order does not matter; a dataset with a class not in the lists, a class twice, or
--- without some listed character is an error naming it.
function M.vinyals_split(ds)
  local lists = require "splits.vinyals"
  local part_of, listed = {}, {}
  for _, part in ipairs{"train", "val", "test"} do
    for _, run in ipairs(lists[part]) do
      for c = run[3], run[4] do
        local key = string.format("images_%s/%s/character%02d", run[1], run[2], c)
        part_of[key] = part
        listed[#listed + 1] = key
      end
    end
  end
  local out, seen = {train = {}, val = {}, test = {}}, {}
  local names = ds.sets and ds.alphabets and ds.characters
  for i = 1, ds.num_classes do
    local key = names and string.format("images_%s/%s/%s", tostring(ds.sets[i]), tostring(ds.alphabets[i]),
      tostring(ds.characters[i])) or "(no names)"
    local part = part_of[key]
    if not part then
      error(string.format("tasks.split: kind 'vinyals' needs the Omniglot characters by name, but class %d "
        .. "(%s) is not in its lists (lua/splits/vinyals.lua)", i, key), 0)
    end
    if seen[key] then
      error(string.format("tasks.split: kind 'vinyals': classes %d and %d are both %s", seen[key], i, key), 0)
    end
    seen[key] = i
    local list = out[part]
    list[#list + 1] = i
  end
  for _, key in ipairs(listed) do
    if not seen[key] then
      error(string.format("tasks.split: kind 'vinyals' needs the full Omniglot (%d characters), but the "
        .. "dataset has %d: no %s, for one", #listed, ds.num_classes, key), 0)
    end
  end
  return out
end

-- ------------------------------------------------------------------ sampling

local ROTATIONS = {none = true, classes = true, task = true}

-- n distinct integers from 1..m, in the order drawn (so their order is random too)
local function draw_distinct(gen, m, n)
  if 4 * n >= m then
    local perm = gen:permutation(m)
    for i = #perm, n + 1, -1 do perm[i] = nil end
    return perm
  end
  local out, seen = {}, {}
  while #out < n do
    local v = gen:random(m)
    if not seen[v] then
      seen[v] = true
      out[#out + 1] = v
    end
  end
  return out
end

local Sampler = {}
Sampler.__index = Sampler

--- A task sampler over `classes` (a list of class numbers, e.g. split.train). opts:
---   ways (5), shots (1), queries (15)  N classes per task, K support and Q query images per class
---   rotation  "none" | "classes": each character rotated by 0/90/180/270 degrees is a class of its
---             own (4x classes; the MAML paper) | "task": each class of a task rotated by a random
---             multiple of 90 degrees, drawn per task (the paper's reference code)   ("none")
---   generator a T.generator; sample() draws from it, so a seed gives the same tasks (T.generator(0))
---   shuffle   false: support and query are ordered by label (label 1's images first), true: each
---             task's support and query images are put in random order
---   labels    "tensor" (float tensors (B, N*K) of labels 1..N) or "list" (Lua lists per task)
--- Labels: the N classes of a task are drawn in random order and get labels 1..N in that order, so
--- labels are assigned at random per task. The K + Q images of a class are distinct images.
function M.sampler(ds, classes, opts)
  opts = options.check("tasks.sampler", 3, opts, {ways = "integer", shots = "integer", queries = "integer",
    rotation = "string", generator = "generator", shuffle = "boolean", labels = "string"})
  local self = setmetatable({
    dataset = ds, images = ds.images, classes = classes,
    ways = opts.ways or 5, shots = opts.shots or 1, queries = opts.queries or 15,
    rotation = opts.rotation or "none", generator = opts.generator or T.generator(0),
    shuffle = opts.shuffle or false, labels = opts.labels or "tensor", label_cache = {},
  }, Sampler)
  if type(classes) ~= "table" or #classes == 0 then
    error("tasks.sampler: expected a non-empty list of class numbers, got " .. type(classes), 2)
  end
  for i, c in ipairs(classes) do
    if math.type(c) ~= "integer" or c < 1 or c > ds.num_classes then
      error(string.format("tasks.sampler: expected class numbers in 1..%d, got %s at [%d]",
        ds.num_classes, tostring(c), i), 2)
    end
  end
  if not ROTATIONS[self.rotation] then
    error(string.format("tasks.sampler: expected rotation \"none\", \"classes\" or \"task\", got %q",
      tostring(self.rotation)), 2)
  end
  if self.labels ~= "tensor" and self.labels ~= "list" then
    error(string.format("tasks.sampler: expected labels \"tensor\" or \"list\", got %q", tostring(self.labels)), 2)
  end
  self:check_shape(self.ways, self.shots, self.queries, 2)
  return self
end

function Sampler:pool_size()
  return self.rotation == "classes" and 4 * #self.classes or #self.classes
end

function Sampler:check_shape(ways, shots, queries, level)
  level = (level or 1) + 1
  for name, v in pairs{ways = ways, shots = shots, queries = queries} do
    if math.type(v) ~= "integer" or v < (name == "queries" and 0 or 1) then
      error(string.format("tasks.sampler: expected %s a %s integer, got %s", name,
        name == "queries" and "non-negative" or "positive", tostring(v)), level)
    end
  end
  if ways > self:pool_size() then
    error(string.format("tasks.sampler: %d ways, but only %d classes to draw from (rotation \"%s\")",
      ways, self:pool_size(), self.rotation), level)
  end
  local per_class = self.dataset.images_per_class
  if shots + queries > per_class then
    error(string.format("tasks.sampler: %d shots + %d queries need %d distinct images per class, "
      .. "the dataset has %d", shots, queries, shots + queries, per_class), level)
  end
end

-- the labels of n_tasks tasks, label-major (1,..,1, 2,..,2, ...), each label `per` times
function Sampler:ordered_labels(n_tasks, ways, per)
  local key = n_tasks .. "x" .. ways .. "x" .. per
  local y = self.label_cache[key]
  if not y then
    local rows = {}
    for b = 1, n_tasks do
      local row = {}
      for l = 1, ways do
        for _ = 1, per do row[#row + 1] = l end
      end
      rows[b] = row
    end
    y = self.labels == "list" and rows or T.tensor(rows)
    self.label_cache[key] = y
  end
  return y
end

--- n_tasks tasks as one meta-batch. gen (default the sampler's generator) and shape
--- ({ways=, shots=, queries=}, default the sampler's) may be given per call. Returns
--- {support_x (B, N*K, 1, H, W), support_y (B, N*K), query_x (B, N*Q, 1, H, W), query_y (B, N*Q),
---  classes = per task the N class numbers in label order, rotations = per task their quarter turns,
---  ways=, shots=, queries=, and the flat index lists support_index / query_index {classes=,
---  images=, rotations=, labels=} that tasks.picture uses}. Without shuffle the label tensors are
---  shared by every batch of the same shape: do not change them in place.
function Sampler:sample(n_tasks, gen, shape)
  gen = gen or self.generator
  local ways = shape and shape.ways or self.ways
  local shots = shape and shape.shots or self.shots
  local queries = shape and shape.queries or self.queries
  if shape then self:check_shape(ways, shots, queries, 2) end
  if math.type(n_tasks) ~= "integer" or n_tasks < 1 then
    error("tasks.sample: expected a positive integer number of tasks, got " .. tostring(n_tasks), 2)
  end
  local classes, pool, per_class = self.classes, self:pool_size(), self.dataset.images_per_class
  local by_class, by_task = self.rotation == "classes", self.rotation == "task"
  local s = {classes = {}, images = {}, rotations = {}, labels = {}}
  local q = {classes = {}, images = {}, rotations = {}, labels = {}}
  local task_classes, task_rotations = {}, {}
  local function put(list, c, i, r, l)
    local n = #list.classes + 1
    list.classes[n], list.images[n], list.rotations[n], list.labels[n] = c, i, r, l
  end
  for b = 1, n_tasks do
    local drawn = draw_distinct(gen, pool, ways)
    local tc, tr = {}, {}
    for l = 1, ways do
      local v, c, r = drawn[l], nil, 0
      if by_class then
        c, r = classes[(v - 1) // 4 + 1], (v - 1) % 4
      else
        c = classes[v]
        if by_task then r = gen:random(4) - 1 end
      end
      tc[l], tr[l] = c, r
      local perm = gen:permutation(per_class)
      for k = 1, shots do put(s, c, perm[k], r, l) end
      for k = shots + 1, shots + queries do put(q, c, perm[k], r, l) end
    end
    task_classes[b], task_rotations[b] = tc, tr
  end
  local batch = {ways = ways, shots = shots, queries = queries, classes = task_classes,
                 rotations = task_rotations, support_index = s, query_index = q, images = self.images}
  for _, part in ipairs{{s, shots, "support"}, {q, queries, "query"}} do
    local list, per, name = part[1], part[2], part[3]
    local n = ways * per
    if self.shuffle and n > 1 then -- the same permutation for all four lists, per task
      for b = 1, n_tasks do
        local perm, base = gen:permutation(n), (b - 1) * n
        for _, key in ipairs{"classes", "images", "rotations", "labels"} do
          local old = table.move(list[key], base + 1, base + n, 1, {})
          for i = 1, n do list[key][base + i] = old[perm[i]] end
        end
      end
    end
    if n > 0 then
      batch[name .. "_x"] = omniglot.gather(self.images, list.classes, list.images, list.rotations, {n_tasks, n})
    else
      batch[name .. "_x"] = T.zeros{n_tasks, 0, 1, self.dataset.size, self.dataset.size}
    end
    if self.shuffle then
      local rows = {}
      for b = 1, n_tasks do rows[b] = table.move(list.labels, (b - 1) * n + 1, b * n, 1, {}) end
      batch[name .. "_y"] = self.labels == "list" and rows or (n > 0 and T.tensor(rows) or T.zeros{n_tasks, 0})
    elseif n > 0 then
      batch[name .. "_y"] = self:ordered_labels(n_tasks, ways, per)
    else
      batch[name .. "_y"] = self.labels == "list" and {} or T.zeros{n_tasks, 0}
    end
  end
  return batch
end

-- ------------------------------------------------------------------ task source

local Source = {}
Source.__index = Source

--- A task source for the experiment runner: source:sample(split_name, n_tasks, gen, shape) with
--- split_name "train", "val" or "test" and shape {ways=, shots=, queries=}. opts: dataset (or the
--- tasks.load options root, size, cache, pil_exact), split (kind, "maml"), val (0), seed (SPLIT_SEED),
--- train (TRAIN_CLASSES), rotation ("task"; rotate = true/false is accepted too: "task"/"none"),
--- shuffle (false).
function M.source(opts)
  opts = options.check("tasks.source", 1, opts, {dataset = "table", root = "string", size = "integer",
    cache = "string|boolean", pil_exact = "boolean", quiet = "boolean", split = "string", val = "integer",
    seed = "integer", train = "integer", rotation = "string", rotate = "boolean", shuffle = "boolean"})
  local ds = opts.dataset or M.load{root = opts.root, size = opts.size, cache = opts.cache,
                                    pil_exact = opts.pil_exact, quiet = opts.quiet}
  local split = M.split(ds, {kind = opts.split, val = opts.val, seed = opts.seed, train = opts.train})
  local rotation = opts.rotation
  if rotation == nil and opts.rotate ~= nil then rotation = opts.rotate and "task" or "none" end
  local self = setmetatable({
    kind = "classification", loss = "cross_entropy", metric = "accuracy",
    dataset = ds, splits = split, image_size = ds.size, channels = 1, samplers = {},
    rotation = rotation or "task", shuffle = opts.shuffle or false,
  }, Source)
  return self
end

--- The classes split_name's tasks are drawn from (each rotation a class of its own with rotation
--- "classes") and the images of each: the most ways, and shots + queries, a task of it can have.
function Source:capacity(split_name)
  local classes = self.splits[split_name] or {}
  return (self.rotation == "classes" and 4 or 1) * #classes, self.dataset.images_per_class
end

function Source:sample(split_name, n_tasks, gen, shape)
  local sampler = self.samplers[split_name]
  if not sampler then
    local classes = self.splits[split_name]
    if not classes or #classes == 0 then
      error(string.format("source:sample: split %q has no classes (train, val (set val=), test)",
        tostring(split_name)), 2)
    end
    sampler = M.sampler(self.dataset, classes, {ways = shape.ways, shots = shape.shots,
      queries = shape.queries, rotation = self.rotation, shuffle = self.shuffle})
    self.samplers[split_name] = sampler
  end
  return sampler:sample(n_tasks, gen, shape)
end

-- ------------------------------------------------------------------ picture

--- Write a PNG of task b (default 1) of a batch: the support images in the top rows, a line, then
--- the query rows; one column per label (1..N, left to right), each image framed in its label's
--- color, with the label and the class number above it. opts: task (1), scale (2), pad (4).
function M.picture(batch, path, opts)
  opts = options.check("tasks.picture", 3, opts, {task = "integer", scale = "integer", pad = "integer"})
  local b = opts.task or 1
  local n_tasks = #batch.classes
  if math.type(b) ~= "integer" or b < 1 or b > n_tasks then
    error(string.format("tasks.picture: expected task in 1..%d, got %s", n_tasks, tostring(b)), 2)
  end
  local ways = batch.ways
  local cls, img, rot, lab, captions = {}, {}, {}, {}, {}
  local rows = 0
  for _, part in ipairs{{batch.support_index, batch.shots}, {batch.query_index, batch.queries}} do
    local list, per = part[1], part[2]
    local base = (b - 1) * ways * per
    local columns = {} -- per label, the positions of its images in order
    for l = 1, ways do columns[l] = {} end
    for j = base + 1, base + ways * per do
      local col = columns[list.labels[j]]
      col[#col + 1] = j
    end
    for r = 1, per do
      for l = 1, ways do
        local j = columns[l][r]
        local n = #cls + 1
        cls[n], img[n], rot[n], lab[n], captions[n] = list.classes[j], list.images[j], list.rotations[j], l,
          list.classes[j]
      end
    end
    rows = rows + per
  end
  local x = omniglot.gather(batch.images, cls, img, rot)
  local grid = omniglot.tile(x, {cols = ways, labels = lab, captions = captions, scale = opts.scale or 2,
                                 pad = opts.pad or 4, separators = {batch.shots}})
  omniglot.write_png(path, grid)
  return path
end

return M
