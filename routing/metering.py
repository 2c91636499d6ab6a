"""From a routing result to its usage row: written once, for the chat turn and the proxy alike.

`usage_row(result)` gives every ledger column a result decides (the answering endpoint, its prices and cost,
the tokens, the requested tier, smart Auto's decision and the counterfactual MAX cost); the caller adds who
and what the row is for (tenant, source, key, user, API key) and hands it to `billing.services.usage_record`.

The counterfactual — what an Auto request would have cost on MAX — prices the request's actual tokens at the
published prices of the MAX chain's first enabled model, with the one cost function (routing.cost). Savings
are then sums over the ledger (billing.selectors.smart_savings), with the rule in billing.money.
"""

from __future__ import annotations

from decimal import Decimal

from .catalog import Catalog, catalog_get
from .cost import price_usage
from .types import RouteResult, Usage


def max_reference_prices(catalog: Catalog):
    """The MAX chain's first enabled endpoint (the model a MAX request is answered by when nothing fails)."""
    for slug in catalog.chains.get("max", ()):
        endpoint = catalog.endpoints.get(slug)
        if endpoint is not None and endpoint.enabled:
            return endpoint
    return None


def counterfactual_cost(*, usage: Usage, catalog: Catalog | None = None) -> Decimal | None:
    """`usage` priced at the MAX chain's first model; None when no MAX model is configured."""
    endpoint = max_reference_prices(catalog or catalog_get())
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
