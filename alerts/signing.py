"""Webhook signatures, Stripe-like: header `KiwiClaw-Signature: t=<unix seconds>,v1=<hex>` where
hex = HMAC-SHA256(secret, f"{t}.{body}") over the raw request body. Receivers verify as in docs/operations.md
("Budget alerts"); `verify` is that recipe in Python (the tests use it)."""

import hashlib
import hmac
import secrets
import time

HEADER = "KiwiClaw-Signature"
SECRET_PREFIX = "whsec_"
TOLERANCE_SECONDS = 300


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify(secret: str, body: bytes, header_value: str, *, tolerance: int = TOLERANCE_SECONDS,
           now: float | None = None) -> bool:
    """True when `header_value` signs `body` with `secret` and its timestamp is within `tolerance` seconds."""
    try:
        parts = dict(item.split("=", 1) for item in header_value.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), parts.get("v1", ""))
