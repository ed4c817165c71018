"""Reading the audit trail: for principals holding `audit:read`."""

from datetime import datetime

from django.db.models import QuerySet

from audit.models import AuditEvent
from grants.callers import Caller
from grants.checks import authorize


def list_events(
    caller: Caller,
    *,
    actor: str = "",
    action: str = "",
    target: str = "",
    outcome: str = "",
    since: datetime | None = None,
    after_sequence: int | None = None,
) -> QuerySet[AuditEvent]:
    """Newest first, filtered; `after_sequence` pages forward from a known event."""
    authorize(caller, "audit:read")
    events = AuditEvent.objects.all()
    for field, value in (("actor", actor), ("action", action), ("target", target), ("outcome", outcome)):
        if value:
            events = events.filter(**{field: value})
    if since is not None:
        events = events.filter(created_at__gte=since)
    if after_sequence is not None:
        events = events.filter(sequence__gt=after_sequence)
    return events
