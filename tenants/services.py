"""Writes for tenants: one function per use case, keyword-only. Each change worth auditing writes an AuditEvent
in the same transaction."""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from .keys import hash_secret, new_api_key_secret, new_invite_token
from .models import (
    AUTO_ESCALATION_MAX,
    AUTO_ESCALATION_OFF,
    TIER_MAX,
    ApiKey,
    AuditEvent,
    Invite,
    Membership,
    Plan,
    Tenant,
    User,
    slug_validator,
)
from .revocation import access_member_left, access_tenant_suspended

INVITE_INVALID = "This invite link is not valid. Ask your admin for a new one."
INVITE_USED = "This invite link has already been used. Ask your admin for a new one."
INVITE_EXPIRED = "This invite link has expired. Ask your admin for a new one."
INVITE_REVOKED = "This invite link has been revoked. Ask your admin for a new one."
ESCALATION_INVALID = f"Choose the plan default, Off, or a level from 1 to {AUTO_ESCALATION_MAX}."
ESCALATION_NO_MAX = "Your plan does not include MAX: Auto never escalates, so there is nothing to set."


def audit_record(
    *,
    actor: User | None,
    action: str,
    tenant: Tenant | None = None,
    target=None,
    before: dict | None = None,
    after: dict | None = None,
) -> AuditEvent:
    """Append one audit row. Call inside the transaction of the change it records."""
    event = audit_event(actor=actor, action=action, tenant=tenant, target=target, before=before, after=after)
    event.save(force_insert=True)
    return event


def audit_event(
    *,
    actor: User | None,
    action: str,
    tenant: Tenant | None = None,
    target=None,
    before: dict | None = None,
    after: dict | None = None,
) -> AuditEvent:
    """One audit row, not yet saved: `audit_record` appends one; a change made to many objects at once appends
    theirs with `AuditEvent.objects.bulk_create`, in the same transaction."""
    return AuditEvent(
        actor=actor if actor and actor.pk else None,
        actor_email=actor.email if actor and actor.pk else "",
        tenant=tenant,
        action=action,
        target_type=type(target).__name__.lower() if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        before=before,
        after=after,
    )


def _check_slug(slug: str) -> None:
    try:
        slug_validator(slug or "")
    except ValidationError:
        raise ValidationError({"tenant_slug": slug_validator.message}) from None
    if Tenant.objects.filter(slug=slug).exists():
        raise ValidationError({"tenant_slug": f"The slug {slug!r} is taken: choose another."})


@transaction.atomic
def tenant_create(*, slug: str, name: str, plan: Plan, admin: User, actor: User | None = None) -> Tenant:
    """Create a tenant with `admin` as its first admin. Raises ValidationError for a bad or taken slug."""
    _check_slug(slug)
    tenant = Tenant.objects.create(slug=slug, name=name, plan=plan)
    Membership.objects.create(user=admin, tenant=tenant, role=Membership.ROLE_ADMIN)
    audit_record(actor=actor or admin, action="tenant.create", tenant=tenant, target=tenant,
                 after={"slug": slug, "name": name, "plan": plan.slug})
    return tenant


def _new_user(*, email: str, password: str, name: str) -> User:
    """Create an account after checking the address and the password. Call inside a transaction."""
    email = User.objects.normalize_email((email or "").strip()).lower()
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError({"email": "Enter a valid email address, like name@example.com."}) from None
    if User.objects.filter(email__iexact=email).exists():
        raise ValidationError({"email": "An account with this email already exists. Log in instead."})
    name = (name or "").strip()[:150]
    try:
        validate_password(password, user=User(email=email, name=name))
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from None
    try:
        # A savepoint, so that losing a race on the unique address leaves the outer transaction usable.
        with transaction.atomic():
            return User.objects.create_user(email=email, password=password, name=name)
    except IntegrityError:
        raise ValidationError({"email": "An account with this email already exists. Log in instead."}) from None


@transaction.atomic
def user_sign_up(*, email: str, password: str, name: str, tenant_name: str, tenant_slug: str) -> User:
    """Sign-up: a new user and a new tenant on the Free plan, with the user as its admin.

    Raises ValidationError (keyed by field) for a malformed or taken email, a weak password, or a bad or
    taken slug; nothing is saved then.
    """
    tenant_name = (tenant_name or "").strip()
    if not tenant_name:
        raise ValidationError({"tenant_name": "Give your workspace a name."})
    _check_slug(tenant_slug)
    user = _new_user(email=email, password=password, name=name)
    free = Plan.objects.get(slug="free")
    tenant_create(slug=tenant_slug, name=tenant_name, plan=free, admin=user)
    return user


@transaction.atomic
def user_sign_up_with_invite(*, email: str, password: str, name: str, token: str) -> Membership:
    """Sign-up from an invite link: a new user who joins the invite's tenant (no tenant of their own).

    Raises ValidationError for a bad account or an invite that cannot be used; nothing is saved then.
    """
    _usable_invite(token)  # refuse a dead link before creating an account
    user = _new_user(email=email, password=password, name=name)
    return invite_accept(token=token, user=user)


