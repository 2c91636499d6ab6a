"""Django admin for staff. Changes that the audit log records go through the services, so each writes
exactly one audit row; secrets and their hashes are never shown; the audit log is read-only."""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count
from django.forms.models import model_to_dict

from .models import TIER_MAX, ApiKey, AuditEvent, Invite, Membership, Plan, Tenant, User
from .revocation import access_user_sessions_ended
from .services import (
    api_key_revoke,
    audit_record,
    invite_revoke,
    membership_change_role,
    membership_create,
    tenant_change_plan,
    tenant_escalation_set,
    tenant_set_status,
)


class UserCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)


class UserEditForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    form = UserEditForm
    add_form = UserCreationForm
    ordering = ("email",)
    list_display = ("email", "name", "is_staff", "is_superuser", "is_active", "date_joined")
    list_filter = ("is_staff", "is_superuser", "is_active", "groups")
    search_fields = ("email", "name")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("name",)}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)

    @transaction.atomic
    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data and not obj.is_active:
            # A deactivated user's open stream links stop on the fast path too (tenants/revocation.py).
            access_user_sessions_ended(user_id=obj.pk)


PLAN_AUDITED_FIELDS = ["name", "allowed_tiers", "api_models_allowed", "monthly_fee", "included_credit",
                       "monthly_cap", "rpm_tenant", "tpm_tenant", "rpm_key", "tpm_key", "markup_percent",
                       "max_to_auto_share", "auto_escalation"]


def _plain(values: dict) -> dict:
    # JSON-safe (Decimals as strings) for the audit row.
    return {key: (str(value) if value is not None and not isinstance(value, (bool, int, list)) else value)
            for key, value in values.items()}


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "allowed_tiers", "monthly_fee", "included_credit", "monthly_cap",
                    "markup_percent", "auto_escalation", "tenant_count")
    search_fields = ("slug", "name")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_tenant_count=Count("tenants"))

    @admin.display(description="Tenants", ordering="_tenant_count")
    def tenant_count(self, obj):
        return obj._tenant_count

    @transaction.atomic
    def save_model(self, request, obj, form, change):
        # Price and limit changes are audited like plan moves: finance needs to know when a price changed.
        before = model_to_dict(Plan.objects.get(pk=obj.pk), fields=PLAN_AUDITED_FIELDS) if change else None
        super().save_model(request, obj, form, change)
        after = model_to_dict(obj, fields=PLAN_AUDITED_FIELDS)
        if before != after:
            changed = [key for key in after if before is None or before[key] != after[key]]
            audit_record(actor=request.user, action="plan.change" if change else "plan.create", target=obj,
                         before=_plain({k: before[k] for k in changed}) if before else None,
                         after=_plain({k: after[k] for k in changed}))


class TenantForm(forms.ModelForm):
    class Meta:
        model = Tenant
        fields = ("slug", "name", "plan", "status", "auto_escalation")

    def clean(self):
        cleaned = super().clean()
        # The service refuses too; checking here shows the refusal on the form instead of an error page.
        plan = cleaned.get("plan")
        if "auto_escalation" in self.changed_data and plan is not None and not plan.allows_tier(TIER_MAX):
            self.add_error("auto_escalation", f"{plan.name} does not include MAX: Auto never escalates on it.")
        return cleaned


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    form = TenantForm
    list_display = ("name", "slug", "plan", "status", "member_count", "created_at")
    list_filter = ("plan", "status")
    search_fields = ("name", "slug")
    list_select_related = ("plan",)
    actions = ["suspend", "reactivate"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_member_count=Count("memberships"))

    def get_readonly_fields(self, request, obj=None):
        # The slug names the tenant in commands and URLs; it does not change after creation.
        return ("slug", "created_at") if obj else ("created_at",)

    def has_delete_permission(self, request, obj=None):
        # Tenants are suspended, not deleted: their usage ledger and invoices must stay whole.
        return False

    @admin.display(description="Members", ordering="_member_count")
    def member_count(self, obj):
        return obj._member_count

    @transaction.atomic
    def save_model(self, request, obj, form, change):
        if not change:
            super().save_model(request, obj, form, change)
            audit_record(actor=request.user, action="tenant.create", tenant=obj, target=obj,
                         after={"slug": obj.slug, "name": obj.name, "plan": obj.plan.slug, "status": obj.status,
                                "auto_escalation": obj.auto_escalation})
            return
        # Plan, status and the Auto-escalation dial go through their services (one audit row each); the rest is
        # saved plainly. The dial is set after the plan move: the service checks it against the plan in force.
        new_plan, new_status, new_escalation = obj.plan, obj.status, obj.auto_escalation
        stored = Tenant.objects.get(pk=obj.pk)
        obj.plan, obj.status, obj.auto_escalation = stored.plan, stored.status, stored.auto_escalation
        plain_fields = [name for name in form.changed_data if name not in ("plan", "status", "auto_escalation")]
        if plain_fields:
            obj.save(update_fields=plain_fields)
        if new_plan.pk != stored.plan_id:
            obj.plan = tenant_change_plan(tenant=obj, plan=new_plan, actor=request.user).plan
        if new_status != stored.status:
            obj.status = tenant_set_status(tenant=obj, status=new_status, actor=request.user).status
        if new_escalation != stored.auto_escalation:
            obj.auto_escalation = tenant_escalation_set(tenant=obj, actor=request.user,
                                                        level=new_escalation).auto_escalation

    @admin.action(description="Suspend selected tenants", permissions=["change"])
    def suspend(self, request, queryset):
        for tenant in queryset:
            tenant_set_status(tenant=tenant, status=Tenant.STATUS_SUSPENDED, actor=request.user)
        self.message_user(request, f"Suspended {queryset.count()} tenant(s).")

    @admin.action(description="Reactivate selected tenants", permissions=["change"])
    def reactivate(self, request, queryset):
        for tenant in queryset:
            tenant_set_status(tenant=tenant, status=Tenant.STATUS_ACTIVE, actor=request.user)
        self.message_user(request, f"Reactivated {queryset.count()} tenant(s).")


class MembershipForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ("user", "tenant", "role")

    def clean(self):
        cleaned = super().clean()
        # The service refuses too; checking here shows the refusal on the form instead of an error page.
        if self.instance.pk and self.instance.role == Membership.ROLE_ADMIN and cleaned.get("role") != Membership.ROLE_ADMIN:
            admins = Membership.objects.filter(tenant_id=self.instance.tenant_id, role=Membership.ROLE_ADMIN).count()
            if admins <= 1:
                raise ValidationError("A tenant needs at least one admin: make someone else admin first.")
        if not self.instance.pk and cleaned.get("user") and cleaned.get("tenant"):
            if Membership.objects.filter(user=cleaned["user"], tenant=cleaned["tenant"]).exists():
                raise ValidationError("This user is already a member of this tenant.")
        return cleaned


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    form = MembershipForm
    list_display = ("user", "tenant", "role", "created_at")
    list_filter = ("role", "tenant")
    search_fields = ("user__email", "tenant__slug", "tenant__name")
    list_select_related = ("user", "tenant")
    autocomplete_fields = ("user", "tenant")

    def get_readonly_fields(self, request, obj=None):
        return ("user", "tenant", "created_at") if obj else ()

    def has_delete_permission(self, request, obj=None):
        # Members are removed from the tenant's Team page, where the last-admin rule is explained.
        return False

    def save_model(self, request, obj, form, change):
        if change:
            membership_change_role(membership=obj, role=obj.role, actor=request.user)
        else:
            created = membership_create(tenant=obj.tenant, user=obj.user, role=obj.role, actor=request.user)
            obj.pk = created.pk


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin):
    list_display = ("tenant", "role", "email", "created_by", "created_at", "expires_at", "accepted_by", "revoked_at")
    list_filter = ("role", "tenant")
    search_fields = ("tenant__slug", "email")
    list_select_related = ("tenant", "created_by", "accepted_by")
    fields = ("tenant", "role", "email", "created_by", "created_at", "expires_at", "accepted_at", "accepted_by",
              "revoked_at")  # never token_hash
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request):
        # The link is shown once to whoever creates it: tenant admins do that on /team/.
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke selected invites", permissions=["change"])
    def revoke(self, request, queryset):
        for invite in queryset:
            invite_revoke(invite=invite, actor=request.user)
        self.message_user(request, "Revoked the selected open invites.", messages.SUCCESS)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "tenant", "prefix", "created_by", "created_at", "last_used_at", "revoked_at")
    list_filter = ("tenant",)
    search_fields = ("name", "prefix", "tenant__slug")
    list_select_related = ("tenant", "created_by")
    fields = ("name", "tenant", "prefix", "created_by", "created_at", "last_used_at", "revoked_at")  # never key_hash
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request):
        # The secret is shown once to its creator: use /api-keys/ or `manage.py create_api_key`.
        return False

    def has_delete_permission(self, request, obj=None):
        # Revoked, never deleted: usage rows point at keys.
        return False

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request, queryset):
        for key in queryset:
            api_key_revoke(api_key=key, actor=request.user)
        self.message_user(request, "Revoked the selected keys.", messages.SUCCESS)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "action", "actor_email", "tenant", "target_type", "target_id")
    list_filter = ("action",)
    search_fields = ("action", "actor_email", "target_id")
    list_select_related = ("tenant",)
    fields = ("created_at", "action", "actor_email", "tenant", "target_type", "target_id", "before", "after")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
