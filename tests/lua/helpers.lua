-- tests/lua/helpers.lua: reference code shared by the specs (require "tests.lua.helpers").
local T = require "tensor"

local M = {}

--- |a - b| <= tol * max(1, |b|) for numbers, element by element for tensors and nested tables.
function M.near(a, b, tol, what)
  tol = tol or 1e-6
  if T.is_tensor(a) then a = a:totable() end
  if T.is_tensor(b) then b = b:totable() end
  if type(a) == "table" then
    -- (plain error: busted's assert table lives in the specs' environment, not here)
    if #a ~= #b then error(("%s length: got %d, expected %d"):format(what or "", #a, #b), 2) end
    for i = 1, #a do M.near(a[i], b[i], tol, (what or "") .. "[" .. i .. "]") end
    return
  end
  if not (math.abs(a - b) <= tol * math.max(1, math.abs(b))) then
    error(("%s: got %.9g, expected %.9g"):format(what or "value", a, b), 2)
  end
end

--- conv2d written out with loops on nested tables: x[n][c][h][w], w[o][c][kh][kw], b[o] or nil;
--- zero padding, cross-correlation like torch. Returns y[n][o][i][j].
function M.conv2d_loops(x, w, b, stride, pad)
  local N, C, H, W = #x, #x[1], #x[1][1], #x[1][1][1]
  local O, KH, KW = #w, #w[1][1], #w[1][1][1]
  local OH, OW = (H + 2 * pad - KH) // stride + 1, (W + 2 * pad - KW) // stride + 1
  local y = {}
  for n = 1, N do
    y[n] = {}
    for o = 1, O do
      y[n][o] = {}
      for i = 1, OH do
        y[n][o][i] = {}
        for j = 1, OW do
          local s = b and b[o] or 0
          for c = 1, C do
            for ki = 1, KH do
              for kj = 1, KW do
                local h, v = (i - 1) * stride - pad + ki, (j - 1) * stride - pad + kj
                if h >= 1 and h <= H and v >= 1 and v <= W then s = s + x[n][c][h][v] * w[o][c][ki][kj] end
              end
            end
          end
          y[n][o][i][j] = s
        end
      end
    end
  end
  return y
end

--- The gradients of sum(conv2d(x, w) * gy) written out with loops, from the definition of the forward
--- (each product x[n][c][h][v] * w[o][c][ki][kj] sends gy[n][o][i][j] to both factors): gx[n][c][h][v]
--- and gw[o][c][ki][kj], as nested tables. An independent reference for conv2d's backward ops.
function M.conv2d_backward_loops(x, w, gy, stride, pad)
  local N, C, H, W = #x, #x[1], #x[1][1], #x[1][1][1]
  local O, KH, KW = #w, #w[1][1], #w[1][1][1]
  local OH, OW = #gy[1][1], #gy[1][1][1]
  local function zeros(a, b, c, d)
    local t = {}
    for i = 1, a do
      t[i] = {}
      for j = 1, b do
        t[i][j] = {}
        for k = 1, c do
          t[i][j][k] = {}
          for l = 1, d do t[i][j][k][l] = 0 end
        end
      end
    end
    return t
  end
  local gx, gw = zeros(N, C, H, W), zeros(O, C, KH, KW)
  for n = 1, N do
    for o = 1, O do
      for i = 1, OH do
        for j = 1, OW do
          local g = gy[n][o][i][j]
          for c = 1, C do
            for ki = 1, KH do
              for kj = 1, KW do
                local h, v = (i - 1) * stride - pad + ki, (j - 1) * stride - pad + kj
                if h >= 1 and h <= H and v >= 1 and v <= W then
                  gx[n][c][h][v] = gx[n][c][h][v] + g * w[o][c][ki][kj]
                  gw[o][c][ki][kj] = gw[o][c][ki][kj] + g * x[n][c][h][v]
                end
              end
            end
          end
        end
      end
    end
  end
  return gx, gw
end

--- A parallel.map job (parallel_spec.lua): keeps its thread busy for `iterations` turns of a loop,
--- then returns value * 2.
function M.busy_job(iterations, value)
  local s = 0
  for i = 1, iterations do s = s + i % 7 end
  assert(s >= 0)
  return value * 2
end

--- A new empty folder /tmp/mamlrun-<what>.XXXXXX (mktemp -d); the spec removes it when done.
function M.tmpdir(what)
  local p = io.popen("mktemp -d /tmp/mamlrun-" .. what .. ".XXXXXX")
  local dir = p:read("l")
  p:close()
  assert(dir and dir ~= "", "mktemp -d failed")
  return dir
end

--- Synthetic N-way tasks on 8x8 images: each class a random prototype, examples = prototype + noise.
--- `poison` makes the query inputs of the poison-th sampled batch NaN.
function M.synthetic_source(poison)
  local calls = 0
  return {
    kind = "classification", loss = "cross_entropy", metric = "accuracy", image_size = 8, channels = 1,
    sample = function(_, split, n_tasks, gen, shape)
      calls = calls + (split == "train" and 1 or 0)
      local function part(per, protos)
        local n = shape.ways * per
        local xs, labels = {}, {}
        for t = 1, n_tasks do
          local imgs = {}
          for j = 1, n do
            local c = (j - 1) % shape.ways + 1
            imgs[j] = protos[t][c] + T.randn({1, 8, 8}, gen) * 0.5
            labels[j] = c
          end
          xs[t] = T.stack(imgs, 1)
        end
        local y = {}
        for t = 1, n_tasks do y[t] = T.tensor(labels) end
        return T.stack(xs, 1), T.stack(y, 1)
      end
      local protos = {}
      for t = 1, n_tasks do
        protos[t] = {}
        for c = 1, shape.ways do protos[t][c] = T.randn({1, 8, 8}, gen) end
      end
      local sx, sy = part(shape.shots, protos)
      local qx, qy = part(shape.queries, protos)
      if poison and split == "train" and calls == poison then qx = T.full(qx:shape(), 0 / 0) end
      return {support_x = sx, support_y = sy, query_x = qx, query_y = qy}
    end,
  }
end

--- The bytes of a file.
function M.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

--- Write s to a file (replacing it).
function M.write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

--- A classification meta-batch of random tasks: inputs (B, ways * per_class, ...) and labels.
function M.random_batch(gen, tasks, ways, per_class, input_shape)
  local function part()
    local xs, ys = {}, {}
    for t = 1, tasks do
      local shape = {ways * per_class}
      for _, d in ipairs(input_shape) do shape[#shape + 1] = d end
      xs[t] = T.randn(shape, gen)
      local labels = {}
      for j = 1, ways * per_class do labels[j] = (j - 1) % ways + 1 end
      ys[t] = T.tensor(labels)
    end
    return T.stack(xs, 1), T.stack(ys, 1)
  end
  local sx, sy = part()
  local qx, qy = part()
  return {support_x = sx, support_y = sy, query_x = qx, query_y = qy}
end

return M
