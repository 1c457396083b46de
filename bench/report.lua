-- bench/report.lua FILE: the table of bench/run_all.sh from its RESULT lines (mamlrun and peer).
local json = require "json"
local path = (arg and arg[1]) or error("usage: mamlrun bench/report.lua RESULTS", 0)
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
print(("%-6s %-5s %-5s %-3s %9s %9s %9s %8s %9s %10s %9s %9s"):format("config", "net", "order", "thr", "s/iter",
  "min", "max", "GFLOP/s", "RSS MiB", "peer s/it", "speed-up", "RSS ratio"))
for _, r in ipairs(ours) do
  local key = ("%d:%d:%d"):format(r.ways, r.shots, r.order)
  local p = peer[key]
  print(("%-6s %-5s %-5s %-3d %9.3f %9.3f %9.3f %8.1f %9.0f %10s %9s %9s"):format(
    ("%dw%ds"):format(r.ways, r.shots), r.net, r.order == 2 and "2nd" or "1st", r.threads, r.median_s, r.min_s,
    r.max_s, r.gflops, r.peak_rss_mib, p and ("%.3f"):format(p.median_s) or "-",
    p and ("%.2fx"):format(p.median_s / r.median_s) or "-",
    p and ("%.2f"):format(r.peak_rss_mib / p.peak_rss_mib) or "-"))
end
print("speed-up = peer's best median (over 1 and 2 threads) / ours; RSS ratio = our peak RSS / the peer's")
