"""Fixtures for the tenants tests: the staff accounts next to the shared acme/globex people."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client

from tenants.management.commands.seed_demo import finance_permission
from tests.factories import UserFactory


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
