"""`manage.py create_api_key --tenant acme --name NAME [--user EMAIL]`: prints the new key's secret on stdout
(alone, so scripts can capture it); what was created goes to stderr."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from tenants.models import Membership, Tenant, User
from tenants.selectors import membership_first_admin
from tenants.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a tenant and print its secret (shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="Tenant slug, e.g. acme.")
        parser.add_argument("--name", required=True, help="A name for the key, e.g. the program using it.")
        parser.add_argument("--user", help="Email of the member the key acts as (default: the tenant's first admin).")

    def handle(self, *args, tenant, name, user=None, **options):
        tenant_obj = Tenant.objects.filter(slug=tenant).first()
        if tenant_obj is None:
            known = ", ".join(Tenant.objects.order_by("slug").values_list("slug", flat=True)[:20]) or "none"
            raise CommandError(f"No tenant with slug {tenant!r}. Known tenants: {known}.")
        if user:
            member = Membership.objects.select_related("user").filter(tenant=tenant_obj, user__email__iexact=user).first()
            if member is None:
                exists = User.objects.filter(email__iexact=user).exists()
                raise CommandError(f"{user} is not a member of {tenant_obj.slug}." if exists else f"No user with email {user!r}.")
        else:
            member = membership_first_admin(tenant=tenant_obj)
            if member is None:
                raise CommandError(f"{tenant_obj.slug} has no admin; name the member the key acts as with --user.")
        try:
            key, secret = api_key_create(tenant=tenant_obj, name=name, created_by=member.user)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stderr.write(f"Created API key {key.name!r} ({key.prefix}…) for {tenant_obj.slug}, acting as "
                          f"{member.user.email}. The secret below is shown only now:")
        self.stdout.write(secret)
