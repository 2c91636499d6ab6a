"""Secrets shown once (API keys, invite tokens) and the hashes we store instead of them."""

import hashlib
import secrets

API_KEY_PREFIX = "kc-"


def hash_secret(secret: str) -> str:
    """SHA-256 hex of a high-entropy secret. Such secrets need no slow hash: they cannot be guessed."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_api_key_secret() -> tuple[str, str]:
    """Returns (secret, visible prefix). The prefix is the first 10 characters, e.g. `kc-3fA9xQ1`."""
    secret = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return secret, secret[:10]


def new_invite_token() -> str:
    return secrets.token_urlsafe(24)
