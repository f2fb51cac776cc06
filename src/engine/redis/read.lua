-- A node's (re)synchronisation read: the epoch, the newest seq and the log
-- entries this node lacks (all of them if its epoch differs).
-- KEYS: meta, log
-- ARGV: candidate epoch, the node's epoch ('' if none), the node's newest seq,
--       now ms, max messages, max bytes, ttl ms
-- Returns {epoch, seq, entries}.
local meta, log = KEYS[1], KEYS[2]
local ttl = tonumber(ARGV[7])
local epoch = epoch_of(meta, log, ARGV[1], keep_ms(ttl))
trim(meta, log, tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), ttl)
local seq = tonumber(redis.call('HGET', meta, 'seq'))
local entries
if epoch == ARGV[2] then
  entries = redis.call('XRANGE', log, (tonumber(ARGV[3]) + 1) .. '-0', '+')
else
  entries = redis.call('XRANGE', log, '-', '+')
end
return {epoch, seq, entries}
