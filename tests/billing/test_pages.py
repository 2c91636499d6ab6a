"""Billing and finance pages: who sees what, 403 and 404 answers, CSV exports, the banner and the admin."""

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import Invoice, UsageRecord
from billing.months import month_start
from billing.services import invoice_finalize_month, invoice_rollup
from tests.billing.conftest import record_usage, record_usage_at
from tests.factories import DEMO_PASSWORD, MembershipFactory, TenantFactory, UserFactory, make_api_key

PAST = date(2025, 3, 1)


def login(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def usage(acme, globex, alice, carol, bob):
    """acme: alice via chat and via an API key, carol via chat; globex: bob."""
    key, _ = make_api_key(tenant=acme, user=alice, name="CI robot")
    record_usage(acme, endpoint="claude-opus-4-6", input_tokens=1000, output_tokens=100, user_id=alice.pk)
    record_usage(acme, endpoint="kimi-k2.5", source="api", input_tokens=7777, output_tokens=3, user_id=alice.pk,
                 api_key_id=key.pk)
    record_usage(acme, endpoint="kimi-k2.5", input_tokens=4242, output_tokens=1, user_id=carol.pk)
    record_usage(globex, endpoint="kimi-k2.5", input_tokens=3131, output_tokens=9, user_id=bob.pk)
    invoice_rollup(month=month_start())
    return key


def _csv(response):
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.content.decode())))


# --- tenant usage ------------------------------------------------------------------------------------------

def test_alice_sees_all_of_acmes_usage_by_model_day_member_and_key(client, usage, alice, carol):
    body = login(client, alice).get("/usage/").content.decode()
    assert "12,019" in body  # kimi input: alice's 7,777 by API key + carol's 4,242
    assert f'data-member="{alice.pk}"' in body and f'data-member="{carol.pk}"' in body
    assert "Carol Member" in body and "CI robot" in body and "7,780" in body  # the key's tokens
    assert "3,131" not in body  # globex
    assert "Provider cost" not in body  # tenants see billed amounts only


def test_carol_sees_only_her_own_usage(client, usage, carol):
    body = login(client, carol).get("/usage/").content.decode()
    assert "4,242" in body
    assert "12,019" not in body and "7,777" not in body and "3,131" not in body and "CI robot" not in body


def test_bob_sees_only_his_own_usage(client, usage, bob):
    body = login(client, bob).get("/usage/").content.decode()
    assert "3,131" in body and "4,242" not in body and "12,019" not in body


def test_usage_of_another_month_and_a_malformed_month(client, usage, alice):
    login(client, alice)
    assert "No usage in March 2025" in client.get("/usage/?month=2025-03").content.decode()
    assert client.get("/usage/?month=March").status_code == 404


def test_usage_page_query_count_is_bounded(client, usage, alice, django_assert_max_num_queries):
    login(client, alice)
    with django_assert_max_num_queries(20):
        assert client.get("/usage/").status_code == 200


# --- tenant invoices ---------------------------------------------------------------------------------------

def test_alice_sees_acmes_invoices_and_opens_one(client, usage, alice, acme):
    invoice = Invoice.objects.get(tenant=acme)
    login(client, alice)
    body = client.get("/invoices/").content.decode()
    assert f'data-invoice="{invoice.pk}"' in body
    assert Invoice.objects.exclude(tenant=acme).exists()
    detail = client.get(f"/invoices/{invoice.pk}/")
    assert detail.status_code == 200
    assert f"${invoice.total:,}" in detail.content.decode()


def test_another_tenants_invoice_answers_404_like_a_missing_one(client, usage, alice, globex):
    other = Invoice.objects.get(tenant=globex)
    login(client, alice)
    assert client.get(f"/invoices/{other.pk}/").status_code == 404
    assert client.get(f"/invoices/{other.pk}/lines.csv").status_code == 404
    assert client.get("/invoices/999999/").status_code == 404


def test_members_cannot_open_invoices(client, usage, carol, acme):
    invoice = Invoice.objects.get(tenant=acme)
    login(client, carol)
    assert client.get("/invoices/").status_code == 403
    assert client.get(f"/invoices/{invoice.pk}/").status_code == 403


