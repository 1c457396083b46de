-- plot: line charts as SVG text, so a run's learning curve opens in any browser.
--
--   local plot = require "plot"
--   local svg = plot.svg{title = "omniglot5w1s", panels = {
--     {title = "meta-train loss", xlabel = "iteration", ylabel = "loss",
--      series = {{name = "query loss", x = {10, 20}, y = {1.2, 0.9}}}},
--     {title = "accuracy", ylabel = "accuracy", ylim = {0, 1},
--      series = {{name = "train", x = ..., y = ...}, {name = "validation", x = ..., y = ..., marker = true}}},
--   }}
--   plot.write("runs/x/curves.svg", spec)
--
-- Panels are stacked vertically and share nothing; each gets axes with round-number ticks, one
-- polyline per series (non-finite points are skipped) and a legend. Options: width (800), panel
-- height (260), legend_width (160: the space right of each panel for the legend), ylim = {low, high}
-- per panel, log_y = true per panel.
local M = {}

M.colors = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"}

local function finite(v) return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge end

local function escape(s)
  return (tostring(s):gsub("[<>&\"]", {["<"] = "&lt;", [">"] = "&gt;", ["&"] = "&amp;", ['"'] = "&quot;"}))
end

-- round-number ticks covering [lo, hi]
local function ticks(lo, hi, count)
  if hi <= lo then hi = lo + 1 end
  local raw = (hi - lo) / (count or 5)
  local mag = 10 ^ math.floor(math.log(raw, 10))
  local step = mag
  for _, m in ipairs{1, 2, 2.5, 5, 10} do
    if m * mag >= raw then
      step = m * mag
      break
    end
  end
  local out = {}
  local first = math.ceil(lo / step - 1e-9) * step
  for v = first, hi + step * 1e-9, step do out[#out + 1] = v end
  return out, step
end

local function fmt_tick(v, step)
  if math.abs(v) < step * 1e-6 then v = 0 end
  if math.abs(v) >= 1e5 or (step < 1e-3 and v ~= 0) then return string.format("%.3g", v) end
  if step >= 1 and v == math.floor(v) then return string.format("%d", math.floor(v)) end
  local decimals = math.max(0, -math.floor(math.log(step, 10) + 1e-9))
  if step * 10 ^ decimals ~= math.floor(step * 10 ^ decimals + 1e-9) then decimals = decimals + 1 end
  return string.format("%." .. decimals .. "f", v)
end

local function panel_svg(out, panel, x0, y0, width, height, legend_width)
  local left, right, top, bottom = 70, legend_width or 160, 30, 45
  local pw, ph = width - left - right, height - top - bottom
  local log_y = panel.log_y
  local function ty(v) return log_y and math.log(v, 10) or v end
  -- data range
  local xmin, xmax, ymin, ymax = math.huge, -math.huge, math.huge, -math.huge
  for _, s in ipairs(panel.series or {}) do
    for i = 1, #s.x do
      local x, y = s.x[i], s.y[i]
      if finite(x) and finite(y) and (not log_y or y > 0) then
        xmin, xmax = math.min(xmin, x), math.max(xmax, x)
        ymin, ymax = math.min(ymin, ty(y)), math.max(ymax, ty(y))
      end
    end
  end
  if panel.ylim then ymin, ymax = ty(panel.ylim[1]), ty(panel.ylim[2]) end
  if xmin == math.huge then xmin, xmax = 0, 1 end
  if ymin == math.huge then ymin, ymax = 0, 1 end
  if xmax == xmin then xmin, xmax = xmin - 1, xmax + 1 end
  if ymax == ymin then ymin, ymax = ymin - 0.5, ymax + 0.5 end
  if not panel.ylim then
    local pad = (ymax - ymin) * 0.05
    ymin, ymax = ymin - pad, ymax + pad
  end
  local function px(x) return x0 + left + (x - xmin) / (xmax - xmin) * pw end
  local function py(y) return y0 + top + (1 - (ty(y) - ymin) / (ymax - ymin)) * ph end
  local function pyt(t) return y0 + top + (1 - (t - ymin) / (ymax - ymin)) * ph end

  out[#out + 1] = string.format('<text x="%.1f" y="%.1f" font-size="14" font-weight="bold">%s</text>',
    x0 + left, y0 + top - 10, escape(panel.title or ""))
  out[#out + 1] = string.format('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" '
    .. 'stroke="#888"/>', x0 + left, y0 + top, pw, ph)
  -- grid and tick labels
  local xt, xstep = ticks(xmin, xmax, 6)
  for _, v in ipairs(xt) do
    local x = px(v)
    out[#out + 1] = string.format('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>',
      x, y0 + top, x, y0 + top + ph)
    out[#out + 1] = string.format('<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle">%s</text>',
      x, y0 + top + ph + 15, fmt_tick(v, xstep))
  end
  local yt, ystep = ticks(ymin, ymax, 5)
  for _, t in ipairs(yt) do
    local y = pyt(t)
    out[#out + 1] = string.format('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>',
      x0 + left, y, x0 + left + pw, y)
    local label = log_y and string.format("%.3g", 10 ^ t) or fmt_tick(t, ystep)
    out[#out + 1] = string.format('<text x="%.1f" y="%.1f" font-size="11" text-anchor="end">%s</text>',
      x0 + left - 5, y + 4, label)
  end
  out[#out + 1] = string.format('<text x="%.1f" y="%.1f" font-size="12" text-anchor="middle">%s</text>',
    x0 + left + pw / 2, y0 + top + ph + 35, escape(panel.xlabel or "iteration"))
  out[#out + 1] = string.format('<text x="%.1f" y="%.1f" font-size="12" text-anchor="middle" '
    .. 'transform="rotate(-90 %.1f %.1f)">%s</text>', x0 + 18, y0 + top + ph / 2, x0 + 18,
    y0 + top + ph / 2, escape(panel.ylabel or ""))
  -- series
  for i, s in ipairs(panel.series or {}) do
    local color = s.color or M.colors[(i - 1) % #M.colors + 1]
    local pts = {}
    for j = 1, #s.x do
      local x, y = s.x[j], s.y[j]
      if finite(x) and finite(y) and (not log_y or y > 0) then
        pts[#pts + 1] = string.format("%.1f,%.1f", px(x), py(y))
        if s.marker or #s.x == 1 then
          out[#out + 1] = string.format('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>', px(x), py(y), color)
        end
      end
    end
    if #pts > 1 then
      out[#out + 1] = string.format('<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>',
        color, table.concat(pts, " "))
    end
    local ly = y0 + top + 10 + (i - 1) * 18
    out[#out + 1] = string.format('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" '
      .. 'stroke-width="3"/>', x0 + left + pw + 10, ly, x0 + left + pw + 30, ly, color)
    out[#out + 1] = string.format('<text x="%.1f" y="%.1f" font-size="12">%s</text>',
      x0 + left + pw + 35, ly + 4, escape(s.name or ("series " .. i)))
  end
end

--- The SVG text of a chart spec (see the header).
function M.svg(spec)
  local width = spec.width or 800
  local panel_height = spec.panel_height or 260
  local title_height = spec.title and 30 or 0
  local panels = spec.panels or {}
  local height = title_height + panel_height * math.max(1, #panels)
  local out = {string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
    .. 'viewBox="0 0 %d %d" font-family="sans-serif">', width, height, width, height),
    string.format('<rect width="%d" height="%d" fill="white"/>', width, height)}
  if spec.title then
    out[#out + 1] = string.format('<text x="%d" y="22" font-size="16" text-anchor="middle">%s</text>',
      width // 2, escape(spec.title))
  end
  for i, panel in ipairs(panels) do
    panel_svg(out, panel, 0, title_height + (i - 1) * panel_height, width, panel_height, spec.legend_width)
  end
  out[#out + 1] = "</svg>\n"
  return table.concat(out, "\n")
end

--- Write the chart of `spec` to path (atomically when the tensor module is there).
function M.write(path, spec)
  local text = M.svg(spec)
  local ok, T = pcall(require, "tensor")
  if ok and T.write_atomic then
    T.write_atomic(path, text)
  else
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
  end
end

return M
