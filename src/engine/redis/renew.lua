-- Starts a new epoch when Redis went back in time (restored from an older
-- snapshot): the node saw seq ARGV[2] of epoch ARGV[1] but Redis is behind,
-- so those ids would be reused. Only if no other node did it first.
-- KEYS: meta, log. ARGV: the epoch, the seq Redis reported, the new epoch, keep ms
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local seq = redis.call('HGET', KEYS[1], 'seq')
if epoch == ARGV[1] and tonumber(seq) == tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', ARGV[3], 'seq', 0, 'bytes', 0)
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
end
return 1
