from django.db import models


class JobRun(models.Model):
    """One run of a scheduled job, so staff can see in the admin when each job last ran and how it went."""

    class Job(models.TextChoices):
        CLEANUP = "cleanup"
        REVALIDATE_IDENTITIES = "revalidate_identities", "ChittyID revalidation"

    class Outcome(models.TextChoices):
        RUNNING = "running"
        SUCCESS = "success"
        FAILURE = "failure"

    job = models.CharField(max_length=32, choices=Job.choices)
    actor = models.CharField(max_length=255)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RUNNING)
    counts = models.JSONField(default=dict, blank=True)
    message = models.CharField(max_length=500, blank=True)

    class Meta:
        verbose_name = "job run"
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["job", "-started_at"])]

    def __str__(self) -> str:
        return f"{self.get_job_display()} at {self.started_at:%Y-%m-%d %H:%M:%S} ({self.outcome})"
