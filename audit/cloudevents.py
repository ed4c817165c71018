"""Audit events and checkpoints as CloudEvents 1.0 (JSON event format), the shape every sink receives.

`id` is unique per source and stable across redeliveries, so a receiver drops duplicates by it; `sequence` (the
CloudEvents sequence extension, a string) orders events, and `data` holds the whole event with both of its
hashes, so a receiver can check the chain link by link on its side.
"""

from typing import Any

from django.conf import settings

from audit.models import AuditCheckpoint, AuditEvent

SPEC_VERSION = "1.0"
EVENT_TYPE_PREFIX = "os.chitty.auth.audit."
CHECKPOINT_TYPE = "os.chitty.auth.audit-checkpoint"


def source() -> str:
    return f"{settings.CHITTYAUTH_BASE_URL}/api/v1/audit/events"


def event_as_cloudevent(event: AuditEvent) -> dict[str, Any]:
    envelope = {
        "specversion": SPEC_VERSION,
        "id": str(event.sequence),
        "source": source(),
        "type": EVENT_TYPE_PREFIX + event.action,
        "time": event.created_at.isoformat(),
        "datacontenttype": "application/json",
        "sequence": str(event.sequence),
        "data": {
            "sequence": event.sequence,
            "created_at": event.created_at.isoformat(),
            "actor": event.actor,
            "action": event.action,
            "target": event.target,
            "principal": event.principal,
            "outcome": event.outcome,
            "client_address": event.client_address,
            "details": event.details,
            "prev_hash": event.prev_hash,
            "hash": event.hash,
        },
    }
    if event.target:
        envelope["subject"] = event.target
    return envelope


def checkpoint_as_cloudevent(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    """A signed checkpoint follows the events it covers; `data.token` is the JWS to keep and verify with
    `manage.py verify_audit --checkpoint`."""
    return {
        "specversion": SPEC_VERSION,
        "id": f"checkpoint-{checkpoint.pk}",
        "source": source(),
        "type": CHECKPOINT_TYPE,
        "time": checkpoint.created_at.isoformat(),
        "datacontenttype": "application/json",
        "sequence": str(checkpoint.sequence),
        "data": {
            "sequence": checkpoint.sequence,
            "hash": checkpoint.hash,
            "created_at": checkpoint.created_at.isoformat(),
            "kid": checkpoint.kid,
            "token": checkpoint.token,
        },
    }
