"""Finance's invoice operations: finalize on demand, void with a reason, credit notes. Numbering stays gapless,
nothing final changes in the database, every action writes one audit row, and finance without
billing.manage_invoices gets 403."""

import threading
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.db import IntegrityError, connection, transaction

from billing.invoice_actions import credit_note_issue, invoice_finalize, invoice_void
from billing.models import CreditNote, CreditNoteLine, Invoice, InvoiceCounter, InvoiceVoid
from billing.months import month_start
from billing.services import invoice_finalize_month, invoice_rollup
from tenants.models import AuditEvent
from tests.billing.conftest import record_usage, record_usage_at

PAST = date(2025, 3, 1)
IN_PAST = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)


@pytest.fixture
def manager(finance_user):
    """Finance with billing.manage_invoices, as the finance group has it after migration 0006."""
    finance_user.user_permissions.add(Permission.objects.get(codename="manage_invoices"))
    return type(finance_user).objects.get(pk=finance_user.pk)  # a fresh permission cache


@pytest.fixture
def past_drafts(acme, globex):
    """March 2025 drafts. acme (Pro: 30% markup, $20 credit, $49 fee): kimi 1,000,000 in + 100,000 out = $0.90
    cost → $1.17 billed, all covered by the credit → total $49.00. globex (Free: 50%, no fee): $1.35."""
    record_usage_at(acme, IN_PAST, input_tokens=1_000_000, output_tokens=100_000)
    record_usage_at(globex, IN_PAST, input_tokens=1_000_000, output_tokens=100_000)
    invoice_rollup(month=PAST)
    return Invoice.objects.get(tenant=acme, month=PAST), Invoice.objects.get(tenant=globex, month=PAST)


@pytest.fixture
def final_invoice(past_drafts, manager):
    return invoice_finalize(invoice=past_drafts[0], actor=manager)


def _audit(action):
    return list(AuditEvent.objects.filter(action=action))


def _post(client, user, url, data=None):
    client.force_login(user)
    return client.post(url, data or {})


# --- finalize on demand --------------------------------------------------------------------------------------

def test_finance_finalizes_an_ended_months_draft_now_with_a_last_rollup(client, past_drafts, manager, acme):
    draft, _ = past_drafts
    record_usage_at(acme, datetime(2025, 3, 31, 23, 0, tzinfo=UTC), input_tokens=100_000,
                    output_tokens=0)  # after the rollup
    response = _post(client, manager, f"/finance/invoices/{draft.pk}/finalize/")
    assert response.status_code == 302
    draft.refresh_from_db()
    assert (draft.status, draft.number, draft.display_number) == ("final", 1, "KC-000001")
    # 1,100,000 × $0.60/M + 100,000 × $3/M = $0.96 cost → × 1.3 = $1.248 billed; the last rollup counted it.
    assert draft.usage_billed == Decimal("1.2480000000")
    (row,) = _audit("invoice.finalize")
    assert (row.actor, row.tenant_id, row.target_id) == (manager, acme.pk, str(draft.pk))
    assert row.after == {"status": "final", "number": "KC-000001", "total": "49.00"}


def test_finalizing_twice_or_the_current_month_is_refused_and_changes_nothing(client, past_drafts, manager, acme):
    draft, _ = past_drafts
    _post(client, manager, f"/finance/invoices/{draft.pk}/finalize/")
    body = client.post(f"/finance/invoices/{draft.pk}/finalize/", follow=True).content.decode()
    assert "already final, as KC-000001: nothing changed" in body
    record_usage(acme)
    invoice_rollup(month=month_start())
    current = Invoice.objects.get(tenant=acme, month=month_start())
    body = client.post(f"/finance/invoices/{current.pk}/finalize/", follow=True).content.decode()
    assert "has not ended yet" in body
    current.refresh_from_db()
    assert current.status == "draft" and current.number is None
    assert len(_audit("invoice.finalize")) == 1
    assert InvoiceCounter.objects.get(name="invoice").last_number == 1


