import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kiwiclaw.settings")

django_application = get_asgi_application()

# /v1 (the LLM proxy) goes to its own small ASGI entry ahead of Django's middleware stack, which does nothing
# for API-key requests and costs about half the throughput (see proxy/asgi.py, bench/README.md).
# PROXY_RAW_ASGI=0 serves /v1 through Django's URLconf instead (same handler), e.g. to compare.
from conversations import sse_asgi  # noqa: E402  (needs Django set up)
from proxy.asgi import app as proxy_application  # noqa: E402

_RAW_PROXY = os.environ.get("PROXY_RAW_ASGI", "1") != "0"


async def application(scope, receive, send):
    if _RAW_PROXY and scope["type"] == "http" and scope["path"].startswith("/v1/"):
        return await proxy_application(scope, receive, send)
    # The chat's SSE streams carry a token that proves who may read them: checked without Django's middleware
    # (conversations/sse_asgi.py); anything it cannot check goes on to Django's view.
    if sse_asgi.wants(scope) and await sse_asgi.serve(scope, receive, send):
        return None
    return await django_application(scope, receive, send)
