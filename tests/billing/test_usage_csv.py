"""The workspace admin's usage CSV: per day, model, member, API key and end-user id; billed amounts only;
cells a spreadsheet would run as formulas are defused; other workspaces never appear."""

import csv
import io
from decimal import Decimal

import pytest

from tests.billing.conftest import record_usage
from tests.factories import make_api_key


def _rows(response):
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode())))


@pytest.fixture
def usage(acme, globex, alice, carol, bob):
    key, _ = make_api_key(tenant=acme, user=alice, name="=cmd|' /C calc'!A0")
    # kimi 1,000 in + 500 out = $0.0021 → × 1.3 = $0.00273 billed; twice for the same end user → $0.00546.
    for _ in range(2):
        record_usage(acme, source="api", user_id=alice.pk, api_key_id=key.pk, end_user="=HYPERLINK(\"x\")")
    record_usage(acme, endpoint="claude-opus-4-6", input_tokens=100, output_tokens=10, user_id=carol.pk)
    record_usage(globex, user_id=bob.pk, end_user="globex-user")
    return key


def test_the_admin_gets_one_row_per_day_model_member_key_and_end_user(client, usage, alice, carol):
    client.force_login(alice)
    rows = _rows(client.get("/usage/usage.csv"))
    assert len(rows) == 2
    api = next(r for r in rows if r["endpoint"] == "kimi-k2.5")
    assert (api["member"], api["requests"], api["input_tokens"], api["output_tokens"]) == (
        alice.email, "2", "2000", "1000")
    assert Decimal(api["billed"]) == Decimal("0.00546")
    assert api["end_user"] == "'=HYPERLINK(\"x\")"          # a formula, defused
    assert api["api_key"].startswith("'=cmd")               # the key's name too
    chat = next(r for r in rows if r["endpoint"] == "claude-opus-4-6")
    # opus: 100 × $5/M + 10 × $25/M = $0.00075 → × 1.3 = $0.000975
    assert (chat["member"], chat["api_key"], chat["end_user"]) == (carol.email, "", "")
    assert Decimal(chat["billed"]) == Decimal("0.000975")
    assert "provider_cost" not in rows[0] and "cost" not in rows[0]  # workspaces never see provider cost
    assert all(r["end_user"] != "globex-user" for r in rows)


def test_the_end_user_filter_narrows_the_export(client, usage, alice):
    client.force_login(alice)
    rows = _rows(client.get("/usage/usage.csv", {"end_user": '=HYPERLINK("x")'}))
    assert [r["endpoint"] for r in rows] == ["kimi-k2.5"]


def test_a_past_month_without_usage_is_a_header_only(client, usage, alice):
    client.force_login(alice)
    response = client.get("/usage/usage.csv?month=2025-03")
    assert _rows(response) == [] and response.content.decode().startswith("day,endpoint,provider,member,api_key")
    assert 'filename="usage-acme-2025-03.csv"' in response["Content-Disposition"]


def test_members_cannot_export_the_workspace(client, usage, carol):
    client.force_login(carol)
    assert client.get("/usage/usage.csv").status_code == 403


def test_the_usage_page_links_the_export_for_admins_only(client, usage, alice, carol):
    client.force_login(alice)
    assert "data-usage-csv" in client.get("/usage/").content.decode()
    client.force_login(carol)
    assert "data-usage-csv" not in client.get("/usage/").content.decode()
