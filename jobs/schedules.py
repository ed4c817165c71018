"""The jobs' default schedules, kept as django-celery-beat PeriodicTasks that staff edit in the admin.

Installed by a data migration, so every database gets them with `migrate`; `manage.py install_schedules`
brings back any that were deleted, and `--reset` restores the defaults of all of them. Disabling a task in
the admin stops it and survives both. A run still queued when the next one is due is dropped
(`expire_seconds`), so after an outage the workers do not work through a pile of identical runs."""

from dataclasses import dataclass

from django.apps import apps as installed_apps
from django.apps.registry import Apps
from django.utils import timezone

CLEANUP_TASK = "jobs.cleanup"
REVALIDATE_TASK = "jobs.revalidate_identities"
CHECKPOINT_TASK = "jobs.sign_audit_checkpoint"
EXPORT_TASK = "jobs.deliver_audit_events"


@dataclass(frozen=True)
class DefaultSchedule:
    name: str
    task: str
    every: int
    description: str
    period: str = "minutes"

    @property
    def seconds(self) -> int:
        return self.every * (60 if self.period == "minutes" else 1)


DEFAULT_SCHEDULES = (
    DefaultSchedule(
        "ChittyAuth cleanup",
        CLEANUP_TASK,
        15,
        "End expired and idle sessions; purge expired revoked-token entries and the API keys, grants and "
        "sessions past CLEANUP_RETENTION_DAYS.",
    ),
    DefaultSchedule(
        "ChittyAuth ChittyID revalidation",
        REVALIDATE_TASK,
        60,
        "Ask the remote ChittyID authority about every active identity and suspend those it rejects.",
    ),
    DefaultSchedule(
        "ChittyAuth audit checkpoint",
        CHECKPOINT_TASK,
        60,
        "Sign the audit chain's head, published at GET /api/v1/audit/checkpoints for outside parties to keep.",
    ),
    DefaultSchedule(
        "ChittyAuth audit export",
        EXPORT_TASK,
        10,
        "Send the audit events and checkpoints recorded since the last run to the configured sinks "
        "(AUDIT_WEBHOOK_URL, AUDIT_SYSLOG_URL); does nothing when none is set.",
        period="seconds",
    ),
)


def install_default_schedules(apps: Apps = installed_apps, *, reset: bool = False) -> dict[str, str]:
    """Create the default PeriodicTasks that are missing; existing ones keep staff's edits unless `reset`.

    Takes an app registry so the data migration can pass its historical one. Returns what happened to each.
    """
    periodic_task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    outcomes = {}
    for default in DEFAULT_SCHEDULES:
        interval, _ = interval_model.objects.get_or_create(every=default.every, period=default.period)
        task = periodic_task_model.objects.filter(name=default.name).first()
        if task is None:
            periodic_task_model.objects.create(
                name=default.name,
                task=default.task,
                interval=interval,
                expire_seconds=default.seconds,
                description=default.description,
            )
            outcomes[default.name] = "created"
        elif reset:
            task.task, task.interval, task.description, task.enabled = (
                default.task,
                interval,
                default.description,
                True,
            )
            task.crontab = task.solar = task.clocked = task.expires = None
            task.expire_seconds = default.seconds
            task.one_off = False
            task.save()
            outcomes[default.name] = "reset"
        else:
            outcomes[default.name] = "kept"
    if "created" in outcomes.values() or "reset" in outcomes.values():
        # Tell a running beat to reload (the historical models of a migration do not do it themselves).
        apps.get_model("django_celery_beat", "PeriodicTasks").objects.update_or_create(
            ident=1, defaults={"last_update": timezone.now()}
        )
    return outcomes
