"""Billing at scale: 1,000,000 usage rows across 1,000 tenants in one month.

Times the rollup of every draft invoice of the month (goal < 10 s) and the finance overview page (goal
< 300 ms), and prints the figures. With the corrections and trends in place: the eleven months before hold a
little usage per tenant, finalized (11,000 final invoices), the last of them with 100 credit notes and 10 voids,
so the overview's twelve-month chart and /finance/trends/ read a year of invoices. Uses its own database (default kc_bench, created if missing):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/kc_bench REDIS_URL=redis://127.0.0.1:6379/4 \
        .venv/bin/python bench/billing_rollup.py [--rows 1000000] [--tenants 1000] [--fresh]

The rows are generated inside Postgres (INSERT ... SELECT generate_series), priced like the real catalog and
billed at each tenant's plan markup, so the numbers the rollup sums are realistic. Data is kept between runs
(pass --fresh to regenerate).
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kc_bench")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench")
os.environ["DJANGO_DEBUG"] = "0"  # measure the production configuration
os.environ["DJANGO_SECURE_SSL_REDIRECT"] = "0"
os.environ["DJANGO_ALLOWED_HOSTS"] = "testserver"
# Pages name static files plainly: the hashed (manifest) storage of DEBUG off needs a collectstatic first.
os.environ.setdefault("DJANGO_STATICFILES_STORAGE", "django.contrib.staticfiles.storage.StaticFilesStorage")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kiwiclaw.settings")

# (endpoint, provider, tier, input, output, cache write, cache read) in USD per million tokens.
MODELS = [
    ("kimi-k2.5", "moonshot", "auto", "0.60", "3.00", "0", "0.10"),
    ("claude-haiku-4-5", "anthropic", "auto", "1", "5", "1.25", "0.10"),
    ("claude-sonnet-4-6", "anthropic", "max", "3", "15", "3.75", "0.30"),
    ("claude-opus-4-6", "anthropic", "max", "5", "25", "6.25", "0.50"),
]

GENERATE = """
WITH models(n, slug, provider, tier, p_in, p_out, p_cw, p_cr) AS (VALUES {models}),
tenants AS (SELECT row_number() OVER (ORDER BY t.id) - 1 AS n, t.id, p.markup_percent
            FROM tenants_tenant t JOIN tenants_plan p ON p.id = t.plan_id WHERE t.slug LIKE 'bench-%%'),
raw AS (
    SELECT g,
           (g %% %(tenants)s) AS tenant_n,
           (CASE WHEN (g / %(tenants)s) %% 10 < 6 THEN 0 WHEN (g / %(tenants)s) %% 10 < 8 THEN 1
                 WHEN (g / %(tenants)s) %% 10 < 9 THEN 2 ELSE 3 END) AS model_n,
           (100 + (g * 7919) %% 20000) AS input_tokens,
           (20 + (g * 104729) %% 2000) AS output_tokens,
           (CASE WHEN g %% 3 = 0 THEN (g * 31) %% 50000 ELSE 0 END) AS cache_read_tokens,
           (CASE WHEN g %% 17 = 0 THEN (g * 13) %% 8000 ELSE 0 END) AS cache_write_tokens,
           (g %% 97 = 0) AS output_estimated,
           %(start)s::timestamptz + ((g * 7.7) %% %(seconds)s) * interval '1 second' AS recorded_at
    FROM generate_series(1::bigint, %(rows)s::bigint) AS g
),
priced AS (
    SELECT r.*, t.id AS tenant_id, t.markup_percent, m.slug, m.provider, m.tier, m.p_in, m.p_out, m.p_cw, m.p_cr,
           round((r.input_tokens * m.p_in + r.output_tokens * m.p_out + r.cache_write_tokens * m.p_cw
                  + r.cache_read_tokens * m.p_cr) / 1000000, 10) AS cost
    FROM raw r JOIN tenants t ON t.n = r.tenant_n JOIN models m ON m.n = r.model_n
)
INSERT INTO billing_usagerecord (
    tenant_id, source, key, user_id, api_key_id, endpoint_slug, provider, tier, input_tokens, output_tokens,
    cache_read_tokens, cache_write_tokens, output_estimated, price_input, price_output, price_cache_write,
    price_cache_read, cost, markup_percent, billed, recorded_at)
