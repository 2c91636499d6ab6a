"""Factories shared by every test package. Area-specific factories live beside their tests."""

import factory
from factory.django import DjangoModelFactory

from tenants.models import ApiKey, Membership, Plan, Tenant, User

DEMO_PASSWORD = "kiwiclaw-demo"


class UserFactory(DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("email",)
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.test")
    name = factory.Faker("name")
    password = factory.django.Password(DEMO_PASSWORD)


class PlanFactory(DjangoModelFactory):
    """Defaults to the seeded Pro plan's shape; pass slug='free'/'pro'/'enterprise' to reuse a seeded plan."""

    class Meta:
        model = Plan
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"plan-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())
    allowed_tiers = factory.LazyFunction(lambda: ["auto", "max"])


class TenantFactory(DjangoModelFactory):
    class Meta:
        model = Tenant
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())
    plan = factory.LazyFunction(lambda: Plan.objects.get(slug="pro"))
    # Smart Auto's dial Off, so tests that are not about it route Auto requests down the Auto chain whatever
    # their prompt; smart-routing tests set the level they test.
    auto_escalation = 0


class MembershipFactory(DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    tenant = factory.SubFactory(TenantFactory)
    role = Membership.ROLE_MEMBER


def make_api_key(*, tenant: Tenant, user: User, name: str = "test key") -> tuple[ApiKey, str]:
    """A real key through the service (hash stored, audit written); returns (key, secret)."""
    from tenants.services import api_key_create

    return api_key_create(tenant=tenant, name=name, created_by=user)
