"""Admin: the ledger and invoices are read-only here. Usage rows are append-only (a database trigger refuses
changes anyway) and invoices are computed from the ledger by the rollup, then frozen when finalized."""

from django.contrib import admin

from .models import CreditNote, Invoice, InvoiceLine, InvoiceVoid, UsageRecord


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = ["recorded_at", "tenant", "key", "source", "endpoint_slug", "tier", "input_tokens",
                    "output_tokens", "output_estimated", "cost", "billed"]
    list_filter = ["source", "tier", "provider", "output_estimated"]
    search_fields = ["key", "endpoint_slug", "tenant__slug"]
    list_select_related = ["tenant"]
    date_hierarchy = "recorded_at"
    show_full_result_count = False  # COUNT(*) over a large ledger on every page is not worth it


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0
    can_delete = False
    fields = ["endpoint_slug", "provider", "request_count", "estimated_count", "input_tokens", "output_tokens",
              "cache_read_tokens", "cache_write_tokens", "cost", "billed", "amount"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    list_display = ["month", "tenant", "status", "number", "plan_name", "usage_amount", "fee", "credit", "total"]
    list_filter = ["status", "month"]
    search_fields = ["tenant__slug", "tenant__name"]
    list_select_related = ["tenant"]
    inlines = [InvoiceLineInline]


@admin.register(InvoiceVoid)
class InvoiceVoidAdmin(ReadOnlyAdmin):
    list_display = ["invoice", "created_at", "actor_email", "reason"]
    list_select_related = ["invoice__tenant"]


@admin.register(CreditNote)
class CreditNoteAdmin(ReadOnlyAdmin):
    list_display = ["display_number", "invoice", "tenant", "total", "created_at", "actor_email"]
    list_select_related = ["invoice__tenant", "tenant"]
    search_fields = ["tenant__slug", "tenant__name"]
