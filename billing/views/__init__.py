"""Billing pages: `tenant` (a tenant's own usage and invoices) and `finance` (across tenants)."""
