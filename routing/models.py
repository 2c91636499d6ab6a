"""The model catalog: providers, model endpoints with their prices, and the ordered chain of each tier.

Seeded by migration 0002 and edited by platform admins (Django admin, through routing.services so every change
is audited). Secrets never live here: a provider names the *settings* that hold its base URL and API key.
"""

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from tenants.models import TIER_CHOICES, slug_validator

setting_name_validator = RegexValidator(
    r"^[A-Z][A-Z0-9_]{1,63}$", "Name a Django setting in UPPER_CASE, e.g. ANTHROPIC_API_KEY."
)


class ProviderConfig(models.Model):
    KIND_ANTHROPIC = "anthropic"
    KIND_OPENAI_COMPATIBLE = "openai_compatible"
    KIND_CHOICES = [(KIND_ANTHROPIC, "Anthropic Messages API"), (KIND_OPENAI_COMPATIBLE, "OpenAI-compatible")]

    slug = models.SlugField(max_length=50, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=KIND_CHOICES)
    base_url_setting = models.CharField(
        max_length=64, validators=[setting_name_validator], help_text="Setting holding the base URL."
    )
    api_key_setting = models.CharField(
        max_length=64, validators=[setting_name_validator], help_text="Setting holding the API key (never stored here)."
    )

    class Meta:
        ordering = ["slug"]

    def __str__(self):
        return self.name

    def clean(self):
        for field in ("base_url_setting", "api_key_setting"):
            name = getattr(self, field)
            if name and not hasattr(settings, name):
                raise ValidationError({field: f"There is no setting named {name}."})


endpoint_slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9.-]{0,48}[a-z0-9])?$",
    "Use 1–50 lowercase letters, digits, dots or hyphens, starting and ending with a letter or digit.",
)


class ModelEndpoint(models.Model):
    """One model at one provider, with its prices in USD per million tokens."""

    # Model names carry versions with dots (kimi-k2.5), so this is not a SlugField.
    slug = models.CharField(max_length=50, unique=True, validators=[endpoint_slug_validator], help_text="Our name.")
    upstream_model = models.CharField(max_length=100, help_text="The provider's model id.")
    provider = models.ForeignKey(ProviderConfig, on_delete=models.PROTECT, related_name="endpoints")
    context_window = models.PositiveIntegerField(help_text="Maximum prompt + output tokens.")
    price_input = models.DecimalField(max_digits=12, decimal_places=6, validators=[MinValueValidator(Decimal(0))])
    price_output = models.DecimalField(max_digits=12, decimal_places=6, validators=[MinValueValidator(Decimal(0))])
    price_cache_write = models.DecimalField(
        max_digits=12, decimal_places=6, validators=[MinValueValidator(Decimal(0))]
    )
    price_cache_read = models.DecimalField(
        max_digits=12, decimal_places=6, validators=[MinValueValidator(Decimal(0))]
    )
    enabled = models.BooleanField(default=True)
    vision = models.BooleanField(default=False, help_text="Reads images: a request with images goes only to "
                                 "endpoints with this set.")
    updated_at = models.DateTimeField(auto_now=True)

    PRICE_FIELDS = ("price_input", "price_output", "price_cache_write", "price_cache_read")

    class Meta:
        ordering = ["slug"]

    def __str__(self):
        return self.slug


class TierChainEntry(models.Model):
    """Position `position` (0 first) in the fallback chain of `tier`."""

    tier = models.CharField(max_length=10, choices=TIER_CHOICES)
    position = models.PositiveSmallIntegerField()
    endpoint = models.ForeignKey(ModelEndpoint, on_delete=models.PROTECT, related_name="chain_entries")

    class Meta:
        ordering = ["tier", "position"]
        verbose_name_plural = "tier chain entries"
        constraints = [
            models.UniqueConstraint(fields=["tier", "position"], name="tierchain_tier_position_unique"),
            models.UniqueConstraint(fields=["tier", "endpoint"], name="tierchain_tier_endpoint_unique"),
        ]

    def __str__(self):
        return f"{self.tier}[{self.position}] = {self.endpoint.slug}"
