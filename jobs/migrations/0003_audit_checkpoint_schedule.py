from django.db import migrations

from jobs.schedules import install_default_schedules


def install(apps, schema_editor):
    """Adds the audit checkpoint's schedule; the others keep staff's edits."""
    install_default_schedules(apps)


class Migration(migrations.Migration):
    dependencies = [("jobs", "0002_default_schedules")]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
