"""Log in, sign up, password reset. There is no outgoing mail: a reset link is logged, and shown on screen
when DEBUG is on. Logging in and asking for a reset are throttled per account and per address
(tenants/throttle.py)."""

import logging

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordResetForm
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from .. import throttle
from ..forms import LoginForm, SignUpForm
from ..middleware import SESSION_KEY
from ..revocation import access_user_sessions_ended
from ..services import user_sign_up
from ._util import add_service_errors
from .home import landing_url

logger = logging.getLogger("tenants.auth")

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


class LoginView(auth_views.LoginView):
    """Django's login, throttled: an account or address over its limit is refused before the password is
    checked, with a 429 page; a successful login gives its attempt back."""

    authentication_form = LoginForm
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        self.attempt = throttle.throttle_attempt(request, what=throttle.LOGIN,
                                                 account=request.POST.get("username", ""))
        if self.attempt.refusal is not None:
            return throttle.throttled_response(request, self.attempt.refusal)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        self.attempt.forgive()
        return super().form_valid(form)

    def get_default_redirect_url(self):
        # With no `next`: the chat for members, /staff/ or /finance/ for those who run KiwiClaw.
        return landing_url(self.request.user)


class AdminLoginView(LoginView):
    """The admin's own sign-in form (`/admin/login/`), throttled like the site's: Django's admin login is not."""

    authentication_form = AdminAuthenticationForm
    template_name = "admin/login.html"
    redirect_authenticated_user = False  # a signed-in member who is not staff sees admin's "not authorized"

    def get(self, request, *args, **kwargs):
        if admin.site.has_permission(request):
            return redirect("admin:index")
        return super().get(request, *args, **kwargs)

    def get_redirect_url(self):
        return super().get_redirect_url() or reverse("admin:index")

    def get_context_data(self, **kwargs):
        return {**admin.site.each_context(self.request), **super().get_context_data(**kwargs), "title": "Log in",
                "subtitle": None, "app_path": self.request.get_full_path(),
                "username": self.request.user.get_username()}


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's password change; the user's other sessions end, and so do the chat streams they could open."""

    def form_valid(self, form):
        access_user_sessions_ended(user_id=form.user.pk)
        return super().form_valid(form)


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's reset link; setting a new password ends the user's sessions and their chat streams."""

    def form_valid(self, form):
        access_user_sessions_ended(user_id=form.user.pk)
        return super().form_valid(form)


def signup(request):
    if request.user.is_authenticated:
        return redirect("home")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = user_sign_up(**form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            login(request, user, backend=MODEL_BACKEND)
            membership = user.memberships.select_related("tenant").get()
            request.session[SESSION_KEY] = membership.tenant_id
            messages.success(request, f"Welcome! {membership.tenant.name} is ready on the Free plan.")
            return redirect("home")
    return render(request, "registration/signup.html", {"form": form}, status=400 if form.errors else 200)


def password_reset(request):
    """Ask for a reset link. The answer is the same whether or not the address has an account."""
    if request.method == "POST":
        attempt = throttle.throttle_attempt(request, what=throttle.PASSWORD_RESET,
                                            account=request.POST.get("email", ""))
        if attempt.refusal is not None:
            return throttle.throttled_response(request, attempt.refusal)
    form = PasswordResetForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        links = []
        for user in form.get_users(form.cleaned_data["email"]):
            uid = urlsafe_base64_encode(force_bytes(user.pk))
            token = default_token_generator.make_token(user)
            link = request.build_absolute_uri(reverse("password_reset_confirm", args=[uid, token]))
            # No mail is sent: operators hand the logged link over when someone asks.
            logger.info("Password reset link for %s: %s", user.email, link)
            links.append(link)
        return render(request, "registration/password_reset_done.html",
                      {"links": links if settings.DEBUG else [], "debug": settings.DEBUG})
    return render(request, "registration/password_reset_form.html", {"form": form},
                  status=400 if form.errors else 200)
