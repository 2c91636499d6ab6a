"""Fixtures for the tenants tests: the staff accounts next to the shared acme/globex people."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client

from tenants.management.commands.seed_demo import finance_permission
from tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _test_settings(settings):
    # Production settings redirect HTTP to HTTPS; the test client speaks plain HTTP.
    settings.SECURE_SSL_REDIRECT = False
    # The real hasher costs about a second per password on this machine; what is tested is not its cost.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def platform_admin(db):
    return UserFactory(email="admin@kiwiclaw.test", is_staff=True, is_superuser=True)


@pytest.fixture
def tenant_manager(db):
    """Staff with tenants.manage_tenants, not superuser: a platform admin by permission."""
    user = UserFactory(email="ops@kiwiclaw.test", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="manage_tenants", content_type__app_label="tenants"))
    return user


@pytest.fixture
def finance(db):
    user = UserFactory(email="finance@kiwiclaw.test", is_staff=True)
    group, _ = Group.objects.get_or_create(name="finance")
    group.permissions.add(finance_permission())
    user.groups.add(group)
    return user


@pytest.fixture
def login():
    """login(user) -> a test client logged in as that user."""

    def make(user):
        client = Client()
        client.force_login(user)
        return client

    return make
