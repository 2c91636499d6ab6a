"""The one metering path of a routed call, for the chat turn and the proxy alike:

    hold (estimate the call's maximum cost, reserve it against the tenant's budget)
    → route (routing.core) → record (the one usage row, which settles the hold) | release (nothing billed)

Each call is keyed (`chat:<message id>`, `api:<request id>`): the hold, the row and the release all name the
same key, and the row's unique key is what makes a second record of the same call a no-op.

`usage_row(result)` gives every ledger column a result decides (the answering endpoint, its prices and cost,
the tokens, the requested tier, smart Auto's decision and the counterfactual MAX cost); `record` adds who and
what the row is for (tenant, source, key, user, API key) and hands it to `billing.services.usage_record` (the chat
turn, sync); `arecord` hands the same row to `billing.usage_writer` (the proxy, on its event loop).

When the database cannot take the row at the end of an answer, `record_later` keeps the complete record in the
outbox (`billing.outbox`, kind `usage`, under the same key) and the outbox applies it through `record` once the
database answers: the row arrives exactly once either way (the key is unique), with the real tokens.

The counterfactual — what an Auto request would have cost on MAX — prices the request's actual tokens at the
published prices of the MAX chain's first enabled model, with the one cost function (routing.cost). Savings
are then sums over the ledger (billing.selectors.smart_savings), with the rule in billing.money.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from asgiref.sync import sync_to_async

from billing import outbox, usage_writer
from billing.budget import BudgetExceeded, SpendLimit, abudget_reserve, budget_release, budget_reserve
from billing.services import usage_record
from billing.spend_limits import member_spend_limit
from tenants.models import TIER_CHOICES, Membership, Tenant

from .catalog import Catalog, EndpointInfo, catalog_cached, catalog_get
from .cost import estimate_max_cost, estimate_tokens, price_usage
from .errors import RoutingError, TierNotAllowed
from .types import Attempt, ChatRequest, Prices, RouteResult, SmartDecision, ToolCall, Usage

# --- hold, record, release ---

# What a refused hold raises: the budget's refusal (its message, fit to show people, names the limit: the
# workspace's cap, the member's or the API key's), or a routing error (a member's tiers exclude the tier).
HOLD_REFUSALS = (BudgetExceeded, RoutingError)


def hold(*, tenant, key: str, tier: str, request: ChatRequest, user_id: int | None = None,
         limits: Sequence[SpendLimit | None] = ()) -> None:
    """Reserve the call's estimated maximum cost on `tier` under `key` (again: the same key replaces the hold),
    against the workspace's cap and `limits`; with `user_id` (a chat turn's member) also against that member's
    limit, after checking the member may use `tier`.

    Raises one of HOLD_REFUSALS (BudgetExceeded: the hold would pass a limit, which its text names;
    TierNotAllowed: the member's tiers exclude `tier`), holding nothing. Sync: may load the catalog and the
    member; the chat holds from a request thread or a Celery thread."""
    if user_id is not None:
        limits = (*limits, member_limit(tenant=tenant, user_id=user_id, tier=tier))
    budget_reserve(tenant=tenant, key=key, cost=estimate_max_cost(tenant=tenant, tier=tier, request=request),
                   limits=limits)


def member_limit(*, tenant, user_id: int, tier: str) -> SpendLimit | None:
    """The member's spend limit, after checking the member may use `tier` (TierNotAllowed otherwise)."""
    membership = Membership.objects.select_related("user").filter(tenant=tenant, user_id=user_id).first()
    if membership is None:
        return None  # not a member any more: the workspace's cap still applies
    if not membership.allows_tier(tier):
        names = dict(TIER_CHOICES)
        allowed = " and ".join(names.get(t, t) for t in membership.allowed_tiers) or "no tier"
        raise TierNotAllowed(f"Your access in {tenant.name} is limited to {allowed}: the {names.get(tier, tier)} "
                             f"tier is not available to you. A workspace admin can change this.")
    return member_spend_limit(membership)


async def ahold(*, tenant, key: str, tier: str, request: ChatRequest,
                limits: Sequence[SpendLimit | None] = ()) -> None:
    """`hold` on an event loop, for the proxy; `limits` are the API key's and its member's (the proxy passes its
    cached key identity's `spend_limits`).

    Twin of `hold` because a thread hop per request on the proxy's hot path costs measurable latency
    (bench/proxy_latency.py): the reservation runs on the loop, and so does the estimate while the catalog is in
    this process's memory; only a stale catalog needs the database (a thread hop). The key's and member's limits
    are reserved by the same script, in the same round trip, as the cap."""
    if catalog_cached() is not None:
        cost = estimate_max_cost(tenant=tenant, tier=tier, request=request)
    else:
        cost = await sync_to_async(estimate_max_cost)(tenant=tenant, tier=tier, request=request)
    await abudget_reserve(tenant=tenant, key=key, cost=cost, limits=limits)


def record(*, tenant, source: str, key: str, user_id: int | None, api_key_id: int | None, result: RouteResult,
           end_user: str | None = None):
    """Write the call's one usage row, priced at the endpoint that answered, and settle its hold (after commit).
    Idempotent on `key`. Returns the UsageRecord, or None for a result no endpoint answered (nothing to price).

    Sync: inside a caller's transaction the row commits with it. From an event loop, `arecord`."""
    if not result.endpoint or result.prices is None:
        return None
    return usage_record(**usage_kwargs(tenant=tenant, source=source, key=key, user_id=user_id,
                                       api_key_id=api_key_id, result=result, end_user=end_user))


async def arecord(*, tenant, source: str, key: str, user_id: int | None, api_key_id: int | None,
                  result: RouteResult, end_user: str | None = None):
    """`record` on an event loop, for the proxy: the same row, written on the loop's own connection together
    with the rows of calls ending at the same moment (billing.usage_writer). Twin of `record` because a thread
    hop per row cost the proxy more than the write (bench/proxy_latency.py); only a stale catalog (the
    counterfactual's MAX prices) needs a thread. Raises `django.db.OperationalError` when the database is
    unavailable (the caller keeps the row with `record_later`)."""
    if not result.endpoint or result.prices is None:
        return None
    who = {"tenant": tenant, "source": source, "key": key, "user_id": user_id, "api_key_id": api_key_id,
           "result": result, "end_user": end_user}
    row = usage_kwargs(**who) if catalog_cached() is not None else await sync_to_async(usage_kwargs)(**who)
    return await usage_writer.arecord(row)


def usage_kwargs(*, tenant, source: str, key: str, user_id: int | None, api_key_id: int | None,
                 result: RouteResult, end_user: str | None = None) -> dict:
    """`usage_record`'s keyword arguments for a call: who and what the row is for, and what its result decides."""
    return {"tenant": tenant, "source": source, "key": key, "user_id": user_id, "api_key_id": api_key_id,
            "end_user": end_user, **usage_row(result)}


def record_later(*, tenant, source: str, key: str, user_id: int | None, api_key_id: int | None,
                 result: RouteResult, end_user: str | None = None) -> None:
    """`record`, deferred: keep the row's complete record in the outbox (durable when this returns), to be
    written by `billing.outbox.drain` under the same key once the database answers. For a caller whose `record`
    just failed because the database is unavailable. Raises OSError only if nothing could keep it."""
    outbox.put(kind="usage", key=key, payload=usage_payload(tenant_id=tenant.pk, source=source, key=key,
                                                            user_id=user_id, api_key_id=api_key_id, result=result,
                                                            end_user=end_user))


def usage_payload(*, tenant_id: int, source: str, key: str, user_id: int | None, api_key_id: int | None,
                  result: RouteResult, end_user: str | None = None) -> dict:
    """What the outbox keeps of a usage row: who it is for, and the whole routing result (JSON-safe)."""
    return {"tenant_id": tenant_id, "source": source, "key": key, "user_id": user_id, "api_key_id": api_key_id,
            "end_user": end_user, "result": result.as_dict()}


def record_payload(payload: dict):
    """Write a row kept by `record_later` (the outbox's `usage` handler): `record`, idempotent on its key."""
    tenant = Tenant.objects.select_related("plan").get(pk=payload["tenant_id"])
    return record(tenant=tenant, source=payload["source"], key=payload["key"], user_id=payload["user_id"],
                  api_key_id=payload["api_key_id"], result=result_from_dict(payload["result"]),
                  end_user=payload.get("end_user"))


outbox.register("usage", record_payload)


def result_from_dict(data: dict) -> RouteResult:
    """The inverse of `RouteResult.as_dict` (money back to Decimal), for results kept in the outbox."""
    usage = Usage(**data["usage"])
    prices = data.get("prices")
    smart = data.get("smart")
    return RouteResult(
        text=data["text"], finish_reason=data["finish_reason"], tier=data["tier"], endpoint=data["endpoint"],
        provider=data["provider"], upstream_model=data["upstream_model"], usage=usage,
        attempts=[Attempt(**a) for a in data.get("attempts", ())], fallback_count=data.get("fallback_count", 0),
        reason=data.get("reason", ""), cost=Decimal(data["cost"]),
        prices=Prices(**{k: Decimal(v) for k, v in prices.items()}) if prices else None,
        error=data.get("error"), requested_tier=data.get("requested_tier", ""),
        smart=SmartDecision(**smart) if smart else None, stop_sequence=data.get("stop_sequence"),
        tool_calls=tuple(ToolCall(**call) for call in data.get("tool_calls") or ()),
    )


def release(*, tenant, key: str) -> None:
    """Drop the hold of a call that ends unbilled (failed before any text, cancelled while queued). Releasing a
    key with no hold is a no-op. Sync: the proxy's failures call it through sync_to_async, off its hot path."""
    budget_release(tenant=tenant, key=key)


# --- the usage row ---


def first_endpoint(tier: str, catalog: Catalog | None = None) -> EndpointInfo | None:
    """The tier chain's first enabled endpoint: the one that answers when nothing fails."""
    catalog = catalog or catalog_get()
    for slug in catalog.chains.get(tier, ()):
        endpoint = catalog.endpoints.get(slug)
        if endpoint is not None and endpoint.enabled:
            return endpoint
    return None


def counterfactual_cost(*, usage: Usage, catalog: Catalog | None = None) -> Decimal | None:
    """`usage` priced at the MAX chain's first model; None when no MAX model is configured."""
    endpoint = first_endpoint("max", catalog)
    if endpoint is None:
        return None
    return price_usage(prices=endpoint.prices, usage=usage)


def usage_row(result: RouteResult) -> dict:
    """The usage_record keyword arguments a routing result decides. Sync: may load the catalog."""
    usage, prices, smart = result.usage, result.prices, result.smart
    return {
        "endpoint_slug": result.endpoint,
        "provider": result.provider,
        "tier": result.tier,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "output_estimated": usage.output_estimated,
        "price_input": prices.input,
        "price_output": prices.output,
        "price_cache_write": prices.cache_write,
        "price_cache_read": prices.cache_read,
        "cost": result.cost,
        "requested_tier": result.requested_tier,
        "route_score": smart.score if smart else None,
        "route_threshold": smart.threshold if smart else None,
        "route_escalated": smart.escalated if smart else None,
        "router_version": smart.version if smart else "",
        "counterfactual_cost": counterfactual_cost(usage=usage) if result.requested_tier == "auto" else None,
    }


def estimated_result(*, tier: str, prompt: str, text: str, reason: str, error: str) -> RouteResult:
    """A result for a call whose own was lost with the process running it (a worker that died mid-answer): the
    prompt and the text it had produced counted with the token estimate, priced at the tier's first endpoint
    (which endpoint answered died with the process; the first is the one that answers unless a fallback
    happened). Ended with an error, output flagged estimated; `record` it like any result."""
    endpoint = first_endpoint(tier)
    prices = endpoint.prices if endpoint else None
    usage = Usage(input_tokens=estimate_tokens(prompt), output_tokens=estimate_tokens(text), output_estimated=True)
    return RouteResult(
        text=text, finish_reason="error", tier=tier, requested_tier=tier,
        endpoint=endpoint.slug if endpoint else "",
        provider=endpoint.provider if endpoint else "", upstream_model=endpoint.upstream_model if endpoint else "",
        usage=usage, reason=reason, cost=price_usage(prices=prices, usage=usage) if prices else Decimal("0"),
        prices=prices, error=error,
    )
