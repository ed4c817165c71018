from django.db import migrations

from jobs.schedules import install_default_schedules


def install(apps, schema_editor):
    install_default_schedules(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
