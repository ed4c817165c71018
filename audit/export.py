"""Audit export: every audit event, then every signed checkpoint once the events it covers are out, delivered
to each configured sink in sequence order, at least once. The Celery worker runs `deliver_audit_events` every
few seconds (beat); nothing is sent from the request that recorded the event.

Each sink has a cursor (`AuditDelivery`): the last sequence and checkpoint it accepted. A run takes the cursor
with a lease (one compare-and-set UPDATE), sends what follows it in batches and moves it past each batch the
sink accepted, so a sink that is down, or a worker killed mid-run, resumes from there: what was sent but not yet
confirmed is sent again (receivers drop repeats by the CloudEvent `id`). A failure that can pass (a timeout, a
5xx, 429) backs the sink off, doubling up to `AUDIT_EXPORT_RETRY_MAX_SECONDS`; an item the sink refuses for
good (400, 413, 415, 422) while it takes others is set aside as a dead letter, with an `audit.export_dead_lettered`
event, so the ones after it still flow. Staff send dead letters again from the admin; those go out on the next run, out of order.
"""

import logging
import random
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from audit.cloudevents import checkpoint_as_cloudevent, event_as_cloudevent
from audit.models import AuditCheckpoint, AuditDeadLetter, AuditDelivery, AuditEvent
from audit.services import record
from audit.sinks import DeliveryFailed, Sink, configured_sinks
from kernel.metrics import AUDIT_EXPORTS

logger = logging.getLogger(__name__)

DEAD_LETTERED_ACTION = "audit.export_dead_lettered"
# A run stops taking new batches after this long, so its lease stays short; the next run goes on.
RUN_SECONDS = 30


@dataclass
class SinkRun:
    sink: str
    delivered: int = 0
    dead_lettered: int = 0
    redelivered: int = 0
    # caught_up, failed (backing off), more (the run's time was up), skipped (another run holds the sink, or
    # it is backing off), lease_lost (another run took it over)
    state: str = "caught_up"
    error: str = ""


@dataclass(frozen=True)
class _Item:
    cloudevent: dict[str, Any]
    event: AuditEvent | None = None
    checkpoint: AuditCheckpoint | None = None


class _LeaseLost(Exception):
    pass


def deliver_audit_events() -> list[SinkRun]:
    """One run for every configured sink; nothing at all (not even a query) when none is configured."""
    runs = []
    for sink in configured_sinks():
        try:
            runs.append(_deliver_to(sink))
        finally:
            sink.close()
    return runs


def request_redelivery(letters: QuerySet[AuditDeadLetter]) -> int:
    """Have the next run send these dead letters again (out of order: the ones after them went on)."""
    return letters.update(redeliver_requested_at=timezone.now())


def _lease_seconds() -> float:
    return RUN_SECONDS + 3 * settings.AUDIT_EXPORT_TIMEOUT_SECONDS


def _deliver_to(sink: Sink) -> SinkRun:
    run = SinkRun(sink.name)
    owner = secrets.token_hex(16)
    if not _take_lease(sink.name, owner):
        run.state = "skipped"
        return run
    try:
        deadline = time.monotonic() + RUN_SECONDS
        _send_requested_dead_letters(sink, owner, run)
        while batch := _next_batch(AuditDelivery.objects.get(sink=sink.name)):
            _send_batch(sink, owner, batch, run)
            if time.monotonic() > deadline:
                run.state = "more"
                break
    except DeliveryFailed as failure:
        _back_off(sink.name, owner, failure, run)
    except _LeaseLost:
        run.state = "lease_lost"
    finally:
        _release_lease(sink.name, owner)
    return run


def _release_lease(sink: str, owner: str) -> None:
    """A lease that cannot be given back (the database went away mid-run) runs out by itself."""
    try:
        AuditDelivery.objects.filter(sink=sink, lease_owner=owner).update(lease_owner="", leased_until=None)
    except DatabaseError:
        logger.warning("Audit export to %s: could not release the lease; it expires by itself", sink)


