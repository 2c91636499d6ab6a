"""The billing and finance pages in a real headless Chromium: they fit a 375px screen (wide tables scroll inside
their own box, never the page), log no console errors, the chart explains each day, the month menu navigates,
headers sort, and the printed invoice is one clean A4 page. Screenshots go to artifacts/ (gitignored).
Chromium is launched by tests/browser.py, which fails when /usr/bin/chromium is missing."""

import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client

from billing.models import Invoice
from billing.months import month_start, next_month, previous_month
from billing.services import invoice_rollup
from tests.billing.conftest import record_usage
from tests.browser import launch_chromium
from tests.factories import make_api_key

ARTIFACTS = Path(django_settings.BASE_DIR) / "artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def server_url(server_url, budget_redis):
    """The shared live server, with billing's Redis state cleared."""
    return server_url


@pytest.fixture
def month_of_usage(plans, acme, globex, alice, carol, bob):
    """Several models, cache tokens, an estimated row and an API key in acme; a little in globex; rolled up."""
    key, _ = make_api_key(tenant=acme, user=alice, name="Nightly evaluation robot with a long name")
    record_usage(acme, endpoint="claude-opus-4-6", input_tokens=12_000, output_tokens=2_400,
                 cache_read_tokens=30_000, cache_write_tokens=4_000, user_id=alice.pk)
    record_usage(acme, endpoint="claude-sonnet-4-6", input_tokens=8_000, output_tokens=900, user_id=carol.pk,
                 output_estimated=True)
    record_usage(acme, endpoint="kimi-k2.5", source="api", input_tokens=250_000, output_tokens=40_000,
                 cache_read_tokens=100_000, user_id=alice.pk, api_key_id=key.pk)
    record_usage(globex, endpoint="kimi-k2.5", input_tokens=3_000, output_tokens=300, user_id=bob.pk)
    invoice_rollup(month=month_start())
    return Invoice.objects.get(tenant=acme, month=month_start())


@pytest.fixture
def open_pages(request, server_url):
    """open_pages(*users, width=375) -> one Playwright page per user, logged in as them. At teardown: a
    screenshot of each page under artifacts/, and no console or page error on any of them.

    Sessions are made before Playwright starts: its sync API runs an event loop in this thread, and ORM calls
    made while it runs would use a separate connection that the test teardown never closes.
    """
    from playwright.sync_api import sync_playwright

    state = {"manager": None, "browser": None, "pages": [], "errors": []}

    def make(*users, width=375):
        cookies = []
        for user in users:
            client = Client()
            client.force_login(user)
            cookie = client.cookies[django_settings.SESSION_COOKIE_NAME]
            cookies.append({"name": cookie.key, "value": cookie.value, "url": server_url})
        state["manager"] = sync_playwright().start()
        state["browser"] = launch_chromium(state["manager"])
        for cookie in cookies:
            context = state["browser"].new_context(viewport={"width": width, "height": 812}, base_url=server_url)
            context.add_cookies([cookie])
            page = context.new_page()
            page.set_default_timeout(10_000)
            page.on("console", lambda msg, page=page: msg.type == "error" and not _is_favicon(msg)
                    and state["errors"].append(f"{page.url}: {msg.text}"))
            page.on("pageerror", lambda exc, page=page: state["errors"].append(f"{page.url}: {exc}"))
            state["pages"].append(page)
        return state["pages"]

    yield make
    ARTIFACTS.mkdir(exist_ok=True)
    for i, page in enumerate(state["pages"]):
        page.screenshot(path=str(ARTIFACTS / f"billing-{request.node.name}-{i}.png"), full_page=True)
    if state["browser"] is not None:
        state["browser"].close()
        state["manager"].stop()
    assert state["errors"] == []


def _is_favicon(msg) -> bool:
    # The browser asks for /favicon.ico on its own; the site has none (not an error of these pages).
    return (msg.location or {}).get("url", "").endswith("/favicon.ico")


def _visit(page, path: str) -> None:
    response = page.goto(path)
    assert response.status == 200, (path, response.status)


def _overflow(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def _shoot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"billing-{name}.png"), full_page=True)


