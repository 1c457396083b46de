-- tests/lua/host_spec.lua: the "mamlrun" module the host (vm/main.c) gives
-- to scripts. The command line itself is tested in tests/sh/host_cli.sh.
local mamlrun = require "mamlrun"

local function self_pid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("n")
  f:close()
  return pid
end

-- send sig to this process from a child (io.popen: os.execute's system()
-- would ignore SIGINT while it waits)
local function send(sig)
  assert(io.popen("kill -" .. sig .. " " .. self_pid())):close()
end

-- poll like a training loop does, for at most 5 seconds
local function wait_signal()
  local start = mamlrun.time()
  repeat
    local name = mamlrun.signal_pending()
    if name then return name end
  until mamlrun.time() - start > 5
end

describe("mamlrun module", function()
  it("describes the run", function()
    assert.equals("0.1.0", mamlrun.version)
    assert.is_table(mamlrun.overrides)
    assert.is_string(mamlrun.script) -- busted itself
    assert.is_true(mamlrun.root == nil or type(mamlrun.root) == "string")
  end)

  it("puts the project's Lua library before the system's on package.path", function()
    -- (busted itself prepends ./src/?.lua and friends)
    if mamlrun.root then
      local project = package.path:find(mamlrun.root .. "/?.lua;", 1, true)
      local system = package.path:find("/usr/share/lua/5.4/?.lua", 1, true)
      assert.is_true(project ~= nil and (system == nil or project < system))
    end
  end)

  it("time() is a monotonic clock in seconds", function()
    local a = mamlrun.time()
    assert.equals("float", math.type(a))
    local b = mamlrun.time()
    assert.is_true(b >= a and b - a < 1)
  end)

  it("rss_peak() is the peak resident size in bytes", function()
    local before = mamlrun.rss_peak()
    assert.equals("integer", math.type(before))
    assert.is_true(before > 1024 * 1024)
    local big = string.rep("x", 32 * 1024 * 1024)
    assert.is_true(mamlrun.rss_peak() >= before + 16 * 1024 * 1024, "peak grows with a 32 MB string")
    assert.equals(32 * 1024 * 1024, #big)
  end)

  it("rss() is the resident size now, in bytes: up with a big string, down when it is freed", function()
    collectgarbage()
    local before = mamlrun.rss()
    assert.equals("integer", math.type(before))
    assert.is_true(before > 1024 * 1024 and before <= mamlrun.rss_peak())
    local big = string.rep("y", 64 * 1024 * 1024)
    local during = mamlrun.rss()
    assert.is_true(during >= before + 48 * 1024 * 1024, "rss grows with a 64 MB string")
    assert.equals(64 * 1024 * 1024, #big)
    local peak = mamlrun.rss_peak()
    assert.is_true(peak >= during, "rss_peak() is never below rss()")
    big = nil -- luacheck: ignore
    collectgarbage()
    assert.is_true(mamlrun.rss_peak() >= peak, "rss_peak() never goes down")
    -- AddressSanitizer keeps freed blocks in quarantine, so under `make
    -- sanitize` the memory stays resident by design
    if not mamlrun.asan then
      assert.is_true(mamlrun.rss() < during - 32 * 1024 * 1024, "rss falls when the string is freed")
    end
  end)

  it("asan is a boolean, true in the binary `make sanitize` runs (MAMLRUN_EXPECT_ASAN=1)", function()
    assert.is_boolean(mamlrun.asan)
    if os.getenv("MAMLRUN_EXPECT_ASAN") == "1" then
      assert.is_true(mamlrun.asan, "make sanitize runs a binary built without AddressSanitizer")
    end
  end)

  it("is_tty(fd) tells whether a descriptor is a terminal", function()
    assert.is_boolean(mamlrun.is_tty(1))
    assert.is_boolean(mamlrun.is_tty())
    assert.is_false(mamlrun.is_tty(12345))
  end)

  describe("signals", function()
    after_each(function() mamlrun.on_signal(false) end)

    it("signal_pending() is nil when nothing arrived", function()
      mamlrun.on_signal()
      assert.is_nil(mamlrun.signal_pending())
    end)

    it("flags SIGINT and SIGTERM once on_signal was called, calling fn", function()
      local seen = {}
      mamlrun.on_signal(function(name) seen[#seen + 1] = name end)
      send("INT")
      assert.equals("SIGINT", wait_signal())
      assert.is_nil(mamlrun.signal_pending(), "the flag is cleared once reported")
      send("TERM")
      assert.equals("SIGTERM", wait_signal())
      assert.same({"SIGINT", "SIGTERM"}, seen)
    end)

    it("works without a callback", function()
      mamlrun.on_signal()
      send("TERM")
      assert.equals("SIGTERM", wait_signal())
    end)

    it("rejects a callback that is not a function", function()
      assert.error_matches(function() mamlrun.on_signal(42) end, "bad argument #1 to 'on_signal' (function expected, got number)", 1, true)
    end)
  end)
end)
