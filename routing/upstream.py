"""One call of one endpoint: the adapter builds the provider's request, infra.http sends it, and the answer (a
JSON body or an SSE stream) comes back as TextDelta / ToolCallStart / ToolCallDelta / UsageUpdate / Finish events
(a JSON answer's tool calls as one start and one whole-arguments delta each), every failure as a
ProviderError. The fallback loop around it is routing.dispatch."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import httpx
import orjson
from django.conf import settings

from infra.http import provider_send

from .catalog import EndpointInfo
from .errors import KIND_CONNECTION, KIND_SERVER, KIND_TIMEOUT, ProviderError
from .providers import adapter_for
from .sse import SSEDecoder, SSELines
from .types import ChatRequest, Finish, TextDelta, ToolCallDelta, ToolCallStart, UsageUpdate


async def provider_events(endpoint: EndpointInfo, request: ChatRequest, *, max_tokens: int) -> AsyncIterator:
    """One call of one endpoint: yields TextDelta / UsageUpdate / Finish, raises ProviderError (KIND_TIMEOUT
    after ROUTING_FIRST_BYTE_TIMEOUT without a JSON answer, or ROUTING_STREAM_IDLE_TIMEOUT of a silent stream).
    Closing the generator closes the upstream response (the provider stops generating)."""
    adapter = adapter_for(endpoint.kind)
    upstream = adapter.build_request(base_url=endpoint.base_url, api_key=endpoint.api_key,
                                     model=endpoint.upstream_model, request=request, stream=request.stream,
                                     max_tokens=max_tokens)
    content = orjson.dumps(upstream.body)
    try:
        if not request.stream:
            response = await provider_send("POST", upstream.url, content=content, headers=upstream.headers,
                                           read_timeout=settings.ROUTING_FIRST_BYTE_TIMEOUT)
            if response.status_code >= 400:
                raise adapter.classify_error(response.status_code, response.headers, response.content)
            try:
                body = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                raise ProviderError(KIND_SERVER, "The provider sent an unreadable answer.") from None
            parsed = adapter.parse_response(body)
            if parsed.text:
                yield TextDelta(parsed.text)
            for index, call in enumerate(parsed.tool_calls):
                yield ToolCallStart(index, call.id, call.name)
                yield ToolCallDelta(index, call.arguments)
            yield UsageUpdate(parsed.usage)
            yield Finish(parsed.finish_reason, parsed.stop_sequence)
            return
        response = await provider_send("POST", upstream.url, content=content, headers=upstream.headers,
                                       stream=True, read_timeout=settings.ROUTING_STREAM_IDLE_TIMEOUT)
        try:
            if response.status_code >= 400:
                raise adapter.classify_error(response.status_code, response.headers, await response.aread())
            state = adapter.new_stream_state()
            lines, decoder = SSELines(), SSEDecoder()
            finish = None
            async for chunk in response.aiter_bytes():
                if finish is not None:
                    # Read the (normally empty) rest of the body, so the connection goes back to the pool
                    # instead of being closed and re-opened for the next request.
                    continue
                for line in lines.feed(chunk):
                    item = decoder.feed(line)
                    if item is None:
                        continue
                    for event in adapter.parse_stream_event(state, item[0], item[1]):
                        if isinstance(event, Finish):
                            finish = event
                            break
                        yield event
                    if finish is not None:
                        break
            if finish is None:
                # An unterminated last line or event: only its finish (and usage) still counts.
                tail = [decoder.feed(line) for line in lines.flush()] + [decoder.flush()]
                for item in tail:
                    if item is not None:
                        finish = next((e for e in adapter.parse_stream_event(state, *item)
                                       if isinstance(e, Finish)), finish)
            if finish is not None:
                yield finish
                return
            raise ProviderError(KIND_CONNECTION, "The provider closed the stream before the answer was complete.")
        finally:
            await response.aclose()
    except httpx.HTTPError as exc:
        # httpx-aiohttp maps every aiohttp connection error to httpx.ConnectTimeout (a server that hung up, too):
        # only a timeout underneath is a timeout. Any other error means the provider could not be talked to.
        cause = exc.__cause__
        if isinstance(exc, httpx.TimeoutException) and (cause is None or isinstance(cause, TimeoutError)):
            raise ProviderError(KIND_TIMEOUT, f"The provider did not answer in time ({type(exc).__name__}).") \
                from None
        name = type(cause or exc).__name__
        raise ProviderError(KIND_CONNECTION, f"Could not reach the provider ({name}).") from None
    except aiohttp.ClientError as exc:  # one httpx-aiohttp does not map (e.g. a malformed response)
        raise ProviderError(KIND_CONNECTION, f"Could not reach the provider ({type(exc).__name__}).") from None
