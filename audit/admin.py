from django.contrib import admin
from django.http import HttpRequest

from audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only for everyone, superusers included: the trail is only ever appended by services."""

    list_display = ("sequence", "created_at", "actor", "action", "target", "outcome", "client_address")
    # Actors are searched, not filtered: a filter would list every distinct actor of the whole trail.
    list_filter = ("outcome", "action", "created_at")
    search_fields = ("actor", "action", "target", "=client_address")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in AuditEvent._meta.fields]
    list_per_page = 50
    # The trail only grows; counting all of it on every page view gets slower with every event.
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False
