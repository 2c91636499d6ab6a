"""An in-memory snapshot of the model catalog, so the hot path does not query the catalog per request.

Each process keeps the snapshot for ROUTING_CATALOG_TTL_SECONDS; admin edits made through routing.services
drop the local copy at once, and other processes pick them up within the TTL. Set the TTL to 0 to read the
database every time (tests that edit the catalog do).

A snapshot past its TTL is reloaded off the request path: it is still used, for at most one more TTL, while
one background thread reads the new one, so the request that finds it stale never pays the catalog queries in
the middle of a chat turn's path to its first word.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

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
    vision: bool = False  # reads images (the catalog's vision flag)

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


logger = logging.getLogger(__name__)

_lock = threading.Lock()
_cached: tuple[float, Catalog] | None = None
_generation = 0  # bumped by catalog_invalidate, so a reload that started before an edit is not kept
_reloading = False


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
            vision=e.vision,
        )
        for e in endpoint_list()
    }
    chains: dict[str, list[str]] = {}
    for entry in tier_chain_list():
        chains.setdefault(entry.tier, []).append(entry.endpoint.slug)
    return Catalog(endpoints=endpoints, chains={k: tuple(v) for k, v in chains.items()})


def catalog_cached() -> Catalog | None:
    """The snapshot, without touching the database; None when there is none fit to use (the caller loads it).

    Past its TTL the snapshot is still returned, up to twice the TTL, and a background reload starts."""
    cached = _cached
    ttl = settings.ROUTING_CATALOG_TTL_SECONDS
    if cached is None or ttl <= 0:
        return None
    age = time.monotonic() - cached[0]
    if age > ttl:
        if age > 2 * ttl:
            return None
        _reload_in_background()
    return cached[1]


def catalog_get() -> Catalog:
    """The snapshot, loading it when there is none fit to use (sync: may query the database)."""
    catalog = catalog_cached()
    if catalog is None:
        catalog = _load_and_keep()
    return catalog


def catalog_invalidate() -> None:
    global _cached, _generation
    with _lock:
        _cached = None
        _generation += 1


def _load_and_keep() -> Catalog:
    global _cached
    generation = _generation
    catalog = catalog_load()
    with _lock:
        if generation == _generation:
            _cached = (time.monotonic(), catalog)
    return catalog


def _reload_in_background() -> None:
    global _reloading
    with _lock:
        if _reloading:
            return
        _reloading = True
    threading.Thread(target=_reload, name="catalog-reload", daemon=True).start()


def _reload() -> None:
    global _reloading
    try:
        _load_and_keep()
    except Exception:  # noqa: BLE001 - the stale snapshot stays; the next request past the TTL tries again
        logger.warning("reloading the model catalog failed", exc_info=True)
    finally:
        _reloading = False
        connection.close()  # this thread's connection goes back to the pool