# --- void ----------------------------------------------------------------------------------------------------

def test_void_needs_a_reason_and_writes_one_void_and_one_audit_row(client, final_invoice, manager):
    url = f"/finance/invoices/{final_invoice.pk}/void/"
    response = _post(client, manager, url, {"reason": "   "})
    assert response.status_code == 400 and "Give a reason" in response.content.decode()
    assert not InvoiceVoid.objects.exists() and not _audit("invoice.void")
    assert _post(client, manager, url, {"reason": "Billed to the wrong entity"}).status_code == 302
    void = InvoiceVoid.objects.get()
    assert (void.invoice_id, void.reason, void.actor_email) == (final_invoice.pk, "Billed to the wrong entity",
                                                                 manager.email)
    (row,) = _audit("invoice.void")
    assert row.after == {"status": "void", "reason": "Billed to the wrong entity"}
    final_invoice.refresh_from_db()
    assert (final_invoice.status, final_invoice.number, final_invoice.total) == ("final", 1, Decimal("49.00"))


def test_voiding_twice_is_a_clear_error_and_nothing_changes(client, final_invoice, manager):
    url = f"/finance/invoices/{final_invoice.pk}/void/"
    _post(client, manager, url, {"reason": "Duplicate"})
    response = client.post(url, {"reason": "Again"})
    assert response.status_code == 400
    assert "KC-000001 was already voided on" in response.content.decode()
    assert InvoiceVoid.objects.get().reason == "Duplicate"
    assert len(_audit("invoice.void")) == 1


def test_a_draft_cannot_be_voided_or_credited(past_drafts, manager):
    from django.core.exceptions import ValidationError

    draft, _ = past_drafts
    with pytest.raises(ValidationError, match="Only a final invoice can be voided"):
        invoice_void(invoice=draft, reason="x", actor=manager)
    with pytest.raises(ValidationError, match="Only a final invoice can be credited"):
        credit_note_issue(invoice=draft, reason="x", lines=[("x", Decimal("1"))], actor=manager)
    assert not AuditEvent.objects.exists()


# --- credit notes --------------------------------------------------------------------------------------------

def test_credit_notes_are_numbered_negative_and_never_exceed_the_invoice(client, final_invoice, manager):
    url = f"/finance/invoices/{final_invoice.pk}/credit-notes/new/"
    response = _post(client, manager, url, {"reason": "Outage on 12 March", "description_0": "Outage credit",
                                            "amount_0": "10.00", "description_1": "Goodwill", "amount_1": "2.50"})
    assert response.status_code == 302
    first = CreditNote.objects.get()
    assert (first.display_number, first.total, first.invoice_id) == ("CN-000001", Decimal("-12.50"), final_invoice.pk)
    assert [(ln.description, ln.amount) for ln in first.lines.all()] == [
        ("Outage credit", Decimal("-10.00")), ("Goodwill", Decimal("-2.50"))]
    # $49.00 − $12.50 = $36.50 left: $36.51 is refused, and its number is not spent.
    response = client.post(url, {"reason": "More", "description_0": "Too much", "amount_0": "36.51"})
    assert response.status_code == 400 and "$36.51 is more than the $36.50 of KC-000001" in response.content.decode()
    client.post(url, {"reason": "The rest", "description_0": "Rest", "amount_0": "36.50"})
    assert list(CreditNote.objects.values_list("number", "total")) == [(1, Decimal("-12.50")), (2, Decimal("-36.50"))]
    assert len(_audit("invoice.credit_note")) == 2
    body = client.get(f"/finance/invoices/{final_invoice.pk}/").content.decode()
    assert 'data-credit-note="CN-000002"' in body and "data-net-due>$0.00<" in body
    assert "Issue a credit note" not in body  # nothing left to credit


