"""The policy: (requested tier, plan, spend against the cap, prompt size, endpoint health) → an ordered chain
of endpoints and a reason in words. Pure: the caller gathers the inputs (routing.core), so the decision is
cheap and testable without Redis or a provider.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal

from .breaker import HALF_OPEN, SKIPPED_STATES
from .catalog import Catalog, EndpointInfo
from .errors import AllEndpointsFailed, ModelNotAllowed, RequestInvalid, TierNotAllowed
from .providers import adapter_for
from .types import OUTCOME_SKIPPED, TIERS, Attempt, SmartDecision

TIER_LABELS = {"auto": "Auto", "max": "MAX"}


@dataclass(slots=True)
class RoutePlan:
    tier: str  # the tier actually served (differs from the requested one only after a cap downgrade)
    chain: list[EndpointInfo]
    reason: str
    half_open: set[str] = field(default_factory=set)  # endpoints whose half-open trial must be claimed first
    skipped: list[Attempt] = field(default_factory=list)  # breaker skips, for the decision log
    smart: SmartDecision | None = None  # smart Auto's decision, with `escalated` as the policy settled it


@dataclass(frozen=True, slots=True)
class Needs:
    """What a request needs of an endpoint beyond text (routing.core.request_needs)."""

    vision: bool = False  # it has images: only endpoints with the catalog's vision flag
    image_urls: bool = False  # some image is a URL: only providers that fetch URLs (the proxy never does)
    tools_with_format: bool = False  # tools and a response format: not where the format is a forced tool
    forced_tool: bool = False  # tool_choice required or a named tool: not where that is refused
    json_schema: bool = False  # response_format json_schema: not where only JSON mode is offered


def _unable(endpoint: EndpointInfo, needs: Needs) -> str | None:
    """Why `endpoint` cannot take the request (skipped like a too-small context window), or None."""
    if needs.vision and not endpoint.vision:
        return "no vision"
    if needs.image_urls and not adapter_for(endpoint.kind).accepts_image_urls(endpoint.upstream_model):
        return "takes images as base64 data only"
    if needs.tools_with_format and endpoint.kind == "anthropic":
        return "structured output there is a forced tool, which would replace the request's tools"
    if needs.forced_tool and not adapter_for(endpoint.kind).accepts_forced_tool_choice(endpoint.upstream_model):
        return "takes no forced tool_choice"
    if needs.json_schema and not adapter_for(endpoint.kind).accepts_json_schema(endpoint.upstream_model):
        return "takes no json_schema response format"
    return None


def _unable_message(needs: Needs, tier: str) -> str:
    if needs.image_urls:
        return (f"No {tier} model can fetch an image URL (KiwiClaw never fetches URLs itself): send the image as "
                "base64 data (a data: URL, or an image block with a base64 source).")
    if needs.vision:
        return f"No {tier} model can read images."
    if needs.forced_tool:
        return f"No {tier} model takes a forced tool_choice (required or a named tool): use auto."
    if needs.json_schema and not needs.tools_with_format:
        return f"No {tier} model takes a json_schema response format: use json_object."
    return f"No {tier} model takes tools together with a response format."


def downgrade_applies(*, plan, spend: Decimal | None) -> bool:
    """MAX is served on Auto once the tenant has billed `max_to_auto_share` of its monthly cap."""
    if plan.max_to_auto_share is None or plan.monthly_cap is None or spend is None:
        return False
    return spend >= plan.max_to_auto_share * plan.monthly_cap


def policy_decide(
    *,
    catalog: Catalog,
    tier: str,
    plan,
    spend: Decimal | None,
    prompt_tokens: int,
    max_tokens: int,
    health: dict[str, dict],
    model: str | None = None,
    smart: SmartDecision | None = None,
    needs: Needs | None = None,
) -> RoutePlan:
    """`smart` is the scorer's verdict on an Auto request (routing.smart.smart_decision). The policy settles
    whether it escalates: only an Auto request, only on a plan that includes MAX, never once the budget rules
    serve MAX on Auto (the downgrade wins), and only when the score reaches the dial's threshold."""
    if tier not in TIERS:
        raise RequestInvalid(f"Unknown tier {tier!r}: use auto or max.")
    if not plan.allows_tier(tier):
        raise TierNotAllowed(
            f"{TIER_LABELS[tier]} is not part of the {plan.name} plan — ask your admin to upgrade."
        )
    notes: list[str] = []
    served = tier
    if model is not None:
        if not plan.api_models_allowed:
            raise ModelNotAllowed(
                f"The {plan.name} plan does not allow choosing a model: use \"auto\" or \"max\"."
            )
        endpoint = catalog.endpoints.get(model)
        if endpoint is None or not endpoint.enabled:
            raise ModelNotAllowed(f"There is no model named {model!r}. Use \"auto\", \"max\" or a listed model.")
        candidates = [model]
        notes.append(f"model {model} requested explicitly")
        smart = None
    else:
        downgrade = downgrade_applies(plan=plan, spend=spend)
        if tier == "max" and downgrade:
            served = "auto"
            notes.append(f"MAX served on Auto: {int(plan.max_to_auto_share * 100)}% of the monthly cap is used")
        if smart is not None:
            smart = _settle_escalation(smart, tier=tier, plan=plan, downgrade=downgrade)
            if smart.escalated:
                served = "max"
            notes.append(_smart_note(smart))
        candidates = list(catalog.chains.get(served, ()))
        notes.insert(0, f"tier {served}")

    chain: list[EndpointInfo] = []
    half_open: set[str] = set()
    skipped: list[Attempt] = []
    too_small = breaker_open = unable = 0
    needed = prompt_tokens + max_tokens
    for slug in candidates:
        endpoint = catalog.endpoints.get(slug)
        if endpoint is None or not endpoint.enabled:
            notes.append(f"skipped {slug}: disabled")
            continue
        if needed > endpoint.context_window:
            too_small += 1
            notes.append(f"skipped {slug}: needs ~{needed} tokens, context window {endpoint.context_window}")
            continue
        why = None if needs is None else _unable(endpoint, needs)
        if why is not None:
            unable += 1
            notes.append(f"skipped {slug}: {why}")
            continue
        state = health.get(slug, {}).get("state")
        if state in SKIPPED_STATES:
            breaker_open += 1
            detail = f"circuit {state.replace('_', ' ')}"
            notes.append(f"skipped {slug}: {detail}")
            skipped.append(Attempt(endpoint=slug, provider=endpoint.provider, outcome=OUTCOME_SKIPPED,
                                   detail=detail))
            continue
        if state == HALF_OPEN:
            half_open.add(slug)
            notes.append(f"{slug}: half-open trial")
        chain.append(endpoint)

    if not chain:
        if breaker_open:
            raise AllEndpointsFailed(skipped, all_breakers_open=True)
        if too_small:
            raise RequestInvalid(
                f"This conversation is too long for the {TIER_LABELS.get(served, served)} models "
                f"(about {prompt_tokens} tokens plus {max_tokens} for the answer). Start a new conversation "
                "or ask for a shorter answer."
            )
        if unable:
            raise RequestInvalid(_unable_message(needs, TIER_LABELS.get(served, served)))
        raise AllEndpointsFailed([], message="No model is configured for this tier. Please contact support.")
    order = " → ".join(e.slug for e in chain)
    return RoutePlan(tier=served, chain=chain, reason="; ".join([*notes, f"chain {order}"]),
                     half_open=half_open, skipped=skipped, smart=smart)


def _settle_escalation(smart: SmartDecision, *, tier: str, plan, downgrade: bool) -> SmartDecision:
    if tier != "auto" or not plan.allows_tier("max") or smart.level <= 0:
        return replace(smart, escalated=False, held="")
    if smart.score < smart.threshold:
        return replace(smart, escalated=False, held="")
    if downgrade:
        share = int(plan.max_to_auto_share * 100)
        return replace(smart, escalated=False, held=f"not escalated: {share}% of the monthly cap is used")
    return replace(smart, escalated=True, held="")


def _smart_note(smart: SmartDecision) -> str:
    verdict = "escalated to MAX" if smart.escalated else (smart.held or "stays on Auto")
    return f"smart Auto score {smart.score:.2f} vs {smart.threshold:.2f} (level {smart.level}): {verdict}"
