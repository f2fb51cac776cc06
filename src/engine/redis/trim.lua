-- Prelude of the scripts that change a channel.
--
-- How long a channel's keys outlive its last publish: twice the history TTL
-- (history is gone after one), and at least a minute. Nodes with subscribers
-- on the channel renew the meta hash too, so a quiet channel keeps its epoch
-- while anyone listens.
local function keep_ms(ttl)
  return math.max(2 * ttl, 60000)
end

-- Drops the oldest entries of the log beyond the count, byte and age
-- limits, given the log's byte total; returns the entries kept and the
-- bytes freed (the caller keeps the total). Entries only ever leave from
-- the head, so XTRIM MAXLEN (Redis 5+) removes exactly the ones counted
-- here. Entry ids are `SEQ-0`.
local function drop_oldest(log, now, max_messages, max_bytes, ttl, bytes)
  local count = redis.call('XLEN', log)
  local drop, freed, start, done = 0, 0, '-', false
  -- Usually one entry leaves and the next stays: read two, then more
  -- (decoding entries is most of a publish's cost in Redis).
  local want = 2
  while not done and drop < count do
    local batch = redis.call('XRANGE', log, start, '+', 'COUNT', want)
    want = math.min(want * 4, 128)
    if #batch == 0 then break end
    for i = 1, #batch do
      local fields, t, w = batch[i][2], 0, 0
      for f = 1, #fields, 2 do
        if fields[f] == 't' then t = tonumber(fields[f + 1]) end
        if fields[f] == 'w' then w = tonumber(fields[f + 1]) end
      end
      if count - drop > max_messages or bytes - freed > max_bytes or now - t >= ttl then
        drop = drop + 1
        freed = freed + w
      else
        done = true
        break
      end
    end
    start = (tonumber(string.match(batch[#batch][1], '^(%d+)')) + 1) .. '-0'
  end
  if drop > 0 then
    redis.call('XTRIM', log, 'MAXLEN', count - drop)
  end
  return count - drop, freed
end

-- Trims the log to its limits, keeping the byte total in the meta hash.
local function trim(meta, log, now, max_messages, max_bytes, ttl)
  local bytes = tonumber(redis.call('HGET', meta, 'bytes') or '0')
  local count, freed = drop_oldest(log, now, max_messages, max_bytes, ttl, bytes)
  if freed ~= 0 then
    redis.call('HINCRBY', meta, 'bytes', -freed)
  end
  return count
end

-- A channel's meta hash, created with `epoch` if Redis has none (first use,
-- or the data was lost). A log left without its meta belongs to no epoch and
-- is dropped, so ids never repeat.
local function epoch_of(meta, log, candidate, keep)
  local epoch = redis.call('HGET', meta, 'epoch')
  if not epoch then
    redis.call('DEL', log)
    epoch = candidate
    redis.call('HSET', meta, 'epoch', epoch, 'seq', 0, 'bytes', 0)
    redis.call('PEXPIRE', meta, keep)
  end
  return epoch
end

-- Subscribers on the other nodes: each node reports `COUNT EXPIRES_MS` in
-- the channel's nodes hash; a report past its expiry (a node that died) is
-- not counted.
local function others(nodes, me, now)
  local all = redis.call('HGETALL', nodes)
  local sum = 0
  for i = 1, #all, 2 do
    if all[i] ~= me then
      local n, expires = string.match(all[i + 1], '^(%d+) (%d+)$')
      if n and tonumber(expires) > now then
        sum = sum + tonumber(n)
      end
    end
  end
  return sum
end
