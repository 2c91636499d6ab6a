from django.db import migrations

from tenants.plans import ensure_default_plans

APPEND_ONLY_FUNCTION = """
CREATE OR REPLACE FUNCTION kiwiclaw_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
"""

AUDIT_TRIGGER = """
CREATE TRIGGER tenants_auditevent_append_only
BEFORE UPDATE OR DELETE ON tenants_auditevent
FOR EACH ROW EXECUTE FUNCTION kiwiclaw_refuse_change();
"""


def create_plans(apps, schema_editor):
    ensure_default_plans(apps.get_model("tenants", "Plan"))


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial")]

    operations = [
        migrations.RunPython(create_plans, migrations.RunPython.noop),
        # The audit log and the usage ledger are append-only; the database enforces it.
        migrations.RunSQL(APPEND_ONLY_FUNCTION, "DROP FUNCTION IF EXISTS kiwiclaw_refuse_change() CASCADE;"),
        migrations.RunSQL(AUDIT_TRIGGER, "DROP TRIGGER IF EXISTS tenants_auditevent_append_only ON tenants_auditevent;"),
    ]
