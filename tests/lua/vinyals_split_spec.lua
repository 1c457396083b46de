-- tests/lua/vinyals_split_spec.lua: split = "vinyals" (lua/tasks.lua, lists in lua/splits/vinyals.lua):
-- the sizes 1028 / 172 / 423, disjoint parts covering Omniglot, named characters in the part torchmeta
-- puts them in, independence from the load order, the errors; the experiment runner draws its
-- validation tasks from the 172 validation characters; and, with the real dataset (OMNIGLOT_ZIPS set,
-- or data/omniglot present), the same on the loaded names.
local T = require "tensor"
local tasks = require "tasks"
local lists = require "splits.vinyals"

-- What torchmeta's val.json and test.json hold, written out by alphabet (read off the JSON files, not
-- off lua/splits/vinyals.lua): these five background alphabets are the validation set, these twelve
-- evaluation alphabets and Gurmukhi's characters 42-45 the test set, everything else is training.
local VAL_ALPHABETS = {"Armenian", "Bengali", "Early_Aramaic", "Hebrew", "Mkhedruli_(Georgian)"}
local TEST_ALPHABETS = {"Kannada", "Keble", "Malayalam", "Manipuri", "Mongolian", "Old_Church_Slavonic_(Cyrillic)",
  "Oriya", "Sylheti", "Syriac_(Serto)", "Tengwar", "Tibetan", "ULOG"}

