-- bench/bn_bench.lua: batch norm (channels-last, with its fused ReLU, as nn.conv4 runs it) against the
-- machine's memory bandwidth. Each kernel moves a known number of bytes; its GB/s is set beside the
-- bandwidth ceiling that build/bench/ceilings measured in the same `make bench` run
-- (bench/out/ceilings.jsonl, the "map" kind on 1 thread): how close batch norm runs to what the memory
-- system can give, and so how much faster it could be without fewer passes.
--
--   forward    T.batch_norm(x, w, b, {relu=true}), no recording: the statistics (x read once)
--              and the write (x read, out written): 3 x the tensor's bytes
--   backward   its gradient w.r.t. x, w and b at first order: the sums of g and g xhat (g and x
--              read) and gx (g and x read, gx written): 5 x the tensor's bytes
--
--   ./mamlrun bench/bn_bench.lua [rows=65536,16384] [channels=64] [repeats=15] [ceilings=FILE]
--
-- rows: images x height x width of the channels-last activation (65536 x 64 floats = 16 MB, the
-- size of a 20-way batch's first layer; 16384: 4 MB). One thread.
local T = require "tensor"
local ag = require "autograd"
local host = require "mamlrun"
local json = require "json"

local defaults = {rows = "65536,16384", channels = 64, repeats = 15, ceilings = "bench/out/ceilings.jsonl"}
local cfg = require("options").script_keys("bn_bench", ..., defaults)
local rows = {}
for n in tostring(cfg.rows):gmatch("%d+") do rows[#rows + 1] = tonumber(n) end
if #rows == 0 then error("bn_bench: rows must list numbers, got " .. tostring(cfg.rows), 0) end
pcall(function() require("parallel").set_threads(1) end)

-- the map bandwidth of this run's ceilings, 1 thread (nil when the file is not there)
local function ceiling()
  local f = io.open(cfg.ceilings, "r")
  if not f then return nil end
  local gb
  for line in f:lines() do
    local ok, r = pcall(json.decode, line)
    if ok and type(r) == "table" and r.what == "bandwidth" and r.kind == "map" and r.threads == 1 then gb = r.gbytes end
  end
  f:close()
  return gb
end

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

local function time(fn)
  fn() -- warm-up (buffers, caches)
  local t = {}
  for r = 1, cfg.repeats do
    local t0 = host.time()
    fn()
    t[r] = host.time() - t0
  end
  return median(t)
end

local bw = ceiling()
print(string.format("batch norm, channels-last with ReLU, 1 thread, median of %d; bandwidth ceiling (map, 1 thread): %s",
  cfg.repeats, bw and string.format("%.1f GB/s", bw) or "not measured (run build/bench/ceilings first)"))
print(string.format("%-10s %8s %6s %9s %9s %8s %11s", "kernel", "rows", "MB", "ms", "r+w (MB)", "GB/s", "of ceiling"))
local gen = T.generator(1)
for _, n in ipairs(rows) do
  local c = cfg.channels
  local x = T.randn({n, c}, gen):requires_grad(true)
  local w = T.ones({c}):requires_grad(true)
  local b = T.zeros({c}):requires_grad(true)
  local g = T.randn({n, c}, gen)
  local mb = n * c * 4 / 2 ^ 20
  local cases = {
    {"forward", 3, function()
      ag.no_grad(function() return T.batch_norm(x, w, b, {layout = "nhwc", relu = true}) end)
    end},
    {"backward", 5, nil},
  }
  local y = T.batch_norm(x, w, b, {layout = "nhwc", relu = true})
  cases[2][3] = function() ag.grad(y, {x, w, b}, {grad_output = g}) end
  for _, case in ipairs(cases) do
    local s = time(case[3])
    local gbs = case[2] * n * c * 4 / s * 1e-9
    print(string.format("%-10s %8d %6.1f %9.3f %9.1f %8.1f %11s", case[1], n, mb, s * 1e3, case[2] * mb, gbs,
      bw and string.format("%.0f%%", 100 * gbs / bw) or "-"))
    print("RESULT " .. json.encode{what = "batch_norm_" .. case[1], rows = n, channels = c, seconds = s,
      gbytes = gbs, ceiling_gbytes = bw})
  end
end
