"""The proxy's request flow, independent of the web framework: headers and body in, a `ProxyResponse` out.

    key (cached) → tenant active → parse → tier/model in plan → rate limits (Redis) → budget hold
    (routing.metering.ahold, key api:<request id>) → the routed call (`call.Call`: route_complete /
    route_stream in a task of its own) → answer in the caller's protocol → usage row (metering.arecord) and token
    settle, after the answer; a call that fails before any text releases its hold instead.

Why the call runs detached from the request and writes its row after the answer: see call.py.

Both the Django views (views.py) and the raw ASGI entry (asgi.py) call `handle`.
"""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings

from billing.budget import BudgetExceeded
from infra import requestid
from infra.redis import arun_scripts
from routing import metering
from routing.breaker import breaker_states_call, breaker_states_parse
from routing.catalog import catalog_cached, catalog_get
from routing.types import FINISH_ERROR, FINISH_LENGTH

from . import formatting as fmt
from .auth import KeyIdentity, aauthenticate_key
from .call import Call, route_facts, usage_key
from .errors import ANTHROPIC, OPENAI, ProxyError, error_body, error_headers, error_payload
from .parsing import ParsedCall, check_anthropic_version, parse_anthropic, parse_openai
from .ratelimit import rate_limit_call, rate_limit_decision

logger = logging.getLogger("proxy")

JSON = ("content-type", "application/json")
SSE_HEADERS = [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache"),
               ("x-accel-buffering", "no")]


@dataclass
class ProxyResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    # The call's bookkeeping (usage row, token settle), still running when the answer is ready: the entry
    # point awaits it (shielded) after sending the last byte, so the row is written before its call returns.
    finished: asyncio.Task | None = None


def max_body_bytes() -> int:
    return int(getattr(settings, "PROXY_MAX_BODY_BYTES", 32 * 1024 * 1024))


def new_request_id() -> str:
    """The request's id (infra.requestid: kiwiclaw/asgi.py always makes a fresh one for /v1, never the client's),
    so its log lines, its `x-request-id` header and its usage row's key agree; a new one outside a request."""
    return requestid.current() or uuid.uuid4().hex


def error_response(error: ProxyError, protocol: str, request_id: str) -> ProxyResponse:
    return ProxyResponse(error.status, error_headers(error) + [("x-request-id", request_id)],
                         error_body(error, protocol, request_id))


def _secret(headers: Mapping[str, str], protocol: str) -> str | None:
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    if protocol == ANTHROPIC:
        return headers.get("x-api-key") or None
    return None


async def authenticate(headers: Mapping[str, str], protocol: str) -> KeyIdentity:
    secret = _secret(headers, protocol)
    if not secret:
        hint = "`x-api-key` header or `Authorization: Bearer`" if protocol == ANTHROPIC else \
            "`Authorization: Bearer <key>` header"
        raise ProxyError("auth", f"No API key: send your KiwiClaw API key in the {hint}.")
    identity = await aauthenticate_key(secret)
    if identity is None:
        raise ProxyError("auth", "Incorrect or revoked API key. Create a key on the API keys page.")
    if not identity.tenant.is_active:
        raise ProxyError("permission", f"The workspace {identity.tenant.name} is suspended. Contact support.")
    return identity


def _check_plan(identity: KeyIdentity, call: ParsedCall) -> None:
    """The plan's tiers, then the key's and its member's narrower ones (a 403 naming which), all from the cached
    identity: no query, no round trip."""
    plan = identity.plan
    key_tiers, member_tiers = identity.key_tiers, identity.membership.allowed_tiers
    if call.tier is not None:
        if not plan.allows_tier(call.tier):
            raise ProxyError("permission", f"The {plan.name} plan does not include the {call.tier.upper()} tier.")
        if key_tiers is not None and call.tier not in key_tiers:
            raise ProxyError("permission", f"The API key “{identity.key_name}” is limited to "
                                           f"{identity.tiers_text(key_tiers)}: the {call.tier.upper()} tier is not "
                                           f"allowed for it.")
        if member_tiers is not None and call.tier not in member_tiers:
            raise ProxyError("permission", f"The member {identity.user.email} is limited to "
                                           f"{identity.tiers_text(member_tiers)}: the {call.tier.upper()} tier is not "
                                           f"allowed for them.")
    elif not plan.api_models_allowed:
        raise ProxyError("permission", f"The {plan.name} plan only allows the models \"auto\" and \"max\" "
                                       f"(got {call.model!r}).")
    elif key_tiers is not None or member_tiers is not None:
        which = f"API key “{identity.key_name}”" if key_tiers is not None else f"member {identity.user.email}"
        raise ProxyError("permission", f"The {which} is limited to {identity.tiers_text(key_tiers or member_tiers)}: "
                                       f"name the tier (\"auto\" or \"max\"), not a model (got {call.model!r}).")


