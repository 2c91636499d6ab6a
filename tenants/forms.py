"""Forms parse and check input; the services do the work and have the last word."""

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.password_validation import password_validators_help_text_html

from .models import Membership, Plan, Tenant, slug_validator


class LoginForm(AuthenticationForm):
    username = forms.EmailField(label="Email", widget=forms.EmailInput(attrs={"autofocus": True,
                                                                            "autocomplete": "email"}))
    error_messages = {
        "invalid_login": "That email and password do not match an account. Check both and try again.",
        "inactive": "This account is disabled.",
    }


class AccountFields(forms.Form):
    email = forms.EmailField(label="Email", widget=forms.EmailInput(attrs={"autocomplete": "email"}),
                             error_messages={"invalid": "Enter a valid email address, like name@example.com."})
    name = forms.CharField(label="Your name", max_length=150, required=False,
                           widget=forms.TextInput(attrs={"autocomplete": "name"}))
    password = forms.CharField(label="Password", strip=False, help_text=password_validators_help_text_html(),
                               widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))


class SignUpForm(AccountFields):
    tenant_name = forms.CharField(label="Workspace name", max_length=100)
    tenant_slug = forms.CharField(
        label="Workspace slug", max_length=50, validators=[slug_validator],
        help_text="Lowercase letters, digits and hyphens, e.g. acme-labs.",
    )


class InviteSignUpForm(AccountFields):
    """Sign-up from an invite link: the account only, the workspace comes from the invite."""


class InviteCreateForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.ROLE_CHOICES, initial=Membership.ROLE_MEMBER)
    email = forms.EmailField(label="For (optional)", required=False,
                             help_text="Only this address may use the link when given.")


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.ROLE_CHOICES)


class ApiKeyForm(forms.Form):
    name = forms.CharField(label="Name", max_length=100,
                           widget=forms.TextInput(attrs={"placeholder": "e.g. billing-agent"}))


class TenantPlanForm(forms.Form):
    plan = forms.ModelChoiceField(queryset=Plan.objects.all(), to_field_name="slug", empty_label=None)


class TenantStatusForm(forms.Form):
    status = forms.ChoiceField(choices=Tenant.STATUS_CHOICES)
