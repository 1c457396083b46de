-- checkpoint: save and load a tree of Lua values and tensors as one checksummed file.
--
--   local checkpoint = require "checkpoint"
--   checkpoint.save(path, {iteration = 10, params = {...tensors}, generator = gen:get_state()})
--   local state = checkpoint.load(path)         -- error with a reason if the file is not valid
--
-- File layout (little-endian):
--   "MAMLCKPT"  8 bytes magic
--   version     u32 (currently 1)
--   crc32       u32 of the body (T.crc32)
--   length      u64 of the body
--   body        the packed tree
-- The tree packs recursively with a one-byte tag: 'b' boolean, 'i' integer (i64), 'f' float (f64),
-- 's' string (u32 length + bytes), 't' tensor (T.serialize, u32 length + bytes), 'T' table
-- (u32 count, then key/value pairs in sorted key order). Files are written with T.write_atomic
-- (temp file + fsync + rename), so a crash never leaves a half-written checkpoint.
local T = require "tensor"
local input_error = require("options").input_error

local M = {}

M.MAGIC = "MAMLCKPT"
M.VERSION = 1

local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  return a < b
end

local function pack_value(v, out, path)
  local tv = type(v)
  if tv == "boolean" then
    out[#out + 1] = "b" .. (v and "\1" or "\0")
  elseif tv == "number" then
    if math.type(v) == "integer" then
      out[#out + 1] = "i" .. string.pack("<i8", v)
    else
      out[#out + 1] = "f" .. string.pack("<d", v)
    end
  elseif tv == "string" then
    out[#out + 1] = "s" .. string.pack("<s4", v)
  elseif T.is_tensor(v) then
    out[#out + 1] = "t" .. string.pack("<s4", T.serialize(v))
  elseif tv == "table" then
    local keys = {}
    for k in pairs(v) do
      if type(k) ~= "string" and math.type(k) ~= "integer" then
        error("checkpoint: table key of type " .. type(k) .. " at " .. path, 0)
      end
      keys[#keys + 1] = k
    end
    table.sort(keys, key_order)
    out[#out + 1] = "T" .. string.pack("<I4", #keys)
    for _, k in ipairs(keys) do
      pack_value(k, out, path)
      pack_value(v[k], out, path .. "." .. tostring(k))
    end
  else
    error("checkpoint: cannot store a " .. tv .. " at " .. path, 0)
  end
end

--- The packed body of a tree (a string).
function M.pack(tree)
  local out = {}
  pack_value(tree, out, "$")
  return table.concat(out)
end

local function unpack_value(s, pos)
  local tag = s:sub(pos, pos)
  pos = pos + 1
  if tag == "b" then
    return s:byte(pos) ~= 0, pos + 1
  elseif tag == "i" then
    return string.unpack("<i8", s, pos)
  elseif tag == "f" then
    return string.unpack("<d", s, pos)
  elseif tag == "s" then
    return string.unpack("<s4", s, pos)
  elseif tag == "t" then
    local blob
    blob, pos = string.unpack("<s4", s, pos)
    return T.deserialize(blob), pos
  elseif tag == "T" then
    local n
    n, pos = string.unpack("<I4", s, pos)
    local t = {}
    for _ = 1, n do
      local k, v
      k, pos = unpack_value(s, pos)
      v, pos = unpack_value(s, pos)
      t[k] = v
    end
    return t, pos
  end
  error(string.format("bad tag '%s' at byte %d", tag, pos - 1), 0)
end

--- The tree of a packed body; `name` (of its file) is used in error messages.
function M.unpack(body, name)
  name = name or "checkpoint"
  local ok, tree, pos = pcall(unpack_value, body, 1)
  if not ok then input_error(name .. ": the checkpoint body is malformed: " .. tostring(tree)) end
  if pos ~= #body + 1 then input_error(name .. ": the checkpoint body has trailing bytes") end
  return tree
end

--- The bytes of a checkpoint file holding `tree`.
function M.encode(tree)
  local body = M.pack(tree)
  return M.MAGIC .. string.pack("<I4I4I8", M.VERSION, T.crc32(body), #body) .. body
end

--- The tree in the bytes of a checkpoint file; `name` is used in error messages (options.input_error:
--- what is wrong with the file, without a traceback).
function M.decode(bytes, name)
  name = name or "checkpoint"
  if #bytes < 24 or bytes:sub(1, 8) ~= M.MAGIC then
    input_error(name .. " is not a mamlrun checkpoint (no MAMLCKPT magic)")
  end
  local version, crc, length = string.unpack("<I4I4I8", bytes, 9)
  if version ~= M.VERSION then
    input_error(string.format("%s has checkpoint format version %d; this mamlrun reads version %d", name,
      version, M.VERSION))
  end
  local body = bytes:sub(25)
  if #body ~= length then
    input_error(string.format("%s is truncated: body %d bytes, header says %d", name, #body, length))
  end
  if T.crc32(body) ~= crc then input_error(name .. " is corrupt (checksum mismatch)") end
  return M.unpack(body, name)
end

--- Write a tree atomically to path.
function M.save(path, tree)
  T.write_atomic(path, M.encode(tree))
end

--- Read a tree from path; errors say why the file is not usable.
function M.load(path)
  local f, err = io.open(path, "rb")
  if not f then input_error("cannot open checkpoint: " .. tostring(err)) end
  local bytes, rerr = f:read("a")
  f:close()
  if not bytes then -- (a folder opens, but does not read)
    local inside = io.open(path .. "/checkpoint.bin", "rb")
    if inside then inside:close() end
    input_error(string.format("cannot read checkpoint %s: %s%s", path, tostring(rerr),
      inside and string.format(" (a run folder: its checkpoint is %s/checkpoint.bin)", path) or ""))
  end
  return M.decode(bytes, path)
end

--- Compare lists of named shapes: `saved` and `current` are lists of {name, shape}. Returns nil when
--- they agree, or a message listing what differs (at most `limit` lines).
function M.compare_shapes(what, saved, current, limit)
  limit = limit or 8
  local lines = {}
  local function shape_str(s) return "(" .. table.concat(s, ", ") .. ")" end
  if #saved ~= #current then
    lines[#lines + 1] = string.format("the checkpoint has %d %s tensors, this experiment %d", #saved,
      what, #current)
  end
  for i = 1, math.max(#saved, #current) do
    local a, b = saved[i], current[i]
    if a and b and (shape_str(a[2]) ~= shape_str(b[2]) or a[1] ~= b[1]) then
      lines[#lines + 1] = string.format("%s %d: checkpoint %s %s, this experiment %s %s", what, i,
        a[1], shape_str(a[2]), b[1], shape_str(b[2]))
    elseif a and not b then
      lines[#lines + 1] = string.format("%s %d: checkpoint %s %s, not in this experiment", what, i,
        a[1], shape_str(a[2]))
    elseif b and not a then
      lines[#lines + 1] = string.format("%s %d: this experiment %s %s, not in the checkpoint", what, i,
        b[1], shape_str(b[2]))
    end
    if #lines >= limit then
      lines[#lines + 1] = "..."
      break
    end
  end
  if #lines == 0 then return nil end
  return table.concat(lines, "\n  ")
end

return M