@pytest.mark.parametrize(("data", "error"), [
    ({"reason": "x", "description_0": "Refund", "amount_0": "-5"}, "positive number"),
    ({"reason": "x", "description_0": "Refund", "amount_0": "0"}, "positive number"),
    ({"reason": "x", "description_0": "Refund", "amount_0": "1.005"}, "2 decimal places"),
    ({"reason": "x", "description_0": "Refund"}, "Enter the amount to credit"),
    ({"reason": "x", "amount_0": "5"}, "Describe what this line credits"),
    ({"reason": "x"}, "Enter at least one line"),
    ({"reason": "", "description_0": "Refund", "amount_0": "5"}, "Give a reason"),
])
def test_bad_credit_note_input_is_a_form_error_and_changes_nothing(client, final_invoice, manager, data, error):
    response = _post(client, manager, f"/finance/invoices/{final_invoice.pk}/credit-notes/new/", data)
    assert response.status_code == 400 and error in response.content.decode()
    assert not CreditNote.objects.exists() and not _audit("invoice.credit_note")
    assert InvoiceCounter.objects.filter(name="credit_note").values_list("last_number", flat=True).first() in (0,
                                                                                                             None)


def test_void_and_credit_exclude_each_other(final_invoice, manager, past_drafts):
    from django.core.exceptions import ValidationError

    credit_note_issue(invoice=final_invoice, reason="Part", lines=[("Part", Decimal("1.00"))], actor=manager)
    with pytest.raises(ValidationError, match="has credit notes"):
        invoice_void(invoice=final_invoice, reason="x", actor=manager)
    other = invoice_finalize(invoice=past_drafts[1], actor=manager)
    invoice_void(invoice=other, reason="Wrong", actor=manager)
    with pytest.raises(ValidationError, match="is void"):
        credit_note_issue(invoice=other, reason="x", lines=[("x", Decimal("1.00"))], actor=manager)


def test_numbering_stays_gapless_across_finalize_void_credit_and_refusals(past_drafts, manager, acme, globex):
    from django.core.exceptions import ValidationError

    acme_inv = invoice_finalize(invoice=past_drafts[0], actor=manager)
    with pytest.raises(ValidationError):
        invoice_finalize(invoice=acme_inv, actor=manager)
    record_usage_at(acme, datetime(2025, 4, 2, tzinfo=UTC))
    record_usage_at(globex, datetime(2025, 4, 2, tzinfo=UTC))
    invoice_finalize_month(month=PAST)       # globex's March
    invoice_finalize_month(month=date(2025, 4, 1))  # both Aprils
    invoice_void(invoice=Invoice.objects.get(tenant=globex, month=PAST), reason="Wrong", actor=manager)
    for amount in ("1.00", "999.00", "2.00"):  # the middle one is refused
        try:
            credit_note_issue(invoice=acme_inv, reason="r", lines=[("l", Decimal(amount))], actor=manager)
        except ValidationError:
            pass
    assert sorted(Invoice.objects.values_list("number", flat=True)) == [1, 2, 3, 4]
    assert list(CreditNote.objects.values_list("number", flat=True)) == [1, 2]
    # One audit row per action taken: finance's finalize, beat's three (by "system"), 1 void, 2 credit notes.
    assert [(a, by) for a, by in AuditEvent.objects.order_by("id").values_list("action", "actor_email")] == [
        ("invoice.finalize", manager.email), ("invoice.finalize", ""), ("invoice.finalize", ""),
        ("invoice.finalize", ""), ("invoice.void", manager.email), ("invoice.credit_note", manager.email),
        ("invoice.credit_note", manager.email)]


@pytest.mark.django_db(transaction=True)
def test_concurrent_credit_notes_take_consecutive_numbers(plans, acme, finance_user):
    finance_user.user_permissions.add(Permission.objects.get(codename="manage_invoices"))
    record_usage_at(acme, IN_PAST, input_tokens=1_000_000, output_tokens=100_000)
    invoice_finalize_month(month=PAST)
    invoice = Invoice.objects.get(tenant=acme, month=PAST)
    errors, start = [], threading.Barrier(8)

    def issue():
        try:
            start.wait()
            credit_note_issue(invoice=invoice, reason="r", lines=[("l", Decimal("1.00"))], actor=finance_user)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=issue) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert sorted(CreditNote.objects.values_list("number", flat=True)) == list(range(1, 9))
    assert AuditEvent.objects.filter(action="invoice.credit_note").count() == 8


