"""The request id: one per HTTP request or Celery task, carried by every log line written on its behalf.

kiwiclaw/asgi.py's top-level wrapper sets it for each HTTP request (before the /v1 fast path, the chat's SSE
fast path and Django alike) and returns it in the `X-Request-ID` response header. A client or load balancer may
send its own `X-Request-ID`; a well-formed one (`is_well_formed`) is kept, anything else is replaced by a new
id. On `/v1/` the id is always made here: the proxy's usage rows are keyed by its request id, so a client must
never choose it (two calls sent with one id would be billed once); the client's value is still logged, as
`client_request_id`.

The ids live in a contextvar (`begin` / `end`), so they follow the request into Django's sync views (asgiref
copies the context to the thread) and into tasks the request's coroutine starts. A Celery task gets its task id
as request id: the `task_prerun` / `task_postrun` receivers below set it in the task's thread, and the chat
worker's turn loop (conversations/turns.py) inherits it when the thread hands the stream over
(`run_coroutine_threadsafe` copies the caller's context).

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


class Ids:
    """The ids of one request or task. A contextvar holds this object rather than the strings, so `end` can empty
    it: a long-lived task that a request happened to start (the SSE hub's reader, a connection's reader) inherits
    the request's context, and must not go on logging that request's id after it ended."""

    __slots__ = ("request_id", "client_request_id", "task_id")

    def __init__(self, request_id: str | None, client_request_id: str | None = None, task_id: str | None = None):
        self.request_id, self.client_request_id, self.task_id = request_id, client_request_id, task_id


_CURRENT: contextvars.ContextVar[Ids | None] = contextvars.ContextVar("kiwiclaw_request_ids", default=None)

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
    ids = _CURRENT.get()
    return ids.request_id if ids is not None else None


def begin(request_id: str, *, client_request_id: str | None = None, task_id: str | None = None):
    """Enter a request or task: its ids are the current ones until `end(token)` (in the same context)."""
    return _CURRENT.set(Ids(request_id, client_request_id, task_id))


def end(token) -> None:
    ids = _CURRENT.get()
    if ids is not None:
        ids.request_id = ids.client_request_id = ids.task_id = None
    _CURRENT.reset(token)


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
        ids = _CURRENT.get()
        if ids is None:
            record.request_id = record.client_request_id = record.task_id = NONE
        else:
            record.request_id = ids.request_id or NONE
            record.client_request_id = ids.client_request_id or NONE
            record.task_id = ids.task_id or NONE
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

    tokens: dict[str, contextvars.Token] = {}  # by task id; prerun and postrun run in the task's thread

    def on_prerun(task_id=None, **kwargs):
        if task_id:
            tokens[task_id] = begin(task_id, task_id=task_id)

    def on_postrun(task_id=None, **kwargs):
        token = tokens.pop(task_id, None)
        if token is not None:
            try:
                end(token)
            except ValueError:  # not the context it was set in: leave it, the thread's next task replaces it
                pass

    signals.task_prerun.connect(on_prerun, weak=False, dispatch_uid="kiwiclaw-requestid-prerun")
    signals.task_postrun.connect(on_postrun, weak=False, dispatch_uid="kiwiclaw-requestid-postrun")


_connect_celery_signals()
