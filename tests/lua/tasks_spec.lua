-- tests/lua/tasks_spec.lua: splits (sizes, no overlap, determinism) and the N-way K-shot sampler
-- (shapes, labels, distinct classes and images, rotation modes, determinism) on a synthetic
-- dataset whose every image is constant and says which class and image it is; the task source
-- interface; the picture; and with OMNIGLOT_ZIPS set, the real data.
local T = require "tensor"
local tasks = require "tasks"
local omniglot = require "omniglot"

-- C classes x P images of S x S, image (c, k) constant (c - 1) * P + (k - 1); sets: the first
-- n_background classes are "background"
local function synthetic(C, P, S, n_background)
  local images = T.arange(C * P):reshape{C, P, 1, 1, 1}:expand{C, P, 1, S, S}:contiguous()
  local sets, alphabets, characters = {}, {}, {}
  for c = 1, C do
    sets[c] = c <= (n_background or C) and "background" or "evaluation"
    alphabets[c], characters[c] = "A" .. (c - 1) // 10, string.format("character%02d", c)
  end
  return {images = images, num_classes = C, images_per_class = P, size = S, sets = sets,
          alphabets = alphabets, characters = characters}
end

-- a fake dataset with the real sizes, for splits only (they need no images)
local function omniglot_sized()
  local sets = {}
  for c = 1, 1623 do sets[c] = c <= 964 and "background" or "evaluation" end
  return {num_classes = 1623, sets = sets, images_per_class = 20}
end

