"""The routing core's entry points, used by both the chat worker and the proxy API.

`route_stream` validates the request (RequestInvalid before any provider call), gathers the policy's inputs
(plan, spend when a cap downgrade could apply, catalog snapshot, breaker states in one Redis round trip),
asks the policy for a chain, and runs the one fallback loop (routing.dispatch).

Call from async code. The tenant's plan is read through sync_to_async when it is not already loaded; pass a
tenant fetched with select_related("plan") to skip that query on the hot path.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from asgiref.sync import sync_to_async
from django.conf import settings

from .breaker import breaker_states
from .catalog import catalog_cached, catalog_get
from .cost import estimate_prompt_tokens, request_max_tokens
from .dispatch import dispatch
from .errors import RequestInvalid, RoutingError
from .policy import Needs, downgrade_applies, policy_decide
from .types import ROLES, TIERS, ChatMessage, ChatRequest, Done, ImageBlock, RouteResult, SmartDecision

MAX_STOP_SEQUENCES = 4


def validate_request(*, tier: str, request: ChatRequest) -> None:
    """Raise RequestInvalid, with a message for people, for anything a provider would refuse or misread."""
    if tier not in TIERS:
        raise RequestInvalid(f"Unknown tier {tier!r}: use auto or max.")
    if not isinstance(request, ChatRequest):
        raise RequestInvalid("The request is not a ChatRequest.")
    if not request.messages:
        raise RequestInvalid("A request needs at least one message.")
    for number, message in enumerate(request.messages, start=1):
        if not isinstance(message, ChatMessage):
            raise RequestInvalid(f"Message {number} is not a chat message.")
        if message.role not in ROLES:
            raise RequestInvalid(
                f"Message {number} has role {message.role!r}; use user or assistant (the system prompt goes "
                "in `system`)."
            )
        if not isinstance(message.content, str):
            raise RequestInvalid(
                f"Message {number} is not text ({type(message.content).__name__}): only text content is supported."
            )
        if not message.content.strip() and not message.blocks:
            raise RequestInvalid(f"Message {number} is empty.")
    if request.system is not None and not isinstance(request.system, str):
        raise RequestInvalid("The system prompt must be text.")
    limit = settings.ROUTING_MAX_TOKENS_LIMIT
    if request.max_tokens is not None and (
        isinstance(request.max_tokens, bool) or not isinstance(request.max_tokens, int)
        or not 1 <= request.max_tokens <= limit
    ):
        raise RequestInvalid(f"max_tokens must be a whole number from 1 to {limit}.")
    if request.temperature is not None and (
        isinstance(request.temperature, bool) or not isinstance(request.temperature, int | float)
        or not 0 <= request.temperature <= 2
    ):
        raise RequestInvalid("temperature must be a number from 0 to 2.")
    if request.top_p is not None and (
        isinstance(request.top_p, bool) or not isinstance(request.top_p, int | float) or not 0 <= request.top_p <= 1
    ):
        raise RequestInvalid("top_p must be a number from 0 to 1.")
    if request.stop is not None:
        if isinstance(request.stop, str) or len(request.stop) > MAX_STOP_SEQUENCES or not all(
            isinstance(s, str) and s for s in request.stop
        ):
            raise RequestInvalid(f"stop must be a list of up to {MAX_STOP_SEQUENCES} non-empty strings.")


def request_needs(request: ChatRequest) -> Needs | None:
    """What an endpoint must be able to do for this request beyond text (None for a text request: the chat path
    and plain proxy calls pay one pass over their messages)."""
    if not (request.tools or request.response_format is not None
            or any(m.blocks is not None for m in request.messages)):
        return None
    images = image_urls = False
    for message in request.messages:
        for block in message.blocks or ():
            contents = block.content if hasattr(block, "tool_use_id") and not isinstance(block.content, str) \
                else (block,)
            for item in contents:
                if type(item) is ImageBlock:
                    images = True
                    image_urls = image_urls or item.url is not None
    choice = request.tool_choice
    return Needs(vision=images, image_urls=image_urls,
                 tools_with_format=bool(request.tools) and request.response_format is not None,
                 forced_tool=bool(request.tools) and choice is not None and choice.mode in ("required", "tool"),
                 json_schema=request.response_format is not None and request.response_format.kind == "json_schema")


async def _plan_of(tenant):
    from tenants.models import Tenant

    if Tenant.plan.is_cached(tenant):
        return tenant.plan
    return await sync_to_async(lambda: tenant.plan)()


async def _month_spend(tenant):
    from billing.selectors import tenant_month_spend

    return await sync_to_async(tenant_month_spend)(tenant=tenant)


_router = None  # the smart-Auto scorer, loaded once per process off the event loop


async def _scorer():
    global _router
    if _router is None:
        from .smart import router

        _router = await asyncio.to_thread(router)
    return _router


def escalation_level(*, tenant, tier: str, model: str | None) -> int:
    """The dial level that applies to this request: 0 (nothing to score) unless it is an Auto request on a plan
    with MAX and the tenant's dial (or its plan's default) is on. The plan must be loaded on the tenant."""
    if model is not None or tier != "auto":
        return 0
    return tenant.escalation_level


async def smart_decide(*, tenant, tier: str, request: ChatRequest, model: str | None = None
                       ) -> SmartDecision | None:
    """Smart Auto's score of an Auto request against the tenant's dial: the one place both paths (chat turns
    and /v1 on both endpoints) are scored. None when nothing is to be decided (MAX, a named model, dial Off,
    a plan without MAX). Whether the request escalates is settled by the policy, which also knows the budget."""
    level = escalation_level(tenant=tenant, tier=tier, model=model)
    if level <= 0:
        return None
    scorer = await _scorer()
    return SmartDecision(score=scorer.score_request(request), threshold=scorer.threshold(level), level=level,
                         version=scorer.version)


async def route_stream(
    *,
    tenant,
    tier: str,
    request: ChatRequest,
    model: str | None = None,
    should_stop: Callable[[], Awaitable[bool]] | None = None,
    health: dict[str, dict] | None = None,
) -> AsyncIterator:
    """Yield one Routed event (which endpoint answers) just before the first TextDelta, then TextDelta (and
    UsageUpdate) events, then exactly one Done(result).

    Before the first text delta, failures raise RoutingError subclasses (RequestInvalid, TierNotAllowed,
    ModelNotAllowed, AllEndpointsFailed, or a terminal ProviderError). `should_stop` is awaited between deltas;
    when it returns True the upstream call is closed and the result has finish_reason "cancelled". `health`:
    the breaker states of the catalog's enabled endpoints, when the caller has just read them
    (breaker_states_call, sent with its own Redis work in one round trip); read here otherwise.
    """
    validate_request(tier=tier, request=request)
    plan = await _plan_of(tenant)
    catalog = catalog_cached() or await sync_to_async(catalog_get)()
    smart = await smart_decide(tenant=tenant, tier=tier, request=request, model=model)
    spend = None
    # The spend decides the budget downgrade, which serves MAX on Auto and holds back escalation.
    if model is None and (tier == "max" or smart is not None) and plan.allows_tier("max") \
            and plan.max_to_auto_share is not None and plan.monthly_cap is not None:
        spend = await _month_spend(tenant)
    max_tokens = request_max_tokens(request)
    if health is None:
        health = await breaker_states([slug for slug, e in catalog.endpoints.items() if e.enabled])
    route_plan = policy_decide(catalog=catalog, tier=tier, plan=plan, spend=spend,
                               prompt_tokens=estimate_prompt_tokens(request), max_tokens=max_tokens,
                               health=health, model=model, smart=smart, needs=request_needs(request))
    async for event in dispatch(plan=route_plan, request=request, max_tokens=max_tokens,
                                requested_tier="" if model is not None else tier,
                                should_stop=should_stop, health=health):
        yield event


async def route_complete(
    *,
    tenant,
    tier: str,
    request: ChatRequest,
    model: str | None = None,
    should_stop: Callable[[], Awaitable[bool]] | None = None,
    health: dict[str, dict] | None = None,
) -> RouteResult:
    """The whole answer as one RouteResult (same errors as route_stream). The upstream call streams when
    request.stream is true and is a plain JSON call otherwise."""
    stream = route_stream(tenant=tenant, tier=tier, request=request, model=model, should_stop=should_stop,
                          health=health)
    try:
        async for event in stream:
            if isinstance(event, Done):
                return event.result
    finally:
        await stream.aclose()
    raise RoutingError("The routing core ended without a result.")  # unreachable by dispatch's contract


__all__ = ["route_stream", "route_complete", "validate_request", "downgrade_applies", "smart_decide",
           "escalation_level"]
