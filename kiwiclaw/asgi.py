import os
import time

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kiwiclaw.settings")

django_application = get_asgi_application()

# The URLconf imports every app's views (the smart router's model libraries among them): load it now rather
# than inside a worker's first request, which the metrics label resolves, and before proxy.asgi freezes what
# the process holds.
from django.urls import get_resolver  # noqa: E402

get_resolver().url_patterns  # noqa: B018 - loading it is the point

# /v1 (the LLM proxy) goes to its own small ASGI entry ahead of Django's middleware stack, which does nothing
# for API-key requests and costs about half the throughput (see proxy/asgi.py, bench/README.md).
# PROXY_RAW_ASGI=0 serves /v1 through Django's URLconf instead (same handler), e.g. to compare.
from conversations import sse_asgi  # noqa: E402  (needs Django set up)
from infra import requestid  # noqa: E402
from proxy.asgi import app as proxy_application  # noqa: E402

from . import metrics  # noqa: E402

_RAW_PROXY = os.environ.get("PROXY_RAW_ASGI", "1") != "0"


async def application(scope, receive, send):
    """Every request: its id (the X-Request-ID header and every log line it writes) and its latency per URL
    pattern (kiwiclaw/metrics.py), around the dispatch to the /v1 fast path, the SSE fast path or Django."""
    if scope["type"] != "http":
        return await dispatch(scope, receive, send)
    request_id, sent = requestid.from_scope(scope)
    ids = requestid.begin(request_id, client_request_id=sent)
    header = (requestid.HEADER, request_id.encode("latin-1"))
    proxied = scope["path"].startswith("/v1/")
    status = 0

    async def send_observed(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = list(message.get("headers") or ())
            if proxied:
                metrics.count_api_fallbacks(headers)
            # The /v1 proxy names its own request id (its usage rows' key); any other answer gets ours.
            if not any(key.lower() == requestid.HEADER for key, _ in headers):
                message = {**message, "headers": [*headers, header]}
        await send(message)

    started = time.perf_counter()
    try:
        return await dispatch(scope, receive, send_observed)
    except BaseException:
        status = status or 500
        raise
    finally:
        # status 0: the client left before an answer started.
        metrics.observe(path=scope["path"], method=scope["method"], status=status,
                        seconds=time.perf_counter() - started)
        requestid.end(ids)


async def dispatch(scope, receive, send):
    if _RAW_PROXY and scope["type"] == "http" and scope["path"].startswith("/v1/"):
        return await proxy_application(scope, receive, send)
    # The chat's SSE streams carry a token that proves who may read them: checked without Django's middleware
    # (conversations/sse_asgi.py); anything it cannot check goes on to Django's view.
    if sse_asgi.wants(scope) and await sse_asgi.serve(scope, receive, send):
        return None
    return await django_application(scope, receive, send)
