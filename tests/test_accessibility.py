"""Accessibility (issue #15, item 17): axe-core, in a real Chromium, on the chat, usage, finance, staff and settings
pages and the rest of the dashboard, at 1280 and 375 px. Any violation of serious or critical impact fails.

A violation found in a page whose template this file's owners do not edit is listed in KNOWN with the rule and
where it comes from: the page's check ignores that one rule there (and still fails on any other), and
`test_known_violation_is_still_there` is an xfail(strict=True) per entry, so fixing it turns that test into a
failure that asks for the entry's removal. Screenshots go to artifacts/a11y-<page>-<width>.png.
"""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission

from billing.models import Invoice
from billing.months import month_start
from billing.services import invoice_rollup
from conversations import services as chat
from conversations.models import Message
from tenants.services import membership_change_role
from tests.billing.conftest import record_usage
from tests.browser import DESKTOP, HEIGHTS, PHONE, assert_accessible, axe_violations, screenshot
from tests.factories import UserFactory, make_api_key

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# page name -> (who opens it, path; "{conversation}", "{tenant}", "{invoice}" and "{key}" come from the data below)
PAGES = {
    "home": ("alice", "/"),
    "chat": ("alice", "/chat/{conversation}/"),
    "chat-empty": ("carol", "/chat/"),
    "usage": ("alice", "/usage/"),
    "invoices": ("alice", "/invoices/"),
    "invoice": ("alice", "/invoices/{invoice}/"),
    "alerts": ("alice", "/alerts/"),
    "key-limits": ("alice", "/api-keys/{key}/limits/"),
    "password-change": ("alice", "/password/change/"),
    "team": ("alice", "/team/"),
    "audit": ("alice", "/team/audit/"),
    "api-keys": ("alice", "/api-keys/"),
    "settings": ("alice", "/settings/"),
    "finance": ("finance", "/finance/"),
    "finance-tenant": ("finance", "/finance/tenants/{tenant}/"),
    "finance-invoices": ("finance", "/finance/invoices/"),
    "finance-invoice": ("finance", "/finance/invoices/{invoice}/"),
    "finance-trends": ("finance", "/finance/trends/"),
    "staff": ("staff", "/staff/"),
    "staff-audit": ("staff", "/staff/audit/"),
    "staff-routing": ("staff", "/staff/routing/"),
    "staff-feedback": ("staff", "/staff/routing/feedback/"),
    "staff-plans": ("staff", "/staff/plans/"),
    "login": (None, "/login/"),
    "signup": (None, "/signup/"),
}

# (page, rule id) -> where the violation comes from, for the team that owns that template.
KNOWN: dict[tuple[str, str], str] = {}


@pytest.fixture
def world(acme, alice, carol):
    """A lived-in workspace: a conversation with a markdown answer, usage rows of several models, an invoice,
    an API key, a role change in the audit log; a finance user and a platform admin."""
    conversation = chat.conversation_create(tenant=acme, owner=alice, title="Plans for the launch")
    question = Message.objects.create(tenant=acme, conversation=conversation, role=Message.ROLE_USER,
                                      content="Give me a table and some code.")
    Message.objects.create(
        tenant=acme, conversation=conversation, role=Message.ROLE_ASSISTANT, parent=question,
        status=Message.STATUS_DONE, tier="auto", endpoint="kimi-k2.5", provider="moonshot",
        upstream_model="kimi-k2.5", input_tokens=12, output_tokens=40, cost=Decimal("0.0001272"),
        billed=Decimal("0.0001272"),
        content="Here:\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```python\nprint('hi')\n```\n\n- one\n- two\n")
    key, _ = make_api_key(tenant=acme, user=alice, name="nightly robot")
    record_usage(acme, endpoint="claude-opus-4-6", input_tokens=12_000, output_tokens=2_400, user_id=alice.pk)
    record_usage(acme, endpoint="kimi-k2.5", source="api", input_tokens=1_000, output_tokens=400, user_id=alice.pk,
                 api_key_id=key.pk)
    invoice_rollup(month=month_start())
    invoice = Invoice.objects.get(tenant=acme, month=month_start())
    membership_change_role(membership=carol.memberships.get(), role="admin", actor=alice)
    membership_change_role(membership=carol.memberships.get(), role="member", actor=alice)
    finance = UserFactory(email="finance@kiwiclaw.test", is_staff=True)
    finance.user_permissions.add(Permission.objects.get(codename="view_finance"))
    staff = UserFactory(email="admin@kiwiclaw.test", is_staff=True, is_superuser=True)
    return {"users": {"alice": alice, "carol": carol, "finance": finance, "staff": staff, None: None},
            "conversation": conversation.pk, "tenant": acme.pk, "invoice": invoice.pk, "key": key.pk}


def _open(browser_pages, world, name, width):
    who, path = PAGES[name]
    page = browser_pages.open(world["users"][who], path.format(**world), width=width)
    page.wait_for_load_state("networkidle")  # the page's scripts have run before axe looks
    return page


def _check(page, name):
    known = tuple(rule for (page_name, rule) in KNOWN if page_name == name)
    screenshot(page, f"a11y-{name}")
    assert_accessible(page, known=known)


# One test per person (their world built once, one browser), each of their pages a subtest of its own.
PEOPLE = sorted({who or "anonymous" for who, _ in PAGES.values()})


@pytest.mark.parametrize("person", PEOPLE)
def test_pages_have_no_serious_or_critical_violation(browser_pages, world, subtests, person):
    """Each page at 1280 px, then reloaded at 375 px."""
    names = [name for name, (who, _) in PAGES.items() if (who or "anonymous") == person]
    assert names
    for name in names:
        with subtests.test(page=name):
            page = _open(browser_pages, world, name, DESKTOP)
            _check(page, name)
            page.set_viewport_size({"width": PHONE, "height": HEIGHTS[PHONE]})
            page.reload(wait_until="networkidle")
            _check(page, name)
            page.context.close()


# Defined only while some violation is known: an empty parametrization would report a skipped test.
if KNOWN:
    @pytest.mark.parametrize(("name", "rule"), [
        pytest.param(name, rule, marks=pytest.mark.xfail(strict=True, reason=where), id=f"{name}-{rule}")
        for (name, rule), where in KNOWN.items()
    ])
    def test_known_violation_is_still_there(browser_pages, world, name, rule):
        """xfail while the violation is there; once it is fixed this passes, strict xfail fails it, and the
        entry in KNOWN goes."""
        found = []
        for width in (DESKTOP, PHONE):
            found += [v["id"] for v in axe_violations(_open(browser_pages, world, name, width))]
        assert rule not in found
