"""The proxy's error table: one row per failure case, rendered in each protocol's own body format.

This table is the single source of truth; docs/architecture.md ("Proxy API") shows the same rows and
tests/proxy/test_errors.py checks that every row maps to the official SDKs' own exception classes.
Error bodies never carry a traceback: the catch-all row (`internal`) logs it server-side instead.
"""

from dataclasses import dataclass

import orjson


@dataclass(frozen=True)
class ErrorRow:
    status: int
    openai_type: str
    openai_code: str | None
    anthropic_type: str


# case -> how it is answered. Keep in step with the table in docs/architecture.md.
ERROR_TABLE: dict[str, ErrorRow] = {
    # missing, wrong or revoked key
    "auth": ErrorRow(401, "invalid_request_error", "invalid_api_key", "authentication_error"),
    # tier or model not in the plan; tenant suspended
    "permission": ErrorRow(403, "permission_error", None, "permission_error"),
    # malformed or unsupported request
    "invalid": ErrorRow(400, "invalid_request_error", None, "invalid_request_error"),
    # unknown path under /v1/
    "not_found": ErrorRow(404, "invalid_request_error", "not_found", "not_found_error"),
    # wrong HTTP method
    "method": ErrorRow(405, "invalid_request_error", "method_not_allowed", "invalid_request_error"),
    # body over PROXY_MAX_BODY_BYTES
    "too_large": ErrorRow(413, "invalid_request_error", "request_too_large", "request_too_large"),
    # per-tenant / per-key RPM or TPM exceeded (with retry-after)
    "rate_limited": ErrorRow(429, "rate_limit_error", "rate_limit_exceeded", "rate_limit_error"),
    # over the tenant's monthly budget cap
    "quota": ErrorRow(429, "insufficient_quota", "insufficient_quota", "rate_limit_error"),
    # every endpoint failed
    "upstream_failed": ErrorRow(502, "api_error", "upstream_failed", "api_error"),
    # every endpoint's circuit breaker is open
    "overloaded": ErrorRow(503, "api_error", "overloaded", "overloaded_error"),
    # anything unexpected (a bug): logged with its traceback, answered without it
    "internal": ErrorRow(500, "api_error", "internal_error", "api_error"),
}

OPENAI = "openai"
ANTHROPIC = "anthropic"


class ProxyError(Exception):
    """A failure answered from ERROR_TABLE. `message` is shown to the API client, so it is written for people."""

    def __init__(self, case: str, message: str, *, param: str | None = None, retry_after: int | None = None):
        if case not in ERROR_TABLE:
            raise ValueError(f"unknown proxy error case {case!r}")
        super().__init__(message)
        self.case = case
        self.message = message
        self.param = param
        self.retry_after = retry_after

    @property
    def status(self) -> int:
        return ERROR_TABLE[self.case].status


def error_payload(error: ProxyError, protocol: str, request_id: str | None = None) -> dict:
    row = ERROR_TABLE[error.case]
    if protocol == ANTHROPIC:
        body = {"type": "error", "error": {"type": row.anthropic_type, "message": error.message}}
        if request_id:
            body["request_id"] = request_id
        return body
    return {"error": {"message": error.message, "type": row.openai_type, "param": error.param,
                      "code": row.openai_code}}


def error_body(error: ProxyError, protocol: str, request_id: str | None = None) -> bytes:
    return orjson.dumps(error_payload(error, protocol, request_id))


def error_headers(error: ProxyError) -> list[tuple[str, str]]:
    headers = [("content-type", "application/json")]
    if error.retry_after is not None:
        headers.append(("retry-after", str(error.retry_after)))
    return headers
