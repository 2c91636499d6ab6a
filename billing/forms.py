"""Forms for finance's invoice operations. They parse; billing.invoice_actions has the last word."""

from decimal import Decimal

from django import forms

from .invoice_actions import CREDIT_LINES_MAX, DESCRIPTION_MAX, REASON_MAX

CREDIT_FORM_LINES = 3


class ReasonForm(forms.Form):
    reason = forms.CharField(label="Reason", max_length=REASON_MAX, widget=forms.Textarea(attrs={"rows": 3}),
                             error_messages={"required": "Give a reason: it is kept with the document."})


class CreditNoteForm(ReasonForm):
    """A reason and up to CREDIT_FORM_LINES lines of (description, amount to credit); blank rows are skipped."""

    def __init__(self, *args, invoice=None, **kwargs):
        super().__init__(*args, **kwargs)
        for i in range(CREDIT_FORM_LINES):
            self.fields[f"description_{i}"] = forms.CharField(
                label=f"Line {i + 1}", max_length=DESCRIPTION_MAX, required=False,
                initial=f"Credit on invoice {invoice.display_number}" if invoice is not None and i == 0 else "")
            self.fields[f"amount_{i}"] = forms.DecimalField(
                label=f"Amount of line {i + 1} (USD)", required=False, max_digits=12, decimal_places=2,
                min_value=Decimal("0.01"),
                error_messages={"min_value": "Enter the amount to credit as a positive number, e.g. 12.50."})

    def rows(self):
        return [(self[f"description_{i}"], self[f"amount_{i}"]) for i in range(CREDIT_FORM_LINES)]

    def clean(self):
        data = super().clean()
        lines = []
        for i in range(CREDIT_FORM_LINES):
            description, amount = (data.get(f"description_{i}") or "").strip(), data.get(f"amount_{i}")
            if f"amount_{i}" in self.errors:
                continue
            if amount is None and not description:
                continue
            if amount is None:
                self.add_error(f"amount_{i}", "Enter the amount to credit on this line.")
            elif not description:
                self.add_error(f"description_{i}", "Describe what this line credits.")
            else:
                lines.append((description, amount))
        if not lines and not self.errors:
            raise forms.ValidationError("Enter at least one line: what is credited and how much.")
        data["lines"] = lines[:CREDIT_LINES_MAX]
        return data
