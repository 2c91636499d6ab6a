"""Reads of the routing catalog. The catalog is platform-wide (not tenant data), so these take no tenant."""

from django.db.models import QuerySet

from .models import ModelEndpoint, ProviderConfig, TierChainEntry


def endpoint_list() -> QuerySet[ModelEndpoint]:
    return ModelEndpoint.objects.select_related("provider").order_by("slug")


def provider_list() -> QuerySet[ProviderConfig]:
    return ProviderConfig.objects.order_by("slug")


def tier_chain_list() -> QuerySet[TierChainEntry]:
    return TierChainEntry.objects.select_related("endpoint", "endpoint__provider").order_by("tier", "position")