@transaction.atomic
def tenant_change_plan(*, tenant: Tenant, plan: Plan, actor: User) -> Tenant:
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    if tenant.plan_id == plan.pk:
        return tenant
    before = {"plan": tenant.plan.slug}
    tenant.plan = plan
    tenant.save(update_fields=["plan"])
    audit_record(actor=actor, action="tenant.plan_change", tenant=tenant, target=tenant,
                 before=before, after={"plan": plan.slug})
    return tenant


@transaction.atomic
def tenant_set_status(*, tenant: Tenant, status: str, actor: User) -> Tenant:
    """Suspend or reactivate a tenant."""
    if status not in dict(Tenant.STATUS_CHOICES):
        raise ValidationError({"status": f"Unknown status {status!r}."})
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    if tenant.status == status:
        return tenant
    before = {"status": tenant.status}
    tenant.status = status
    tenant.save(update_fields=["status"])
    # Chat streams already open-able with a token refuse at once (tenants/revocation.py); the proxy's key
    # caches are told by proxy/auth.py's receiver of this save.
    access_tenant_suspended(tenant_id=tenant.pk, suspended=status == Tenant.STATUS_SUSPENDED)
    action = "tenant.suspend" if status == Tenant.STATUS_SUSPENDED else "tenant.reactivate"
    audit_record(actor=actor, action=action, tenant=tenant, target=tenant, before=before, after={"status": status})
    return tenant


@transaction.atomic
def tenant_escalation_set(*, tenant: Tenant, actor: User, level: int | None) -> Tenant:
    """Set the tenant's Auto-escalation dial: None follows the plan's default, 0 is Off, 1–10 a level.

    Raises ValidationError (keyed `level`) for anything else, and on a plan without MAX, where Auto never
    escalates; nothing changes then. Locks the tenant row; a change writes one `tenant.auto_escalation_change`
    audit row with the setting and the level in force before and after. Returns the tenant, re-read.
    """
    valid = level is None or (type(level) is int and AUTO_ESCALATION_OFF <= level <= AUTO_ESCALATION_MAX)
    if not valid:
        raise ValidationError({"level": ESCALATION_INVALID})
    tenant = Tenant.objects.select_for_update(of=("self",)).select_related("plan").get(pk=tenant.pk)
    if not tenant.plan.allows_tier(TIER_MAX):
        raise ValidationError({"level": ESCALATION_NO_MAX})
    if tenant.auto_escalation == level:
        return tenant
    before = {"auto_escalation": tenant.auto_escalation, "escalation_level": tenant.escalation_level}
    tenant.auto_escalation = level
    tenant.save(update_fields=["auto_escalation"])
    audit_record(actor=actor, action="tenant.auto_escalation_change", tenant=tenant, target=tenant, before=before,
                 after={"auto_escalation": level, "escalation_level": tenant.escalation_level})
    return tenant


def _admin_count(tenant: Tenant) -> int:
    return Membership.objects.filter(tenant=tenant, role=Membership.ROLE_ADMIN).count()


@transaction.atomic
def membership_change_role(*, membership: Membership, role: str, actor: User) -> Membership:
    """Change a member's role. Refuses to demote the tenant's last admin."""
    if role not in dict(Membership.ROLE_CHOICES):
        raise ValidationError({"role": f"Unknown role {role!r}."})
    # Lock the tenant's admin rows so two concurrent demotions cannot both pass the last-admin check.
    list(Membership.objects.select_for_update().filter(tenant_id=membership.tenant_id, role=Membership.ROLE_ADMIN))
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    if membership.role == role:
        return membership
    if membership.role == Membership.ROLE_ADMIN and _admin_count(membership.tenant) <= 1:
        raise ValidationError("A workspace needs at least one admin: make someone else admin first.")
    before = {"role": membership.role}
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(actor=actor, action="membership.role_change", tenant=membership.tenant, target=membership,
                 before=before, after={"role": role, "user": membership.user.email})
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor: User) -> None:
    """Remove a member. Refuses to remove the tenant's last admin."""
    list(Membership.objects.select_for_update().filter(tenant_id=membership.tenant_id, role=Membership.ROLE_ADMIN))
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    if membership.role == Membership.ROLE_ADMIN and _admin_count(membership.tenant) <= 1:
        raise ValidationError("This is the workspace's last admin: make someone else admin before removing them.")
    audit_record(actor=actor, action="membership.remove", tenant=membership.tenant, target=membership,
                 before={"user": membership.user.email, "role": membership.role})
    access_member_left(tenant_id=membership.tenant_id, user_id=membership.user_id)
    membership.delete()


