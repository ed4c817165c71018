"""Reading the audit trail. Whoever reads it through an interface holds `audit:read`: the interface checks,
since the audit app is the leaf every other app records into and imports none of them."""

from datetime import datetime

from django.db.models import Max, QuerySet

from audit.models import AuditChainHead, AuditCheckpoint, AuditDelivery, AuditEvent


def list_events(
    *,
    actor: str = "",
    action: str = "",
    target: str = "",
    outcome: str = "",
    since: datetime | None = None,
    after_sequence: int | None = None,
) -> QuerySet[AuditEvent]:
    """Newest first, filtered; `after_sequence` pages forward from a known event."""
    events = AuditEvent.objects.all()
    for field, value in (("actor", actor), ("action", action), ("target", target), ("outcome", outcome)):
        if value:
            events = events.filter(**{field: value})
    if since is not None:
        events = events.filter(created_at__gte=since)
    if after_sequence is not None:
        events = events.filter(sequence__gt=after_sequence)
    return events


def list_checkpoints(*, after_sequence: int | None = None) -> QuerySet[AuditCheckpoint]:
    """Newest first; `after_sequence` gives only those signed past a checkpoint already held."""
    checkpoints = AuditCheckpoint.objects.all()
    if after_sequence is not None:
        checkpoints = checkpoints.filter(sequence__gt=after_sequence)
    return checkpoints


def chain_length() -> int:
    """Events appended to the chain so far: the head's sequence number (0 before the first)."""
    return AuditChainHead.objects.aggregate(sequence=Max("sequence"))["sequence"] or 0


def last_checkpoint_sequence() -> int:
    """The sequence number of the newest signed checkpoint (0 before the first)."""
    return AuditCheckpoint.objects.aggregate(sequence=Max("sequence"))["sequence"] or 0


def export_pending_by_sink(sinks: list[str]) -> dict[str, int]:
    """Events recorded but not yet delivered, per configured export sink (all of them, before its first run)."""
    head = chain_length()
    delivered = dict(AuditDelivery.objects.filter(sink__in=sinks).values_list("sink", "delivered_sequence"))
    return {sink: max(head - delivered.get(sink, 0), 0) for sink in sinks}
