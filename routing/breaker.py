"""A circuit breaker per endpoint, shared by every process through Redis (keys `kc:breaker:<endpoint slug>`).

States: closed (normal) → open after ROUTING_BREAKER_THRESHOLD consecutive failures, for
ROUTING_BREAKER_COOLDOWN_SECONDS → half-open once the cool-down is over: exactly one caller claims the trial
(`breaker_acquire`), others keep skipping the endpoint; the trial's success closes the breaker, its failure
re-opens it for another cool-down. A claimed trial that never reports (its process died) frees up again after
ROUTING_BREAKER_TRIAL_SECONDS.

Every transition is one Lua script, so it is atomic across processes, and time comes from the Redis server
(`TIME`) so processes with skewed clocks agree. Only failures that say something about the endpoint count
(timeouts, connection errors, 429, 5xx, 529, auth); a bad request is the caller's fault and does not.
"""

from __future__ import annotations

import logging

from django.conf import settings
from redis.exceptions import RedisError

from infra.redis import Script, redis_async

KEY_PREFIX = "kc:breaker:"

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"  # cool-down over, a trial may be claimed
TRIAL_BUSY = "trial_busy"  # a trial is in flight in some process
SKIPPED_STATES = frozenset({OPEN, TRIAL_BUSY})
UNKNOWN = "unknown"  # a write that Redis did not take

logger = logging.getLogger(__name__)

_NOW = "local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"

# Effective state of each key: returns {state, failures, ms until open ends} per key.
_STATES = Script(_NOW + """
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('HMGET', key, 'state', 'failures', 'open_until', 'trial_until')
  local state, failures = v[1] or 'closed', tonumber(v[2] or '0')
  local open_until, trial_until = tonumber(v[3] or '0'), tonumber(v[4] or '0')
  local eff, wait = 'closed', 0
  if state == 'open' then
    if now < open_until then eff = 'open'; wait = open_until - now else eff = 'half_open' end
  elseif state == 'half_open' then
    if now < trial_until then eff = 'trial_busy' else eff = 'half_open' end
  end
  out[#out + 1] = eff
  out[#out + 1] = failures
  out[#out + 1] = wait
end
return out
""")

# Claim the right to call the endpoint: 1 if allowed (closed, or this caller took the half-open trial), else 0.
_ACQUIRE = Script(_NOW + """
local v = redis.call('HMGET', KEYS[1], 'state', 'open_until', 'trial_until')
local state = v[1] or 'closed'
if state == 'closed' then return 1 end
if state == 'open' and now < tonumber(v[2] or '0') then return 0 end
if state == 'half_open' and now < tonumber(v[3] or '0') then return 0 end
redis.call('HSET', KEYS[1], 'state', 'half_open', 'trial_until', now + tonumber(ARGV[1]))
return 1
""")

# One failure: ARGV = threshold, cool-down ms, key ttl ms. Returns the new state.
_FAILURE = Script(_NOW + """
local v = redis.call('HMGET', KEYS[1], 'state', 'failures')
local state = v[1] or 'closed'
local failures = tonumber(v[2] or '0') + 1
redis.call('HSET', KEYS[1], 'failures', failures)
if state == 'half_open' or failures >= tonumber(ARGV[1]) then
  state = 'open'
  redis.call('HSET', KEYS[1], 'state', 'open', 'open_until', now + tonumber(ARGV[2]))
  redis.call('HINCRBY', KEYS[1], 'opened', 1)
elseif state ~= 'open' then
  redis.call('HSET', KEYS[1], 'state', 'closed')
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return state
""")


def _key(slug: str) -> str:
    return f"{KEY_PREFIX}{slug}"


def _parse_states(slugs: list[str], raw: list) -> dict[str, dict]:
    states = {}
    for i, slug in enumerate(slugs):
        states[slug] = {
            "state": raw[3 * i],
            "failures": int(raw[3 * i + 1]),
            "retry_in_ms": int(raw[3 * i + 2]),
        }
    return states


def breaker_states_call(slugs: list[str]) -> tuple[Script, list[str], list]:
    """The state read as `(script, keys, args)`, for a caller that sends it with other scripts in one round trip
    (infra.redis.arun_scripts); `breaker_states_parse(slugs, reply)` reads the reply."""
    return _STATES, [_key(s) for s in slugs], []


def breaker_states_parse(slugs: list[str], raw: list) -> dict[str, dict]:
    return _parse_states(slugs, raw)


async def breaker_states(slugs: list[str]) -> dict[str, dict]:
    """{slug: {"state", "failures", "retry_in_ms"}} for the given endpoints, in one round trip."""
    if not slugs:
        return {}
    raw = await _STATES.arun([_key(s) for s in slugs])
    return _parse_states(slugs, raw)


async def breaker_acquire(slug: str) -> bool:
    """May this caller call the endpoint now? Claims the single half-open trial when the cool-down is over."""
    trial_ms = int(settings.ROUTING_BREAKER_TRIAL_SECONDS * 1000)
    return bool(await _ACQUIRE.arun([_key(slug)], [trial_ms]))


async def breaker_record_failure(slug: str) -> str:
    """Count one failure; returns the state after it ("open" when this failure opened the breaker)."""
    cooldown_ms = int(settings.ROUTING_BREAKER_COOLDOWN_SECONDS * 1000)
    # Forget a run of failures that stopped long ago, so "consecutive" does not span days.
    ttl_ms = max(cooldown_ms * 10, 600_000)
    try:
        return await _FAILURE.arun([_key(slug)], [settings.ROUTING_BREAKER_THRESHOLD, cooldown_ms, ttl_ms])
    except (RedisError, OSError):
        # Best effort, like every breaker write: the answer (or the next endpoint) matters more than the count.
        logger.warning("breaker failure for %s not recorded: Redis unavailable", slug, exc_info=True)
        return UNKNOWN


async def breaker_record_success(slug: str) -> None:
    """A success closes the breaker and clears the failure run. Best effort: an answer that is out is not failed
    because Redis went away in the meantime (the next success, or the key's TTL, clears it)."""
    try:
        await redis_async().delete(_key(slug))
    except (RedisError, OSError):
        logger.warning("breaker success for %s not recorded: Redis unavailable", slug, exc_info=True)


def breaker_is_clean(state: dict | None) -> bool:
    """A state read (breaker_states) showing a closed breaker with no failures: a success has nothing to reset,
    so the caller may skip breaker_record_success — one Redis round trip less on nearly every request.

    The read is a few milliseconds old when the answer succeeds; a failure another request recorded in
    between then survives this success instead of being cleared by it, and is cleared by the next success
    that reads it. "Consecutive failures" stays exact up to that window."""
    return state is not None and state["state"] == CLOSED and state["failures"] == 0


def breaker_states_sync(slugs: list[str]) -> dict[str, dict]:
    """The same as breaker_states, for sync code (the staff page)."""
    if not slugs:
        return {}
    return _parse_states(slugs, _STATES.run([_key(s) for s in slugs]))