SELECT tenant_id, CASE WHEN g %% 2 = 0 THEN 'chat' ELSE 'api' END,
       CASE WHEN g %% 2 = 0 THEN 'chat:' ELSE 'api:' END || %(month_tag)s || '-' || g,
       NULL, NULL, slug, provider, tier, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
       output_estimated, p_in, p_out, p_cw, p_cr, cost, markup_percent,
       round(cost * (1 + markup_percent / 100), 10), recorded_at
FROM priced
"""


def ensure_database(url: str) -> None:
    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    exists = subprocess.run(
        ["psql", "-h", parsed.hostname or "127.0.0.1", "-p", str(parsed.port or 5432), "-U",
         parsed.username or "postgres", "-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
        capture_output=True, text=True, check=True).stdout.strip()
    if not exists:
        subprocess.run(["createdb", "-h", parsed.hostname or "127.0.0.1", "-p", str(parsed.port or 5432), "-U",
                        parsed.username or "postgres", name], check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--fresh", action="store_true", help="delete and regenerate the bench data")
    parser.add_argument("--page-runs", type=int, default=15)
    args = parser.parse_args()

    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.contrib.auth.models import Permission
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from billing.models import InvoiceLine, UsageRecord
    from billing.months import month_bounds, month_start, previous_month
    from billing.services import invoice_rollup
    from tenants.models import Plan, Tenant, User

    call_command("migrate", verbosity=0)
    month = month_start()
    start, end = month_bounds(month)

    if args.fresh:
        with connection.cursor() as cursor:
            # The ledger refuses DELETE row by row; TRUNCATE is the bench's reset, not the application's.
            cursor.execute("TRUNCATE billing_creditnoteline, billing_creditnote, billing_invoicevoid, "
                           "billing_invoiceline, billing_invoice, billing_usagerecord")

    plans = list(Plan.objects.order_by("monthly_fee"))
    existing = Tenant.objects.filter(slug__startswith="bench-").count()
    if existing < args.tenants:
        Tenant.objects.bulk_create(
            [Tenant(slug=f"bench-{i:05d}", name=f"Bench Tenant {i:05d}", plan=plans[i % len(plans)])
             for i in range(existing, args.tenants)], batch_size=1000)

    rows = UsageRecord.objects.filter(recorded_at__gte=start, recorded_at__lt=end).count()
    if rows < args.rows:
        models_sql = ", ".join(
            f"({n}, '{slug}', '{prov}', '{tier}', {p_in}::numeric, {p_out}::numeric, {p_cw}::numeric, {p_cr}::numeric)"
            for n, (slug, prov, tier, p_in, p_out, p_cw, p_cr) in enumerate(MODELS))
        t0 = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(GENERATE.format(models=models_sql), {
                "tenants": args.tenants, "rows": args.rows - rows, "start": start,
                "seconds": int((end - start).total_seconds()) - 1, "month_tag": f"{month:%Y%m}-{rows}",
            })
            cursor.execute("ANALYZE billing_usagerecord")
        print(f"generated {args.rows - rows:,} usage rows in {time.perf_counter() - t0:.1f} s")
    rows = UsageRecord.objects.filter(recorded_at__gte=start, recorded_at__lt=end).count()
    tenants_with_usage = UsageRecord.objects.filter(recorded_at__gte=start, recorded_at__lt=end) \
        .values("tenant_id").distinct().count()
    print(f"month {month:%Y-%m}: {rows:,} usage rows across {tenants_with_usage:,} tenants")

    history(args, models_sql=", ".join(
        f"({n}, '{slug}', '{prov}', '{tier}', {p_in}::numeric, {p_out}::numeric, {p_cw}::numeric, {p_cr}::numeric)"
        for n, (slug, prov, tier, p_in, p_out, p_cw, p_cr) in enumerate(MODELS)))

    timings = []
    for run in range(3):
        t0 = time.perf_counter()
        written = invoice_rollup(month=month)
        timings.append(time.perf_counter() - t0)
        print(f"rollup run {run + 1}: {written:,} draft invoices in {timings[-1]:.2f} s")
    lines = InvoiceLine.objects.filter(invoice__month=month).count()
    print(f"rollup of all drafts: best {min(timings):.2f} s, worst {max(timings):.2f} s "
          f"({lines:,} invoice lines; goal < 10 s)")

    user, _ = User.objects.get_or_create(email="bench-finance@kiwiclaw.test", defaults={"is_staff": True})
    user.user_permissions.add(Permission.objects.get(codename="view_finance", content_type__app_label="billing"))
    user = User.objects.get(pk=user.pk)
    client = Client()
    client.force_login(user)
    for label, path in [
        ("finance overview (1,000 tenants, sorted by billed)", f"/finance/?month={month:%Y-%m}"),
        ("finance overview sorted by margin", f"/finance/?month={month:%Y-%m}&sort=margin"),
        ("tenant drill-down (1,000 rows of ledger, twelve months of trend)",
         f"/finance/tenants/{Tenant.objects.filter(slug='bench-00000').values_list('pk', flat=True).get()}/"),
        ("trends, twelve months (12,000 invoices, credit notes, tier mix)", "/finance/trends/"),
        ("invoices of last month (1,000, with credit notes and voids)",
         f"/finance/invoices/?month={previous_month(month):%Y-%m}"),
    ]:
        response = client.get(path)
        assert response.status_code == 200, response.status_code
        samples, cpu = [], []
        for _ in range(args.page_runs):
            t0, c0 = time.perf_counter(), time.process_time()
            response = client.get(path)
            samples.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
        # Wall time moves with the machine's load (other suites share the cores); the web process's own CPU
        # time per render (Postgres's not included) moves much less.
        print(f"{label}: median {statistics.median(samples):.0f} ms, p90 "
              f"{sorted(samples)[int(len(samples) * 0.9) - 1]:.0f} ms over {len(samples)} renders "
              f"(web process CPU median {statistics.median(cpu):.0f} ms), {len(response.content) / 1024:.0f} KiB "
              f"(goal < 300 ms for the overview); load average {os.getloadavg()[0]:.1f}")


def history(args, *, models_sql: str) -> None:
    """The eleven months before this one: two usage rows per tenant each, finalized; last month's first 100
    invoices get a $1.00 credit note each and the next 10 are voided. Kept between runs like the ledger."""
    from django.db import connection

    from billing.invoice_actions import credit_note_issue, invoice_void
    from billing.models import CreditNote, Invoice, InvoiceVoid, UsageRecord
    from billing.months import month_bounds, month_start, previous_month
    from billing.services import invoice_finalize_month
    from tenants.models import User

    month = month_start()
    t0 = time.perf_counter()
    for _ in range(11):
        month = previous_month(month)
        start, end = month_bounds(month)
        if not UsageRecord.objects.filter(recorded_at__gte=start, recorded_at__lt=end).exists():
            with connection.cursor() as cursor:
                cursor.execute(GENERATE.format(models=models_sql), {
                    "tenants": args.tenants, "rows": 2 * args.tenants, "start": start,
                    "seconds": int((end - start).total_seconds()) - 1, "month_tag": f"{month:%Y%m}-h",
                })
        invoice_finalize_month(month=month)
    last = previous_month(month_start())
    actor, _ = User.objects.get_or_create(email="bench-finance@kiwiclaw.test", defaults={"is_staff": True})
    invoices = list(Invoice.objects.filter(month=last, status="final", total__gte=1).order_by("number")[:110])
    for invoice in invoices[:100]:
        if not CreditNote.objects.filter(invoice=invoice).exists():
            credit_note_issue(invoice=invoice, reason="bench", lines=[("Goodwill", Decimal("1.00"))], actor=actor)
    for invoice in invoices[100:]:
        if not InvoiceVoid.objects.filter(invoice=invoice).exists():
            invoice_void(invoice=invoice, reason="bench", actor=actor)
    print(f"history: {Invoice.objects.filter(month__lt=month_start()).count():,} final invoices in 11 months, "
          f"{CreditNote.objects.count()} credit notes, {InvoiceVoid.objects.count()} voids "
          f"({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
