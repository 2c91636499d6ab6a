"""`manage.py seed_demo [--force]`: demo tenants and accounts for local use. Idempotent: it creates what is
missing and brings the demo accounts' flags and passwords back to the documented values; running it again
changes nothing. It refuses to run with DJANGO_DEBUG off unless given --force, since the password is public."""

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from tenants.models import Membership, Plan, Tenant, User
from tenants.plans import ensure_default_plans

DEMO_PASSWORD = "kiwiclaw-demo"

TENANTS = [("acme", "Acme Corp", "pro"), ("globex", "Globex", "free")]
MEMBERS = [
    ("alice@acme.test", "Alice Admin", "acme", Membership.ROLE_ADMIN),
    ("carol@acme.test", "Carol Member", "acme", Membership.ROLE_MEMBER),
    ("bob@globex.test", "Bob Member", "globex", Membership.ROLE_MEMBER),
]
ADMIN_EMAIL = "admin@kiwiclaw.test"
FINANCE_EMAIL = "finance@kiwiclaw.test"


def finance_permission() -> Permission:
    """billing.view_finance, created if billing's migration has not declared it yet. It hangs on the content
    type of billing's UsageRecord model, which is where billing declares it, so both paths meet on one row."""
    content_type, _ = ContentType.objects.get_or_create(app_label="billing", model="usagerecord")
    permission, _ = Permission.objects.get_or_create(
        content_type=content_type, codename="view_finance",
        defaults={"name": "Can view finance across all tenants"},
    )
    return permission


def _user(email: str, name: str, *, is_staff: bool = False, is_superuser: bool = False) -> User:
    user, _ = User.objects.get_or_create(email=email, defaults={"name": name})
    wanted = {"is_staff": is_staff, "is_superuser": is_superuser, "is_active": True}
    changed = [field for field, value in wanted.items() if getattr(user, field) != value]
    for field in changed:
        setattr(user, field, wanted[field])
    # Only reset a password that differs: a fresh hash would change the row on every run.
    if not user.check_password(DEMO_PASSWORD):
        user.set_password(DEMO_PASSWORD)
        changed.append("password")
    if changed:
        user.save(update_fields=changed)
    return user


class Command(BaseCommand):
    help = "Create demo tenants (acme, globex) and accounts, all with password 'kiwiclaw-demo'. Idempotent."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="Run even with DJANGO_DEBUG off.")

    def handle(self, *args, force=False, **options):
        if not settings.DEBUG and not force:
            raise CommandError("seed_demo creates accounts with a published password, so it refuses to run with "
                               "DJANGO_DEBUG off. Set DJANGO_DEBUG=1, or pass --force if you really mean it.")
        with transaction.atomic():
            self._seed()
        self._print_credentials()

    def _seed(self):
        ensure_default_plans(Plan)
        tenants = {}
        for slug, name, plan_slug in TENANTS:
            tenant, created = Tenant.objects.get_or_create(
                slug=slug, defaults={"name": name, "plan": Plan.objects.get(slug=plan_slug)})
            if not created and tenant.plan.slug != plan_slug:
                # An existing tenant is left as staff changed it; say so rather than silently undoing it.
                self.stderr.write(f"Note: {slug} is on plan {tenant.plan.slug}, not {plan_slug}; left unchanged.")
            tenants[slug] = tenant
        for email, name, slug, role in MEMBERS:
            user = _user(email, name)
            Membership.objects.get_or_create(user=user, tenant=tenants[slug], defaults={"role": role})

        _user(ADMIN_EMAIL, "Platform Admin", is_staff=True, is_superuser=True)
        finance_user = _user(FINANCE_EMAIL, "Finance", is_staff=True)
        group, _ = Group.objects.get_or_create(name="finance")
        group.permissions.add(finance_permission())
        finance_user.groups.add(group)

    def _print_credentials(self):
        rows = [(email, f"{role} of {slug}") for email, _name, slug, role in MEMBERS]
        rows += [(ADMIN_EMAIL, "platform admin (staff, superuser)"), (FINANCE_EMAIL, "finance (staff, view_finance)")]
        self.stdout.write(self.style.SUCCESS("Demo data ready. Log in with any of these, password "
                                             f"'{DEMO_PASSWORD}':"))
        width = max(len(email) for email, _ in rows)
        for email, what in rows:
            self.stdout.write(f"  {email.ljust(width)}  {what}")
