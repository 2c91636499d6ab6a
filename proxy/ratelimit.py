"""Per-tenant and per-key rate limits (requests and tokens per minute, from the plan), enforced in Redis so
they hold across processes and machines.

Each limit is a token bucket of `capacity` = the per-minute limit, refilled continuously at capacity/60 per
second, kept in a Redis hash `kc:rl:<scope>:<id>:<rpm|tpm>`. One Lua script checks every bucket of a request
and takes from all of them only if all can pay — atomically, using Redis's clock, in one round trip — and
also refuses a key that was just revoked (auth.py). A refused request gets the seconds until the fullest
shortfall refills, for `retry-after`.

Tokens: before the call we cannot know the answer's length, so a request pays its estimated prompt tokens
up front and `arate_limit_settle` charges the rest (actual total − estimate) afterwards; the bucket may go
negative, which makes the next requests wait. That is how a token budget per minute holds on average.
"""

import math
from dataclasses import dataclass

import redis

from infra.redis import Script, redis_sync

from .auth import REVOKED_KEY, KeyIdentity

REVOKED_TTL_SECONDS = 3600
BUCKET_TTL_MS = 120_000

_TAKE = Script("""
if redis.call('EXISTS', KEYS[1]) == 1 then return {-1, 0, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS - 1
local levels = {}
local worst_wait, worst = 0, 0
for i = 1, n do
  local cap = tonumber(ARGV[2 * i - 1])
  local cost = math.min(tonumber(ARGV[2 * i]), cap)
  local s = redis.call('HMGET', KEYS[i + 1], 'tokens', 'ts')
  local tokens = tonumber(s[1]) or cap
  local ts = tonumber(s[2]) or now
  tokens = math.min(cap, tokens + (now - ts) * cap / 60000)
  levels[i] = tokens
  if tokens < cost then
    local wait = (cost - tokens) * 60000 / cap
    if wait > worst_wait then worst_wait, worst = wait, i end
  end
end
if worst > 0 then return {0, math.ceil(worst_wait), worst} end
for i = 1, n do
  local cost = math.min(tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i - 1]))
  redis.call('HSET', KEYS[i + 1], 'tokens', tostring(levels[i] - cost), 'ts', now)
  redis.call('PEXPIRE', KEYS[i + 1], ARGV[#ARGV])
end
return {1, 0, 0}
""")

# Charge (or refund, when negative) tokens after the call; the level may go below zero but not below -cap.
_SETTLE = Script("""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #KEYS do
  local cap = tonumber(ARGV[2 * i - 1])
  local s = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local tokens = tonumber(s[1]) or cap
  local ts = tonumber(s[2]) or now
  tokens = math.min(cap, tokens + (now - ts) * cap / 60000)
  tokens = math.max(-cap, math.min(cap, tokens - tonumber(ARGV[2 * i])))
  redis.call('HSET', KEYS[i], 'tokens', tostring(tokens), 'ts', now)
  redis.call('PEXPIRE', KEYS[i], ARGV[#ARGV])
end
return 1
""")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    revoked: bool = False
    retry_after: int = 0  # whole seconds, at least 1 when refused
    limit: str = ""  # which limit refused, e.g. "requests per minute for this key"


_LIMIT_NAMES = {
    ("tenant", "rpm"): "requests per minute for this workspace",
    ("tenant", "tpm"): "tokens per minute for this workspace",
    ("key", "rpm"): "requests per minute for this API key",
    ("key", "tpm"): "tokens per minute for this API key",
}

def _buckets(identity: KeyIdentity, kind: str) -> list[tuple[str, str, int]]:
    plan = identity.plan
    limits = {("tenant", "rpm"): plan.rpm_tenant, ("tenant", "tpm"): plan.tpm_tenant,
              ("key", "rpm"): plan.rpm_key, ("key", "tpm"): plan.tpm_key}
    out = []
    for (scope, unit), cap in limits.items():
        if cap and (kind == "all" or unit == kind):
            ident = identity.tenant.pk if scope == "tenant" else identity.key_id
            out.append((f"kc:rl:{scope}:{ident}:{unit}", _LIMIT_NAMES[(scope, unit)], int(cap)))
    return out


def rate_limit_call(identity: KeyIdentity, *, tokens: int) -> tuple[Script, list[str], list]:
    """Taking one request and `tokens` estimated tokens from every bucket of the key and its tenant, as
    `(script, keys, args)` for infra.redis.arun_scripts; `rate_limit_decision(identity, reply)` reads the reply."""
    buckets = _buckets(identity, "all")
    keys = [REVOKED_KEY.format(identity.key_id)] + [b[0] for b in buckets]
    args: list = []
    for key, _name, cap in buckets:
        args += [cap, 1 if key.endswith(":rpm") else max(tokens, 0)]
    args.append(BUCKET_TTL_MS)
    return _TAKE, keys, args


def rate_limit_decision(identity: KeyIdentity, reply: list) -> Decision:
    allowed, wait_ms, which = reply
    if allowed == -1:
        return Decision(allowed=False, revoked=True)
    if allowed == 1:
        return Decision(allowed=True)
    return Decision(allowed=False, retry_after=max(1, math.ceil(int(wait_ms) / 1000)),
                    limit=_buckets(identity, "all")[int(which) - 1][1])


async def arate_limit_take(identity: KeyIdentity, *, tokens: int) -> Decision:
    """Take one request and `tokens` estimated tokens from every bucket of the key and its tenant."""
    script, keys, args = rate_limit_call(identity, tokens=tokens)
    return rate_limit_decision(identity, await script.arun(keys, args))


async def arate_limit_settle(identity: KeyIdentity, *, tokens: int) -> None:
    """Charge the difference between the tokens a request really used and its up-front estimate."""
    buckets = _buckets(identity, "tpm")
    if not buckets or tokens == 0:
        return
    args: list = []
    for _key, _name, cap in buckets:
        args += [cap, tokens]
    args.append(BUCKET_TTL_MS)
    await _SETTLE.arun([b[0] for b in buckets], args)


def mark_revoked(key_id: int) -> None:
    """Called (sync, on commit) when a key is revoked: every process's next rate-limit check refuses it."""
    try:
        redis_sync().set(REVOKED_KEY.format(key_id), 1, ex=REVOKED_TTL_SECONDS)
    except redis.RedisError:
        pass  # the cache TTL still bounds how long other processes accept the key