local function as_set(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end
local val_alphabets, test_alphabets = as_set(VAL_ALPHABETS), as_set(TEST_ALPHABETS)

-- the part torchmeta puts a character in
local function expected_part(set, alphabet, character)
  if set == "background" and val_alphabets[alphabet] then return "val" end
  if set == "evaluation" and test_alphabets[alphabet] then return "test" end
  if set == "evaluation" and alphabet == "Gurmukhi" and tonumber(character:match("%d+$")) >= 42 then
    return "test"
  end
  return "train"
end

-- a dataset with Omniglot's 1623 character names (from the lists) in the order given by `order`
-- (a permutation of 1..1623, default load order), P images of S x S each (only the sampler needs them)
local function named_dataset(order, P, S)
  local names = {}
  for _, part in ipairs{"train", "val", "test"} do
    for _, run in ipairs(lists[part]) do
      for c = run[3], run[4] do names[#names + 1] = {run[1], run[2], string.format("character%02d", c)} end
    end
  end
  table.sort(names, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    if a[2] ~= b[2] then return a[2] < b[2] end
    return a[3] < b[3]
  end)
  local ds = {num_classes = #names, images_per_class = P or 20, size = S or 1, sets = {}, alphabets = {},
              characters = {}}
  for i = 1, #names do
    local n = names[order and order[i] or i]
    ds.sets[i], ds.alphabets[i], ds.characters[i] = n[1], n[2], n[3]
  end
  if P then ds.images = T.zeros{#names, P, 1, S, S} end
  return ds
end

local function name(ds, i)
  return ds.sets[i] .. "/" .. ds.alphabets[i] .. "/" .. ds.characters[i]
end

-- the checks every dataset with Omniglot's names must pass
local function check_split(ds)
  local s = tasks.split(ds, {kind = "vinyals"})
  assert.equals("vinyals", s.kind)
  assert.equals(1028, #s.train)
  assert.equals(172, #s.val)
  assert.equals(423, #s.test)
  local owner = {}
  for _, part in ipairs{"train", "val", "test"} do
    for j, c in ipairs(s[part]) do
      if j > 1 then assert.is_true(s[part][j - 1] < c, part .. " is sorted") end
      assert.is_nil(owner[c], "class " .. c .. " in two parts")
      owner[c] = part
    end
  end
  for c = 1, ds.num_classes do
    assert.equals(expected_part(ds.sets[c], ds.alphabets[c], ds.characters[c]), owner[c], name(ds, c))
  end
  return s, owner
end

describe("split vinyals", function()
  it("lists 1028 + 172 + 423 distinct characters, the parts torchmeta's files give", function()
    local seen, counts = {}, {}
    for _, part in ipairs{"train", "val", "test"} do
      counts[part] = 0
      for _, run in ipairs(lists[part]) do
        assert.is_true(run[1] == "background" or run[1] == "evaluation")
        assert.is_true(math.type(run[3]) == "integer" and run[3] >= 1 and run[3] <= run[4])
        for c = run[3], run[4] do
          local key = string.format("%s/%s/character%02d", run[1], run[2], c)
          assert.is_nil(seen[key], key)
          seen[key] = part
          assert.equals(expected_part(run[1], run[2], string.format("character%02d", c)), part, key)
        end
        counts[part] = counts[part] + run[4] - run[3] + 1
      end
    end
    assert.same({train = 1028, val = 172, test = 423}, counts)
    -- a few characters by name
    assert.equals("train", seen["background/Alphabet_of_the_Magi/character01"])
    assert.equals("train", seen["background/Tifinagh/character55"])
    assert.equals("train", seen["evaluation/Gurmukhi/character41"])
    assert.equals("test", seen["evaluation/Gurmukhi/character42"])
    assert.equals("test", seen["evaluation/Gurmukhi/character45"])
    assert.is_nil(seen["evaluation/Gurmukhi/character46"])
    assert.equals("val", seen["background/Hebrew/character22"])
    assert.equals("val", seen["background/Bengali/character46"])
    assert.equals("test", seen["evaluation/ULOG/character26"])
    assert.equals("train", seen["evaluation/Angelic/character20"])
  end)

  it("splits a dataset by name, in load order or any other", function()
    local ds = named_dataset()
    local s, owner = check_split(ds)
    -- in load order: background alphabets first, Alphabet_of_the_Magi the first of them
    assert.equals(1, s.train[1])
    assert.equals("background/Armenian/character01", name(ds, s.val[1]))
    assert.equals("evaluation/Gurmukhi/character42", name(ds, s.test[1]))
    -- shuffled: each name still goes to its part
    local order = T.generator(7):permutation(1623)
    local shuffled = named_dataset(order)
    local _, owner2 = check_split(shuffled)
    for i = 1, 1623 do assert.equals(owner[order[i]], owner2[i]) end
    assert.same(s, tasks.split(ds, {kind = "vinyals"}))
  end)

  it("refuses a dataset that is not the full Omniglot, and a val carve-out", function()
    local ds = named_dataset()
    assert.has_error(function() tasks.split(ds, {kind = "vinyals", val = 100}) end,
      "tasks.split: kind 'vinyals' has its own 172 validation characters: expected val 0, got 100")
    local missing = named_dataset()
    missing.num_classes = 1622 -- the last one in load order, ULOG/character26, gone
    assert.has_error(function() tasks.split(missing, {kind = "vinyals"}) end,
      "tasks.split: kind 'vinyals' needs the full Omniglot (1623 characters), but the dataset has 1622: "
      .. "no images_evaluation/ULOG/character26, for one")
    local extra = named_dataset()
    extra.characters[5] = "character99"
    local ok, err = pcall(tasks.split, extra, {kind = "vinyals"})
    assert.is_false(ok)
    assert.equals("tasks.split: kind 'vinyals' needs the Omniglot characters by name, but class 5 "
      .. "(images_background/Alphabet_of_the_Magi/character99) is not in its lists (lua/splits/vinyals.lua)", err)
    local twice = named_dataset()
    twice.characters[2] = "character01"
    assert.has_error(function() tasks.split(twice, {kind = "vinyals"}) end,
      "tasks.split: kind 'vinyals': classes 1 and 2 are both images_background/Alphabet_of_the_Magi/character01")
    local unnamed = {num_classes = 1623, sets = {}}
    assert.has_error(function() tasks.split(unnamed, {kind = "vinyals"}) end,
      "tasks.split: kind 'vinyals' needs the Omniglot characters by name, but class 1 ((no names)) is not in "
      .. "its lists (lua/splits/vinyals.lua)")
  end)

  it("is the experiment runner's split=vinyals: validation tasks from the 172 validation characters", function()
    local experiment = require "experiment"
    local cfg = experiment.resolve({}, {split = "vinyals"})
    assert.equals("vinyals", cfg.split)
    assert.equals(0, cfg.val_classes)
    local ok, err = pcall(experiment.resolve, {}, {split = "vinyal"})
    assert.is_false(ok)
    assert.matches("vinyals", err)
    local ds = named_dataset(nil, 2, 1)
    local load = tasks.load
    tasks.load = function() return ds end -- the runner loads through tasks.load: give it the fake one
    local source
    ok, err = pcall(function() source = experiment.build_source(cfg) end)
    tasks.load = load
    assert(ok, err)
    local parts = {}
    for _, part in ipairs{"train", "val", "test"} do parts[part] = as_set(source.splits[part]) end
    for _, split in ipairs{"train", "val", "test"} do
      local b = source:sample(split, 4, T.generator(3), {ways = 5, shots = 1, queries = 1})
      for t = 1, 4 do
        for _, c in ipairs(b.classes[t]) do assert.is_true(parts[split][c], split .. " task class " .. c) end
      end
    end
    -- with a val_classes carve-out the config is refused before anything loads (the split has its own
    -- validation set), and so is the split itself
    ok, err = pcall(experiment.resolve, {}, {split = "vinyals", val_classes = 100})
    assert.is_false(ok)
    assert.matches("config key 'val_classes' %(set on the command line%) must be 0 with split=vinyals, which has "
      .. "its own 172 validation characters", tostring(err))
    ok, err = pcall(tasks.split, ds, {kind = "vinyals", val = 100})
    assert.is_false(ok)
    assert.matches("has its own 172 validation characters", err)
  end)
end)

local root = os.getenv("OMNIGLOT_DIR") or "data/omniglot"
local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end
if os.getenv("OMNIGLOT_ZIPS") or exists(root .. "/images_background") then
  describe("split vinyals on the real Omniglot", function()
    it("puts each of the 1623 characters where torchmeta does", function()
      local ds
      if os.getenv("OMNIGLOT_ZIPS") then
        assert(os.execute("sh data/fetch_omniglot.sh > /dev/null"), "data/fetch_omniglot.sh failed")
        ds = tasks.load{quiet = true}
      else
        ds = tasks.load{quiet = true, cache = false} -- (reads the folder, writes nothing into it)
      end
      assert.equals(1623, ds.num_classes)
      local s = check_split(ds)
      assert.equals("evaluation/Gurmukhi/character42", name(ds, s.test[1]))
      assert.equals("background/Armenian/character01", name(ds, s.val[1]))
      local sampler = tasks.sampler(ds, s.val, {ways = 20, shots = 5, queries = 15, generator = T.generator(1)})
      assert.same({2, 100, 1, 28, 28}, sampler:sample(2).support_x:shape())
    end)
  end)
else
  pending("split vinyals on the real Omniglot (set OMNIGLOT_ZIPS=DIR, or unpack it into data/omniglot)")
end
