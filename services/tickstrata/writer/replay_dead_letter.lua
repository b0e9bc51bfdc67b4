-- Replay one of the writer's dead letters: add the original entry to its source stream again (a new id, so the
-- writer group reads it as new), then delete the dead letter. Atomic: Redis runs a script as one command.
--
--   redis-cli --eval services/tickstrata/writer/replay_dead_letter.lua dlq:writer <source stream> , <dead-letter id>
--
-- KEYS[1] the dead-letter stream, KEYS[2] the stream the entry came from (its `src` field, checked), ARGV[1] the
-- dead letter's id. Returns the new entry's id. See docs/writer.md.

local entry = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])[1]
if not entry then
  return redis.error_reply('no dead letter ' .. ARGV[1] .. ' in ' .. KEYS[1])
end
local dead = {}
for i = 1, #entry[2], 2 do
  dead[entry[2][i]] = entry[2][i + 1]
end
if dead['src'] ~= KEYS[2] then
  return redis.error_reply('dead letter ' .. ARGV[1] .. ' came from ' .. tostring(dead['src']) .. ', not ' .. KEYS[2])
end

-- `raw` holds the entry's fields as a MessagePack map of bin → bin. Redis' own cmsgpack cannot read bin, so the
-- few shapes involved are read here.
local raw, pos = dead['raw'], 1
local function byte()
  local value = string.byte(raw, pos)
  if value == nil then error('raw ends early') end
  pos = pos + 1
  return value
end
local function uint(width)
  local value = 0
  for _ = 1, width do value = value * 256 + byte() end
  return value
end
local function map_size()
  local tag = byte()
  if tag >= 0x80 and tag <= 0x8f then return tag - 0x80 end
  if tag == 0xde then return uint(2) end
  if tag == 0xdf then return uint(4) end
  error('raw is not a MessagePack map (type byte ' .. tag .. ')')
end
local function bin()
  local tag, length = byte(), nil
  if tag == 0xc4 then length = uint(1)
  elseif tag == 0xc5 then length = uint(2)
  elseif tag == 0xc6 then length = uint(4)
  else error('a raw field is not MessagePack bin (type byte ' .. tag .. ')') end
  local value = string.sub(raw, pos, pos + length - 1)
  pos = pos + length
  return value
end

local fields = {}
for _ = 1, map_size() do
  fields[#fields + 1] = bin()
  fields[#fields + 1] = bin()
end
if #fields == 0 then
  return redis.error_reply('dead letter ' .. ARGV[1] .. ' holds no fields to replay')
end
local id = redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('XDEL', KEYS[1], ARGV[1])
return id
