"""Finance's invoice operations: finalize one ended month's draft on demand, void a final invoice, issue a credit
note. Each is one transaction writing exactly one audit row; bad input raises ValidationError and changes nothing.

A final invoice is never edited (database triggers refuse it): a void and a credit note are documents of their own,
append-only, pointing at the invoice. Numbers, of invoices and of credit notes alike, come from an
`InvoiceCounter` row locked FOR UPDATE in the same transaction, so each series is gapless: a transaction that
rolls back rolls its number back too. Callers check `billing.manage_invoices`; these functions trust them.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from tenants.models import User
from tenants.services import audit_record

from . import money
from .invoices import _lock_month, _rollup_locked
from .models import CreditNote, CreditNoteLine, Invoice, InvoiceCounter, InvoiceVoid
from .months import month_bounds

REASON_MAX = 1000
DESCRIPTION_MAX = 200
CREDIT_LINES_MAX = 10


def _reason(reason: str, *, what: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": f"Give a reason for the {what}: it is kept with it and shown to finance."})
    if len(reason) > REASON_MAX:
        raise ValidationError({"reason": f"Keep the reason under {REASON_MAX} characters."})
    return reason


def _locked(invoice: Invoice) -> Invoice:
    """The invoice row, locked FOR UPDATE (a lock, not a write: the frozen invoice's trigger does not fire), so
    concurrent voids and credit notes of one invoice take turns."""
    return Invoice.objects.select_for_update().select_related("tenant").get(pk=invoice.pk)


def _next_number(series: str) -> int:
    counter, _ = InvoiceCounter.objects.select_for_update().get_or_create(name=series)
    counter.last_number += 1
    counter.save(update_fields=["last_number"])
    return counter.last_number


def credited_total(invoice: Invoice) -> Decimal:
    """What the invoice's credit notes credited so far, as a positive amount."""
    total = CreditNote.objects.filter(invoice=invoice).aggregate(total=Sum("total"))["total"]
    return -(total or money.ZERO)


def invoice_finalize(*, invoice: Invoice, actor: User) -> Invoice:
    """Finalize one draft of an ended month now, without waiting for beat: a last rollup of its workspace, then
    the next invoice number. Refused for a month that has not ended and for an invoice already final."""
    _, end = month_bounds(invoice.month)
    if end > timezone.now():
        raise ValidationError(f"{invoice.month:%B %Y} has not ended yet: its draft still follows the ledger.")
    with transaction.atomic():
        _lock_month(invoice.month)
        invoice = _locked(invoice)
        if invoice.is_final:
            raise ValidationError(f"This invoice is already final, as {invoice.display_number}: nothing changed.")
        _rollup_locked(month=invoice.month, tenant=invoice.tenant)
        invoice = _locked(invoice)
        invoice.number = _next_number("invoice")
        invoice.status = Invoice.STATUS_FINAL
        invoice.finalized_at = timezone.now()
        invoice.save(update_fields=["number", "status", "finalized_at"])
        audit_record(actor=actor, action="invoice.finalize", tenant=invoice.tenant, target=invoice,
                     before={"status": Invoice.STATUS_DRAFT},
                     after={"status": Invoice.STATUS_FINAL, "number": invoice.display_number,
                            "total": str(invoice.total)})
    return invoice


def invoice_void(*, invoice: Invoice, reason: str, actor: User) -> InvoiceVoid:
    """Void a final invoice: it is no longer owed. The invoice row stays as issued; an `InvoiceVoid` records the
    void, once. A draft cannot be voided (it is not issued yet), nor an invoice that has credit notes."""
    reason = _reason(reason, what="void")
    with transaction.atomic():
        invoice = _locked(invoice)
        if not invoice.is_final:
            raise ValidationError("Only a final invoice can be voided: a draft follows the ledger until finalized.")
        existing = InvoiceVoid.objects.filter(invoice=invoice).first()
        if existing is not None:
            raise ValidationError(f"{invoice.display_number} was already voided on "
                                  f"{existing.created_at:%-d %B %Y}: nothing changed.")
        if CreditNote.objects.filter(invoice=invoice).exists():
            raise ValidationError(f"{invoice.display_number} has credit notes: credit the rest with another "
                                  "credit note instead of voiding it.")
        void = InvoiceVoid.objects.create(invoice=invoice, reason=reason, actor_id=actor.pk,
                                          actor_email=actor.email)
        audit_record(actor=actor, action="invoice.void", tenant=invoice.tenant, target=invoice,
                     before={"status": "final"}, after={"status": "void", "reason": reason})
    return void


def _clean_lines(lines) -> list[tuple[str, Decimal]]:
    clean, errors = [], []
    for description, amount in lines:
        description = (description or "").strip()
        if not description or len(description) > DESCRIPTION_MAX:
            errors.append(f"Each line needs a description of 1 to {DESCRIPTION_MAX} characters.")
            continue
        try:
            amount = money.require_decimal(amount, name="amount")
        except (TypeError, ValueError) as exc:
            errors.append(str(exc))
            continue
        if amount <= 0 or amount != amount.quantize(money.CENT):
            errors.append(f"Credit “{description}” with a positive amount in whole cents, e.g. 12.50.")
            continue
        clean.append((description, amount))
    if errors:
        raise ValidationError({"lines": errors})
    if not 1 <= len(clean) <= CREDIT_LINES_MAX:
        raise ValidationError({"lines": f"A credit note has 1 to {CREDIT_LINES_MAX} lines."})
    return clean


def credit_note_issue(*, invoice: Invoice, reason: str, lines, actor: User) -> CreditNote:
    """Issue a credit note against a final invoice. `lines` are (description, amount to credit) pairs with
    positive amounts in whole cents; the note stores them negative. The invoice's credit notes together never
    credit more than its total. The note takes the next credit-note number (CN-000001, its own gapless series)."""
    reason = _reason(reason, what="credit note")
    clean = _clean_lines(lines)
    amount = sum((a for _, a in clean), money.ZERO)
    with transaction.atomic():
        invoice = _locked(invoice)
        if not invoice.is_final:
            raise ValidationError("Only a final invoice can be credited: a draft follows the ledger until finalized.")
        if InvoiceVoid.objects.filter(invoice=invoice).exists():
            raise ValidationError(f"{invoice.display_number} is void: there is nothing left to credit.")
        left = invoice.total - credited_total(invoice)
        if amount > left:
            raise ValidationError({"lines": f"{money.display_usd(amount)} is more than the "
                                            f"{money.display_usd(left)} of {invoice.display_number} not yet credited."})
        note = CreditNote.objects.create(
            invoice=invoice, tenant=invoice.tenant, number=_next_number("credit_note"), reason=reason,
            total=-amount, line_count=len(clean), actor_id=actor.pk, actor_email=actor.email)
        CreditNoteLine.objects.bulk_create(
            [CreditNoteLine(credit_note=note, description=d, amount=-a) for d, a in clean])
        audit_record(actor=actor, action="invoice.credit_note", tenant=invoice.tenant, target=invoice,
                     after={"credit_note": note.display_number, "total": str(note.total), "reason": reason})
    return note
