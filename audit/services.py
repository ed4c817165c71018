"""The audit trail's write side: every app records through `record`, inside its own transaction."""

import hashlib
import ipaddress
import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.models import GENESIS_HASH, AuditChainHead, AuditEvent
from kernel import request_context
from kernel.masking import mask_secret_string, mask_secrets
from kernel.memory_only import needs_io


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
    principal: str = "",
) -> str:
    """The hashed form of an event. `principal` is hashed only when set, so events from before it existed
    keep their hashes."""
    payload = {
        "sequence": sequence,
        "created_at": created_at.isoformat(),
        "actor": actor,
        "action": action,
        "target": target,
        "outcome": outcome,
        "client_address": _canonical_address(client_address),
        "details": details,
    }
    if principal:
        payload["principal"] = principal
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev_hash: str, canonical_json: str) -> str:
    return hashlib.sha256((prev_hash + canonical_json).encode("utf-8", "surrogatepass")).hexdigest()


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
        principal=event.principal,
    )
    return chain_hash(event.prev_hash, canonical)


def _canonical_address(address: str | None) -> str | None:
    """One spelling per address: PostgreSQL's inet and SQLite's text hand back different ones."""
    if not address:
        return address
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def _storable_address(address: str | None) -> str | None:
    """An IP address both databases accept (no IPv6 zone), or None for anything that is not one."""
    if not address:
        return None
    try:
        parsed = ipaddress.ip_address(address.strip())
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address):
        parsed = ipaddress.IPv6Address(int(parsed))
    return str(parsed)


def _storable_text(text: str, max_length: int | None = None) -> str:
    """Text PostgreSQL accepts (no NUL, no lone surrogates), cut to the column's length."""
    text = text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    return text[:max_length] if max_length else text


def _storable_details(value: Any) -> Any:
    """JSON values that come back from either database exactly as they went in, so the hash still matches.

    Anything else (sets, bytes, objects) becomes its string, *before* masking, so a secret inside it is
    masked too. Whole floats become ints (PostgreSQL hands `1e16` back as an int); NaN and infinities,
    which jsonb refuses, become strings.
    """
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {_storable_text(str(key)): _storable_details(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_storable_details(item) for item in value]
    return _storable_text(value if isinstance(value, str) else str(value))


def _field_length(name: str) -> int:
    return AuditEvent._meta.get_field(name).max_length


def record(
    action: str,
    *,
    outcome: str = AuditEvent.Outcome.SUCCESS,
    actor: str = "",
    target: str = "",
    client_address: str | None = None,
    details: dict[str, Any] | None = None,
    principal: str = "",
) -> AuditEvent:
    """Append one event. Joins the caller's transaction, so the change and its event commit together.

    Inputs are made storable first (an over-long target or an odd address must not lose the event), and
    secrets in `details`, `actor` and `target` are masked. `principal` defaults to `details["principal"]`.
    An event recorded while serving a request carries its id (`details["request_id"]`), as its log lines do.
    """
    needs_io("audit record")
    safe_details = mask_secrets(_storable_details(details or {}))
    request_id = request_context.current().request_id
    if request_id and "request_id" not in safe_details:
        safe_details["request_id"] = request_id
    stored_address = _storable_address(client_address)
    if client_address and stored_address is None:
        safe_details["client_address_unparsed"] = _storable_text(mask_secret_string(client_address), 100)
    with transaction.atomic():
        head, _ = AuditChainHead.objects.select_for_update().get_or_create(pk=1)
        event = AuditEvent(
            sequence=head.sequence + 1,
            created_at=timezone.now(),
            actor=_storable_text(mask_secret_string(actor), _field_length("actor")),
            action=_storable_text(action, _field_length("action")),
            target=_storable_text(mask_secret_string(target), _field_length("target")),
            principal=_storable_text(
                mask_secret_string(str(principal or safe_details.get("principal") or "")),
                _field_length("principal"),
            ),
            outcome=outcome,
            client_address=stored_address,
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


def chain_head() -> tuple[int, str]:
    """The last sequence number and hash of the chain (0 and the genesis hash while it is empty)."""
    head = AuditChainHead.objects.filter(pk=1).values_list("sequence", "hash").first()
    return head or (0, GENESIS_HASH)


def verify_chain(batch_size: int = 2000, *, anchor: tuple[int, str] | None = None) -> ChainVerdict:
    """Walk the chain in sequence order; name the first link whose hash, predecessor or number is off.

    Safe on a live trail: the head is read before and after the walk, so events appended meanwhile are not
    mistaken for forged ones, while events cut from or added past the head are caught. With an `anchor`
    (sequence, hash) already trusted, as a signed checkpoint is, the walk starts there: that event must still
    have that hash, and only what follows it is walked.
    """
    head_before = chain_head()
    expected_sequence, prev_hash = (anchor[0], None) if anchor else (1, GENESIS_HASH)
    checked = 0
    queryset = AuditEvent.objects.order_by("sequence")
    while page := list(queryset.filter(sequence__gte=expected_sequence)[:batch_size]):
        for event in page:
            if event.sequence != expected_sequence:
                reason = (
                    f"sequence {expected_sequence} is missing"
                    if event.sequence > expected_sequence
                    else f"unexpected sequence number {event.sequence}"
                )
                return ChainVerdict(False, checked, expected_sequence, reason)
            if prev_hash is None and event.hash != anchor[1]:
                return ChainVerdict(
                    False, checked, event.sequence, "the event no longer has the trusted hash"
                )
            if prev_hash is not None and event.prev_hash != prev_hash:
                return ChainVerdict(
                    False, checked, event.sequence, "prev_hash does not match the previous event"
                )
            if event_hash(event) != event.hash:
                return ChainVerdict(
                    False, checked, event.sequence, "hash does not match the event's contents"
                )
            if event.sequence == head_before[0] and event.hash != head_before[1]:
                return ChainVerdict(
                    False, checked, event.sequence, "the chain head does not match this event (replaced)"
                )
            prev_hash = event.hash
            expected_sequence += 1
            checked += 1
    last = expected_sequence - 1
    if last < head_before[0]:
        return ChainVerdict(
            False, checked, last + 1, f"events {last + 1} to {head_before[0]} were cut from the end"
        )
    head_after = chain_head()
    if head_after[0] < last:
        return ChainVerdict(
            False,
            checked,
            head_after[0] + 1,
            f"events after the chain head (#{head_after[0]}) were added outside the audit service",
        )
    if head_after[0] == last and head_after[1] != prev_hash:
        return ChainVerdict(False, checked, last, "the chain head does not match the last event")
    return ChainVerdict(True, checked)