@transaction.atomic
def invite_create(*, tenant: Tenant, role: str, actor: User, email: str = "") -> tuple[Invite, str]:
    """Create an invite link; returns the invite and its token (shown once, only its hash is stored)."""
    if role not in dict(Membership.ROLE_CHOICES):
        raise ValidationError({"role": f"Unknown role {role!r}."})
    token = new_invite_token()
    invite = Invite.objects.create(
        tenant=tenant,
        email=email,
        role=role,
        token_hash=hash_secret(token),
        created_by=actor,
        expires_at=timezone.now() + timedelta(hours=settings.INVITE_TTL_HOURS),
    )
    audit_record(actor=actor, action="invite.create", tenant=tenant, target=invite, after={"role": role, "email": email})
    return invite, token


def invite_refusal(invite: Invite | None) -> str | None:
    """Why an invite cannot be used now, in words for people; None when it can."""
    if invite is None:
        return INVITE_INVALID
    if invite.revoked_at is not None:
        return INVITE_REVOKED
    if invite.accepted_at is not None:
        return INVITE_USED
    if invite.expires_at <= timezone.now():
        return INVITE_EXPIRED
    return None


def _usable_invite(token: str) -> Invite:
    """The invite for `token`, locked; raises ValidationError when it cannot be used. Call in a transaction."""
    invite = Invite.objects.select_for_update().select_related("tenant").filter(token_hash=hash_secret(token or "")).first()
    refusal = invite_refusal(invite)
    if refusal:
        raise ValidationError(refusal)
    return invite


@transaction.atomic
def invite_accept(*, token: str, user: User) -> Membership:
    """Join the invite's tenant. Raises ValidationError for an unknown, expired, revoked or used link,
    for a link addressed to someone else, and when the user already belongs to the tenant."""
    invite = _usable_invite(token)
    if invite.email and invite.email.lower() != user.email.lower():
        raise ValidationError(f"This invite is for {invite.email}. Log in with that address to accept it.")
    if Membership.objects.filter(user=user, tenant=invite.tenant).exists():
        raise ValidationError(f"You are already a member of {invite.tenant.name}.")
    membership = Membership.objects.create(user=user, tenant=invite.tenant, role=invite.role)
    invite.accepted_at = timezone.now()
    invite.accepted_by = user
    invite.save(update_fields=["accepted_at", "accepted_by"])
    audit_record(actor=user, action="membership.join", tenant=invite.tenant, target=membership,
                 after={"user": user.email, "role": invite.role})
    return membership


@transaction.atomic
def invite_revoke(*, invite: Invite, actor: User) -> Invite:
    """Revoke an unused invite link. Revoking an already revoked or used one changes nothing."""
    invite = Invite.objects.select_for_update().get(pk=invite.pk)
    if invite.revoked_at is not None or invite.accepted_at is not None:
        return invite
    invite.revoked_at = timezone.now()
    invite.save(update_fields=["revoked_at"])
    audit_record(actor=actor, action="invite.revoke", tenant=invite.tenant, target=invite,
                 before={"role": invite.role, "email": invite.email})
    return invite


@transaction.atomic
def membership_create(*, tenant: Tenant, user: User, role: str, actor: User) -> Membership:
    """Add an existing user to a tenant (staff, from the admin). Members normally join by invite."""
    if role not in dict(Membership.ROLE_CHOICES):
        raise ValidationError({"role": f"Unknown role {role!r}."})
    if Membership.objects.filter(user=user, tenant=tenant).exists():
        raise ValidationError(f"{user.email} is already a member of {tenant.name}.")
    membership = Membership.objects.create(user=user, tenant=tenant, role=role)
    audit_record(actor=actor, action="membership.add", tenant=tenant, target=membership,
                 after={"user": user.email, "role": role})
    return membership


@transaction.atomic
def api_key_create(*, tenant: Tenant, name: str, created_by: User) -> tuple[ApiKey, str]:
    """Create an API key acting as `created_by`; returns the key and its secret (shown once)."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Give the key a name, e.g. the program that will use it."})
    secret, prefix = new_api_key_secret()
    key = ApiKey.objects.create(tenant=tenant, name=name[:100], prefix=prefix, key_hash=hash_secret(secret),
                                created_by=created_by)
    audit_record(actor=created_by, action="api_key.create", tenant=tenant, target=key,
                 after={"name": key.name, "prefix": prefix})
    return key, secret


@transaction.atomic
def api_key_rename(*, api_key: ApiKey, name: str, actor: User) -> ApiKey:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Give the key a name, e.g. the program that will use it."})
    api_key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if api_key.name == name[:100]:
        return api_key
    before = {"name": api_key.name}
    api_key.name = name[:100]
    api_key.save(update_fields=["name"])
    audit_record(actor=actor, action="api_key.rename", tenant=api_key.tenant, target=api_key,
                 before=before, after={"name": api_key.name})
    return api_key


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey, actor: User) -> ApiKey:
    api_key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if api_key.revoked_at is not None:
        return api_key
    api_key.revoked_at = timezone.now()
    api_key.save(update_fields=["revoked_at"])
    audit_record(actor=actor, action="api_key.revoke", tenant=api_key.tenant, target=api_key,
                 before={"name": api_key.name, "prefix": api_key.prefix})
    return api_key