def _take_lease(sink: str, owner: str) -> bool:
    now = timezone.now()
    # One INSERT that ignores an existing row: two first runs at once never race a SELECT against an INSERT.
    AuditDelivery.objects.bulk_create([AuditDelivery(sink=sink)], ignore_conflicts=True)
    return bool(
        AuditDelivery.objects.filter(sink=sink)
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now))
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .update(lease_owner=owner, leased_until=now + timedelta(seconds=_lease_seconds()))
    )


def _next_batch(delivery: AuditDelivery) -> list[_Item]:
    """The events after the cursor, each checkpoint placed right after the event it signs."""
    events = list(
        AuditEvent.objects.filter(sequence__gt=delivery.delivered_sequence).order_by("sequence")[
            : settings.AUDIT_EXPORT_BATCH_SIZE
        ]
    )
    covered = events[-1].sequence if events else delivery.delivered_sequence
    checkpoints = AuditCheckpoint.objects.filter(
        pk__gt=delivery.delivered_checkpoint_id, sequence__lte=covered
    ).order_by("pk")
    items = [_Item(event_as_cloudevent(event), event=event) for event in events]
    items += [
        _Item(checkpoint_as_cloudevent(checkpoint), checkpoint=checkpoint) for checkpoint in checkpoints
    ]
    return sorted(items, key=_position)


def _position(item: _Item) -> tuple[int, int, int]:
    if item.event is not None:
        return (item.event.sequence, 0, 0)
    return (item.checkpoint.sequence, 1, item.checkpoint.pk)


def _send_batch(sink: Sink, owner: str, batch: list[_Item], run: SinkRun) -> None:
    _renew_lease(sink.name, owner)
    try:
        sink.send([item.cloudevent for item in batch])
    except DeliveryFailed as failure:
        if not failure.permanent:
            raise
        _send_one_by_one(sink, owner, batch, run, failure)
        return
    _delivered(sink.name, owner, batch, run)


def _send_one_by_one(
    sink: Sink, owner: str, batch: list[_Item], run: SinkRun, refusal: DeliveryFailed
) -> None:
    """The sink refused the batch for good: send each item alone to find the ones it refuses. Those become dead
    letters only once the sink has taken another item: a sink that refuses everything (a receiver that cannot
    check our signature may answer 400 to all) is failing, not judging events, and backs off with nothing set
    aside, so it can never turn the trail into dead letters."""
    took_one, refused_so_far = False, []
    for item in batch if len(batch) > 1 else ():
        _renew_lease(sink.name, owner)
        try:
            sink.send([item.cloudevent])
        except DeliveryFailed as failure:
            if not failure.permanent:
                raise
            refused_so_far.append((item, failure.reason))
            if took_one:
                _dead_letters(sink.name, owner, refused_so_far, run)
                refused_so_far = []
            continue
        took_one = True
        _dead_letters(sink.name, owner, refused_so_far, run)
        refused_so_far = []
        _delivered(sink.name, owner, [item], run)
    if not took_one:
        raise DeliveryFailed(f"{refusal.reason} for every item", permanent=False)


def _delivered(sink: str, owner: str, batch: list[_Item], run: SinkRun) -> None:
    _advance(sink, owner, batch)
    run.delivered += len(batch)
    AUDIT_EXPORTS.labels(sink, "delivered").inc(len(batch))


def _dead_letters(sink: str, owner: str, refused: list[tuple[_Item, str]], run: SinkRun) -> None:
    for item, reason in refused:
        _dead_letter(sink, owner, item, reason)
        run.dead_lettered += 1
        AUDIT_EXPORTS.labels(sink, "dead_lettered").inc()


def _renew_lease(sink: str, owner: str) -> None:
    """Before every send: a run whose lease ran out (and may have been taken over) must not send again."""
    renewed = AuditDelivery.objects.filter(sink=sink, lease_owner=owner, leased_until__gt=timezone.now())
    if not renewed.update(leased_until=timezone.now() + timedelta(seconds=_lease_seconds())):
        raise _LeaseLost


