"""Users, plans, tenants, memberships, invites, API keys and the audit log.

Tenant-owned rows carry a `tenant` foreign key; they are read through `tenants.selectors`, which always take
the tenant, so another tenant's id answers like a missing one.
"""

from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models.functions import Lower, Now
from django.utils import timezone

TIER_AUTO = "auto"
TIER_MAX = "max"
TIER_CHOICES = [(TIER_AUTO, "Auto"), (TIER_MAX, "MAX")]

# The "Auto escalation" dial: 0 is Off, 1–10 escalate a growing share of Auto turns (routing.smart calibrates
# each level to a share of turns).
AUTO_ESCALATION_OFF = 0
AUTO_ESCALATION_MAX = 10

slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$",
    "Use 1–50 lowercase letters, digits or hyphens, starting and ending with a letter or digit.",
)


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email, password, **extra):
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def get_by_natural_key(self, email):
        # People type their address with any capitalisation; addresses are stored lowercased.
        return self.get(email__iexact=email)

    def create_superuser(self, email, password=None, **extra):
        extra["is_staff"] = True
        extra["is_superuser"] = True
        return self._create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person. Logs in with an email address; belongs to tenants through memberships."""

    email = models.EmailField(unique=True)
    name = models.CharField(max_length=150, blank=True)
    is_staff = models.BooleanField(default=False, help_text="Can log into the Django admin.")
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["email"]
        constraints = [models.UniqueConstraint(Lower("email"), name="user_email_ci_unique")]

    def __str__(self):
        return self.email

    @property
    def display_name(self) -> str:
        return self.name or self.email


class Plan(models.Model):
    """The tier a tenant pays for: which model tiers it may use, its prices, limits and caps."""

    slug = models.SlugField(max_length=50, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=100)
    allowed_tiers = ArrayField(
        models.CharField(max_length=10, choices=TIER_CHOICES),
        default=list,
        help_text="Tiers this plan may use: auto, max.",
    )
    api_models_allowed = models.BooleanField(
        default=False, help_text="API keys may name catalog model endpoints directly."
    )
    monthly_fee = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0"))
    included_credit = models.DecimalField(
        max_digits=12, decimal_places=2, default=Decimal("0"), help_text="USD of billed usage included each month."
    )
    monthly_cap = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Hard monthly spend cap in billed USD; empty means no cap.",
    )
    rpm_tenant = models.PositiveIntegerField(null=True, blank=True, help_text="Requests per minute per tenant.")
    tpm_tenant = models.PositiveIntegerField(null=True, blank=True, help_text="Tokens per minute per tenant.")
    rpm_key = models.PositiveIntegerField(null=True, blank=True, help_text="Requests per minute per API key.")
    tpm_key = models.PositiveIntegerField(null=True, blank=True, help_text="Tokens per minute per API key.")
    markup_percent = models.DecimalField(
        max_digits=6,
        decimal_places=2,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Billed amount = provider cost × (1 + markup/100).",
    )
    max_to_auto_share = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
        help_text="Share of the cap (0–1) after which MAX requests are served on Auto; empty means never.",
    )
    auto_escalation = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(AUTO_ESCALATION_MAX)],
        help_text="Default Auto-escalation level for the plan's tenants: 0 is Off, 1–10 send a growing share of "
                  "Auto turns that need it to the MAX chain. Only plans that include MAX escalate.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["monthly_fee", "slug"]

    def __str__(self):
        return self.name

    def allows_tier(self, tier: str) -> bool:
        return tier in self.allowed_tiers

    @property
    def escalation_default(self) -> int:
        """The plan's default Auto-escalation level in force: 0 (Off) on a plan without MAX."""
        return self.auto_escalation if self.allows_tier(TIER_MAX) else AUTO_ESCALATION_OFF


class Tenant(models.Model):
    STATUS_ACTIVE = "active"
    STATUS_SUSPENDED = "suspended"
    STATUS_CHOICES = [(STATUS_ACTIVE, "Active"), (STATUS_SUSPENDED, "Suspended")]

    slug = models.SlugField(max_length=50, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=100)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="tenants")
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default=STATUS_ACTIVE)
    auto_escalation = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(AUTO_ESCALATION_MAX)],
        help_text="The tenant admin's Auto-escalation dial (0 Off, 1–10); empty follows the plan's default.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        permissions = [("manage_tenants", "Can manage tenants and plans from the staff console")]

    def __str__(self):
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status == self.STATUS_ACTIVE

    @property
    def escalation_level(self) -> int:
        """The dial in force: the tenant's own setting, else its plan's default; 0 (Off) on a plan without MAX."""
        if self.auto_escalation is None or not self.plan.allows_tier(TIER_MAX):
            return self.plan.escalation_default
        return self.auto_escalation


class SpendLimits(models.Model):
    """A monthly spend limit and allowed tiers narrower than the plan's, for a member or an API key.

    Both are optional: an empty limit means none beyond the workspace's cap, and empty tiers follow the plan.
    Tiers are only ever narrowed: the plan is checked first, then these. `limits_changed_at` names the version
    of the limit the budget counts against (billing.budget: a changed limit starts a counter seeded from the
    ledger, so a counter left from before cannot be trusted by mistake)."""

    monthly_limit = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(Decimal("0"))],
        help_text="Monthly spend limit in billed USD; empty means only the workspace's cap applies.",
    )
    allowed_tiers = ArrayField(
        models.CharField(max_length=10, choices=TIER_CHOICES), null=True, blank=True,
        help_text="Tiers allowed, narrower than the plan's; empty follows the plan.",
    )
    limits_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    def allows_tier(self, tier: str) -> bool:
        return self.allowed_tiers is None or tier in self.allowed_tiers


class Membership(SpendLimits):
    ROLE_MEMBER = "member"
    ROLE_ADMIN = "admin"
    ROLE_CHOICES = [(ROLE_MEMBER, "Member"), (ROLE_ADMIN, "Admin")]

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=ROLE_CHOICES, default=ROLE_MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant__name", "user__email"]
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="membership_user_tenant_unique")]

    def __str__(self):
        return f"{self.user} in {self.tenant} ({self.role})"

    @property
    def is_admin(self) -> bool:
        return self.role == self.ROLE_ADMIN


class Invite(models.Model):
    """An invite link to join a tenant. Only a hash of the link's token is stored."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="invites")
    email = models.EmailField(blank=True, help_text="Optional: who the link is meant for.")
    role = models.CharField(max_length=10, choices=Membership.ROLE_CHOICES, default=Membership.ROLE_MEMBER)
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"Invite to {self.tenant} ({self.role})"


class ApiKey(SpendLimits):
    """A tenant API key. It acts as the member who created it. Only a SHA-256 of the secret is stored.
    An expired key (`expires_at` passed) is refused like a revoked one."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, db_index=True, help_text="The visible start of the key.")
    key_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(User, on_delete=models.PROTECT, related_name="api_keys")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Optional: refused from this moment on.")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()


class AuditEvent(models.Model):
    """Append-only audit log. A database trigger (migration 0002) refuses UPDATE and DELETE."""

    actor = models.ForeignKey(User, on_delete=models.DO_NOTHING, db_constraint=False, null=True, related_name="+")
    actor_email = models.CharField(max_length=254, blank=True, help_text="Kept even if the user is deleted.")
    tenant = models.ForeignKey(
        Tenant, on_delete=models.DO_NOTHING, db_constraint=False, null=True, blank=True, related_name="+"
    )
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now(), editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="audit_tenant_created")]

    def __str__(self):
        return f"{self.action} by {self.actor_email or 'system'}"