def test_tenant_invoice_csv_has_no_provider_cost(client, usage, alice, acme):
    invoice = Invoice.objects.get(tenant=acme)
    rows = _csv(login(client, alice).get(f"/invoices/{invoice.pk}/lines.csv"))
    assert "provider_cost" not in rows[0] and len(rows) == 1 + invoice.lines.count()


# --- finance -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/finance/", "/finance/tenants.csv", "/finance/invoices/"])
@pytest.mark.parametrize("who", ["alice", "carol", "bob"])
def test_non_finance_users_get_403(client, usage, request, who, path):
    login(client, request.getfixturevalue(who))
    assert client.get(path).status_code == 403


def test_non_finance_users_get_403_on_drilldowns(client, usage, alice, acme):
    invoice = Invoice.objects.get(tenant=acme)
    login(client, alice)
    for path in (f"/finance/tenants/{acme.pk}/", f"/finance/tenants/{acme.pk}/usage.csv",
                 f"/finance/invoices/{invoice.pk}/", f"/finance/invoices/{invoice.pk}/lines.csv"):
        assert client.get(path).status_code == 403, path


def test_anonymous_users_are_sent_to_log_in(client, db):
    response = client.get("/finance/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_finance_sees_all_tenants_sorted(client, usage, finance_user, django_assert_max_num_queries):
    login(client, finance_user)
    with django_assert_max_num_queries(12):
        response = client.get("/finance/?sort=tenant&dir=asc")
    body = response.content.decode()
    assert response.status_code == 200
    assert body.index('data-tenant="acme"') < body.index('data-tenant="globex"')
    body = client.get("/finance/?sort=tenant&dir=desc").content.decode()
    assert body.index('data-tenant="globex"') < body.index('data-tenant="acme"')
    assert client.get("/finance/?sort=margin").status_code == 200


def test_finance_overview_escapes_tenant_names(client, db, plans, finance_user):
    TenantFactory(slug="xss", name="<script>alert(1)</script>", plan=plans["pro"])
    invoice_rollup(month=month_start())
    body = login(client, finance_user).get("/finance/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "<script>alert(1)" not in body


def test_finance_tenant_drilldown_has_models_and_an_svg_chart(client, usage, finance_user, acme):
    body = login(client, finance_user).get(f"/finance/tenants/{acme.pk}/").content.decode()
    assert 'data-model="claude-opus-4-6"' in body and 'data-model="kimi-k2.5"' in body
    assert "<svg" in body and 'class="bar"' in body and "<polyline" in body
    assert "cdn" not in body.lower()


def test_finance_invoice_list_and_printable_invoice(client, usage, finance_user, acme, globex):
    login(client, finance_user)
    body = client.get("/finance/invoices/").content.decode()
    for invoice in Invoice.objects.all():
        assert f'data-invoice="{invoice.pk}"' in body
    invoice = Invoice.objects.get(tenant=acme)
    page = client.get(f"/finance/invoices/{invoice.pk}/").content.decode()
    assert "data-print" in page and "Provider cost" in page and "@media print" not in page


def test_finance_tenant_table_csv(client, usage, finance_user):
    rows = _csv(login(client, finance_user).get(f"/finance/tenants.csv?month={month_start():%Y-%m}"))
    assert rows[0][:4] == ["month", "tenant_slug", "tenant", "plan"]
    by_slug = {row[1]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert set(by_slug) == {"acme", "globex"}
    acme_invoice = Invoice.objects.get(tenant__slug="acme")
    assert by_slug["acme"]["provider_cost"] == str(acme_invoice.usage_cost)  # Decimal as written
    assert by_slug["acme"]["billed"] == str(acme_invoice.usage_billed)
    assert Decimal(by_slug["acme"]["margin"]) == acme_invoice.usage_billed - acme_invoice.usage_cost


def test_finance_tenant_usage_csv_by_day_and_model(client, usage, finance_user, acme):
    rows = _csv(login(client, finance_user).get(f"/finance/tenants/{acme.pk}/usage.csv"))
    assert rows[0][:4] == ["day", "tenant", "endpoint", "provider"]
    assert len(rows) == 1 + 2  # one day, two models
    cost_column = rows[0].index("provider_cost")
    assert sum(Decimal(r[cost_column]) for r in rows[1:]) == sum(
        r.cost for r in UsageRecord.objects.filter(tenant=acme))


def test_finance_invoice_lines_csv(client, usage, finance_user, acme):
    invoice = Invoice.objects.get(tenant=acme)
    rows = _csv(login(client, finance_user).get(f"/finance/invoices/{invoice.pk}/lines.csv"))
    assert rows[0][-3:] == ["provider_cost", "billed_exact", "amount"]
    assert len(rows) == 1 + invoice.lines.count()
    assert sorted(r[-1] for r in rows[1:]) == sorted(str(line.amount) for line in invoice.lines.all())


@pytest.mark.parametrize("name", ["=HYPERLINK(\"http://x\")", "+1+2", "-2+3", "@SUM(A1)"])
def test_csv_guards_against_formula_injection_in_names(client, db, plans, finance_user, name):
    tenant = TenantFactory(slug="evil", name=name, plan=plans["pro"])
    record_usage(tenant, input_tokens=10)
    invoice_rollup(month=month_start())
    invoice = Invoice.objects.get(tenant=tenant)
    login(client, finance_user)
    for path in ("/finance/tenants.csv", f"/finance/tenants/{tenant.pk}/usage.csv",
                 f"/finance/invoices/{invoice.pk}/lines.csv"):
        cells = [cell for row in _csv(client.get(path))[1:] for cell in row]
        assert "'" + name in cells, path
        assert name not in cells, path


def test_negative_decimals_are_not_mangled_by_the_formula_guard():
    from billing.csv_export import safe_cell

    assert safe_cell(Decimal("-1.2500000000")) == "-1.2500000000"
    assert safe_cell("-1.25") == "'-1.25"


# --- banner ------------------------------------------------------------------------------------------------

def _render_banner(rf, user, tenant):
    from django.template import Context, Template

    from tenants.models import Membership

    request = rf.get("/")
    request.user = user
    request.membership = Membership.objects.get(user=user, tenant=tenant)
    request.tenant = tenant
    return Template("{% load billing_tags %}{% billing_banner %}").render(Context({"request": request}))


def test_banner_for_admins_at_80_and_100_percent_of_the_cap(rf, globex, budget_redis):
    admin = UserFactory(email="gina@globex.test")
    MembershipFactory(user=admin, tenant=globex, role="admin")
    assert "data-billing-banner" not in _render_banner(rf, admin, globex)
    record_usage(globex, input_tokens=0, output_tokens=0, cost=Decimal("2.6666666667"))  # bills $4.00 of $5.00
    budget_redis.flushdb()
    html = _render_banner(rf, admin, globex)
    assert 'data-billing-banner="warning"' in html and "80%" in html
    record_usage(globex, input_tokens=0, output_tokens=0, cost=Decimal("0.6666666667"))  # $5.00
    budget_redis.flushdb()
    html = _render_banner(rf, admin, globex)
    assert 'data-billing-banner="reached"' in html and "has reached its $5.00 monthly spending cap" in html


def test_no_banner_for_members(rf, globex, bob, budget_redis):
    record_usage(globex, input_tokens=0, output_tokens=0, cost=Decimal("4"))
    assert "data-billing-banner" not in _render_banner(rf, bob, globex)


# --- admin -------------------------------------------------------------------------------------------------

@pytest.fixture
def superuser(db):
    return UserFactory(email="root@kiwiclaw.test", is_staff=True, is_superuser=True)


def test_admin_shows_usage_and_invoices_read_only(client, superuser, acme):
    record_usage_at(acme, datetime(2025, 3, 5, tzinfo=UTC))
    [invoice] = invoice_finalize_month(month=PAST)
    row = UsageRecord.objects.get()
    login(client, superuser)
    assert client.get(reverse("admin:billing_usagerecord_changelist")).status_code == 200
    page = client.get(reverse("admin:billing_invoice_change", args=[invoice.pk]))
    assert page.status_code == 200 and 'name="total"' not in page.content.decode()
    assert client.post(reverse("admin:billing_invoice_change", args=[invoice.pk]),
                       {"total": "0.00"}).status_code == 403
    assert client.post(reverse("admin:billing_invoice_delete", args=[invoice.pk]), {"post": "yes"}).status_code == 403
    assert client.post(reverse("admin:billing_usagerecord_delete", args=[row.pk]), {"post": "yes"}).status_code == 403
    assert client.get(reverse("admin:billing_usagerecord_add")).status_code == 403
    invoice.refresh_from_db()
    assert invoice.is_final and UsageRecord.objects.count() == 1


def test_login_with_demo_password_reaches_usage(client, alice, usage):
    assert client.login(email="alice@acme.test", password=DEMO_PASSWORD)
    assert client.get("/usage/").status_code == 200


# --- how the pages read (layout and wording; tests/billing/test_browser_pages.py looks at them in Chromium) ----

def test_a_month_without_usage_says_so_instead_of_drawing_an_empty_chart(client, acme, alice, budget_redis):
    body = login(client, alice).get("/usage/").content.decode()
    assert "No usage yet this month." in body
    assert 'data-chart="daily"' not in body and "By member" not in body


def test_month_menu_lists_recent_months_and_keeps_an_older_choice(client, usage, alice):
    login(client, alice)
    body = client.get("/usage/").content.decode()
    assert f'<option value="{month_start():%Y-%m}" selected>{month_start():%B %Y} (this month)</option>' in body
    assert 'rel="next"' not in body  # no month after the current one
    body = client.get("/usage/?month=2019-05").content.decode()
    assert '<option value="2019-05" selected>May 2019</option>' in body
    assert 'href="?month=2019-04"' in body and 'href="?month=2019-06"' in body


def test_tenant_usage_has_totals_and_never_shows_provider_cost(client, usage, alice):
    body = login(client, alice).get("/usage/").content.decode()
    assert "<tfoot><tr><td>Total</td><td class=\"num\">3</td>" in body
    assert "provider cost" not in body.lower()


def test_chart_draws_every_day_and_stops_the_token_line_today():
    from billing.charts import daily_chart

    month = date(2026, 11, 1)
    days = [{"day": date(2026, 11, 2), "billed": Decimal("1.5"), "tokens": 1_200_000, "requests": 4,
             "cost": Decimal("1.2"), "margin": Decimal("0.3")}]
    chart = daily_chart(month=month, days=days, today=date(2026, 11, 10))
    assert len(chart["bars"]) == 30 and chart["has_data"]
    assert len(chart["line"].split()) == 10  # days 1–10; the rest of the month has no figures yet
    assert [b["future"] for b in chart["bars"]].count(True) == 20
    assert [t["billed"] for t in chart["ticks"]] == ["$0.00", "$1.00", "$2.00"]
    assert [t["tokens"] for t in chart["ticks"]] == ["0", "1M", "2M"]
    assert chart["bars"][1]["cost"] is None  # tenants' charts carry no provider cost
    assert daily_chart(month=month, days=days, show_cost=True)["bars"][1]["cost"] == Decimal("1.2")
    assert not daily_chart(month=month, days=[])["has_data"]


def test_finance_headers_say_how_they_sort(client, usage, finance_user):
    body = login(client, finance_user).get("/finance/?sort=margin&dir=asc").content.decode()
    assert 'aria-sort="ascending"><a class="sort" href="?month=' in body
    assert f"?month={month_start():%Y-%m}&amp;sort=margin&amp;dir=desc" in body  # the active column flips
    assert f"?month={month_start():%Y-%m}&amp;sort=tenant&amp;dir=asc" in body  # names sort A to Z first
    assert f"?month={month_start():%Y-%m}&amp;sort=tokens&amp;dir=desc" in body  # figures largest first
    # Changing the month keeps the chosen order.
    assert '<input type="hidden" name="sort" value="margin">' in body
    assert '<input type="hidden" name="dir" value="asc">' in body


def test_finance_overview_of_a_month_without_invoices(client, usage, finance_user):
    body = login(client, finance_user).get("/finance/?month=2024-01").content.decode()
    assert "No invoices for January 2024." in body and "<tfoot>" not in body


def test_invoice_page_reads_like_an_invoice(client, usage, finance_user, alice, acme, globex):
    invoice = Invoice.objects.get(tenant=acme)
    body = login(client, alice).get(f"/invoices/{invoice.pk}/").content.decode()
    assert "Billed to" in body and "Draft invoice" in body and "assigned when finalized" in body
    assert "class=\"internal" not in body and "Provider cost" not in body
    login(client, finance_user)
    body = client.get(f"/finance/invoices/{invoice.pk}/").content.decode()
    assert '<th scope="col" class="num internal">Provider cost</th>' in body  # on screen, not printed
    free = Invoice.objects.get(tenant=globex)
    assert free.credit == 0
    assert "−$0.00" not in client.get(f"/finance/invoices/{free.pk}/").content.decode()


def test_finance_invoice_list_filters_by_month_and_status(client, usage, finance_user):
    login(client, finance_user)
    body = client.get(f"/finance/invoices/?month={month_start():%Y-%m}&status=final").content.decode()
    assert "No invoices for" in body and "with status final" in body
    assert f'<option value="{month_start():%Y-%m}" selected>' in body
    assert "Clear filters" in body


# --- the end-user filter -------------------------------------------------------------------------------------

@pytest.fixture
def end_user_usage(acme, globex, alice, carol, bob):
    """acme: two API requests for end user "cust-1" (one by alice, one by carol), one for "cust-2", one chat turn;
    globex: one API request for its own "cust-1"."""
    record_usage(acme, source="api", input_tokens=1111, output_tokens=1, user_id=alice.pk, end_user="cust-1")
    record_usage(acme, source="api", input_tokens=2222, output_tokens=1, user_id=carol.pk, end_user="cust-1")
    record_usage(acme, source="api", input_tokens=5555, output_tokens=1, user_id=alice.pk, end_user="cust-2")
    record_usage(acme, input_tokens=7000, output_tokens=1, user_id=alice.pk)
    record_usage(globex, source="api", input_tokens=9999, output_tokens=1, user_id=bob.pk, end_user="cust-1")


def test_usage_page_filters_by_end_user(client, end_user_usage, alice):
    login(client, alice)
    body = client.get("/usage/", {"end_user": "cust-1"}).content.decode()
    assert 'data-end-user="cust-1"' in body
    assert "3,333" in body  # input of acme's two cust-1 requests
    assert "5,555" not in body and "7,000" not in body and "15,888" not in body
    assert "9,999" not in body and "13,332" not in body  # globex's cust-1 never counts
    everything = client.get("/usage/").content.decode()
    assert "15,888" in everything and "data-end-user=" not in everything  # 1,111 + 2,222 + 5,555 + 7,000


def test_another_tenants_end_user_id_shows_nothing(client, end_user_usage, bob, alice):
    body = login(client, alice).get("/usage/", {"end_user": "cust-9"}).content.decode()
    assert "1,111" not in body and 'data-empty="usage"' in body
    # Bob's tenant has its own cust-1: he sees only globex's row under that id.
    body = login(client, bob).get("/usage/", {"end_user": "cust-1"}).content.decode()
    assert "9,999" in body and "3,333" not in body and "1,111" not in body


def test_a_member_filtering_by_end_user_still_sees_only_their_own_usage(client, end_user_usage, carol):
    body = login(client, carol).get("/usage/", {"end_user": "cust-1"}).content.decode()
    assert "2,222" in body and "3,333" not in body and "1,111" not in body


def test_an_overlong_end_user_filter_is_explained_not_applied(client, end_user_usage, alice):
    body = login(client, alice).get("/usage/", {"end_user": "x" * 300}).content.decode()
    assert "at most 256 characters" in body and "15,888" in body
