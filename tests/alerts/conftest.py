"""Budget alerts: a real loopback HTTP receiver for webhooks, a real Celery worker (the chat tests' fixture),
and helpers to put a workspace's spend where a test wants it."""

import json
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.chat.conftest import celery_worker, chat_redis, chat_settings  # noqa: F401 (fixtures)


class Receiver:
    """A webhook endpoint on 127.0.0.1: records every call (headers, raw body) and answers the next status in
    `statuses` (the last one repeats)."""

    def __init__(self):
        self.calls: list[dict] = []
        self.statuses = [200]
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.lock:
                    receiver.calls.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    status = receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("location", "https://elsewhere.example/")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self) -> list[dict]:
        return [json.loads(call["body"]) for call in self.calls]

    def wait_for(self, count: int, timeout: float = 15.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.calls) < count:
            time.sleep(0.05)
        return list(self.calls)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    endpoint = Receiver()
    yield endpoint
    endpoint.close()


@pytest.fixture
def alerts_settings(settings):
    settings.ALERTS_WEBHOOK_ALLOW_HTTP = True  # the receiver is plain http on loopback
    settings.ALERTS_WEBHOOK_ALLOW_PRIVATE = True
    settings.ALERTS_WEBHOOK_BACKOFF_SECONDS = 0.2
    settings.ALERTS_WEBHOOK_TIMEOUT = 3
    return settings


def wait_until(predicate, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def spend_to(tenant, billed: Decimal, **kwargs):
    """One usage row of `billed` USD on the tenant's plan markup (cost = billed / (1 + markup))."""
    from tests.billing.conftest import record_usage

    factor = 1 + tenant.plan.markup_percent / 100
    return record_usage(tenant, input_tokens=0, output_tokens=0, cost=billed / factor, **kwargs)


# The live proxy (a uvicorn process on the test database), for alerts raised by /v1 usage.
from tests.proxy.conftest import live_db, proxy_server, server  # noqa: E402, F401