async def _admit(headers: Mapping[str, str], body: bytes, protocol: str, request_id: str):
    """Everything before the provider call. Returns (identity, call, estimated tokens, breaker states or None) or
    raises ProxyError."""
    if len(body) > max_body_bytes():
        raise ProxyError("too_large", f"The request body is over the {max_body_bytes()} byte limit.")
    identity = await authenticate(headers, protocol)
    if protocol == ANTHROPIC:
        call = parse_anthropic(body, check_anthropic_version(headers))
    else:
        call = parse_openai(body)
    _check_plan(identity, call)
    estimate = call.estimated_input_tokens()
    decision, health = await _limits_and_health(identity, estimate)
    if decision.revoked:
        raise ProxyError("auth", "Incorrect or revoked API key. Create a key on the API keys page.")
    if not decision.allowed:
        raise ProxyError("rate_limited", f"Rate limit reached: {decision.limit}. Retry after "
                                         f"{decision.retry_after} s.", retry_after=decision.retry_after)
    try:
        await metering.ahold(tenant=identity.tenant, key=usage_key(request_id), tier=call.tier or "auto",
                             request=call.request, limits=identity.spend_limits)
    except BudgetExceeded as exc:
        raise ProxyError("quota", exc.message) from None
    return identity, call, estimate, health


async def _limits_and_health(identity: KeyIdentity, estimate: int):
    """The rate-limit take and the routing core's breaker read, in one Redis round trip: (Decision, health).
    health is None when the catalog is not in memory (the core reads the breakers itself then)."""
    catalog = catalog_cached()
    take = rate_limit_call(identity, tokens=estimate)
    if catalog is None:
        return rate_limit_decision(identity, await take[0].arun(take[1], take[2])), None
    slugs = [slug for slug, endpoint in catalog.endpoints.items() if endpoint.enabled]
    taken, states = await arun_scripts(take, breaker_states_call(slugs))
    return rate_limit_decision(identity, taken), breaker_states_parse(slugs, states)


async def handle(protocol: str, headers: Mapping[str, str], body: bytes) -> ProxyResponse:
    """POST /v1/chat/completions (protocol "openai") or POST /v1/messages (protocol "anthropic")."""
    request_id = new_request_id()
    runner = None
    try:
        identity, call, estimate, health = await _admit(headers, body, protocol, request_id)
        runner = Call(identity=identity, call=call, request_id=request_id, estimate=estimate, health=health)
        resp = await (_complete(runner, protocol) if not call.stream else _stream(runner, protocol))
    except ProxyError as exc:
        resp = error_response(exc, protocol, request_id)
    except Exception:
        logger.exception("proxy request %s failed", request_id)
        resp = error_response(ProxyError("internal", f"Internal error (request {request_id})."), protocol,
                              request_id)
    # An answer cut short upstream is still billed: its error response waits for the row like an answer does.
    resp.finished = runner.task if runner is not None else None
    return resp


async def _complete(runner: Call, protocol: str) -> ProxyResponse:
    # The call runs in its own task: if the client goes away, it is told to stop but still writes its row.
    runner.start(runner.run_complete())
    item = await runner.next_item()
    if item[0] == "error":
        raise item[1]
    _, result, billed, _unsent = item
    facts = route_facts(runner.request_id, result)
    if result.finish_reason == FINISH_ERROR:
        # The answer broke off upstream; the tokens it used are billed, the client gets a clear 502.
        raise ProxyError("upstream_failed", result.error or "The model stopped answering mid-way.")
    problem = _json_problem(runner.call, result)
    if problem is not None:
        raise problem
    if protocol == ANTHROPIC:
        body = fmt.anthropic_message(facts, result.text, result.finish_reason, result.usage, result.cost, billed,
                                     result.stop_sequence, result.tool_calls)
    else:
        body = fmt.openai_completion(facts, result.text, result.finish_reason, result.usage, result.cost, billed,
                                     result.tool_calls)
    headers = [JSON] + fmt.routing_headers(facts) + fmt.money_headers(result.cost, billed)
    return ProxyResponse(200, headers, body)


async def _stream(runner: Call, protocol: str) -> ProxyResponse:
    runner.start(runner.run_stream())
    first = await runner.next_item()  # a client that leaves before the answer starts stops the call
    if first[0] == "error":
        raise first[1]
    if first[0] == "done":
        result = first[1]
        facts, first, pending = route_facts(runner.request_id, result), ("delta", result.text), first
    else:
        facts = first[1]
        # Routed comes just before the answer's first delta, so it is queued already: the first chunk carries it.
        first, pending = await runner.next_item(), None
    headers = SSE_HEADERS + fmt.routing_headers(facts)
    return ProxyResponse(200, headers, stream=_relay(runner, protocol, facts, first, pending))


