"""The budget's Lua scripts (billing/budget.py says what they keep). Each runs atomically in Redis, so the
check and the reservation of every limit a request falls under happen together, across processes.

A request's hold spans one or more *scopes*: the workspace's cap, the member's limit, the API key's limit. Each
scope has a spend counter (units of 1e-10 USD), a hash of outstanding reservations (request key → units) and a
sorted set of their expiries. A hold under more than the workspace's scope also writes a *hold record* (the
other scopes' keys, as JSON), so that settle and release, which know only the workspace and the request key,
find every scope the hold took. Settle and release name those keys from the record rather than in KEYS: the
project runs one Redis server (not a cluster), where a script may do so.
"""

# KEYS: hold record, then per scope: spend, reservations hash, expiries zset.
# ARGV: request key, units wanted, reservation ttl ms, hold record ttl ms, hold record ('' = none), then one cap
# (units) per scope.
# Returns {status, scope index, spend, outstanding}: status 1 reserved (index -1); 0 refused by that scope;
# -1 that scope's spend is unknown (the caller seeds it from the ledger and retries).
RESERVE = """
local n = (#KEYS - 1) / 3
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local want = tonumber(ARGV[2])
for i = 0, n - 1 do
    local spend = redis.call('GET', KEYS[2 + 3 * i])
    if not spend then return {-1, i, 0, 0} end
    local res, exp = KEYS[3 + 3 * i], KEYS[4 + 3 * i]
    local expired = redis.call('ZRANGEBYSCORE', exp, '-inf', now_ms)
    if #expired > 0 then
        redis.call('HDEL', res, unpack(expired))
        redis.call('ZREMRANGEBYSCORE', exp, '-inf', now_ms)
    end
    local outstanding = 0
    for _, v in ipairs(redis.call('HVALS', res)) do outstanding = outstanding + tonumber(v) end
    local previous = redis.call('HGET', res, ARGV[1])
    if previous then outstanding = outstanding - tonumber(previous) end
    if tonumber(spend) + outstanding + want > tonumber(ARGV[6 + i]) then
        return {0, i, tonumber(spend), outstanding}
    end
end
local ttl = tonumber(ARGV[3])
for i = 0, n - 1 do
    local res, exp = KEYS[3 + 3 * i], KEYS[4 + 3 * i]
    redis.call('HSET', res, ARGV[1], ARGV[2])
    redis.call('ZADD', exp, now_ms + ttl, ARGV[1])
    redis.call('PEXPIRE', res, ttl)
    redis.call('PEXPIRE', exp, ttl)
end
if ARGV[5] ~= '' then
    redis.call('SET', KEYS[1], ARGV[5], 'PX', ARGV[4])
else
    redis.call('DEL', KEYS[1])
end
return {1, -1, 0, 0}
"""

# KEYS: workspace spend, reservations hash, expiries zset, hold record, spend watch.
# ARGV: request key, billed units, watch claim ttl seconds.
# Ends the hold in every scope it took and adds the billed units to each scope's counter that exists (a missing
# one is seeded from the ledger, which already holds this row: settle runs after commit). Returns
# {workspace spend or -1, watched}: watched is 1 when the spend reached the watch mark (or no mark is set): the
# caller tells the watchers. The mark becomes -2 ("being looked at") until a watcher sets the next one, so 20
# rows crossing at once tell the watchers once; a watcher that dies lets the claim lapse after its ttl.
SETTLE = """
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
local hold = redis.call('GET', KEYS[4])
if hold then
    redis.call('DEL', KEYS[4])
    for _, scope in ipairs(cjson.decode(hold)) do
        redis.call('HDEL', scope[2], ARGV[1])
        redis.call('ZREM', scope[3], ARGV[1])
        if redis.call('EXISTS', scope[1]) == 1 then redis.call('INCRBY', scope[1], ARGV[2]) end
    end
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
local spend = redis.call('INCRBY', KEYS[1], ARGV[2])
local mark = redis.call('GET', KEYS[5])
if (not mark) or (tonumber(mark) >= 0 and spend >= tonumber(mark)) then
    redis.call('SET', KEYS[5], -2, 'EX', ARGV[3])
    return {spend, 1}
end
return {spend, 0}
"""

# KEYS: workspace reservations hash, expiries zset, hold record. ARGV: request key.
RELEASE = """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
local hold = redis.call('GET', KEYS[3])
if hold then
    redis.call('DEL', KEYS[3])
    for _, scope in ipairs(cjson.decode(hold)) do
        redis.call('HDEL', scope[2], ARGV[1])
        redis.call('ZREM', scope[3], ARGV[1])
    end
end
return 1
"""

# KEYS: spend watch, workspace spend. ARGV: mark units (-1: nothing more to watch this month), ttl seconds.
# Sets the next mark and says whether the spend is already past it (a row settled while the watcher looked):
# then the watcher looks again rather than missing that crossing.
WATCH_SET = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
local mark = tonumber(ARGV[1])
local spend = redis.call('GET', KEYS[2])
if mark >= 0 and spend and tonumber(spend) >= mark then return 1 end
return 0
"""

# Compare-and-set: rewrite the counter with the ledger's sum only if nothing settled since it was read.
RECONCILE = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
    return 1
end
return 0
"""
