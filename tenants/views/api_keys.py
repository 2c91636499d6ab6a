"""/api-keys/: a tenant admin creates, renames and revokes the tenant's API keys. The secret is shown once,
in the response that created it."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from ..access import tenant_admin_required
from ..forms import ApiKeyForm
from ..selectors import api_key_get, api_key_list
from ..services import api_key_create, api_key_rename, api_key_revoke
from ._util import error_text, get_or_404

TEMPLATE = "tenants/api_keys.html"


def _render(request, *, status=200, form=None, **extra):
    # The examples name this server's own /v1, as the browser reached it.
    context = {"keys": api_key_list(tenant=request.tenant), "form": form or ApiKeyForm(),
               "api_base": request.build_absolute_uri("/v1"), **extra}
    template = f"{TEMPLATE}#panel" if request.htmx else TEMPLATE
    return render(request, template, context, status=status)


def _done(request):
    return _render(request) if request.htmx else redirect("api_keys")


@tenant_admin_required
def api_keys(request):
    return _render(request)


@tenant_admin_required
@require_POST
def api_key_create_view(request):
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        return _render(request, form=form, status=200 if request.htmx else 400)
    try:
        key, secret = api_key_create(tenant=request.tenant, name=form.cleaned_data["name"],
                                     created_by=request.user)
    except ValidationError as exc:
        form.add_error("name", error_text(exc))
        return _render(request, form=form, status=200 if request.htmx else 400)
    return _render(request, new_key=key, new_secret=secret)


@tenant_admin_required
@require_POST
def api_key_rename_view(request, api_key_id):
    key = get_or_404(api_key_get, tenant=request.tenant, api_key_id=api_key_id)
    try:
        api_key_rename(api_key=key, name=request.POST.get("name", ""), actor=request.user)
    except ValidationError as exc:
        messages.error(request, error_text(exc))
    else:
        messages.success(request, "Key renamed.")
    return _done(request)


@tenant_admin_required
@require_POST
def api_key_revoke_view(request, api_key_id):
    key = get_or_404(api_key_get, tenant=request.tenant, api_key_id=api_key_id)
    api_key_revoke(api_key=key, actor=request.user)
    messages.success(request, f"Key “{key.name}” revoked: requests with it are now refused.")
    return _done(request)
