import pytest
from django.db import DatabaseError, transaction

from tenants.models import AuditEvent, Plan


@pytest.mark.django_db
def test_default_plans_exist_with_their_tiers():
    tiers = dict(Plan.objects.values_list("slug", "allowed_tiers"))
    assert tiers == {"free": ["auto"], "pro": ["auto", "max"], "enterprise": ["auto", "max"]}


@pytest.mark.django_db
def test_audit_log_refuses_update_and_delete(alice):
    event = AuditEvent.objects.create(action="test.event", actor=alice)
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(action="changed")
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "test.event"


@pytest.mark.django_db
def test_tenants_models_and_migrations_agree():
    from django.core.management import call_command

    # Exits non-zero (SystemExit) when a model change has no migration.
    call_command("makemigrations", "tenants", "--check", "--dry-run", verbosity=0)
