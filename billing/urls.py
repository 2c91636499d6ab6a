from django.urls import path

from .views import finance, invoice_actions, limits, tenant, trends

urlpatterns = [
    path("usage/", tenant.usage, name="billing_usage"),
    path("usage/usage.csv", tenant.usage_csv, name="billing_usage_csv"),
    path("invoices/", tenant.invoice_list, name="billing_invoices"),
    path("invoices/<int:invoice_id>/", tenant.invoice_detail, name="billing_invoice"),
    path("invoices/<int:invoice_id>/lines.csv", tenant.invoice_lines_csv, name="billing_invoice_csv"),
    path("team/members/<int:membership_id>/limits/", limits.member_limits_view, name="team_member_limits"),
    path("api-keys/<int:api_key_id>/limits/", limits.api_key_limits_view, name="api_key_limits"),
    path("finance/", finance.overview_all_tenants, name="finance_overview"),
    path("finance/trends/", trends.trends_all_tenants, name="finance_trends"),
    path("finance/tenants.csv", finance.overview_csv_all_tenants, name="finance_overview_csv"),
    path("finance/tenants/<int:tenant_id>/", finance.tenant_detail_all_tenants, name="finance_tenant"),
    path("finance/tenants/<int:tenant_id>/usage.csv", finance.tenant_usage_csv_all_tenants,
         name="finance_tenant_csv"),
    path("finance/invoices/", finance.invoice_list_all_tenants, name="finance_invoices"),
    path("finance/invoices/<int:invoice_id>/", finance.invoice_detail_all_tenants, name="finance_invoice"),
    path("finance/invoices/<int:invoice_id>/lines.csv", finance.invoice_lines_csv_all_tenants,
         name="finance_invoice_csv"),
    path("finance/invoices/<int:invoice_id>/finalize/", invoice_actions.invoice_finalize_view,
         name="finance_invoice_finalize"),
    path("finance/invoices/<int:invoice_id>/void/", invoice_actions.invoice_void_view, name="finance_invoice_void"),
    path("finance/invoices/<int:invoice_id>/credit-notes/new/", invoice_actions.credit_note_create_view,
         name="finance_credit_note_create"),
]
