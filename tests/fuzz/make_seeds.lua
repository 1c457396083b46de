-- tests/fuzz/make_seeds.lua: seed inputs for the fuzz targets, made from scratch (nothing derived
-- from Omniglot, nothing committed):
--
--   mamlrun tests/fuzz/make_seeds.lua DIR      -- writes DIR/png, DIR/omniglot_cache, DIR/checkpoint,
--                                              -- DIR/overrides (one file per seed)
--
-- png: every PNG color type and bit depth (gray 1/2/4/8/16, RGB 8/16, palette 1/2/4/8 with and
-- without tRNS, gray+alpha, RGBA), plain and Adam7-interlaced, with every row filter, written by a
-- small encoder below (stored zlib blocks), plus files from omniglot.write_png (libpng, compressed).
-- omniglot_cache: caches written by omniglot.load for tiny synthetic alphabets of random images.
-- checkpoint: checkpoint.encode of trees with every tag. overrides: command lines (NUL-separated).
local T = require "tensor"
local omniglot = require "omniglot"
local checkpoint = require "checkpoint"

local _, dir = ...
assert(dir, "usage: mamlrun tests/fuzz/make_seeds.lua DIR")
local gen = T.generator(1)

local function write(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
end
local function mkdir(path) assert(os.execute("mkdir -p '" .. path .. "'")) end

-- ------------------------------------------------------------------ PNG

local function chunk(kind, data)
  return string.pack(">I4", #data) .. kind .. data .. string.pack(">I4", T.crc32(kind .. data))
end

local function adler32(s)
  local a, b = 1, 0
  for i = 1, #s do
    a = (a + s:byte(i)) % 65521
    b = (b + a) % 65521
  end
  return (b << 16) | a
end

-- a zlib stream of stored (uncompressed) blocks
local function zlib_stored(s)
  local out, pos = {"\x78\x01"}, 1
  repeat
    local n = math.min(65535, #s - pos + 1)
    local final = pos + n > #s and 1 or 0
    out[#out + 1] = string.char(final) .. string.pack("<I2I2", n, n ~ 0xffff) .. s:sub(pos, pos + n - 1)
    pos = pos + n
  until pos > #s
  out[#out + 1] = string.pack(">I4", adler32(s))
  return table.concat(out)
end

local function random_bytes(n)
  local b = {}
  for i = 1, n do b[i] = string.char(gen:random(256) - 1) end
  return table.concat(b)
end

local CHANNELS = {[0] = 1, [2] = 3, [3] = 1, [4] = 2, [6] = 4}
local ADAM7 = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4}, {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}}

-- scanlines of random pixels, each with filter type (row - 1) % 5
local function scanlines(w, h, bits_per_pixel)
  local rows = {}
  for y = 1, h do
    rows[y] = string.char((y - 1) % 5) .. random_bytes((w * bits_per_pixel + 7) // 8)
  end
  return table.concat(rows)
end

local function png(w, h, depth, color, interlace, trns)
  local bpp = depth * CHANNELS[color]
  local raw
  if interlace == 1 then
    local passes = {}
    for _, p in ipairs(ADAM7) do
      local pw, ph = (w - p[1] + p[3] - 1) // p[3], (h - p[2] + p[4] - 1) // p[4]
      if pw > 0 and ph > 0 then passes[#passes + 1] = scanlines(pw, ph, bpp) end
    end
    raw = table.concat(passes)
  else
    raw = scanlines(w, h, bpp)
  end
  local parts = {"\137PNG\r\n\26\n", chunk("IHDR", string.pack(">I4I4BBBBB", w, h, depth, color, 0, 0, interlace))}
  if color == 3 then
    local n = 1 << depth
    parts[#parts + 1] = chunk("PLTE", random_bytes(3 * n))
    if trns then parts[#parts + 1] = chunk("tRNS", random_bytes(n // 2 + 1)) end
  elseif trns and color == 0 then
    parts[#parts + 1] = chunk("tRNS", string.pack(">I2", 1))
  elseif trns and color == 2 then
    parts[#parts + 1] = chunk("tRNS", string.pack(">I2I2I2", 1, 2, 3))
  end
  parts[#parts + 1] = chunk("IDAT", zlib_stored(raw))
  parts[#parts + 1] = chunk("IEND", "")
  return table.concat(parts)
end

mkdir(dir .. "/png")
local n = 0
local depths = {[0] = {1, 2, 4, 8, 16}, [2] = {8, 16}, [3] = {1, 2, 4, 8}, [4] = {8, 16}, [6] = {8, 16}}
for _, color in ipairs{0, 2, 3, 4, 6} do
  for _, depth in ipairs(depths[color]) do
    for interlace = 0, 1 do
      local w, h = gen:random(9), gen:random(9)
      n = n + 1
      write(string.format("%s/png/%02d-c%d-d%d-i%d.png", dir, n, color, depth, interlace),
        png(w, h, depth, color, interlace, (color == 0 or color == 2 or color == 3) and interlace == 1))
    end
  end
end
write(dir .. "/png/one-pixel.png", png(1, 1, 8, 0, 0, false))
omniglot.write_png(dir .. "/png/libpng-gray.png", T.rand({28, 28}, gen))
omniglot.write_png(dir .. "/png/libpng-rgb.png", T.rand({3, 5, 7}, gen))

-- ------------------------------------------------------------------ Omniglot cache

local tree = os.tmpname()
os.remove(tree)
mkdir(dir .. "/omniglot_cache")
for k, settings in ipairs{{size = 8, pil_exact = false}, {size = 5, pil_exact = true}} do
  local root = tree .. "-" .. k
  for _, class in ipairs{"images_background/Alpha/character01", "images_background/Alpha/character02",
                         "images_evaluation/Beta_(gamma)/character01"} do
    mkdir(root .. "/" .. class)
    for i = 1, 2 do omniglot.write_png(string.format("%s/%s/%d.png", root, class, i), T.rand({12, 12}, gen)) end
  end
  local cache = dir .. "/omniglot_cache/cache-" .. k .. ".bin"
  omniglot.load{root = root, cache = cache, size = settings.size, pil_exact = settings.pil_exact, threads = 1}
  os.execute("rm -rf '" .. root .. "'")
end

-- ------------------------------------------------------------------ checkpoints

mkdir(dir .. "/checkpoint")
local trees = {
  {},
  {iteration = 7, lr = 1e-3, name = "a\0b", flag = true, off = false, neg = -5, big = math.maxinteger},
  {list = {T.randn({2, 3}, gen), T.zeros{0}, T.tensor(1.5), T.ones{1, 1, 1, 1, 1, 1, 1, 1}}},
  {format = "mamlrun-maml", experiment = "tiny", iteration = 3,
   shapes = {params = {{"conv1.weight", {4, 1, 3, 3}}, {"fc.bias", {5}}}, buffers = {}},
   params = {T.randn({4, 1, 3, 3}, gen), T.randn({5}, gen)}, buffers = {},
   optimizer = {step = 3, m = {T.zeros{5}}, v = {T.zeros{5}}}, generator = gen:get_state(),
   window = {loss = 0.5, metric = 0.25, n = 2, grad_norm = 1}, metrics = '{"type":"train","iter":1}',
   config = '{"name":"tiny"}'},
  {nested = {a = {b = {c = {d = {}}}}}, [1] = "x", [2] = {[-1] = 0.5}},
}
for i, t in ipairs(trees) do write(string.format("%s/checkpoint/%d.bin", dir, i), checkpoint.encode(t)) end

-- ------------------------------------------------------------------ overrides

mkdir(dir .. "/overrides")
local lines = {
  {"iterations=2000", "inner_lr=0.1", "first_order=true"},
  {"task=sinusoid", "hidden=40,40", "shots=5", "meta_lr=1e-3", "name='my run'"},
  {"extra.alpha=0.5", "extra.beta=\"x\"", "--", "plain", "x=1"},
  {"ways=20", "shots=5", "bn_mode=running", "rotation=none", "split=lake", "inner_loss_scale=ways"},
  {"model=mlp", "task=sinusoid", "hidden=1,2,3", "steps=0", "on_nonfinite=skip"},
  {"a.b.c=1", "a.b.d=2", "iterations=-1"},
  {"iterations=1e3", "seed=0x10", "progress=none", "resume=", "threads=1"},
}
for i, l in ipairs(lines) do write(string.format("%s/overrides/%d.args", dir, i), table.concat(l, "\0")) end
