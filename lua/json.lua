-- json: a small JSON encoder and decoder for configs, metrics.jsonl and summaries.
--
--   local json = require "json"
--   json.encode{iter = 10, loss = 0.25, acc = {0.2, 0.9}}   --> '{"acc":[0.2,0.9],"iter":10,"loss":0.25}'
--   json.decode('{"a": [1, 2.5, null]}')                     --> {a = {1, 2.5}}  (null -> nil)
--
-- Encoding: object keys are sorted so the output is deterministic; a table is an array when its
-- keys are exactly 1..n (an empty table is `[]`, or `{}` with json.encode(t, {empty_object=true}));
-- integers print as integers, floats with the fewest digits that read back to the same double;
-- NaN and +-inf have no JSON spelling and become null. Tensors and functions are an error.
local options = require "options"
local M = {}

local escapes = {
  ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
}

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

-- shortest of %.15g / %.16g / %.17g that reads back exactly
local function encode_number(n)
  if math.type(n) == "integer" then return string.format("%d", n) end
  if n ~= n or n == math.huge or n == -math.huge then return "null" end
  if n == math.floor(n) and math.abs(n) < 2^53 then return string.format("%.1f", n) end
  for _, fmt in ipairs{"%.15g", "%.16g"} do
    local s = string.format(fmt, n)
    if tonumber(s) == n then return s end
  end
  return string.format("%.17g", n)
end

-- an array is a table whose keys are exactly 1..#t
local function is_array(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t, n
end

local function encode_value(v, out, opts, path, seen)
  local tv = type(v)
  if v == nil then
    out[#out + 1] = "null"
  elseif tv == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif tv == "number" then
    out[#out + 1] = encode_number(v)
  elseif tv == "string" then
    out[#out + 1] = encode_string(v)
  elseif tv == "table" then
    if seen[v] then error("json.encode: cycle at " .. path, 0) end
    seen[v] = true
    local array, n = is_array(v)
    if array and not (n == 0 and opts.empty_object) then
      out[#out + 1] = "["
      for i = 1, n do
        if i > 1 then out[#out + 1] = "," end
        encode_value(v[i], out, opts, path .. "[" .. i .. "]", seen)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do
        if type(k) ~= "string" and type(k) ~= "number" then
          error("json.encode: key of type " .. type(k) .. " at " .. path, 0)
        end
        keys[#keys + 1] = k
      end
      table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = encode_string(tostring(k))
        out[#out + 1] = ":"
        encode_value(v[k], out, opts, path .. "." .. tostring(k), seen)
      end
      out[#out + 1] = "}"
    end
    seen[v] = nil
  else
    error("json.encode: cannot encode a " .. tv .. " at " .. path, 0)
  end
end

--- Encode a Lua value (nil, boolean, number, string, table of those) as one line of JSON.
function M.encode(v, opts)
  local out = {}
  encode_value(v, out, options.check("json.encode", 2, opts, {empty_object = "boolean"}), "$", {})
  return table.concat(out)
end

-- ------------------------------------------------------------------ decoding

local function decode_error(s, pos, what)
  local line = select(2, s:sub(1, pos):gsub("\n", "")) + 1
  error(string.format("json.decode: %s at line %d, position %d", what, line, pos), 0)
end

local function skip(s, pos)
  return s:find("[^ \t\r\n]", pos) or #s + 1
end

local decode_value

local function decode_string(s, pos)
  -- pos is at the opening quote
  local out, i = {}, pos + 1
  while true do
    local j = s:find('["\\]', i)
    if not j then decode_error(s, pos, "unterminated string") end
    out[#out + 1] = s:sub(i, j - 1)
    if s:sub(j, j) == '"' then return table.concat(out), j + 1 end
    local c = s:sub(j + 1, j + 1)
    local simple = {['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f', n = '\n', r = '\r', t = '\t'}
    if simple[c] then
      out[#out + 1] = simple[c]
      i = j + 2
    elseif c == "u" then
      local hex = s:sub(j + 2, j + 5)
      if not hex:match("^%x%x%x%x$") then decode_error(s, j, "bad \\u escape") end
      local cp = tonumber(hex, 16)
      i = j + 6
      if cp >= 0xD800 and cp <= 0xDBFF and s:sub(i, i + 1) == "\\u" then
        local low = tonumber(s:sub(i + 2, i + 5), 16)
        if low and low >= 0xDC00 and low <= 0xDFFF then
          cp = 0x10000 + (cp - 0xD800) * 0x400 + (low - 0xDC00)
          i = i + 6
        end
      end
      out[#out + 1] = utf8.char(cp)
    else
      decode_error(s, j, "bad escape \\" .. c)
    end
  end
end

function decode_value(s, pos)
  pos = skip(s, pos)
  local c = s:sub(pos, pos)
  if c == "{" then
    local obj = {}
    pos = skip(s, pos + 1)
    if s:sub(pos, pos) == "}" then return obj, pos + 1 end
    while true do
      if s:sub(pos, pos) ~= '"' then decode_error(s, pos, "expected a string key") end
      local key
      key, pos = decode_string(s, pos)
      pos = skip(s, pos)
      if s:sub(pos, pos) ~= ":" then decode_error(s, pos, "expected ':'") end
      obj[key], pos = decode_value(s, pos + 1)
      pos = skip(s, pos)
      local d = s:sub(pos, pos)
      if d == "}" then return obj, pos + 1 end
      if d ~= "," then decode_error(s, pos, "expected ',' or '}'") end
      pos = skip(s, pos + 1)
    end
  elseif c == "[" then
    local arr, n = {}, 0
    pos = skip(s, pos + 1)
    if s:sub(pos, pos) == "]" then return arr, pos + 1 end
    while true do
      n = n + 1
      arr[n], pos = decode_value(s, pos)
      pos = skip(s, pos)
      local d = s:sub(pos, pos)
      if d == "]" then return arr, pos + 1 end
      if d ~= "," then decode_error(s, pos, "expected ',' or ']'") end
      pos = pos + 1
    end
  elseif c == '"' then
    return decode_string(s, pos)
  elseif s:sub(pos, pos + 3) == "true" then
    return true, pos + 4
  elseif s:sub(pos, pos + 4) == "false" then
    return false, pos + 5
  elseif s:sub(pos, pos + 3) == "null" then
    return nil, pos + 4
  else
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if not num or num == "" or num == "-" then decode_error(s, pos, "unexpected character") end
    local v = math.tointeger(tonumber(num)) or tonumber(num)
    if v == nil then decode_error(s, pos, "bad number '" .. num .. "'") end
    if not num:find("[.eE]") then v = math.tointeger(v) or v else v = v + 0.0 end
    return v, pos + #num
  end
end

--- Decode one JSON text. null becomes nil (so it vanishes from tables).
function M.decode(s)
  assert(type(s) == "string", "json.decode: expected a string")
  local v, pos = decode_value(s, 1)
  pos = skip(s, pos)
  if pos <= #s then decode_error(s, pos, "trailing characters") end
  return v
end

return M
