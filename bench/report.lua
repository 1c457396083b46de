-- bench/report.lua RESULTS [CEILINGS]: the table of bench/run_all.sh from its RESULT lines (mamlrun and
-- peer). CEILINGS (bench/out/ceilings.jsonl, written by build/bench/ceilings in the same run): adds each
-- line's GFLOP/s as a fraction of OpenBLAS's sgemm 1024^3 on the same thread count and of the FMA peak
-- (the widest vector width) on the same thread count.
local json = require "json"
local path = (arg and arg[1]) or error("usage: mamlrun bench/report.lua RESULTS [CEILINGS]", 0)
local ours, peer = {}, {}
for line in io.lines(path) do
  local r = json.decode(line:match("^RESULT (.*)$"))
  if r.impl == "mamlrun" then
    ours[#ours + 1] = r
  else -- the peer: keep its best thread setting per config
    local key = ("%d:%d:%d"):format(r.n_way, r.k_shot, r.first_order and 1 or 2)
    if not peer[key] or r.median_s < peer[key].median_s then peer[key] = r end
  end
end
local sgemm, fma, fma_isa = {}, {}, nil -- GFLOP/s by thread count
if arg[2] then
  for line in io.lines(arg[2]) do
    local c = json.decode(line)
    if c.what == "sgemm1024" then sgemm[c.threads] = c.gflops end
    if c.what == "fma" and c.widest then fma[c.threads], fma_isa = c.gflops, c.isa end
  end
end
local function frac(x, ceiling) return ceiling and ("%.0f%%"):format(100 * x / ceiling) or "-" end
print(("%-6s %-5s %-5s %-3s %9s %9s %9s %8s %6s %6s %9s %10s %9s %9s"):format("config", "net", "order", "thr",
  "s/iter", "min", "max", "GFLOP/s", "%sgemm", "%FMA", "RSS MiB", "peer s/it", "speed-up", "RSS ratio"))
for _, r in ipairs(ours) do
  local key = ("%d:%d:%d"):format(r.ways, r.shots, r.order)
  local p = peer[key]
  print(("%-6s %-5s %-5s %-3d %9.3f %9.3f %9.3f %8.1f %6s %6s %9.0f %10s %9s %9s"):format(
    ("%dw%ds"):format(r.ways, r.shots), r.net, r.order == 2 and "2nd" or "1st", r.threads, r.median_s, r.min_s,
    r.max_s, r.gflops, frac(r.gflops, sgemm[r.threads]), frac(r.gflops, fma[r.threads]), r.peak_rss_mib,
    p and ("%.3f"):format(p.median_s) or "-", p and ("%.2fx"):format(p.median_s / r.median_s) or "-",
    p and ("%.2f"):format(r.peak_rss_mib / p.peak_rss_mib) or "-"))
end
print("speed-up = peer's best median (over 1 and 2 threads) / ours; RSS ratio = our peak RSS / the peer's")
if next(sgemm) then
  local ts = {}
  for t in pairs(sgemm) do ts[#ts + 1] = t end
  table.sort(ts)
  local parts = {}
  for _, t in ipairs(ts) do
    parts[#parts + 1] = ("%d thread%s: sgemm %.1f, FMA %s GFLOP/s"):format(t, t == 1 and "" or "s", sgemm[t],
      fma[t] and ("%.1f"):format(fma[t]) or "-")
  end
  print(("%%sgemm = GFLOP/s / OpenBLAS sgemm 1024^3 on the same threads; %%FMA = / the FMA peak (%s); %s")
    :format(fma_isa or "none", table.concat(parts, "; ")))
else
  print("(no ceilings: run the ceilings part of bench/run_all.sh in the same run for the %sgemm and %FMA columns)")
end
