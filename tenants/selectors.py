"""Reads for tenants. Every read of tenant-owned data takes the tenant."""

from django.db.models import Count, QuerySet

from .keys import hash_secret
from .models import ApiKey, AuditEvent, Invite, Membership, Plan, Tenant, User


def membership_list_for_user(*, user: User) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user).select_related("tenant", "tenant__plan").order_by("tenant__name")


def membership_get_for_user(*, user: User, tenant_id) -> Membership | None:
    """The user's membership of one tenant (there is at most one), with the tenant and its plan. Read on every
    page and form post by the tenant middleware: no ordering, no join beyond the two it needs."""
    rows = list(Membership.objects.select_related("tenant__plan").filter(user=user, tenant_id=tenant_id).order_by()[:1])
    if not rows:
        return None
    rows[0].user = user
    return rows[0]


def membership_list(*, tenant: Tenant) -> QuerySet[Membership]:
    return Membership.objects.filter(tenant=tenant).select_related("user").order_by("user__email")


def membership_get(*, tenant: Tenant, membership_id) -> Membership:
    """Raises Membership.DoesNotExist for a missing id and for another tenant's id alike."""
    return membership_list(tenant=tenant).get(pk=membership_id)


def invite_list(*, tenant: Tenant) -> QuerySet[Invite]:
    return Invite.objects.filter(tenant=tenant).select_related("created_by", "accepted_by")


def invite_get(*, tenant: Tenant, invite_id) -> Invite:
    return invite_list(tenant=tenant).get(pk=invite_id)


def invite_get_by_token(*, token: str) -> Invite | None:
    """The invite a link's token opens, in any tenant: holding the token is what grants access to it."""
    return Invite.objects.select_related("tenant", "created_by").filter(token_hash=hash_secret(token or "")).first()


def membership_first_admin(*, tenant: Tenant) -> Membership | None:
    return (Membership.objects.filter(tenant=tenant, role=Membership.ROLE_ADMIN)
            .select_related("user").order_by("created_at", "pk").first())


def api_key_list(*, tenant: Tenant) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(tenant=tenant).select_related("created_by")


def api_key_get(*, tenant: Tenant, api_key_id) -> ApiKey:
    return api_key_list(tenant=tenant).get(pk=api_key_id)


def audit_list(*, tenant: Tenant) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(tenant=tenant).select_related("actor")


def audit_get(*, tenant: Tenant, event_id) -> AuditEvent:
    return audit_list(tenant=tenant).get(pk=event_id)


def tenant_list_all_tenants() -> QuerySet[Tenant]:
    """Staff only: every tenant with its plan and member count."""
    return Tenant.objects.select_related("plan").annotate(member_count=Count("memberships")).order_by("name")


def tenant_get_all_tenants(*, tenant_id) -> Tenant:
    """Staff only: any tenant by id. Raises Tenant.DoesNotExist."""
    return tenant_list_all_tenants().get(pk=tenant_id)


def audit_list_all_tenants(*, tenant_id=None, action: str = "") -> QuerySet[AuditEvent]:
    """Staff only: the audit log across tenants, newest first, optionally narrowed to one tenant or action."""
    events = AuditEvent.objects.select_related("tenant")
    if tenant_id:
        events = events.filter(tenant_id=tenant_id)
    if action:
        events = events.filter(action=action)
    return events


def plan_list() -> QuerySet[Plan]:
    return Plan.objects.all()


def tenant_choices_all_tenants() -> QuerySet[Tenant]:
    """Staff only: id and name of every tenant, for filters."""
    return Tenant.objects.order_by("name").only("id", "name")
