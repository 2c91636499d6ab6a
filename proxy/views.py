"""Django entry points for /v1 (plain async views; no DRF, no Celery). They only adapt Django's request and
response to handler.handle. In production kiwiclaw/asgi.py sends /v1 to the raw ASGI entry (asgi.py) before
Django's middleware; these views serve the same endpoints when the project runs through Django alone
(runserver, the test client). Like the raw entry, a view returns only once the call's usage row is written
(handler.py: it is written after the answer; a streamed answer's row after its last chunk)."""

import asyncio

from django.http import HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from .errors import ANTHROPIC, OPENAI, ProxyError
from .handler import error_response, handle, handle_models, max_body_bytes, new_request_id


async def _then_finished(resp):
    try:
        async for chunk in resp.stream:
            yield chunk
    finally:
        await resp.stream.aclose()
        await asyncio.shield(resp.finished)


def _to_django(resp) -> HttpResponse:
    if resp.stream is not None:
        stream = resp.stream if resp.finished is None else _then_finished(resp)
        out = StreamingHttpResponse(stream, status=resp.status)
    else:
        out = HttpResponse(resp.body, status=resp.status)
    for name, value in resp.headers:
        out[name] = value
    return out


def _read_body(request) -> bytes | None:
    """The body, or None when it is over the limit (read no further than limit + 1 bytes)."""
    limit = max_body_bytes()
    try:
        if int(request.META.get("CONTENT_LENGTH") or 0) > limit:
            return None
    except ValueError:
        pass
    body = request.read(limit + 1)
    return None if len(body) > limit else body


async def _post(request, protocol: str) -> HttpResponse:
    if request.method != "POST":
        return _to_django(error_response(ProxyError("method", f"Use POST for {request.path}."), protocol,
                                         new_request_id()))
    body = _read_body(request)
    if body is None:
        error = ProxyError("too_large", f"The request body is over the {max_body_bytes()} byte limit.")
        return _to_django(error_response(error, protocol, new_request_id()))
    resp = await handle(protocol, request.headers, body)
    if resp.stream is None and resp.finished is not None:
        await asyncio.shield(resp.finished)
    return _to_django(resp)


@csrf_exempt
async def chat_completions(request):
    return await _post(request, OPENAI)


@csrf_exempt
async def messages(request):
    return await _post(request, ANTHROPIC)


@csrf_exempt
async def models(request):
    if request.method != "GET":
        return _to_django(error_response(ProxyError("method", "Use GET for /v1/models."), OPENAI,
                                         new_request_id()))
    return _to_django(await handle_models(request.headers))


@csrf_exempt
async def not_found(request, rest=""):
    return _to_django(error_response(ProxyError("not_found", f"Unknown endpoint {request.path}."), OPENAI,
                                     new_request_id()))
