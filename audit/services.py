"""The audit trail's write side: every app records through `record`, inside its own transaction."""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.masking import mask_secrets
from audit.models import GENESIS_HASH, AuditChainHead, AuditEvent


def canonical_event_json(
    *,
    sequence: int,
    created_at: datetime,
    actor: str,
    action: str,
    target: str,
    outcome: str,
    client_address: str | None,
    details: dict[str, Any],
) -> str:
    payload = {
        "sequence": sequence,
        "created_at": created_at.isoformat(),
        "actor": actor,
        "action": action,
        "target": target,
        "outcome": outcome,
        "client_address": client_address,
        "details": details,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev_hash: str, canonical_json: str) -> str:
    return hashlib.sha256((prev_hash + canonical_json).encode()).hexdigest()


def event_hash(event: AuditEvent) -> str:
    canonical = canonical_event_json(
        sequence=event.sequence,
        created_at=event.created_at,
        actor=event.actor,
        action=event.action,
        target=event.target,
        outcome=event.outcome,
        client_address=event.client_address,
        details=event.details,
    )
    return chain_hash(event.prev_hash, canonical)


def record(
    action: str,
    *,
    outcome: str = AuditEvent.Outcome.SUCCESS,
    actor: str = "",
    target: str = "",
    client_address: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event. Joins the caller's transaction, so the change and its event commit together."""
    safe_details = mask_secrets(details or {})
    # Round-trip through JSON so the hash is computed over exactly what the database will hand back.
    safe_details = json.loads(json.dumps(safe_details, default=str))
    with transaction.atomic():
        head, _ = AuditChainHead.objects.select_for_update().get_or_create(pk=1)
        event = AuditEvent(
            sequence=head.sequence + 1,
            created_at=timezone.now(),
            actor=actor,
            action=action,
            target=target,
            outcome=outcome,
            client_address=client_address or None,
            details=safe_details,
            prev_hash=head.hash,
        )
        event.hash = event_hash(event)
        event.save(force_insert=True)
        head.sequence, head.hash = event.sequence, event.hash
        head.save(update_fields=["sequence", "hash"])
    return event


@dataclass(frozen=True)
class ChainVerdict:
    intact: bool
    events_checked: int
    first_broken_sequence: int | None = None
    reason: str = ""


def verify_chain(batch_size: int = 2000) -> ChainVerdict:
    """Walk the chain in sequence order; name the first link whose hash, predecessor or number is off."""
    expected_sequence = 1
    prev_hash = GENESIS_HASH
    checked = 0
    last_id = None
    queryset = AuditEvent.objects.order_by("sequence")
    while True:
        page = list(queryset.filter(sequence__gt=last_id)[:batch_size] if last_id else queryset[:batch_size])
        if not page:
            break
        for event in page:
            if event.sequence != expected_sequence:
                return ChainVerdict(
                    False, checked, expected_sequence, f"sequence {expected_sequence} is missing"
                )
            if event.prev_hash != prev_hash:
                return ChainVerdict(
                    False, checked, event.sequence, "prev_hash does not match the previous event"
                )
            if event_hash(event) != event.hash:
                return ChainVerdict(
                    False, checked, event.sequence, "hash does not match the event's contents"
                )
            prev_hash = event.hash
            expected_sequence += 1
            checked += 1
        last_id = page[-1].sequence
    head = AuditChainHead.objects.filter(pk=1).first()
    if head is not None and (head.sequence, head.hash) != (checked, prev_hash):
        first_broken = min(head.sequence, checked) + 1 if head.sequence != checked else checked
        return ChainVerdict(
            False,
            checked,
            first_broken,
            "the chain head does not match the last event (events cut or added at the end)",
        )
    return ChainVerdict(True, checked)
