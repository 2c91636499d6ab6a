"""Errors of the routing core. Every one carries a message fit to show people (`str(exc)` / `.message`).

Before the first text delta the core raises these; after it, a failure ends the stream with
`Done(result)` whose finish_reason is "error" instead (see routing.core).
"""

from __future__ import annotations

# Provider error kinds. Retryable: the same endpoint may well answer if asked again later.
KIND_TIMEOUT = "timeout"
KIND_CONNECTION = "connection"
KIND_RATE_LIMITED = "rate_limited"
KIND_OVERLOADED = "overloaded"
KIND_SERVER = "server"
KIND_AUTH = "auth"
KIND_BAD_REQUEST = "bad_request"
KIND_CONTEXT_LENGTH = "context_length"
KIND_CONTENT_FILTER = "content_filter"

ERROR_KINDS = (
    KIND_TIMEOUT,
    KIND_CONNECTION,
    KIND_RATE_LIMITED,
    KIND_OVERLOADED,
    KIND_SERVER,
    KIND_AUTH,
    KIND_BAD_REQUEST,
    KIND_CONTEXT_LENGTH,
    KIND_CONTENT_FILTER,
)
RETRYABLE_KINDS = frozenset({KIND_TIMEOUT, KIND_CONNECTION, KIND_RATE_LIMITED, KIND_OVERLOADED, KIND_SERVER})
# Not retryable on the same endpoint, but another endpoint may answer: a bad key or a smaller context window
# is a property of that endpoint, not of the request.
FALLBACK_KINDS = RETRYABLE_KINDS | {KIND_AUTH, KIND_CONTEXT_LENGTH}
# The request itself is at fault: fail at once, do not burn the rest of the chain.
TERMINAL_KINDS = frozenset({KIND_BAD_REQUEST, KIND_CONTENT_FILTER})


class RoutingError(Exception):
    """Base of all routing errors. `message` is fit for people."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class RequestInvalid(RoutingError):
    """Bad input, detected before any provider is called."""


class TierNotAllowed(RoutingError):
    """The tenant's plan does not include the requested tier. Never silently switched to another tier."""


class ModelNotAllowed(RoutingError):
    """An explicit model was named but the plan does not allow naming models, or the model is unknown/disabled."""


class ProviderError(RoutingError):
    """One provider call failed. Raised by the core only for terminal request errors (bad_request,
    content_filter), with `.attempts` set; retryable and fallback errors end up in AllEndpointsFailed."""

    def __init__(
        self,
        kind: str,
        message: str,
        retryable: bool | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.kind = kind
        self.retryable = kind in RETRYABLE_KINDS if retryable is None else retryable
        self.status = status
        self.retry_after = retry_after
        self.attempts: list = []

    def __repr__(self):
        return f"ProviderError(kind={self.kind!r}, status={self.status!r}, message={self.message!r})"


class AllEndpointsFailed(RoutingError):
    """Every endpoint of the chain failed (or was skipped) before an answer started."""

    def __init__(self, attempts: list, all_breakers_open: bool = False, message: str | None = None):
        if message is None:
            if all_breakers_open:
                message = "All models for this tier are temporarily unavailable. Please try again in a minute."
            else:
                message = "No model could answer right now. Please try again."
        super().__init__(message)
        self.attempts = attempts
        self.all_breakers_open = all_breakers_open
