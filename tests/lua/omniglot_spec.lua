-- tests/lua/omniglot_spec.lua: the `omniglot` C module from Lua: PNG read/write, resize, load on a
-- generated tree (fields, order, cache), gather with rotations, tile, argument errors; and, with
-- OMNIGLOT_ZIPS set (as in CI), the full dataset unpacked by data/fetch_omniglot.sh.
-- The C-level details (every PNG format, the Lanczos reference, cache corruption) are in
-- tests/c/test_image.c.
local omniglot = require "omniglot"
local T = require "tensor"

local function tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -p '" .. p .. "'"))
  return p
end

local function rm_tree(p)
  os.execute("rm -rf '" .. p .. "'")
end

local function max_abs(a, b)
  return (a - b):abs():max():item()
end

local function file_exists(p)
  local f = io.open(p, "rb")
  if f then f:close() end
  return f ~= nil
end

-- an h x w gray image with value f(i, j) (1-based)
local function image(h, w, f)
  local rows = {}
  for i = 1, h do
    local row = {}
    for j = 1, w do row[j] = f(i, j) end
    rows[i] = row
  end
  return T.tensor(rows)
end

-- images_background/{Beta,Alpha}/character{01,02} and images_evaluation/Gamma/character01, 3 images
-- each of 30x30, image k of class c a constant gray (c * 40 + k * 10) / 255
local CLASSES = {
  {"images_background", "Alpha", "character01"}, {"images_background", "Alpha", "character02"},
  {"images_background", "Beta", "character01"}, {"images_background", "Beta", "character02"},
  {"images_evaluation", "Gamma", "character01"},
}
local function gray(c, k) return (c * 40 + k * 10) / 255 end

local function make_tree(root)
  for c, parts in ipairs(CLASSES) do
    local dir = table.concat({root, parts[1], parts[2], parts[3]}, "/")
    assert(os.execute("mkdir -p '" .. dir .. "'"))
    for k = 3, 1, -1 do
      omniglot.write_png(string.format("%s/%04d_%02d.png", dir, c, k), T.full({30, 30}, gray(c, k)))
    end
  end
end

