"""The request id: one per HTTP request or Celery task, carried by every log line written on its behalf.

kiwiclaw/asgi.py's top-level wrapper sets it for each HTTP request (before the /v1 fast path, the chat's SSE
fast path and Django alike) and returns it in the `X-Request-ID` response header. A client or load balancer may
send its own `X-Request-ID`; a well-formed one (`is_well_formed`) is kept, anything else is replaced by a new
id. On `/v1/` the id is always made here: the proxy's usage rows are keyed by its request id, so a client must
never choose it (two calls sent with one id would be billed once); the client's value is still logged, as
`client_request_id`.

The id lives in a contextvar, so it follows the request into Django's sync views (asgiref copies the context to
the thread) and into tasks the request's coroutine starts. A Celery task gets its task id as request id: the
`task_prerun` / `task_postrun` receivers below set it in the task's thread, and the chat worker's turn loop
(conversations/turns.py) inherits it when the thread hands the stream over (`call_soon_threadsafe` copies the
caller's context).

`RequestIdFilter` puts `request_id` (and `client_request_id`, `task_id`) on every record that reaches a
handler it is attached to (settings.LOGGING attaches it to the console handler). The receivers are connected
when this module is imported, which settings.LOGGING does in every process, web and worker alike.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("kiwiclaw_request_id", default=None)
CLIENT_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("kiwiclaw_client_request_id",
                                                                                default=None)
TASK_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("kiwiclaw_task_id", default=None)

_IDS = ("request_id", "client_request_id", "task_id")
NONE = "-"  # what a plain log line shows outside any request or task
HEADER = b"x-request-id"
# What we accept from outside: the usual shapes (UUIDs with or without dashes, hex, AWS/GCP trace ids) and
# nothing that could break a log line or a header (no spaces, quotes, control characters).
_WELL_FORMED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:=+/-]{7,127}")


def new() -> str:
    """32 hex digits of os.urandom: a uuid4's randomness and shape without building a UUID (a third of the cost)."""
    return os.urandom(16).hex()


def is_well_formed(value: str) -> bool:
    return _WELL_FORMED.fullmatch(value) is not None


def current() -> str | None:
    """The id of the request or task this code runs for, or None outside of one."""
    return REQUEST_ID.get()


def from_scope(scope) -> tuple[str, str | None]:
    """(request id, the client's X-Request-ID when it sent a well-formed one) for an ASGI HTTP scope."""
    sent = None
    for key, value in scope["headers"]:
        if key == HEADER:
            text = value.decode("latin-1")
            sent = text if is_well_formed(text) else None
            break
    if sent is not None and not scope["path"].startswith("/v1/"):
        return sent, sent
    return new(), sent


class RequestIdFilter(logging.Filter):
    """Adds `request_id`, `client_request_id` and `task_id` to every record (`-` when there is none), so both the
    JSON and the plain formatter can name them."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get() or NONE
        record.client_request_id = CLIENT_REQUEST_ID.get() or NONE
        record.task_id = TASK_ID.get() or NONE
        return True


class JsonFormatter(_JsonFormatter):
    """python-json-logger's formatter, leaving out the ids a record has none of (a log line outside any request
    or task carries no `request_id: "-"`)."""

    def process_log_record(self, log_data):
        for key in _IDS:
            if log_data.get(key, NONE) in (NONE, None):
                log_data.pop(key, None)
        return log_data


def _connect_celery_signals() -> None:
    try:
        from celery import signals
    except ImportError:  # pragma: no cover - celery is a dependency
        return

    def on_prerun(task_id=None, **kwargs):
        REQUEST_ID.set(task_id)
        TASK_ID.set(task_id)

    def on_postrun(**kwargs):
        REQUEST_ID.set(None)
        TASK_ID.set(None)

    signals.task_prerun.connect(on_prerun, weak=False, dispatch_uid="kiwiclaw-requestid-prerun")
    signals.task_postrun.connect(on_postrun, weak=False, dispatch_uid="kiwiclaw-requestid-postrun")


_connect_celery_signals()
