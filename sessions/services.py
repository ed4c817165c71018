"""Opening, touching and ending sessions. Ending one is audited and reaches every live connection."""

from django.db import transaction
from django.utils import timezone

from audit.services import record
from identities.models import Identity
from sessions.models import AuthSession


def end_sessions_of_principal(principal: Identity, *, actor: str, reason: str) -> int:
    """End every live session of `principal`; returns how many were ended."""
    with transaction.atomic():
        live = list(
            AuthSession.objects.select_for_update().filter(principal=principal, ended_at__isnull=True)
        )
        now = timezone.now()
        for session in live:
            session.ended_at, session.end_reason, session.ended_by = now, reason[:255], actor
        AuthSession.objects.bulk_update(live, ["ended_at", "end_reason", "ended_by"])
        if live:
            record(
                "session.end_all",
                actor=actor,
                target=principal.chitty_id,
                details={"count": len(live), "reason": reason, "sessions": [s.session_id for s in live]},
            )
    return len(live)
