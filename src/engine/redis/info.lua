-- A channel's info, after trimming by age: {epoch, seq, messages, bytes,
-- first seq (0 if empty), subscribers on other nodes}, or nil if Redis does
-- not know the channel.
-- KEYS: meta, log, nodes
-- ARGV: now ms, max messages, max bytes, ttl ms, this node's id
local meta, log = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  return nil
end
local count = trim(meta, log, tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
local first = 0
if count > 0 then
  first = tonumber(string.match(redis.call('XRANGE', log, '-', '+', 'COUNT', 1)[1][1], '^(%d+)'))
end
return {epoch, tonumber(redis.call('HGET', meta, 'seq')), count, tonumber(redis.call('HGET', meta, 'bytes')), first,
  others(KEYS[3], ARGV[5], tonumber(ARGV[1]))}
