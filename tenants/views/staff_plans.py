"""/staff/plans/: platform admins create and edit plans. Saving takes two steps without any script: the form
posts to a review that lists each change before and after and how many workspaces are on the plan, and the
review's button posts the same values again with `confirm=yes` to save them (one audit row)."""

from decimal import Decimal

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.shortcuts import redirect, render

from ..access import platform_admin_required
from ..models import AUTO_ESCALATION_MAX, TIER_CHOICES, Plan, slug_validator
from ..plan_editing import PLAN_FIELDS, plan_changes, plan_save, plan_values, plan_workspace_count
from ._util import add_service_errors, get_or_404

NOT_NEGATIVE = {"min_value": "Cannot be negative."}


def _money(label, *, required=True, help_text=""):
    return forms.DecimalField(label=label, required=required, min_value=Decimal("0"), max_digits=12,
                              decimal_places=2, help_text=help_text, error_messages=NOT_NEGATIVE)


def _limit(label):
    return forms.IntegerField(label=label, required=False, min_value=0, max_value=2**31 - 1,
                              help_text="Empty: no limit.", error_messages=NOT_NEGATIVE)


class PlanForm(forms.Form):
    slug = forms.CharField(label="Slug", max_length=50, validators=[slug_validator],
                           help_text="Lowercase letters, digits and hyphens; fixed once the plan exists.")
    name = forms.CharField(label="Name", max_length=100)
    monthly_fee = _money("Monthly fee (USD)", help_text="Invoiced to each workspace on this plan at month end.")
    included_credit = _money("Included credit (USD a month)", help_text="Offsets usage only, never the fee.")
    markup_percent = forms.DecimalField(label="Markup (%)", min_value=Decimal("0"), max_digits=6, decimal_places=2,
                                        error_messages=NOT_NEGATIVE,
                                        help_text="Billed = provider cost × (1 + markup/100).")
    allowed_tiers = forms.MultipleChoiceField(label="Tiers", choices=TIER_CHOICES, widget=forms.CheckboxSelectMultiple,
                                              error_messages={"required": "Choose at least one tier."})
    monthly_cap = _money("Monthly spend cap (USD)", required=False, help_text="Empty: no cap.")
    max_to_auto_share = forms.DecimalField(
        label="Serve MAX on Auto from this share of the cap", required=False, min_value=Decimal("0"),
        max_value=Decimal("1"), max_digits=4, decimal_places=3, error_messages=NOT_NEGATIVE,
        help_text="0 to 1, e.g. 0.9; empty: never.")
    rpm_tenant = _limit("Requests per minute, workspace")
    tpm_tenant = _limit("Tokens per minute, workspace")
    rpm_key = _limit("Requests per minute, API key")
    tpm_key = _limit("Tokens per minute, API key")
    api_models_allowed = forms.BooleanField(label="API keys may name catalog models directly", required=False)
    auto_escalation = forms.TypedChoiceField(
        label="Default Auto escalation", coerce=int, initial=0,
        choices=[(0, "Off")] + [(level, f"Level {level}") for level in range(1, AUTO_ESCALATION_MAX + 1)],
        help_text="Only plans with MAX escalate; a workspace admin may set their own level.")

    def __init__(self, *args, plan: Plan | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.plan = plan
        if plan is not None:
            del self.fields["slug"]

    def clean_slug(self):
        slug = self.cleaned_data["slug"]
        if Plan.objects.filter(slug=slug).exists():
            raise ValidationError("A plan with this slug exists already.")
        return slug

    def values(self) -> dict:
        return {field: self.cleaned_data.get(field) for field, _ in PLAN_FIELDS}


def _render_form(request, form, plan, status=200):
    return render(request, "staff/plan_form.html", {
        "form": form, "plan": plan, "staff_section": "plans", "workspaces": plan_workspace_count(plan=plan),
    }, status=status)


def _edit(request, plan: Plan | None):
    if request.method != "POST":
        initial = plan_values(plan) if plan else {"allowed_tiers": ["auto"], "markup_percent": Decimal("30"),
                                                  "monthly_fee": Decimal("0"), "included_credit": Decimal("0")}
        return _render_form(request, PlanForm(initial=initial, plan=plan), plan)
    form = PlanForm(request.POST, plan=plan)
    if not form.is_valid() or "edit" in request.POST:
        return _render_form(request, form, plan, status=400 if form.errors else 200)
    values = form.values()
    changes = plan_changes(plan=plan, values=values)
    if plan is not None and not changes:
        messages.info(request, f"{plan.name}: nothing changed.")
        return redirect("staff_plans")
    if request.POST.get("confirm") != "yes":
        return render(request, "staff/plan_review.html", {
            "form": form, "plan": plan, "changes": changes, "staff_section": "plans",
            "workspaces": plan_workspace_count(plan=plan),
            "fee_changes": any(c["field"] == "monthly_fee" for c in changes),
        })
    try:
        saved = plan_save(plan=plan, values=values, actor=request.user, slug=form.cleaned_data.get("slug", ""))
    except ValidationError as exc:
        add_service_errors(form, exc)
        return _render_form(request, form, plan, status=400)
    messages.success(request, f"Plan {saved.name} {'saved' if plan else 'created'}.")
    return redirect("staff_plans")


@platform_admin_required
def staff_plans(request):
    plans = Plan.objects.annotate(workspaces=Count("tenants")).order_by("monthly_fee", "slug")
    return render(request, "staff/plans.html", {"plans": plans, "staff_section": "plans"})


@platform_admin_required
def staff_plan_create(request):
    return _edit(request, None)


@platform_admin_required
def staff_plan_edit(request, plan_id):
    return _edit(request, get_or_404(lambda plan_id: Plan.objects.get(pk=plan_id), plan_id=plan_id))