describe("omniglot module", function()
  local dir
  setup(function() dir = tmpdir() end)
  teardown(function() rm_tree(dir) end)

  it("has the documented functions and constants", function()
    for _, name in ipairs{"load", "gather", "read_png", "write_png", "resize", "tile"} do
      assert.is_function(omniglot[name], name)
    end
    assert.equals(28, omniglot.default_size)
    assert.equals(2, omniglot.cache_version)
  end)

  describe("PNG", function()
    it("round-trips a gray image at 8 bits", function()
      local x = image(7, 9, function(i, j) return ((i * 13 + j * 7) % 17) / 16 end)
      local path = dir .. "/gray.png"
      omniglot.write_png(path, x)
      local y = omniglot.read_png(path)
      assert.same({7, 9}, y:shape())
      assert.is_true(max_abs(x, y) <= 0.5 / 255 + 1e-6)
      omniglot.write_png(path, x:reshape{1, 7, 9}) -- (1, H, W) is gray too
      assert.is_true(max_abs(x, omniglot.read_png(path)) <= 0.5 / 255 + 1e-6)
    end)

    it("writes RGB from (3, H, W) and reads it back as gray with PIL's weights", function()
      local rgb = T.tensor{{{1.0}}, {{0.0}}, {{0.0}}} -- pure red
      local path = dir .. "/red.png"
      omniglot.write_png(path, rgb)
      local g = omniglot.read_png(path):item()
      assert.near((255 * 19595 + 32768) // 65536 / 255, g, 1e-6)
    end)

    it("clamps values outside [0, 1] when writing", function()
      local path = dir .. "/clamp.png"
      omniglot.write_png(path, T.tensor{{-3, 0.5, 7}})
      local y = omniglot.read_png(path)
      assert.equals(0, y:get(1, 1))
      assert.equals(1, y:get(1, 3))
    end)

    it("reports bad arguments and files clearly", function()
      assert.has_error(function() omniglot.write_png(dir .. "/x.png", T.zeros{2, 3, 4}) end,
        "bad argument #2 to 'write_png' (expected tensor (H, W), (1, H, W) or (3, H, W), got (2, 3, 4))")
      local ok, err = pcall(omniglot.write_png, dir .. "/no/such/dir/x.png", T.zeros{2, 2})
      assert.is_false(ok)
      assert.matches("write_png: .*no/such/dir/x.png: cannot create", err)
      ok, err = pcall(omniglot.read_png, dir .. "/missing.png")
      assert.is_false(ok)
      assert.matches("read_png: .*missing.png: cannot open", err)
      local f = assert(io.open(dir .. "/fake.png", "wb"))
      f:write("GIF89a not a png")
      f:close()
      ok, err = pcall(omniglot.read_png, dir .. "/fake.png")
      assert.is_false(ok)
      assert.matches("fake.png: not a PNG file", err)
      assert.error_matches(function() omniglot.read_png() end, "bad argument #1 to 'read_png' (string expected, got no value)", 1, true)
    end)
  end)

  describe("resize", function()
    it("keeps a constant image constant and gives the asked shape", function()
      local y = omniglot.resize(T.full({105, 105}, 0.25), 28)
      assert.same({28, 28}, y:shape())
      assert.is_true(max_abs(y, T.full({28, 28}, 0.25)) < 1e-6)
      assert.same({5, 9}, omniglot.resize(T.full({12, 7}, 1), 5, 9):shape())
      local p = omniglot.resize(T.full({105, 105}, 100 / 255), 28, 28, {pil_exact = true})
      assert.is_true(max_abs(p, T.full({28, 28}, 100 / 255)) < 1e-6)
    end)

    it("checks its arguments", function()
      assert.has_error(function() omniglot.resize(T.zeros{2, 3, 4}, 5) end,
        "bad argument #1 to 'resize' (expected tensor (H, W) or (1, H, W), got (2, 3, 4))")
      assert.error_matches(function() omniglot.resize(T.zeros{4, 4}, 0) end, "bad argument #2 to 'resize' (expected size in 1..16384)", 1, true)
    end)
  end)

  describe("load", function()
    local root, cache
    setup(function()
      root = dir .. "/tree"
      cache = dir .. "/cache/tree_10.bin"
      make_tree(root)
    end)

    it("loads the tree in the documented order, scaled, inverted", function()
      local ds = omniglot.load(root, {size = 10})
      assert.equals(5, ds.num_classes)
      assert.equals(3, ds.images_per_class)
      assert.equals(10, ds.size)
      assert.same({5, 3, 1, 10, 10}, ds.images:shape())
      assert.same({"Alpha", "Alpha", "Beta", "Beta", "Gamma"}, ds.alphabets)
      assert.same({"character01", "character02", "character01", "character02", "character01"}, ds.characters)
      assert.same({"background", "background", "background", "background", "evaluation"}, ds.sets)
      assert.equals("off", ds.cache_status)
      assert.is_false(ds.pil_exact)
      for c = 1, 5 do
        for k = 1, 3 do -- files sorted by name: image k is <c>_0k.png
          local x = ds.images:select(1, c):select(1, k)
          assert.is_true(max_abs(x, T.full({1, 10, 10}, 1 - gray(c, k))) < 1e-5)
        end
      end
    end)

    it("writes a cache, then reads it; the table form and the cache alone work too", function()
      local a = omniglot.load(root, {size = 10, cache = cache})
      assert.equals("built", a.cache_status)
      assert.is_nil(a.cache_error)
      assert.is_true(file_exists(cache))
      local b = omniglot.load{root = root, size = 10, cache = cache}
      assert.equals("hit", b.cache_status)
      assert.equals(a.fingerprint, b.fingerprint)
      assert.equals(0, max_abs(a.images, b.images))
      assert.same(a.characters, b.characters)
      local c = omniglot.load{cache = cache, size = 10}
      assert.equals("unchecked", c.cache_status)
      assert.equals(0, max_abs(a.images, c.images))
      local d = omniglot.load(root, {size = 12, cache = cache})
      assert.matches("^rebuilt: made with other settings", d.cache_status)
      assert.same({5, 3, 1, 12, 12}, d.images:shape())
    end)

    it("rebuilds a corrupt cache", function()
      omniglot.load(root, {size = 10, cache = cache})
      local f = assert(io.open(cache, "r+b"))
      f:seek("end", -3)
      f:write("xyz")
      f:close()
      local ds = omniglot.load(root, {size = 10, cache = cache})
      assert.equals("rebuilt: payload checksum mismatch (corrupt file)", ds.cache_status)
      assert.equals("hit", omniglot.load(root, {size = 10, cache = cache}).cache_status)
    end)

    it("names the bad file and libpng's reason", function()
      local bad = root .. "/images_evaluation/Gamma/character01/0005_02.png"
      local data = assert(io.open(bad, "rb")):read("a")
      local f = assert(io.open(bad, "wb"))
      f:write(data:sub(1, #data // 2))
      f:close()
      local ok, err = pcall(omniglot.load, root, {size = 10})
      assert.is_false(ok)
      assert.matches("load: .*0005_02.png: libpng: ", err)
      f = assert(io.open(bad, "wb"))
      f:write(data)
      f:close()
    end)

    it("checks its arguments", function()
      assert.has_error(function() omniglot.load("/x") end,
        "bad argument #1 to 'load' (expected directory with images_background/ and images_evaluation/, got '/x')")
      assert.has_error(function() omniglot.load(root, {size = 0}) end,
        "bad argument #2 to 'load' (option 'size' must be in 1..4096, got 0)")
      assert.has_error(function() omniglot.load(root, {cache = 5}) end,
        "bad argument #2 to 'load' (option 'cache' must be a path or false, got number)")
      assert.has_error(function() omniglot.load(root, {size = "big"}) end,
        "bad argument #2 to 'load' (option 'size' must be an integer, got string)")
      assert.has_error(function() omniglot.load(root, {szie = 28}) end,
        "bad argument #2 to 'load' (unknown option 'szie'; valid options: size, cache, pil_exact, images_per_class, threads)")
      assert.has_error(function() omniglot.load(root, {pil_exact = 1}) end,
        "bad argument #2 to 'load' (option 'pil_exact' must be a boolean, got number)")
      assert.has_error(function() omniglot.load{} end,
        "bad argument #1 to 'load' (expected root folder or {root=, cache=}, got neither)")
      local ok, err = pcall(omniglot.load, {cache = dir .. "/none.bin"})
      assert.is_false(ok)
      assert.matches("none.bin' is unusable: no cache file", err)
    end)
  end)

  describe("gather", function()
    -- 3 classes x 2 images of 3x3; image (c, k) = 10 * c + k + pattern, so a rotation shows
    local pattern = {{0, 0.1, 0.2}, {0.3, 0.4, 0.5}, {0.6, 0.7, 0.8}}
    local rot90 = { -- numpy.rot90(pattern, r)
      [0] = pattern,
      {{0.2, 0.5, 0.8}, {0.1, 0.4, 0.7}, {0, 0.3, 0.6}},
      {{0.8, 0.7, 0.6}, {0.5, 0.4, 0.3}, {0.2, 0.1, 0}},
      {{0.6, 0.3, 0}, {0.7, 0.4, 0.1}, {0.8, 0.5, 0.2}},
    }
    local function img(c, k, r)
      return image(3, 3, function(i, j) return 10 * c + k + rot90[r or 0][i][j] end)
    end
    local images
    setup(function()
      local classes = {}
      for c = 1, 3 do classes[c] = T.stack({img(c, 1):reshape{1, 3, 3}, img(c, 2):reshape{1, 3, 3}}) end
      images = T.stack(classes)
    end)

    it("picks images by class and number, rotated counterclockwise like numpy.rot90", function()
      assert.same({3, 2, 1, 3, 3}, images:shape())
      local x = omniglot.gather(images, {3, 1, 2, 2}, {2, 1, 1, 2}, {0, 1, 2, 3})
      assert.same({4, 1, 3, 3}, x:shape())
      local want = {{3, 2, 0}, {1, 1, 1}, {2, 1, 2}, {2, 2, 3}}
      for n, w in ipairs(want) do
        assert.is_true(max_abs(x:select(1, n):select(1, 1), img(w[1], w[2], w[3])) < 1e-5, "image " .. n)
      end
      local y = omniglot.gather(images, {1, 2, 3, 1, 2, 3}, {1, 1, 1, 2, 2, 2}, nil, {2, 3})
      assert.same({2, 3, 1, 3, 3}, y:shape())
      assert.is_true(max_abs(y:select(1, 2):select(1, 3):select(1, 1), img(3, 2)) < 1e-5)
      assert.same({0, 1, 3, 3}, omniglot.gather(images, {}, {}):shape())
    end)

    it("checks every index", function()
      assert.has_error(function() omniglot.gather(images, {4}, {1}) end,
        "bad argument #2 to 'gather' (expected class numbers in 1..3, got 4 at [1])")
      assert.has_error(function() omniglot.gather(images, {1, 1}, {1, 3}) end,
        "bad argument #3 to 'gather' (expected image numbers in 1..2, got 3 at [2])")
      assert.has_error(function() omniglot.gather(images, {1}, {1}, {4}) end,
        "bad argument #4 to 'gather' (expected rotations 0..3 (quarter turns), got 4 at [1])")
      assert.has_error(function() omniglot.gather(images, {1, 2}, {1}) end,
        "bad argument #3 to 'gather' (expected 2 indices (as many as classes), got 1)")
      assert.has_error(function() omniglot.gather(images, {1, "x"}, {1, 1}) end,
        "bad argument #2 to 'gather' (expected list of class numbers, got string at [2])")
      assert.error_matches(function() omniglot.gather(images, {1, 2}, {1, 1}, nil, {3}) end, "(expected a shape with 2 elements in at most 5 dims, got (3))", 1, true)
      assert.has_error(function() omniglot.gather(T.zeros{3, 3}, {1}, {1}) end,
        "bad argument #1 to 'gather' (expected tensor (classes, images, 1, H, W), got (3, 3))")
    end)
  end)

  describe("tile", function()
    it("lays out images in a grid as an RGB tensor", function()
      local x = T.rand{6, 1, 5, 5}
      local g = omniglot.tile(x, {cols = 3, scale = 1, pad = 2})
      assert.same({3, 2 + 2 * (5 + 2), 2 + 3 * (5 + 2)}, g:shape())
      local labelled = omniglot.tile(x, {cols = 3, labels = {1, 2, 3, 1, 2, 3}, captions = {7, 8, 9, 7, 8, 9},
                                         separators = {1}})
      assert.equals(3, labelled:size(1))
      omniglot.write_png(dir .. "/tile.png", labelled)
      assert.same(labelled:shape()[2], omniglot.read_png(dir .. "/tile.png"):size(1))
    end)

    it("checks its options", function()
      assert.has_error(function() omniglot.tile(T.rand{2, 1, 5, 5}, {labels = {1}}) end,
        "bad option 'labels' to 'tile' (expected 2 numbers, got 1)")
      assert.has_error(function() omniglot.tile(T.rand{2, 1, 5, 5}, {colls = 1}) end,
        "bad argument #2 to 'tile' (unknown option 'colls'; valid options: cols, scale, pad, invert, labels, captions, separators)")
      assert.has_error(function() omniglot.tile(T.rand{2, 1, 5, 5}, {scale = 17}) end,
        "bad argument #2 to 'tile' (option 'scale' must be in 1..16, got 17)")
      assert.has_error(function() omniglot.resize(T.rand{5, 5}, 3, 3, {pil = true}) end,
        "bad argument #4 to 'resize' (unknown option 'pil'; valid options: pil_exact)")
      assert.has_error(function() omniglot.tile(T.rand{5, 5}) end,
        "bad argument #1 to 'tile' (expected tensor (n, 1, H, W) or (n, H, W), got (5, 5))")
    end)
  end)
end)

-- The real dataset: unpacked from the zips in OMNIGLOT_ZIPS (CI: ../shared/omniglot) by the same
-- script as `make data`, into $OMNIGLOT_DIR or data/omniglot. Decoded from the PNGs into a cache in a
-- new folder (never one an earlier run left), so `make sanitize` decodes the real files too.
if os.getenv("OMNIGLOT_ZIPS") then
  describe("the full Omniglot dataset", function()
    local root = os.getenv("OMNIGLOT_DIR") or "data/omniglot"
    local ds, dir, cache

    setup(function()
      local ok = os.execute("sh data/fetch_omniglot.sh > /dev/null")
      assert(ok, "data/fetch_omniglot.sh failed")
      dir = require("tests.lua.helpers").tmpdir("omniglot-full")
      cache = dir .. "/cache_28.bin"
      ds = omniglot.load(root, {cache = cache})
    end)

    teardown(function()
      if dir then os.execute("rm -rf '" .. dir .. "'") end
    end)

    it("was decoded from the PNGs (a new cache)", function()
      assert.equals("built", ds.cache_status)
    end)

    it("has 1623 classes of 20 images, 964 background and 659 evaluation, values in [0, 1]", function()
      assert.equals(1623, ds.num_classes)
      assert.equals(20, ds.images_per_class)
      assert.same({1623, 20, 1, 28, 28}, ds.images:shape())
      local count, alphabets = {background = 0, evaluation = 0}, {}
      for i = 1, ds.num_classes do
        count[ds.sets[i]] = count[ds.sets[i]] + 1
        alphabets[ds.sets[i] .. "/" .. ds.alphabets[i]] = true
      end
      assert.equals(964, count.background)
      assert.equals(659, count.evaluation)
      local n = 0
      for _ in pairs(alphabets) do n = n + 1 end
      assert.equals(50, n)
      assert.equals("Alphabet_of_the_Magi", ds.alphabets[1])
      assert.equals("character01", ds.characters[1])
      assert.is_true(ds.images:max():item() <= 1)
      assert.is_true((-ds.images):max():item() <= 0)
      -- strokes are 1: most of each image is background near 0
      assert.is_true(ds.images:mean():item() < 0.25)
    end)

    it("loads again from the cache it wrote, the same images bit for bit", function()
      -- (how fast is for `make bench`, not for a test on a busy machine)
      local again = omniglot.load(root, {cache = cache})
      assert.equals("hit", again.cache_status)
      assert.same(ds.images:shape(), again.images:shape())
      assert.equals(0, (ds.images - again.images):abs():max():item())
      assert.same(ds.characters, again.characters)
    end)
  end)
else
  pending("[dataset] the full Omniglot dataset (set OMNIGLOT_ZIPS=DIR with the two zips)")
end