# --- nothing final changes in the database -------------------------------------------------------------------

@pytest.mark.parametrize("statement", [
    "UPDATE billing_creditnote SET total = -1",
    "DELETE FROM billing_creditnote",
    "UPDATE billing_creditnoteline SET amount = -0.01",
    "DELETE FROM billing_creditnoteline",
    "INSERT INTO billing_creditnoteline (credit_note_id, description, amount) SELECT id, 'late', -1 FROM billing_creditnote",
    "UPDATE billing_invoicevoid SET reason = 'changed'",
    "DELETE FROM billing_invoicevoid",
    "UPDATE billing_invoice SET total = 0 WHERE status = 'final'",
])
def test_corrections_and_final_invoices_refuse_changes_in_the_database(final_invoice, manager, past_drafts,
                                                                       statement):
    credit_note_issue(invoice=final_invoice, reason="r", lines=[("l", Decimal("1.00"))], actor=manager)
    other = invoice_finalize(invoice=past_drafts[1], actor=manager)
    invoice_void(invoice=other, reason="Wrong", actor=manager)
    with pytest.raises(IntegrityError, match="refused"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)
    assert CreditNoteLine.objects.get().amount == Decimal("-1.00")
    assert InvoiceVoid.objects.get().reason == "Wrong"


# --- who may -------------------------------------------------------------------------------------------------

def test_finance_without_manage_invoices_gets_403_and_nothing_changes(client, past_drafts, manager):
    from django.contrib.auth.models import Group

    from tests.factories import UserFactory

    final = invoice_finalize(invoice=past_drafts[0], actor=manager)
    draft = past_drafts[1]
    before = AuditEvent.objects.count()
    reader = UserFactory(email="reader@kiwiclaw.test", is_staff=True)
    reader.user_permissions.add(Permission.objects.get(codename="view_finance"))  # finance, without the new one
    assert not reader.has_perm("billing.manage_invoices") and Group.objects.filter(name="finance").exists()
    client.force_login(reader)
    assert client.get(f"/finance/invoices/{final.pk}/").status_code == 200  # finance still reads it
    assert client.post(f"/finance/invoices/{draft.pk}/finalize/").status_code == 403
    for url in (f"/finance/invoices/{final.pk}/void/", f"/finance/invoices/{final.pk}/credit-notes/new/"):
        assert client.get(url).status_code == 403
        assert client.post(url, {"reason": "x", "description_0": "x", "amount_0": "1"}).status_code == 403
    body = client.get(f"/finance/invoices/{final.pk}/").content.decode()
    assert "Void…" not in body and "Issue a credit note" not in body
    assert not InvoiceVoid.objects.exists() and not CreditNote.objects.exists()
    draft.refresh_from_db()
    assert draft.status == "draft" and AuditEvent.objects.count() == before


def test_the_finance_group_gets_manage_invoices_from_the_migration(db):
    from django.contrib.auth.models import Group

    group = Group.objects.get(name="finance")
    assert set(group.permissions.values_list("codename", flat=True)) >= {"view_finance", "manage_invoices"}


def test_the_workspace_admin_sees_the_void_and_its_credit_notes(client, final_invoice, manager, alice):
    credit_note_issue(invoice=final_invoice, reason="Outage", lines=[("Outage credit", Decimal("9.00"))],
                      actor=manager)
    client.force_login(alice)
    body = client.get(f"/invoices/{final_invoice.pk}/").content.decode()
    assert 'data-credit-note="CN-000001"' in body and "Outage credit" in body and "-$9.00" in body
    assert "data-net-due>$40.00<" in body
    assert "Issue a credit note" not in body and "Finalize now" not in body
