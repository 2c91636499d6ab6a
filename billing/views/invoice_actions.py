"""Finance's invoice operations (finalize on demand, void, credit notes): `billing.manage_invoices` on top of
`billing.view_finance`, else 403. Each view parses a form and calls one service of billing.invoice_actions; a
refusal is shown on the page and changes nothing."""

from functools import wraps

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from tenants.views._util import add_service_errors

from ..forms import CreditNoteForm, ReasonForm
from ..invoice_actions import credit_note_issue, credited_total, invoice_finalize, invoice_void
from .finance import _invoice, finance_required

MANAGE_PERM = "billing.manage_invoices"


def manage_invoices_required(view):
    @finance_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.has_perm(MANAGE_PERM):
            raise PermissionDenied("Only finance with the manage-invoices permission can do this.")
        return view(request, *args, **kwargs)

    return wrapper


@manage_invoices_required
@require_POST
def invoice_finalize_view(request, invoice_id):
    invoice = _invoice(invoice_id)
    try:
        invoice = invoice_finalize(invoice=invoice, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Finalized as {invoice.display_number}, total {invoice.total:,} USD.")
    return redirect("finance_invoice", invoice_id=invoice.pk)


@manage_invoices_required
def invoice_void_view(request, invoice_id):
    invoice = _invoice(invoice_id)
    form = ReasonForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            invoice_void(invoice=invoice, reason=form.cleaned_data["reason"], actor=request.user)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"{invoice.display_number} of {invoice.tenant.name} is void.")
            return redirect("finance_invoice", invoice_id=invoice.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "finance/invoice_void.html", {"invoice": invoice, "form": form,
                                                         "nav_section": "finance"}, status=status)


@manage_invoices_required
def credit_note_create_view(request, invoice_id):
    invoice = _invoice(invoice_id)
    form = CreditNoteForm(request.POST or None, invoice=invoice)
    if request.method == "POST" and form.is_valid():
        try:
            note = credit_note_issue(invoice=invoice, reason=form.cleaned_data["reason"],
                                     lines=form.cleaned_data["lines"], actor=request.user)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Credit note {note.display_number} issued: {note.total:,} USD on "
                                      f"{invoice.display_number}.")
            return redirect("finance_invoice", invoice_id=invoice.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "finance/credit_note_form.html", {
        "invoice": invoice, "form": form, "nav_section": "finance",
        "left": invoice.total - credited_total(invoice) if invoice.is_final else None,
    }, status=status)
