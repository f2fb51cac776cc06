-- Appends one message and fans it out: one round trip per publish.
-- KEYS: meta, log, idempotency key (same hash slot; unused when ARGV[8] ~= '1'), nodes
-- ARGV: data, event ('' for none), now ms, candidate epoch, max messages,
--       max bytes, ttl ms, use idempotency key ('1'/'0'), Pub/Sub channel, weight,
--       this node's id, kind ('b' for binary data, '' for text)
-- Returns {epoch, seq, published_at, repeated (0/1), subscribers on other nodes}.
local meta, log, idem = KEYS[1], KEYS[2], KEYS[3]
local now, ttl = tonumber(ARGV[3]), tonumber(ARGV[7])
-- The channel's state in one read, written back in one (each redis.call
-- costs about a microsecond of the script's time).
local state = redis.call('HMGET', meta, 'epoch', 'seq', 'bytes')
local epoch, seq, bytes = state[1], tonumber(state[2]) or 0, tonumber(state[3]) or 0
if not epoch then
  epoch = epoch_of(meta, log, ARGV[4], keep_ms(ttl))
  seq, bytes = 0, 0
end
if ARGV[8] == '1' then
  local earlier = redis.call('GET', idem)
  if earlier then
    local e, s, t = string.match(earlier, '^(%w+) (%d+) (%d+)$')
    if e == epoch then
      -- A write, so that a WAIT after this script (--redis-wait-replicas)
      -- counts replicas that hold everything up to now, the first publish too.
      redis.call('PEXPIRE', meta, keep_ms(ttl))
      return {epoch, tonumber(s), tonumber(t), 1, others(KEYS[4], ARGV[11], now)}
    end
  end
end
seq = seq + 1
local note = 'm\n'
if ARGV[12] == 'b' then
  redis.call('XADD', log, seq .. '-0', 'd', ARGV[1], 'e', ARGV[2], 't', ARGV[3], 'w', ARGV[10], 'k', 'b')
  note = 'b\n'
else
  redis.call('XADD', log, seq .. '-0', 'd', ARGV[1], 'e', ARGV[2], 't', ARGV[3], 'w', ARGV[10])
end
bytes = bytes + tonumber(ARGV[10])
local _, freed = drop_oldest(log, now, tonumber(ARGV[5]), tonumber(ARGV[6]), ttl, bytes)
redis.call('HSET', meta, 'seq', seq, 'bytes', bytes - freed)
redis.call('PEXPIRE', meta, keep_ms(ttl))
redis.call('PEXPIRE', log, keep_ms(ttl))
if ARGV[8] == '1' then
  redis.call('SET', idem, epoch .. ' ' .. seq .. ' ' .. ARGV[3], 'PX', ttl)
end
redis.call('PUBLISH', ARGV[9], note .. epoch .. '\n' .. seq .. '\n' .. ARGV[3] .. '\n' .. ARGV[2] .. '\n' .. ARGV[1])
return {epoch, seq, now, 0, others(KEYS[4], ARGV[11], now)}
