"""The Lua scripts that open and close a lane on one topic, each atomic on the server.

Atomic because the lane's window starts at the stream's last id *at the moment* its group is
created at ``$`` (and ends at the last id when the group is destroyed): no message can be
appended in between, so every message falls on exactly one side of the boundary, whichever
consumer reads it and whenever.

KEYS: 1 the stream, 2 the registry hash, 3 the windows hash, 4 the baseline groups set
(see ``integrations.broker.layout``).
"""

from __future__ import annotations

# Helpers shared by both scripts: stream-id order, the stream's last id, a lane's windows
# read and written back (closed windows whose messages were all trimmed away are dropped,
# and at most ARGV[3] windows are kept, the newest).
_COMMON = """
local function sid(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function lt(a, b)
  local am, as = sid(a)
  local bm, bs = sid(b)
  return am < bm or (am == bm and as < bs)
end
local function last_id()
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then return info[i + 1] end
  end
  return '0-0'
end
local function load(lane)
  local raw = redis.call('HGET', KEYS[3], lane)
  if not raw then return {} end
  local ok, value = pcall(cjson.decode, raw)
  if ok and type(value) == 'table' then return value end
  return {}
end
local function store(lane, windows)
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  local kept = {}
  for _, w in ipairs(windows) do
    local closed = w[2] ~= ''
    local trimmed = closed and (#first == 0 or lt(w[2], first[1][1]))
    if not trimmed then table.insert(kept, w) end
  end
  local keep = tonumber(ARGV[3])
  while #kept > keep do table.remove(kept, 1) end
  if #kept == 0 then
    redis.call('HDEL', KEYS[3], lane)
  else
    redis.call('HSET', KEYS[3], lane, cjson.encode(kept))
  end
end
"""

# ARGV: 1 lane, 2 group, 3 windows kept, 4 policy. Returns the lane's boundary (last id).
OPEN_LANE = _COMMON + """
local lane, group, policy = ARGV[1], ARGV[2], ARGV[4]
if redis.call('SISMEMBER', KEYS[4], group) == 1 then
  return redis.error_reply('SLIPWAY_BASELINE_GROUP ' .. group)
end
local created = redis.pcall('XGROUP', 'CREATE', KEYS[1], group, '$', 'MKSTREAM')
if type(created) == 'table' and created.err
    and not string.find(created.err, 'BUSYGROUP', 1, true) then
  return redis.error_reply(created.err)
end
local last = last_id()
local windows = load(lane)
local open = #windows > 0 and windows[#windows][2] == ''
if policy == 'lane-consume' and not open then
  table.insert(windows, {last, ''})
elseif policy ~= 'lane-consume' and open then
  windows[#windows][2] = last
end
redis.call('HSET', KEYS[2], lane, policy)
store(lane, windows)
return last
"""

# ARGV: 1 lane, 2 group, 3 windows kept. Returns 1 when the group was destroyed (or absent),
# 0 when it is a baseline group and was left alone.
CLOSE_LANE = _COMMON + """
local lane, group = ARGV[1], ARGV[2]
local last = nil
local destroyed = 1
if redis.call('EXISTS', KEYS[1]) == 1 then
  last = last_id()
  if redis.call('SISMEMBER', KEYS[4], group) == 1 then
    destroyed = 0
  else
    redis.call('XGROUP', 'DESTROY', KEYS[1], group)
  end
end
local windows = load(lane)
if #windows > 0 and windows[#windows][2] == '' then
  if last then windows[#windows][2] = last else table.remove(windows) end
end
redis.call('HDEL', KEYS[2], lane)
store(lane, windows)
return destroyed
"""
