from django.contrib import admin
from django.http import HttpRequest

from jobs.models import JobRun


@admin.register(JobRun)
class JobRunAdmin(admin.ModelAdmin):
    """Read-only: runs are written by the jobs. Schedules are edited under Periodic tasks."""

    list_display = ("job", "started_at", "finished_at", "outcome", "actor", "message")
    list_filter = ("job", "outcome", "started_at")
    date_hierarchy = "started_at"
    readonly_fields = [f.name for f in JobRun._meta.fields]
    list_per_page = 50

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: JobRun | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: JobRun | None = None) -> bool:
        return False
