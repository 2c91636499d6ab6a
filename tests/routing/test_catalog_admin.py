"""Catalog edits are audited; the staff routing page shows breaker state to platform admins only."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission

from routing.models import ModelEndpoint, TierChainEntry
from routing.services import model_endpoint_save
from tenants.models import AuditEvent
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_seeded_catalog_has_the_default_chains_and_prices():
    chains = {}
    for entry in TierChainEntry.objects.select_related("endpoint"):
        chains.setdefault(entry.tier, []).append(entry.endpoint.slug)
    assert chains == {"auto": ["kimi-k2.5", "claude-haiku-4-5"],
                      "max": ["claude-opus-4-6", "claude-sonnet-4-6", "kimi-k2.5"]}
    kimi = ModelEndpoint.objects.get(slug="kimi-k2.5")
    assert (kimi.price_input, kimi.price_output, kimi.price_cache_write, kimi.price_cache_read) == (
        Decimal("0.6"), Decimal("3"), Decimal("0.6"), Decimal("0.1"))


def test_price_change_writes_an_audit_row(alice):
    endpoint = ModelEndpoint.objects.get(slug="claude-opus-4-6")
    endpoint.price_output = Decimal("30")
    model_endpoint_save(endpoint=endpoint, actor=alice)
    event = AuditEvent.objects.get(action="catalog.price_change")
    assert event.before == {"price_output": "25.000000"} and event.after == {"price_output": "30"}
    assert event.actor_email == alice.email


def test_invalid_catalog_edit_changes_nothing(alice):
    from django.core.exceptions import ValidationError

    endpoint = ModelEndpoint.objects.get(slug="claude-opus-4-6")
    endpoint.price_input = Decimal("-1")
    with pytest.raises(ValidationError):
        model_endpoint_save(endpoint=endpoint, actor=alice)
    assert ModelEndpoint.objects.get(slug="claude-opus-4-6").price_input == Decimal("5")
    assert not AuditEvent.objects.filter(action__startswith="catalog.").exists()


def test_admin_edit_goes_through_the_audited_service(client, redis_client):
    staff = UserFactory(email="root@kiwiclaw.test", is_staff=True, is_superuser=True)
    client.force_login(staff)
    endpoint = ModelEndpoint.objects.get(slug="kimi-k2.5")
    response = client.post(f"/admin/routing/modelendpoint/{endpoint.pk}/change/", secure=True, data={
        "slug": "kimi-k2.5", "upstream_model": "kimi-k2.5", "provider": endpoint.provider_id,
        "context_window": 262144, "price_input": "0.55", "price_output": "3.00", "price_cache_write": "0.60",
        "price_cache_read": "0.10", "enabled": "on", "vision": "on"})
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    assert AuditEvent.objects.filter(action="catalog.price_change", actor_email=staff.email).count() == 1


def test_the_seeded_models_read_images_and_turning_it_off_is_audited(alice):
    assert set(ModelEndpoint.objects.filter(vision=True).values_list("slug", flat=True)) == {
        "claude-opus-4-6", "claude-sonnet-4-6", "claude-haiku-4-5", "kimi-k2.5"}
    endpoint = ModelEndpoint.objects.get(slug="kimi-k2.5")
    endpoint.vision = False
    model_endpoint_save(endpoint=endpoint, actor=alice)
    event = AuditEvent.objects.get(action="catalog.endpoint_update")
    assert (event.before, event.after) == ({"vision": "True"}, {"vision": "False"})


def test_staff_routing_page_shows_breaker_state(client, carol, redis_client):
    redis_client.hset("kc:breaker:claude-opus-4-6", mapping={"state": "open", "failures": 5,
                                                              "open_until": 10**15})
    client.force_login(carol)
    assert client.get("/staff/routing/", secure=True).status_code == 403
    carol.user_permissions.add(Permission.objects.get(codename="manage_tenants"))
    carol = type(carol).objects.get(pk=carol.pk)
    client.force_login(carol)
    response = client.get("/staff/routing/", secure=True)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-endpoint="claude-opus-4-6"' in html and 'data-state="open"' in html
    assert 'data-state="closed"' in html


@pytest.mark.django_db(transaction=True)
def test_a_stale_catalog_is_reloaded_in_the_background(settings):
    """Past its TTL the snapshot still answers (no query on the request path) while one thread reloads it; past
    twice the TTL it is not used at all."""
    import time

    from routing import catalog

    settings.ROUTING_CATALOG_TTL_SECONDS = 10.0
    old = catalog.catalog_get()
    ModelEndpoint.objects.filter(slug="kimi-k2.5").update(price_output=Decimal("4"))  # no invalidation
    assert catalog.catalog_cached() is old  # fresh: kept

    catalog._cached = (time.monotonic() - 15, old)  # stale, but within twice the TTL
    assert catalog.catalog_cached() is old
    deadline = time.monotonic() + 10
    while catalog.catalog_cached() is old and time.monotonic() < deadline:
        time.sleep(0.02)
    assert catalog.catalog_cached().endpoints["kimi-k2.5"].prices.output == Decimal("4")

    catalog._cached = (time.monotonic() - 25, old)  # too old to use
    assert catalog.catalog_cached() is None
    assert catalog.catalog_get().endpoints["kimi-k2.5"].prices.output == Decimal("4")