local function as_set(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

local function count(set)
  local n = 0
  for _ in pairs(set) do n = n + 1 end
  return n
end

-- per example of a (B, n, 1, S, S) batch tensor, the (class, image) it shows, as {b = {{c, k}, ...}}
local function decode(x, P)
  local B, n = x:size(1), x:size(2)
  local flat = x:reshape{B, n, -1}:mean(3):totable()
  local out = {}
  for b = 1, B do
    out[b] = {}
    for j = 1, n do
      local v = math.floor(flat[b][j] + 0.5)
      out[b][j] = {v // P + 1, v % P + 1}
    end
  end
  return out
end

describe("tasks.split", function()
  local ds = omniglot_sized()

  it("maml: 1200 random characters for training, 423 for test, a fixed seed", function()
    local s = tasks.split(ds, {kind = "maml"})
    assert.equals(1200, #s.train)
    assert.equals(0, #s.val)
    assert.equals(423, #s.test)
    assert.equals(1, s.seed)
    local train, test = as_set(s.train), as_set(s.test)
    assert.equals(1200, count(train))
    for c in pairs(test) do assert.is_nil(train[c]) end
    assert.equals(1623, count(train) + count(test))
    assert.same(s, tasks.split(ds, {kind = "maml"}))
    assert.same(s, tasks.split(ds, {kind = "paper"}))
    local other = tasks.split(ds, {kind = "maml", seed = 2})
    assert.are_not.same(s.train, other.train)
    -- not simply the first 1200 in load order
    assert.is_true(s.test[1] < 1200)
  end)

  it("carves a validation slice from the training characters", function()
    local s = tasks.split(ds, {kind = "maml", val = 100})
    local full = tasks.split(ds, {kind = "maml"})
    assert.equals(1100, #s.train)
    assert.equals(100, #s.val)
    assert.equals(423, #s.test)
    assert.same(full.test, s.test)
    local all = as_set(full.train)
    local train = as_set(s.train)
    for _, c in ipairs(s.val) do
      assert.is_true(all[c])
      assert.is_nil(train[c])
    end
  end)

  it("seed: the first 1200 classes in load order; lake: background vs evaluation", function()
    local s = tasks.split(ds, {kind = "seed"})
    assert.equals(1200, #s.train)
    assert.equals(1, s.train[1])
    assert.equals(1200, s.train[1200])
    assert.equals(1201, s.test[1])
    assert.equals(423, #s.test)
    local l = tasks.split(ds, {kind = "lake"})
    assert.equals(964, #l.train)
    assert.equals(659, #l.test)
    assert.equals(964, l.train[964])
    assert.equals(965, l.test[1])
    local lv = tasks.split(ds, {kind = "lake", val = 64})
    assert.equals(900, #lv.train)
    assert.equals(64, #lv.val)
  end)

  it("rejects what it cannot do", function()
    assert.has_error(function() tasks.split(ds, {kind = "random"}) end,
      'tasks.split: expected kind "maml", "seed", "lake" or "vinyals", got "random"')
    assert.has_error(function() tasks.split(ds, {val = 1200}) end,
      "tasks.split: expected val in 0..1199 (fewer than the 1200 training classes), got 1200")
    assert.has_error(function() tasks.split(synthetic(10, 2, 1), {kind = "maml"}) end,
      "tasks.split: kind 'maml' needs train in 1..9 (fewer than the 10 classes), got 1200")
  end)
end)

describe("tasks.sampler", function()
  local C, P, S = 30, 20, 4
  local ds = synthetic(C, P, S, 20)
  local split = tasks.split(ds, {kind = "maml", train = 20})

  it("gives the documented shapes and label layout", function()
    local sampler = tasks.sampler(ds, split.train, {ways = 5, shots = 2, queries = 3, generator = T.generator(1)})
    local b = sampler:sample(4)
    assert.same({4, 10, 1, S, S}, b.support_x:shape())
    assert.same({4, 10}, b.support_y:shape())
    assert.same({4, 15, 1, S, S}, b.query_x:shape())
    assert.same({4, 15}, b.query_y:shape())
    assert.same({1, 1, 2, 2, 3, 3, 4, 4, 5, 5}, b.support_y:totable()[3])
    assert.same({1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5}, b.query_y:totable()[1])
    assert.equals(4, #b.classes)
    assert.equals(5, #b.classes[1])
  end)

  it("draws distinct classes of the split, distinct images, labels matching the classes", function()
    local sampler = tasks.sampler(ds, split.train, {ways = 5, shots = 1, queries = 15, generator = T.generator(7)})
    local in_split = as_set(split.train)
    local b = sampler:sample(16)
    local sx, qx = decode(b.support_x, P), decode(b.query_x, P)
    local sy, qy = b.support_y:totable(), b.query_y:totable()
    local first_label = {}
    for t = 1, 16 do
      assert.equals(5, count(as_set(b.classes[t])))
      local seen = {}
      for _, part in ipairs{{sx[t], sy[t]}, {qx[t], qy[t]}} do
        for j, ck in ipairs(part[1]) do
          local c, k, label = ck[1], ck[2], part[2][j]
          assert.is_true(in_split[c], "class " .. c .. " not in the split")
          assert.equals(b.classes[t][label], c)
          local key = c .. ":" .. k
          assert.is_nil(seen[key], "image " .. key .. " twice in a task")
          seen[key] = true
        end
      end
      assert.equals(5 * 16, count(seen))
      first_label[b.classes[t][1]] = true
    end
    -- labels are assigned at random: label 1 is not always the smallest class number
    local always_smallest = true
    for t = 1, 16 do
      for l = 2, 5 do
        if b.classes[t][l] < b.classes[t][1] then always_smallest = false end
      end
    end
    assert.is_false(always_smallest)
  end)

  it("is deterministic for a generator seed, and differs across seeds", function()
    local function batch(seed)
      return tasks.sampler(ds, split.train, {ways = 3, shots = 1, queries = 2, rotation = "task",
                                             generator = T.generator(seed)}):sample(5)
    end
    local a, b, c = batch(3), batch(3), batch(4)
    assert.same(a.classes, b.classes)
    assert.same(a.rotations, b.rotations)
    assert.equals(0, (a.support_x - b.support_x):abs():max():item())
    assert.equals(0, (a.query_x - b.query_x):abs():max():item())
    assert.are_not.same(a.classes, c.classes)
    -- a generator passed to sample() is used instead of the sampler's
    local s = tasks.sampler(ds, split.train, {ways = 3, shots = 1, queries = 2, rotation = "task"})
    assert.same(a.classes, s:sample(5, T.generator(3)).classes)
  end)

  it("supports the three rotation modes", function()
    local none = tasks.sampler(ds, split.train, {ways = 5, generator = T.generator(1)}):sample(8)
    for t = 1, 8 do assert.same({0, 0, 0, 0, 0}, none.rotations[t]) end

    local by_task = tasks.sampler(ds, split.train, {ways = 5, rotation = "task", generator = T.generator(1)}):sample(8)
    local used = {}
    for t = 1, 8 do
      assert.equals(5, count(as_set(by_task.classes[t]))) -- characters distinct
      for _, r in ipairs(by_task.rotations[t]) do
        assert.is_true(r >= 0 and r <= 3)
        used[r] = true
      end
      -- support and query of a class share its rotation
      for j = 1, #by_task.query_index.classes do
        local l = by_task.query_index.labels[j]
        local task = (j - 1) // (5 * 15) + 1
        assert.equals(by_task.rotations[task][l], by_task.query_index.rotations[j])
      end
    end
    assert.equals(4, count(used))

    local sampler = tasks.sampler(ds, split.train, {ways = 20, shots = 1, queries = 1, rotation = "classes",
                                                    generator = T.generator(1)})
    assert.equals(4 * 20, sampler:pool_size())
    local by_class = sampler:sample(6)
    local pairs_seen_over_all = {}
    for t = 1, 6 do
      local keys = {}
      for l = 1, 20 do
        local key = by_class.classes[t][l] .. "@" .. by_class.rotations[t][l]
        keys[key] = true
        pairs_seen_over_all[key] = true
      end
      assert.equals(20, count(keys)) -- (character, rotation) classes distinct
    end
    assert.is_true(count(pairs_seen_over_all) > 20)
    -- 4x the classes: 80 ways from 20 characters
    local wide = tasks.sampler(ds, split.train, {ways = 80, shots = 1, queries = 0, rotation = "classes"})
    assert.equals(80, wide:sample(1).support_x:size(2))
  end)

  it("shuffles within a task on request, keeping images and labels together", function()
    local sampler = tasks.sampler(ds, split.train, {ways = 4, shots = 3, queries = 2, shuffle = true,
                                                    generator = T.generator(5)})
    local b = sampler:sample(3)
    local sx, sy = decode(b.support_x, P), b.support_y:totable()
    local ordered = true
    for t = 1, 3 do
      for j, ck in ipairs(sx[t]) do
        assert.equals(b.classes[t][sy[t][j]], ck[1])
        if j > 1 and sy[t][j] < sy[t][j - 1] then ordered = false end
      end
    end
    assert.is_false(ordered)
  end)

  it("gives labels as Lua lists on request", function()
    local b = tasks.sampler(ds, split.train, {ways = 2, shots = 1, queries = 1, labels = "list"}):sample(2)
    assert.same({{1, 2}, {1, 2}}, b.support_y)
    assert.same({{1, 2}, {1, 2}}, b.query_y)
  end)

  it("rejects impossible tasks with a clear message", function()
    assert.has_error(function() tasks.sampler(ds, split.train, {ways = 21}) end,
      'tasks.sampler: 21 ways, but only 20 classes to draw from (rotation "none")')
    assert.has_error(function() tasks.sampler(ds, split.train, {shots = 10, queries = 11}) end,
      "tasks.sampler: 10 shots + 11 queries need 21 distinct images per class, the dataset has 20")
    assert.has_error(function() tasks.sampler(ds, split.train, {rotation = "random"}) end,
      'tasks.sampler: expected rotation "none", "classes" or "task", got "random"')
    assert.has_error(function() tasks.sampler(ds, {1, 99}) end,
      "tasks.sampler: expected class numbers in 1..30, got 99 at [2]")
    assert.has_error(function() tasks.sampler(ds, split.train, {ways = 0}) end,
      "tasks.sampler: expected ways a positive integer, got 0")
    assert.has_error(function() tasks.sampler(ds, split.train):sample(0) end,
      "tasks.sample: expected a positive integer number of tasks, got 0")
  end)
end)

describe("tasks.sampler rotations, on images that show them", function()
  -- image (c, k) has pixel (i, j) = 1000 c + 100 k + S (i - 1) + j: every quarter turn moves every value
  local C, P, S = 12, 4, 3
  local ds = synthetic(C, P, S)
  local values = {}
  for c = 1, C do
    values[c] = {}
    for k = 1, P do
      local img = {}
      for i = 1, S do
        img[i] = {}
        for j = 1, S do img[i][j] = 1000 * c + 100 * k + S * (i - 1) + j end
      end
      values[c][k] = {img}
    end
  end
  ds.images = T.tensor(values)
  local split = {train = {}}
  for c = 1, C do split.train[c] = c end

  -- r counterclockwise quarter turns, as numpy.rot90: out[i][j] = a[j][S + 1 - i]
  local function rot90(a, r)
    for _ = 1, r do
      local out = {}
      for i = 1, S do
        out[i] = {}
        for j = 1, S do out[i][j] = a[j][S + 1 - i] end
      end
      a = out
    end
    return a
  end

  -- every example of the batch is its (class, image) turned by its recorded rotation
  local function check_rotated(batch)
    for _, part in ipairs{{batch.support_index, batch.support_x}, {batch.query_index, batch.query_x}} do
      local list, x = part[1], part[2]:reshape{-1, S, S}
      for n = 1, #list.classes do
        local c, k, r = list.classes[n], list.images[n], list.rotations[n]
        local want, got = rot90(values[c][k][1], r), x:select(1, n):totable()
        for i = 1, S do
          for j = 1, S do
            if got[i][j] ~= want[i][j] then
              error(("example %d (class %d, image %d, %d quarter turns): pixel (%d, %d) is %g, expected %g"):format(
                n, c, k, r, i, j, got[i][j], want[i][j]), 2)
            end
          end
        end
      end
    end
  end

  it("turns every image by its recorded rotation (modes task and classes)", function()
    for _, mode in ipairs{"task", "classes"} do
      local b = tasks.sampler(ds, split.train, {ways = 5, shots = 1, queries = 2, rotation = mode,
                                                generator = T.generator(3)}):sample(6)
      local turns = {}
      for _, r in ipairs(b.support_index.rotations) do turns[r] = true end
      assert.equals(4, count(turns), mode .. ": every rotation drawn") -- (so the check sees each)
      check_rotated(b)
    end
  end)

  it("the check fails on a sampler whose gather ignores the rotations", function()
    local gather = omniglot.gather
    omniglot.gather = function(images, classes, images_idx, _, shape)
      return gather(images, classes, images_idx, nil, shape)
    end
    local ok, b = pcall(function()
      return tasks.sampler(ds, split.train, {ways = 5, shots = 1, queries = 2, rotation = "task",
                                             generator = T.generator(3)}):sample(6)
    end)
    omniglot.gather = gather
    assert.is_true(ok, tostring(b))
    local checked, err = pcall(check_rotated, b)
    assert.is_false(checked)
    assert.matches("quarter turns%): pixel", err)
  end)
end)

describe("tasks.source", function()
  it("samples train and test tasks through the experiment interface", function()
    local ds = synthetic(30, 20, 4, 20)
    local source = tasks.source{dataset = ds, split = "lake", val = 4}
    assert.equals("classification", source.kind)
    assert.equals(4, source.image_size)
    assert.equals(1, source.channels)
    local b = source:sample("train", 2, T.generator(1), {ways = 3, shots = 1, queries = 2})
    assert.same({2, 3, 1, 4, 4}, b.support_x:shape())
    assert.same({2, 6}, b.query_y:shape())
    local test = as_set(source.splits.test)
    local t = source:sample("test", 3, T.generator(1), {ways = 5, shots = 2, queries = 3})
    for task = 1, 3 do
      for _, c in ipairs(t.classes[task]) do assert.is_true(test[c]) end
    end
    assert.same({3, 10, 1, 4, 4}, t.support_x:shape())
    assert.equals("task", source.rotation)
    assert.equals("none", tasks.source{dataset = ds, split = "lake", rotate = false}.rotation)
    assert.error_matches(function() tasks.source{dataset = ds, split = "lake"}:sample("val", 1, T.generator(1),
      {ways = 2, shots = 1, queries = 1}) end, 'source:sample: split "val" has no classes', 1, true)
  end)
end)

describe("tasks.picture", function()
  it("writes a PNG of a task", function()
    local ds = synthetic(30, 20, 6, 20)
    local b = tasks.sampler(ds, {1, 2, 3, 4, 5, 6}, {ways = 3, shots = 2, queries = 2, shuffle = true}):sample(2)
    local path = os.tmpname() .. ".png"
    tasks.picture(b, path, {task = 2, scale = 1})
    local img = omniglot.read_png(path)
    os.remove(path)
    assert.is_true(img:size(1) > 4 * 6 and img:size(2) > 3 * 6)
    assert.has_error(function() tasks.picture(b, path, {task = 3}) end,
      "tasks.picture: expected task in 1..2, got 3")
  end)
end)

if os.getenv("OMNIGLOT_ZIPS") then
  describe("tasks on the real Omniglot", function()
    it("loads, splits 1200/423 and samples 32 5-way 1-shot 15-query tasks", function()
      assert(os.execute("sh data/fetch_omniglot.sh > /dev/null"), "data/fetch_omniglot.sh failed")
      local ds = tasks.load{quiet = true}
      assert.equals(1623, ds.num_classes)
      local split = tasks.split(ds, {kind = "maml"})
      assert.equals(1200, #split.train)
      local sampler = tasks.sampler(ds, split.train, {ways = 5, shots = 1, queries = 15, rotation = "classes",
                                                      generator = T.generator(1)})
      -- (how fast is for `make bench`, not for a test on a busy machine)
      local b
      for _ = 1, 5 do b = sampler:sample(32) end
      assert.same({32, 5, 1, 28, 28}, b.support_x:shape())
      assert.same({32, 75, 1, 28, 28}, b.query_x:shape())
      assert.is_true(b.support_x:max():item() <= 1 and b.support_x:sum():item() > 0)
    end)
  end)
else
  pending("[dataset] tasks on the real Omniglot (set OMNIGLOT_ZIPS=DIR with the two zips)")
end