def _advance(sink: str, owner: str, batch: list[_Item], **also: Any) -> None:
    now = timezone.now()
    changes: dict[str, Any] = {
        "failures_in_a_row": 0,
        "next_attempt_at": None,
        "last_error": "",
        "last_delivered_at": now,
        "leased_until": now + timedelta(seconds=_lease_seconds()),
        **also,
    }
    if sequences := [item.event.sequence for item in batch if item.event is not None]:
        changes["delivered_sequence"] = max(sequences)
    if checkpoint_ids := [item.checkpoint.pk for item in batch if item.checkpoint is not None]:
        changes["delivered_checkpoint_id"] = max(checkpoint_ids)
    if not AuditDelivery.objects.filter(sink=sink, lease_owner=owner).update(**changes):
        raise _LeaseLost


def _dead_letter(sink: str, owner: str, item: _Item, reason: str) -> None:
    with transaction.atomic():
        _advance(sink, owner, [item])
        AuditDeadLetter.objects.create(
            sink=sink, event=item.event, checkpoint=item.checkpoint, reason=reason, created_at=timezone.now()
        )
        record(
            DEAD_LETTERED_ACTION,
            outcome=AuditEvent.Outcome.FAILURE,
            actor="system:audit-export",
            target=f"{sink}:{item.cloudevent['id']}",
            details={"sink": sink, "cloudevent_id": item.cloudevent["id"], "reason": reason},
        )
    logger.error("Audit export: %s refused %s for good (%s); set aside", sink, item.cloudevent["id"], reason)


def _send_requested_dead_letters(sink: Sink, owner: str, run: SinkRun) -> None:
    """At most a batch's worth per run, so a large selection does not hold the run (and its lease) for long."""
    letters = AuditDeadLetter.objects.filter(sink=sink.name, redeliver_requested_at__isnull=False)
    for letter in letters.select_related("event", "checkpoint").order_by("pk")[
        : settings.AUDIT_EXPORT_BATCH_SIZE
    ]:
        _renew_lease(sink.name, owner)
        if letter.event is not None:
            cloudevent = event_as_cloudevent(letter.event)
        else:
            cloudevent = checkpoint_as_cloudevent(letter.checkpoint)
        try:
            sink.send([cloudevent])
        except DeliveryFailed as failure:
            if not failure.permanent:
                raise
            letter.reason, letter.redeliver_requested_at = failure.reason, None
            letter.save(update_fields=["reason", "redeliver_requested_at"])
            continue
        letter.delete()
        run.redelivered += 1
        AUDIT_EXPORTS.labels(sink.name, "redelivered").inc()


def _back_off(sink: str, owner: str, failure: DeliveryFailed, run: SinkRun) -> None:
    delivery = AuditDelivery.objects.get(sink=sink)
    failures = delivery.failures_in_a_row + 1
    delay = retry_delay(failures)
    AuditDelivery.objects.filter(sink=sink, lease_owner=owner).update(
        failures_in_a_row=failures,
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        last_error=failure.reason[:300],
    )
    run.state, run.error = "failed", failure.reason
    AUDIT_EXPORTS.labels(sink, "failed").inc()
    logger.warning(
        "Audit export to %s failed (%s), %d in a row; next try in %.0f s",
        sink,
        failure.reason,
        failures,
        delay,
    )


def retry_delay(failures_in_a_row: int) -> float:
    """Exponential backoff with jitter: between half and all of base * 2^(failures - 1), capped."""
    ceiling = min(
        settings.AUDIT_EXPORT_RETRY_SECONDS * 2 ** min(failures_in_a_row - 1, 32),
        settings.AUDIT_EXPORT_RETRY_MAX_SECONDS,
    )
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - spreading retries, not a secret
