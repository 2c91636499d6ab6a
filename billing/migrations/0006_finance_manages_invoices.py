"""Finance's group gets billing.manage_invoices (finalize on demand, void, credit notes). The group is made here
if it does not exist yet, with billing.view_finance too, so a fresh deployment has a finance group to put people
in; `seed_demo` adds the demo finance user to it."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "finance"
CODENAMES = ("view_finance", "manage_invoices")


def grant(apps, schema_editor):
    # Permissions are normally created after all migrations ran; this migration needs them now.
    app_config = apps.get_app_config("billing")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=GROUP)
    group.permissions.add(*Permission.objects.filter(content_type__app_label="billing", codename__in=CODENAMES))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group in Group.objects.filter(name=GROUP):
        group.permissions.remove(*Permission.objects.filter(content_type__app_label="billing",
                                                            codename="manage_invoices"))


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0005_invoice_corrections"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
