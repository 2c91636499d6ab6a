"""Throttles for logging in and asking for a password reset: per account (the email typed) and per client
address, counted in Django's Redis cache so every web process shares them.

The counters are django-ratelimit's (`get_usage`: a fixed window per key, with a per-key offset, counted by the
cache's atomic INCR). Chosen over django-axes because it covers the password reset as well as the login, needs
no authentication backend or middleware in the global stack (the middleware stack is kept to one thread hop,
see tenants/middleware.py), and counts on the cache we already run; django-defender keeps its own Redis client.

- Login: a failed attempt counts. The slot is taken *before* the password is checked (one INCR per scope), so
  forty attempts sent at once cannot all slip under the limit; a successful login gives its slots back, so
  people who type their password right are never throttled by it. Once an account or an address is over its
  limit, every login for it is refused until the window ends, the right password included.
- Password reset: every request counts (each one writes a reset link to the log).

A refused attempt gets a 429 page saying when to try again (`throttled_response`); it is logged each time, and
audited once per window (an AuditEvent in each tenant of the account, when the email is an account's).
"""

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.shortcuts import render
from django_ratelimit import ALL
from django_ratelimit.core import _SIMPLE_KEYS, _get_window, _make_cache_key, _split_rate, get_usage

from .models import Membership, User
from .services import audit_record

logger = logging.getLogger("tenants.auth")

LOGIN = "login"
PASSWORD_RESET = "password_reset"
ACCOUNT = "account"
ADDRESS = "address"

_RATES = {
    (LOGIN, ACCOUNT): "AUTH_THROTTLE_LOGIN_ACCOUNT",
    (LOGIN, ADDRESS): "AUTH_THROTTLE_LOGIN_ADDRESS",
    (PASSWORD_RESET, ACCOUNT): "AUTH_THROTTLE_RESET_ACCOUNT",
    (PASSWORD_RESET, ADDRESS): "AUTH_THROTTLE_RESET_ADDRESS",
}
_WHAT = {LOGIN: "logging in", PASSWORD_RESET: "asking for a password reset"}
_AUDIT_ACTION = {LOGIN: "auth.login_throttled", PASSWORD_RESET: "auth.password_reset_throttled"}


@dataclass(frozen=True)
class Refusal:
    what: str  # LOGIN or PASSWORD_RESET
    scope: str  # ACCOUNT or ADDRESS
    retry_after: int  # seconds until the window ends


@dataclass
class Attempt:
    """One counted attempt. `refusal` is set when it is over a limit (and must not go ahead)."""

    refusal: Refusal | None = None
    _counted: list[str] = field(default_factory=list)  # cache keys this attempt took a slot in

    def forgive(self) -> None:
        """The attempt succeeded: give its slots back (a login that knew the password is no guess)."""
        for key in self._counted:
            try:
                cache.decr(key)
            except ValueError:  # the window ended meanwhile
                pass
        self._counted.clear()


def _account(value: str) -> str:
    return (value or "").strip().lower()


def throttle_attempt(request, *, what: str, account: str) -> Attempt:
    """Count an attempt at `what` by `account` (the email typed) from the request's address. The attempt is
    refused when either is over its limit; a refusal is logged, and audited once per window."""
    account = _account(account)
    attempt = Attempt()
    for scope in (ACCOUNT, ADDRESS):
        if scope == ACCOUNT and not account:
            continue
        rate = getattr(settings, _RATES[(what, scope)])
        group = f"kiwiclaw.{what}.{scope}"
        key = (lambda _group, _request: account) if scope == ACCOUNT else "ip"
        try:
            usage = get_usage(request, group=group, key=key, rate=rate, increment=True)
        except Exception:  # the cache is unreachable: let the attempt through rather than lock everyone out
            logger.warning("Throttle %s unavailable; %s allowed", group, what, exc_info=True)
            continue
        if usage is None:  # RATELIMIT_ENABLE off
            continue
        # The key django-ratelimit just counted in (its own key function, for the window of this moment), so
        # that a success can give the slot back; tests/tenants/test_throttle.py checks the two agree.
        value = account if scope == ACCOUNT else _SIMPLE_KEYS["ip"](request)
        _count, period = _split_rate(rate)
        attempt._counted.append(_make_cache_key(group, _get_window(value, period), rate, value, ALL))
        if usage["count"] > usage["limit"] and attempt.refusal is None:
            attempt.refusal = Refusal(what=what, scope=scope, retry_after=max(1, int(usage["time_left"])))
    if attempt.refusal is not None:
        _record_refusal(request, attempt.refusal, account)
    return attempt


def _record_refusal(request, refusal: Refusal, account: str) -> None:
    address = request.META.get("REMOTE_ADDR", "")
    logger.warning("Throttled %s for %r from %s (%s limit); retry in %s s", refusal.what, account, address,
                   refusal.scope, refusal.retry_after)
    # One audit row per account, limit and window: a flood of refused attempts must not flood the audit log.
    prefix = getattr(settings, "RATELIMIT_CACHE_PREFIX", "rl:")
    first = cache.add(f"{prefix}audited:{refusal.what}:{refusal.scope}:{account}:{address}", 1,
                      timeout=refusal.retry_after + 5)
    if not first or not account:
        return
    user = User.objects.filter(email__iexact=account).first()
    if user is None:
        return
    with transaction.atomic():
        for membership in Membership.objects.filter(user=user).select_related("tenant"):
            audit_record(actor=None, action=_AUDIT_ACTION[refusal.what], tenant=membership.tenant, target=user,
                         after={"email": user.email, "address": address, "limit": refusal.scope,
                                "retry_after_seconds": refusal.retry_after})


def throttled_response(request, refusal: Refusal):
    """The 429 page, in the site's look, with Retry-After."""
    minutes = max(1, -(-refusal.retry_after // 60))
    response = render(request, "registration/throttled.html", {
        "what": _WHAT[refusal.what], "scope": refusal.scope, "minutes": minutes,
    }, status=429)
    response["Retry-After"] = str(refusal.retry_after)
    return response