def test_billing_pages_fit_a_375px_screen(open_pages, month_of_usage, alice, carol, finance_user, acme):
    invoice = month_of_usage
    admin, member, finance = open_pages(alice, carol, finance_user)
    for who, page, paths in (("alice", admin, ["/usage/", "/invoices/", f"/invoices/{invoice.pk}/"]),
                             ("carol", member, ["/usage/"]),
                             ("finance", finance, ["/finance/", f"/finance/tenants/{acme.pk}/", "/finance/invoices/",
                                                   f"/finance/invoices/{invoice.pk}/"])):
        for path in paths:
            _visit(page, path)
            assert _overflow(page) <= 0, path
            _shoot(page, f"375-{who}" + path.replace("/", "-").rstrip("-"))


def test_wide_tables_scroll_inside_their_own_box(open_pages, month_of_usage, finance_user, acme):
    (page,) = open_pages(finance_user)
    _visit(page, f"/finance/tenants/{acme.pk}/")
    wrap = page.locator(".table-wrap").first
    scroll_width, client_width = wrap.evaluate("el => [el.scrollWidth, el.clientWidth]")
    assert scroll_width > client_width  # eleven columns do not fit 375px: the box scrolls ...
    assert _overflow(page) <= 0  # ... and the page does not
    # Model names stay whole: a cell is one line high, not a column of single letters.
    cell = page.locator("tr[data-model='claude-opus-4-6'] .code")
    assert cell.evaluate("el => el.getBoundingClientRect().height") < 30


def test_the_invoice_total_is_on_screen_at_375px(open_pages, month_of_usage, alice):
    (page,) = open_pages(alice)
    _visit(page, f"/invoices/{month_of_usage.pk}/")
    total = page.locator("[data-total]").bounding_box()
    assert total["x"] >= 0 and total["x"] + total["width"] <= 375
    assert page.locator("[data-total]").inner_text() == f"${month_of_usage.total:,}"


def test_chart_has_axes_and_a_tooltip_per_day(open_pages, month_of_usage, alice):
    (page,) = open_pages(alice, width=1280)
    _visit(page, "/usage/")
    chart = page.locator("svg[data-chart=daily]")
    titles = chart.locator("g.day > title").all_text_contents()
    assert len(titles) == (next_month(month_start()) - month_start()).days
    busy = [t for t in titles if not t.endswith(" 0 requests") and "still to come" not in t]
    assert len(busy) == 1 and busy[0].endswith("· 3 requests")  # alice sees the tenant: three acme rows today
    assert chart.locator("text.axis-title").all_text_contents() == ["USD", "tokens"]
    assert "provider cost" not in " ".join(titles)  # tenants never see provider cost


def test_month_menu_moves_to_the_chosen_month(open_pages, month_of_usage, alice):
    (page,) = open_pages(alice)
    _visit(page, "/usage/")
    earlier = previous_month(previous_month(month_start()))
    with page.expect_navigation():
        page.select_option("#month-select", f"{earlier:%Y-%m}")
    assert page.url.endswith(f"?month={earlier:%Y-%m}")
    assert page.locator("[data-empty=usage]").inner_text() == f"No usage in {earlier:%B %Y}."
    page.click("a[rel=next]")
    assert page.url.endswith(f"?month={previous_month(month_start()):%Y-%m}")
    assert _overflow(page) <= 0


def test_finance_headers_sort_and_say_so(open_pages, month_of_usage, finance_user):
    (page,) = open_pages(finance_user, width=1280)
    _visit(page, "/finance/")
    assert page.locator("th[aria-sort=descending]").inner_text().strip().lower() == "billed"
    page.click("th >> a.sort:text-is('Workspace')")
    assert page.locator("th[aria-sort=ascending]").inner_text().strip().lower() == "workspace"
    tenants = page.locator("tbody tr[data-tenant]").evaluate_all("rows => rows.map(r => r.dataset.tenant)")
    assert tenants == ["acme", "globex"]


def test_printed_invoice_is_one_clean_a4_page(open_pages, month_of_usage, finance_user):
    (page,) = open_pages(finance_user, width=1280)
    _visit(page, f"/finance/invoices/{month_of_usage.pk}/")
    assert page.locator("th.internal").first.is_visible()  # finance sees provider cost on screen
    page.emulate_media(media="print")
    assert not page.locator("header.topbar").is_visible()
    assert not page.locator(".invoice-actions").is_visible()
    assert not page.locator("th.internal").first.is_visible()  # ... but it is not printed for the customer
    assert page.locator("[data-total]").is_visible()
    _shoot(page, "invoice-print")
    pdf = page.pdf(format="A4")
    assert len(re.findall(rb"/Type\s*/Page(?!s)", pdf)) == 1
