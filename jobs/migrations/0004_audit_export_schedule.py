from django.db import migrations

from jobs.schedules import install_default_schedules


def install(apps, schema_editor):
    """Adds the audit export's schedule; the others keep staff's edits."""
    install_default_schedules(apps)


class Migration(migrations.Migration):
    dependencies = [("jobs", "0003_audit_checkpoint_schedule"), ("audit", "0004_export")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
