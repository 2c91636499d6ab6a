"""/invite/<token>/: accept an invite link. Logged in: join. Anonymous: sign up (account only) or log in
first. A dead link (unknown, expired, used, revoked) is refused with the reason and changes nothing."""

from django.contrib import messages
from django.contrib.auth import login
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render

from ..forms import InviteSignUpForm
from ..middleware import SESSION_KEY
from ..selectors import invite_get_by_token
from ..services import INVITE_INVALID, invite_accept, invite_refusal, user_sign_up_with_invite
from ._util import add_service_errors, error_text
from .auth import MODEL_BACKEND

TEMPLATE = "tenants/invite_accept.html"


def _joined(request, membership):
    request.session[SESSION_KEY] = membership.tenant_id
    messages.success(request, f"You joined {membership.tenant.name} as {membership.role}.")
    return redirect("home")


def invite_accept_view(request, token):
    invite = invite_get_by_token(token=token)
    refusal = invite_refusal(invite)
    if refusal:
        status = 404 if refusal == INVITE_INVALID else 410
        return render(request, TEMPLATE, {"refusal": refusal}, status=status)

    context = {"invite": invite, "token": token}
    if request.user.is_authenticated:
        if request.method == "POST":
            try:
                membership = invite_accept(token=token, user=request.user)
            except ValidationError as exc:
                return render(request, TEMPLATE, {**context, "error": error_text(exc)}, status=400)
            return _joined(request, membership)
        return render(request, TEMPLATE, context)

    form = InviteSignUpForm(request.POST or None, initial={"email": invite.email})
    if request.method == "POST" and form.is_valid():
        try:
            membership = user_sign_up_with_invite(token=token, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            login(request, membership.user, backend=MODEL_BACKEND)
            return _joined(request, membership)
    return render(request, TEMPLATE, {**context, "form": form}, status=400 if form.errors else 200)
