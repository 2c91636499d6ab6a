"""Prometheus metrics: what each request costs in time, measured in every process, and what the database and
Redis say at scrape time. Served at GET /metrics (staff sessions, or `Authorization: Bearer $METRICS_TOKEN`).

The library is prometheus-client, in multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set (make dev and the
image set it and clear it at start): each server or worker process writes its counters and histograms to its own
memory-mapped file there, and a scrape in any web process sums the files. Without the variable (tests, a shell)
the values stay in this process.

Measured in the process, per request (kiwiclaw/asgi.py's wrapper calls `observe`):
- `kiwiclaw_request_duration_seconds{route, method, status}`: from the first byte received to the last sent.
  `route` is the URL pattern's name (`proxy:chat-completions`, `conversations:stream`, `home`), never the raw
  path, so the label set stays small; `status` is the class (`2xx`). Streams count until they end.
- `kiwiclaw_fallbacks_total{source="api"}`: endpoints that failed before the one that answered a `/v1` call,
  read from the answer's `x-kiwiclaw-fallback` header.

Read at scrape time, one bounded query or Redis round trip each (`ScrapeCollector`):
- `kiwiclaw_turns_in_flight{state}`: chat turns queued or streaming now (the partial index `msg_unfinished`).
- `kiwiclaw_turns_recent{state}` and `kiwiclaw_turns_recent_fallbacks`: the states of the newest
  METRICS_RECENT_TURNS turns and their fallbacks (a backward scan of the primary key, so the cost does not
  grow with the table).
- `kiwiclaw_usage_rows_month{tenant, source}` and `kiwiclaw_billed_usd_month{tenant}`: the ledger's rows and
  billed amount this UTC month (one aggregate over the month, through the BRIN index on recorded_at; its
  result is shared through the cache for METRICS_LEDGER_CACHE_SECONDS).
Each query runs under a statement timeout (METRICS_QUERY_TIMEOUT_MS).
- `kiwiclaw_breaker_state{endpoint, state}` (1 for the state it is in) and `kiwiclaw_breaker_failures{endpoint}`:
  routing/breaker.py's reader, one Lua call for all endpoints.
- `kiwiclaw_outbox_depth`: usage records written to the billing outbox and not yet in the ledger
  (`billing.outbox.depth()`; 0 where there is no outbox).
- `kiwiclaw_scrape_collector_seconds{collector}` and `kiwiclaw_scrape_collector_up{collector}`: what each of
  the above cost and whether it answered. One that fails (Postgres down) leaves the others served.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from datetime import time as dt_time
from functools import lru_cache

# prometheus-client turns multiprocess mode on when the variable merely exists, and an empty one would put its
# files in the working directory: empty means unset. (Before the import below, which reads it once.)
if os.environ.get("PROMETHEUS_MULTIPROC_DIR") == "":
    del os.environ["PROMETHEUS_MULTIPROC_DIR"]

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.http import HttpResponse
from django.urls import Resolver404, resolve
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger(__name__)

MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or ""
if MULTIPROC_DIR:
    # prometheus-client writes its files there from the first value on; the directory must exist by then.
    os.makedirs(MULTIPROC_DIR, exist_ok=True)

# The process's own instruments, in a registry of their own (not prometheus-client's global one): in
# multiprocess mode their values go to the files whatever the registry, and the scrape reads the files.
INSTRUMENTS = CollectorRegistry()

REQUEST_SECONDS = Histogram(
    "kiwiclaw_request_duration_seconds", "Time from a request's arrival to its last byte, by URL pattern name.",
    ["route", "method", "status"], registry=INSTRUMENTS,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
FALLBACKS = Counter(
    "kiwiclaw_fallbacks", "Endpoints that failed before the one that answered, per request path.",
    ["source"], registry=INSTRUMENTS,
)
_API_FALLBACKS = FALLBACKS.labels(source="api")

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_STATUS_CLASS = {0: "none", 1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}  # none: client gone first
_FALLBACK_HEADER = b"x-kiwiclaw-fallback"
_STATIC_PREFIX = "/" + settings.STATIC_URL.lstrip("/")

# --- per request ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def route_label(path: str) -> str:
    """The URL pattern's name for a path (`namespace:name`, or the view's dotted path when the pattern has no
    name); `static` for static files; `unmatched` for a path no pattern takes. Cached: the hot paths (/v1,
    the chat's stream) resolve once per process; paths with ids take a slot each, bounded by the cache."""
    if path.startswith(_STATIC_PREFIX):
        return "static"
    try:
        return resolve(path).view_name or "unmatched"
    except Resolver404:
        return "unmatched"
    except Exception:  # noqa: BLE001 - a label must never fail a request
        return "unmatched"


_children: dict[tuple[str, str, str], object] = {}  # the histogram's children by labels (bounded by the labels)


def observe(*, path: str, method: str, status: int, seconds: float) -> None:
    """One request's latency. Called after the response (its last byte sent or the client gone)."""
    labels = (route_label(path), method if method in _METHODS else "other", _STATUS_CLASS.get(status // 100, "error"))
    child = _children.get(labels)
    if child is None:
        child = _children[labels] = REQUEST_SECONDS.labels(*labels)
    child.observe(seconds)


def count_api_fallbacks(headers) -> None:
    """Counts a /v1 answer's fallbacks from its response headers (the routing facts the proxy sends)."""
    for key, value in headers:
        if key == _FALLBACK_HEADER:
            try:
                count = int(value)
            except ValueError:
                return
            if count > 0:
                _API_FALLBACKS.inc(count)
            return


# --- at scrape time ------------------------------------------------------------------------------------------


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


@contextmanager
def _bounded():
    """A cursor in a transaction whose statements end after METRICS_QUERY_TIMEOUT_MS: a scrape must not hold a
    connection for long whatever the tables hold."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(settings.METRICS_QUERY_TIMEOUT_MS)])
        yield cursor


def turns_all_tenants(*, recent: int) -> list[tuple[str, str, int, int]]:
    """(window, state, turns, fallbacks) across all tenants: `in_flight` rows for every queued or streaming
    turn, `recent` rows for the newest `recent` turns. Two bounded index scans in one statement."""
    from conversations.models import Message

    table = _table(Message)
    sql = f"""
        SELECT 'recent', status, count(*), coalesce(sum(fallback_count), 0)
          FROM (SELECT status, fallback_count FROM {table}
                 WHERE role = %s ORDER BY id DESC LIMIT %s) AS newest
         GROUP BY status
        UNION ALL
        SELECT 'in_flight', status, count(*), 0 FROM {table}
         WHERE status IN (%s, %s) GROUP BY status
    """
    with _bounded() as cursor:
        cursor.execute(sql, [Message.ROLE_ASSISTANT, recent, Message.STATUS_QUEUED, Message.STATUS_STREAMING])
        return [(w, s, int(n), int(f)) for w, s, n, f in cursor.fetchall()]


def ledger_month_all_tenants() -> list[tuple[str, str, int, object]]:
    """(tenant slug, source, usage rows, billed Decimal) for the current UTC month, across all tenants."""
    from billing.models import UsageRecord
    from billing.months import month_start
    from tenants.models import Tenant

    start = datetime.combine(month_start(), dt_time.min, tzinfo=UTC)
    sql = f"""
        SELECT t.slug, m.source, m.n, m.billed
          FROM (SELECT tenant_id, source, count(*) AS n, sum(billed) AS billed
                  FROM {_table(UsageRecord)} WHERE recorded_at >= %s GROUP BY tenant_id, source) AS m
          JOIN {_table(Tenant)} AS t ON t.id = m.tenant_id
    """
    with _bounded() as cursor:
        cursor.execute(sql, [start])
        return [(slug, source, int(n), billed) for slug, source, n, billed in cursor.fetchall()]


def ledger_month_cached() -> list[tuple[str, str, int, object]]:
    """ledger_month_all_tenants, shared through the cache for METRICS_LEDGER_CACHE_SECONDS: the month's aggregate
    is the one reader whose cost grows with traffic (about 0.2 s at 1,000,000 rows), and every web process
    answering a scrape would otherwise run it."""
    from billing.months import month_start

    ttl = settings.METRICS_LEDGER_CACHE_SECONDS
    if ttl <= 0:
        return ledger_month_all_tenants()
    key = f"metrics:ledger:{month_start():%Y%m}"
    rows = cache.get(key)
    if rows is None:
        rows = ledger_month_all_tenants()
        cache.set(key, rows, ttl)
    return rows


def _outbox_depth() -> int:
    try:
        from billing import outbox
    except ImportError:  # no outbox in this build: nothing can wait in it
        return 0
    return int(outbox.depth())


class ScrapeCollector:
    """The series read from Postgres and Redis when /metrics is scraped. No `describe`: the registry must not
    run the queries when the collector is registered."""

    STATES = ("queued", "streaming", "done", "failed", "cancelled")

    def collect(self):
        timings = GaugeMetricFamily("kiwiclaw_scrape_collector_seconds", "Time each scrape-time reader took.",
                                    labels=["collector"])
        up = GaugeMetricFamily("kiwiclaw_scrape_collector_up", "1 if the reader answered in this scrape.",
                               labels=["collector"])
        for name, reader in (("turns", self._turns), ("ledger", self._ledger), ("breakers", self._breakers),
                             ("outbox", self._outbox)):
            started = time.perf_counter()
            try:
                families = list(reader())
            except Exception:  # noqa: BLE001 - one unreachable store must not hide the other series
                logger.warning("metrics: the %s reader failed", name, exc_info=True)
                families, ok = [], 0
            else:
                ok = 1
            timings.add_metric([name], time.perf_counter() - started)
            up.add_metric([name], ok)
            yield from families
        yield timings
        yield up

    def _turns(self):
        in_flight = GaugeMetricFamily("kiwiclaw_turns_in_flight", "Chat turns queued or streaming now.",
                                      labels=["state"])
        recent = GaugeMetricFamily(
            "kiwiclaw_turns_recent", f"States of the newest {settings.METRICS_RECENT_TURNS} chat turns.",
            labels=["state"])
        fallbacks = GaugeMetricFamily(
            "kiwiclaw_turns_recent_fallbacks",
            f"Fallbacks (endpoints failed before the one that answered) in the newest "
            f"{settings.METRICS_RECENT_TURNS} chat turns.")
        counts = {("in_flight", s): 0 for s in ("queued", "streaming")}
        counts.update({("recent", s): 0 for s in self.STATES})
        fell_back = 0
        for window, state, n, f in turns_all_tenants(recent=settings.METRICS_RECENT_TURNS):
            counts[(window, state)] = n
            if window == "recent":
                fell_back += f
        for (window, state), n in counts.items():
            (in_flight if window == "in_flight" else recent).add_metric([state], n)
        fallbacks.add_metric([], fell_back)
        return [in_flight, recent, fallbacks]

    def _ledger(self):
        rows = GaugeMetricFamily("kiwiclaw_usage_rows_month", "Usage rows written to the ledger this UTC month.",
                                 labels=["tenant", "source"])
        billed = GaugeMetricFamily("kiwiclaw_billed_usd_month", "Billed USD in the ledger this UTC month.",
                                   labels=["tenant"])
        per_tenant: dict[str, object] = {}
        for slug, source, n, amount in ledger_month_cached():
            rows.add_metric([slug, source], n)
            per_tenant[slug] = per_tenant.get(slug, 0) + amount
        for slug, amount in per_tenant.items():
            billed.add_metric([slug], float(amount))
        return [rows, billed]

    def _breakers(self):
        from routing.breaker import CLOSED, HALF_OPEN, OPEN, TRIAL_BUSY, breaker_states_sync
        from routing.catalog import catalog_get

        state = GaugeMetricFamily("kiwiclaw_breaker_state", "1 for the state each endpoint's breaker is in.",
                                  labels=["endpoint", "state"])
        failures = GaugeMetricFamily("kiwiclaw_breaker_failures", "Consecutive failures counted by the breaker.",
                                     labels=["endpoint"])
        slugs = sorted(catalog_get().endpoints)
        for slug, read in breaker_states_sync(slugs).items():
            for name in (CLOSED, OPEN, HALF_OPEN, TRIAL_BUSY):
                state.add_metric([slug, name], 1 if read["state"] == name else 0)
            failures.add_metric([slug], read["failures"])
        return [state, failures]

    def _outbox(self):
        depth = GaugeMetricFamily("kiwiclaw_outbox_depth",
                                  "Usage records in the billing outbox, not yet written to the ledger.")
        depth.add_metric([], _outbox_depth())
        return [depth]


class _Instruments:
    """This process's instruments, for a scrape without multiprocess mode."""

    def collect(self):
        return INSTRUMENTS.collect()


def registry_for_scrape() -> CollectorRegistry:
    registry = CollectorRegistry()
    if MULTIPROC_DIR:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=MULTIPROC_DIR)
    else:
        registry.register(_Instruments())
    registry.register(ScrapeCollector())
    return registry


# --- the view --------------------------------------------------------------------------------------------------


def _token_ok(request) -> bool:
    expected = settings.METRICS_TOKEN
    auth = request.headers.get("Authorization", "")
    if not expected or auth[:7].lower() != "bearer ":
        return False
    return hmac.compare_digest(auth[7:].strip().encode(), expected.encode())


def metrics_view(request):
    """GET /metrics: the Prometheus text format. 403 unless the bearer token matches METRICS_TOKEN or the caller
    is a logged-in staff member (a scraper never follows a login redirect, so no redirect either)."""
    user = getattr(request, "user", None)
    staff = user is not None and user.is_authenticated and user.is_active and user.is_staff
    if not (staff or _token_ok(request)):
        return HttpResponse("Forbidden: send the metrics token or log in as staff.\n", status=403,
                            content_type="text/plain; charset=utf-8")
    body = generate_latest(registry_for_scrape())
    response = HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
