"""An in-memory snapshot of the model catalog, so the hot path does not query the catalog per request.

Each process keeps the snapshot for ROUTING_CATALOG_TTL_SECONDS; admin edits made through routing.services
drop the local copy at once, and other processes pick them up within the TTL. Set the TTL to 0 to read the
database every time (tests that edit the catalog do).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from django.conf import settings

from .types import Prices


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    slug: str
    upstream_model: str
    provider: str  # provider config slug
    kind: str  # "anthropic" or "openai_compatible"
    base_url_setting: str
    api_key_setting: str
    context_window: int
    prices: Prices
    enabled: bool

    @property
    def base_url(self) -> str:
        return getattr(settings, self.base_url_setting)

    @property
    def api_key(self) -> str:
        return getattr(settings, self.api_key_setting)


@dataclass(frozen=True, slots=True)
class Catalog:
    endpoints: dict[str, EndpointInfo]
    chains: dict[str, tuple[str, ...]]  # tier -> endpoint slugs in order


_lock = threading.Lock()
_cached: tuple[float, Catalog] | None = None


def catalog_load() -> Catalog:
    """Read the catalog from the database (sync; call through sync_to_async from async code)."""
    from .selectors import endpoint_list, tier_chain_list

    endpoints = {
        e.slug: EndpointInfo(
            slug=e.slug,
            upstream_model=e.upstream_model,
            provider=e.provider.slug,
            kind=e.provider.kind,
            base_url_setting=e.provider.base_url_setting,
            api_key_setting=e.provider.api_key_setting,
            context_window=e.context_window,
            prices=Prices(input=e.price_input, output=e.price_output, cache_write=e.price_cache_write,
                          cache_read=e.price_cache_read),
            enabled=e.enabled,
        )
        for e in endpoint_list()
    }
    chains: dict[str, list[str]] = {}
    for entry in tier_chain_list():
        chains.setdefault(entry.tier, []).append(entry.endpoint.slug)
    return Catalog(endpoints=endpoints, chains={k: tuple(v) for k, v in chains.items()})


def catalog_cached() -> Catalog | None:
    """The snapshot if it is still fresh, else None (the caller loads it; no DB access here)."""
    cached = _cached
    if cached is None or time.monotonic() - cached[0] > settings.ROUTING_CATALOG_TTL_SECONDS:
        return None
    return cached[1]


def catalog_get() -> Catalog:
    """The fresh snapshot, loading it when stale (sync: may query the database)."""
    global _cached
    catalog = catalog_cached()
    if catalog is None:
        catalog = catalog_load()
        with _lock:
            _cached = (time.monotonic(), catalog)
    return catalog


def catalog_invalidate() -> None:
    global _cached
    with _lock:
        _cached = None
