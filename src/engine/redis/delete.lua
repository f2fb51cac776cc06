-- Drops a channel and tells every node. KEYS: meta, log, nodes. ARGV: Pub/Sub channel.
-- Returns how many keys existed.
local existed = redis.call('DEL', KEYS[1], KEYS[2])
redis.call('DEL', KEYS[3])
redis.call('PUBLISH', ARGV[1], 'd\n')
return existed
