"""The usage ledger and invoices.

`UsageRecord` is append-only (a database trigger refuses UPDATE and DELETE) and has no foreign key above
`tenants`: the acting user and API key are plain integer columns, so deleting them leaves the ledger whole,
and the tenant foreign key is PROTECT so a tenant with usage cannot be deleted out from under its invoices.
A finalized `Invoice` and its lines are frozen by triggers too (migration 0001). Corrections never touch them:
an `InvoiceVoid` row voids a final invoice and a `CreditNote` (numbered, with negative lines) credits part or all
of one; both are append-only (migration 0005).
"""

from decimal import Decimal

from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

from tenants.models import TIER_CHOICES, Plan, Tenant

MONEY = {"max_digits": 20, "decimal_places": 10}
# Unit prices are USD per million tokens, e.g. 0.100000 or 6.250000.
UNIT_PRICE = {"max_digits": 14, "decimal_places": 6}
END_USER_MAX_LENGTH = 256


class UsageRecord(models.Model):
    SOURCE_CHAT = "chat"
    SOURCE_API = "api"
    SOURCE_CHOICES = [(SOURCE_CHAT, "Chat"), (SOURCE_API, "API")]

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    source = models.CharField(max_length=4, choices=SOURCE_CHOICES)
    key = models.CharField(max_length=200, unique=True, help_text="Idempotency key: chat:<message id> or api:<request id>.")
    user_id = models.BigIntegerField(null=True, blank=True, help_text="Acting user; not a foreign key on purpose.")
    api_key_id = models.BigIntegerField(null=True, blank=True, help_text="API key used; not a foreign key on purpose.")
    endpoint_slug = models.CharField(max_length=100)
    provider = models.CharField(max_length=50)
    tier = models.CharField(max_length=10, choices=TIER_CHOICES)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.PositiveIntegerField(default=0)
    output_estimated = models.BooleanField(default=False, help_text="Output tokens estimated (stream cut short).")
    price_input = models.DecimalField(**UNIT_PRICE)
    price_output = models.DecimalField(**UNIT_PRICE)
    price_cache_write = models.DecimalField(**UNIT_PRICE)
    price_cache_read = models.DecimalField(**UNIT_PRICE)
    cost = models.DecimalField(**MONEY, help_text="Provider cost in USD.")
    markup_percent = models.DecimalField(max_digits=6, decimal_places=2, help_text="The plan's markup when recorded.")
    billed = models.DecimalField(**MONEY, help_text="Billed USD = cost × (1 + markup/100).")
    # Routing facts. `tier` is the tier that answered; `requested_tier` what the caller asked for (empty for a
    # model named explicitly, and on rows from before it was recorded). Smart Auto's decision is kept for Auto
    # requests it scored, and `counterfactual_cost` — the same tokens at the MAX chain's first model's prices —
    # for every Auto request, so savings are sums over the ledger.
    requested_tier = models.CharField(max_length=10, choices=TIER_CHOICES, blank=True, default="", db_default="")
    route_score = models.FloatField(null=True, blank=True)
    route_threshold = models.FloatField(null=True, blank=True)
    route_escalated = models.BooleanField(null=True, blank=True)
    router_version = models.CharField(max_length=40, blank=True, default="", db_default="")
    counterfactual_cost = models.DecimalField(**MONEY, null=True, blank=True,
                                              help_text="Provider cost had this Auto request run on MAX.")
    # The tenant's own end user the request was for, as the API client named it (OpenAI `user` /
    # `safety_identifier`, Anthropic `metadata.user_id`): an opaque id, never one of our users.
    # Null, not "": a row with no end user stays out of the partial index below.
    end_user = models.CharField(max_length=END_USER_MAX_LENGTH, null=True, blank=True,  # noqa: DJ001
                                help_text="The tenant's end-user id sent with an API request.")
    recorded_at = models.DateTimeField(db_default=Now(), editable=False)

    class Meta:
        ordering = ["-recorded_at", "-id"]
        permissions = [("view_finance", "Can view finance dashboards across tenants")]
        indexes = [
            # Per-tenant-per-month reads: tenant usage pages, budget seeding, drill-downs.
            models.Index(fields=["tenant", "recorded_at"], name="usage_tenant_recorded"),
            # Cross-tenant month scans (rollup, finance). The ledger is appended in time order, so a tiny BRIN
            # index prunes other months well.
            BrinIndex(fields=["recorded_at"], name="usage_recorded_brin"),
            # A tenant's rows for one of its end users (the usage page's and the REST API's filter).
            models.Index(fields=["tenant", "end_user", "recorded_at"], name="usage_tenant_end_user",
                         condition=Q(end_user__isnull=False)),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(cost__gte=0) & Q(billed__gte=0), name="usage_amounts_not_negative"),
            models.CheckConstraint(condition=Q(source__in=["chat", "api"]), name="usage_source_valid"),
        ]

    def __str__(self):
        return self.key

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens


class Invoice(models.Model):
    """One per tenant per UTC calendar month. Drafts are recomputed from the ledger; finals never change."""

    STATUS_DRAFT = "draft"
    STATUS_FINAL = "final"
    STATUS_CHOICES = [(STATUS_DRAFT, "Draft"), (STATUS_FINAL, "Final")]

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="invoices")
    month = models.DateField(help_text="First day of the UTC month invoiced.")
    status = models.CharField(max_length=5, choices=STATUS_CHOICES, default=STATUS_DRAFT)
    number = models.PositiveIntegerField(null=True, blank=True, unique=True, help_text="Assigned when finalized.")
    # The plan at month end, copied so later plan edits never change the invoice.
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    plan_name = models.CharField(max_length=100)
    markup_percent = models.DecimalField(max_digits=6, decimal_places=2, default=Decimal("0"))
    included_credit = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0"))
    # Totals over the lines. Tokens and requests are copied for fast cross-tenant pages.
    request_count = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    usage_cost = models.DecimalField(**MONEY, default=Decimal("0"), help_text="Provider cost (exact).")
    usage_billed = models.DecimalField(**MONEY, default=Decimal("0"), help_text="Billed usage before rounding.")
    usage_amount = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"),
                                       help_text="Sum of the lines' rounded amounts.")
    fee = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0"))
    credit = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0"), help_text="Credit applied.")
    total = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    rolled_up_at = models.DateTimeField(null=True, blank=True)
    finalized_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now(), editable=False)

    class Meta:
        ordering = ["-month", "tenant__name"]
        permissions = [("manage_invoices", "Can finalize, void and credit invoices")]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "month"], name="invoice_tenant_month_unique"),
            models.CheckConstraint(condition=Q(month__day=1), name="invoice_month_first_day"),
            models.CheckConstraint(
                condition=Q(status="draft", number__isnull=True) | Q(status="final", number__isnull=False),
                name="invoice_number_iff_final",
            ),
        ]
        indexes = [models.Index(fields=["month", "status"], name="invoice_month_status")]

    def __str__(self):
        return f"{self.display_number} {self.tenant} {self.month:%Y-%m}"

    @property
    def is_final(self) -> bool:
        return self.status == self.STATUS_FINAL

    @property
    def display_number(self) -> str:
        return f"KC-{self.number:06d}" if self.number else "DRAFT"

    @property
    def margin(self) -> Decimal:
        return self.usage_billed - self.usage_cost


class InvoiceLine(models.Model):
    """Usage of one model endpoint in an invoice's month. `amount` is the billed sum rounded once to cents."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    endpoint_slug = models.CharField(max_length=100)
    provider = models.CharField(max_length=50)
    request_count = models.BigIntegerField(default=0)
    estimated_count = models.BigIntegerField(default=0, help_text="Requests whose output tokens were estimated.")
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cache_read_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(**MONEY, default=Decimal("0"))
    billed = models.DecimalField(**MONEY, default=Decimal("0"))
    amount = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))

    class Meta:
        ordering = ["endpoint_slug", "provider"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "endpoint_slug", "provider"], name="invoiceline_unique"),
        ]

    def __str__(self):
        return f"{self.endpoint_slug} ({self.provider})"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens


class InvoiceCounter(models.Model):
    """The single row that hands out invoice numbers. Locked FOR UPDATE while finalizing, so numbers have no gaps:
    a finalize that rolls back also rolls back its increments."""

    name = models.CharField(max_length=20, unique=True)
    last_number = models.PositiveIntegerField(default=0)

    def __str__(self):
        return f"{self.name}: {self.last_number}"


class InvoiceVoid(models.Model):
    """A final invoice, voided: it is no longer owed. The invoice row itself never changes (it is frozen); this row
    records the void, once (the primary key is the invoice), and is append-only."""

    invoice = models.OneToOneField(Invoice, on_delete=models.PROTECT, primary_key=True, related_name="void")
    reason = models.TextField()
    actor_id = models.BigIntegerField(null=True, blank=True, help_text="Who voided it; not a foreign key on purpose.")
    actor_email = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(db_default=Now(), editable=False)

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(reason=""), name="invoicevoid_reason_required")]

    def __str__(self):
        return f"void of {self.invoice}"


class CreditNote(models.Model):
    """A numbered, immutable document of negative lines that credits part or all of a final invoice.

    Numbers come from their own `InvoiceCounter` row ("credit_note"), locked FOR UPDATE like the invoices', so
    they have no gaps. The note and its lines refuse UPDATE and DELETE, and a note takes exactly `line_count`
    lines, written with it (triggers, migration 0005)."""

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    number = models.PositiveIntegerField(unique=True)
    reason = models.TextField()
    total = models.DecimalField(max_digits=14, decimal_places=2, help_text="Sum of the lines: negative.")
    line_count = models.PositiveSmallIntegerField()
    actor_id = models.BigIntegerField(null=True, blank=True, help_text="Who issued it; not a foreign key on purpose.")
    actor_email = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(db_default=Now(), editable=False)

    class Meta:
        ordering = ["number"]
        constraints = [
            models.CheckConstraint(condition=Q(total__lt=0), name="creditnote_total_negative"),
            models.CheckConstraint(condition=~Q(reason=""), name="creditnote_reason_required"),
            models.CheckConstraint(condition=Q(line_count__gte=1), name="creditnote_has_lines"),
        ]
        indexes = [models.Index(fields=["invoice"], name="creditnote_invoice")]

    def __str__(self):
        return self.display_number

    @property
    def display_number(self) -> str:
        return f"CN-{self.number:06d}"


class CreditNoteLine(models.Model):
    credit_note = models.ForeignKey(CreditNote, on_delete=models.PROTECT, related_name="lines")
    description = models.CharField(max_length=200)
    amount = models.DecimalField(max_digits=14, decimal_places=2)

    class Meta:
        ordering = ["id"]
        constraints = [models.CheckConstraint(condition=Q(amount__lt=0), name="creditnoteline_amount_negative")]

    def __str__(self):
        return f"{self.description}: {self.amount}"