async def _relay(runner: Call, protocol: str, facts: fmt.RouteFacts, first, pending):
    """The answer's SSE events, from its first item (a text delta, a tool call's start, or the end) on. Whatever
    the call has already queued goes out as one chunk: deltas that arrived together (a provider's TCP read often
    holds several) cost one ASGI send and one socket write, not one each; nothing waits to be batched, so a lone
    delta still goes out at once."""
    call = runner.call
    if first[0] == "delta":
        head, first = first[1], None
    elif first[0] == "tool":
        head = None
    else:  # the end (or an error) right after the facts: the opening chunk, then that item
        head, pending, first = "", first, None
    if protocol == ANTHROPIC:
        events = fmt.AnthropicEvents(facts)
        estimated_input = call.estimated_input_tokens()
        yield events.first(head, estimated_input) if head is not None \
            else events.first_tool(*first[1:], estimated_input)
    else:
        events = fmt.OpenAIChunks(facts, call.include_usage)
        yield events.first(head) if head is not None else events.first_tool(*first[1:])
    queue = runner.queue
    try:
        while True:
            item = pending or await queue.get()
            pending = None
            out: list[bytes] = []
            while True:
                if _relay_item(runner, protocol, events, item, out):
                    yield b"".join(out)
                    return
                if queue.empty():
                    break
                item = queue.get_nowait()
            if out:
                yield b"".join(out)
    finally:
        # Normal end, client disconnect (CancelledError / GeneratorExit) alike: if the call is still
        # running, tell the core to stop; it then records the tokens so far.
        runner.client_gone = True


def _relay_item(runner: Call, protocol: str, events, item, out: list[bytes]) -> bool:
    """Append one queue item's events to `out`; True when it ends the answer."""
    if item[0] == "delta":
        if item[1]:
            out.append(events.delta(item[1]))
        return False
    if item[0] == "args":
        out.append(events.tool_arguments(item[1], item[2]))
        return False
    if item[0] == "tool":
        out.append(events.tool_start(item[1], item[2], item[3]))
        return False
    if item[0] == "done":
        _, result, billed, _unsent = item
        problem = _json_problem(runner.call, result) if result.finish_reason != FINISH_ERROR else None
        if result.finish_reason == FINISH_ERROR or problem is not None:
            error = problem or ProxyError("upstream_failed", result.error or "The model stopped answering mid-way.")
            out.append(events.error(error_payload(error, protocol, runner.request_id)))
        elif protocol == ANTHROPIC:
            out.append(events.finish(result.finish_reason, result.usage, result.cost, billed, result.stop_sequence))
        else:
            out.append(events.finish(result.finish_reason))
            if runner.call.include_usage:
                out.append(events.usage(result.usage, result.cost, billed))
            out.append(events.done())
        return True
    out.append(events.error(error_payload(item[1], protocol, runner.request_id)))
    return True


def _json_problem(call: ParsedCall, result) -> ProxyError | None:
    """A JSON request (response_format / output_config.format) answered with text that is not JSON, or not valid
    for the schema, is not passed off as an answer: a 502 (an error event at the end of a stream) says so. The
    tokens are billed, as for an answer that broke off. An answer cut by max_tokens says so itself (length)."""
    fmt = call.request.response_format
    if fmt is None or result.finish_reason == FINISH_LENGTH or result.tool_calls:
        return None
    try:
        value = orjson.loads(result.text)
    except orjson.JSONDecodeError:
        return ProxyError("upstream_failed", "The model's answer is not valid JSON, though the request asked for "
                                             "JSON; it is billed like any answer. Try again.")
    if fmt.kind == "json_schema" and fmt.schema is not None:
        from jsonschema import Draft202012Validator

        error = next(iter(Draft202012Validator(fmt.schema).iter_errors(value)), None)
        if error is not None:
            return ProxyError("upstream_failed", f"The model's answer does not match the requested schema "
                                                 f"({error.message}); it is billed like any answer. Try again.")
    elif not isinstance(value, dict):
        return ProxyError("upstream_failed", "The model's answer is JSON but not an object, though the request "
                                             "asked for a JSON object; it is billed like any answer. Try again.")
    return None


async def handle_models(headers: Mapping[str, str]) -> ProxyResponse:
    """GET /v1/models: the tiers (and, where the plan allows it, the catalog endpoints) this key may use. A key or
    member narrowed to some tiers sees only those, and no catalog endpoints (`_check_plan` refuses them)."""
    request_id = new_request_id()
    try:
        identity = await authenticate(headers, OPENAI)
        plan = identity.plan
        narrowed = [t for t in (identity.key_tiers, identity.membership.allowed_tiers) if t is not None]
        data = [{"id": tier, "object": "model", "created": 0, "owned_by": "kiwiclaw"}
                for tier in ("auto", "max") if plan.allows_tier(tier) and all(tier in t for t in narrowed)]
        if plan.api_models_allowed and not narrowed:
            catalog = catalog_cached() or await sync_to_async(catalog_get)()
            data += [{"id": e.slug, "object": "model", "created": 0, "owned_by": e.provider}
                     for e in catalog.endpoints.values() if e.enabled]
        return ProxyResponse(200, [JSON, ("x-request-id", request_id)],
                             orjson.dumps({"object": "list", "data": data}))
    except ProxyError as exc:
        return error_response(exc, OPENAI, request_id)
    except Exception:
        logger.exception("proxy request %s failed", request_id)
        return error_response(ProxyError("internal", f"Internal error (request {request_id})."), OPENAI,
                              request_id)
