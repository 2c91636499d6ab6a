"""Catalog editing in the Django admin. Saves and deletes go through routing.services, so each is audited."""

from django.contrib import admin

from .models import ModelEndpoint, ProviderConfig, TierChainEntry
from .services import catalog_delete, model_endpoint_save, provider_config_save, tier_chain_entry_save


class AuditedAdmin(admin.ModelAdmin):
    save_function = None

    def save_model(self, request, obj, form, change):
        type(self).save_function(obj, request.user)

    def delete_model(self, request, obj):
        catalog_delete(obj=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            catalog_delete(obj=obj, actor=request.user)


@admin.register(ProviderConfig)
class ProviderConfigAdmin(AuditedAdmin):
    list_display = ("slug", "name", "kind", "base_url_setting", "api_key_setting")

    @staticmethod
    def save_function(obj, user):
        provider_config_save(provider=obj, actor=user)


@admin.register(ModelEndpoint)
class ModelEndpointAdmin(AuditedAdmin):
    list_display = ("slug", "upstream_model", "provider", "context_window", "price_input", "price_output",
                    "price_cache_write", "price_cache_read", "vision", "enabled")
    list_filter = ("provider", "enabled", "vision")

    @staticmethod
    def save_function(obj, user):
        model_endpoint_save(endpoint=obj, actor=user)


@admin.register(TierChainEntry)
class TierChainEntryAdmin(AuditedAdmin):
    list_display = ("tier", "position", "endpoint")
    list_filter = ("tier",)

    @staticmethod
    def save_function(obj, user):
        tier_chain_entry_save(entry=obj, actor=user)
