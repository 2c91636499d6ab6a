"""/alerts/: a workspace admin's budget alerts — thresholds, webhook URL and signing secret, the alerts sent and
the webhook delivery log with replay. Plain forms (post/redirect/get); bad input is shown on the form (400) and
changes nothing."""

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from billing.budget import cached_month_spend
from tenants.access import tenant_admin_required
from tenants.views._util import add_service_errors, error_text, get_or_404

from .models import DEFAULT_THRESHOLDS
from .selectors import alert_event_list, alert_settings_get, webhook_delivery_get, webhook_delivery_list
from .services import alert_secret_rotate, alert_settings_update, webhook_replay


class AlertSettingsForm(forms.Form):
    thresholds = forms.CharField(
        label="Thresholds (% of the monthly cap)", required=False, max_length=100,
        help_text="Comma-separated, increasing, each from 1 to 100. Empty: no alerts.")
    webhook_url = forms.CharField(
        label="Webhook URL", required=False, max_length=500,
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/kiwiclaw-alerts"}),
        help_text="Optional. Each alert is POSTed here as signed JSON; empty: email only.")


def _page(request, *, form=None, status=200):
    tenant = request.tenant
    row = alert_settings_get(tenant=tenant)
    thresholds = list(row.thresholds) if row else list(DEFAULT_THRESHOLDS)
    form = form or AlertSettingsForm(initial={"thresholds": ", ".join(map(str, thresholds)),
                                              "webhook_url": row.webhook_url if row else ""})
    cap = tenant.plan.monthly_cap
    context = {
        "form": form, "settings_row": row, "thresholds": thresholds, "cap": cap,
        "spend": cached_month_spend(tenant_id=tenant.pk) if cap is not None else None,
        "events": alert_event_list(tenant=tenant)[:24],
        "deliveries": webhook_delivery_list(tenant=tenant)[:50],
    }
    return render(request, "alerts/alerts.html", context, status=status)


@tenant_admin_required
def alerts_view(request):
    if request.method != "POST":
        return _page(request)
    form = AlertSettingsForm(request.POST)
    if form.is_valid():
        try:
            alert_settings_update(tenant=request.tenant, actor=request.user, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, "Alert settings saved.")
            return redirect("alerts")
    return _page(request, form=form, status=400)


@tenant_admin_required
@require_POST
def alerts_secret_rotate_view(request):
    alert_secret_rotate(tenant=request.tenant, actor=request.user)
    messages.success(request, "New signing secret: update your receiver. Deliveries from now on use it.")
    return redirect("alerts")


@tenant_admin_required
def alerts_delivery_view(request, delivery_id):
    delivery = get_or_404(webhook_delivery_get, tenant=request.tenant, delivery_id=delivery_id)
    return render(request, "alerts/delivery.html", {"delivery": delivery, "attempts": delivery.attempt_log.all()})


@tenant_admin_required
@require_POST
def alerts_delivery_replay_view(request, delivery_id):
    delivery = get_or_404(webhook_delivery_get, tenant=request.tenant, delivery_id=delivery_id)
    try:
        webhook_replay(delivery=delivery, actor=request.user)
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, f"Alert {delivery.event.threshold}% of {delivery.event.month:%B %Y} queued "
                                  f"for delivery again.")
    return redirect("alerts")
