"""Concurrent appends keep the audit chain linear: one sequence per event, no gaps, no forks."""

import itertools
import threading

import pytest
from django.db import connection, transaction

from audit.models import GENESIS_HASH, AuditChainHead, AuditEvent
from audit.services import record, verify_chain
from identities.models import Identity

WRITERS = 10
EVENTS_PER_WRITER = 110

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def run_in_threads(target, count: int, *extra: threading.Thread) -> list[Exception]:
    """Start `count` threads on `target(n, barrier)` at the same moment; return what they raised."""
    errors: list[Exception] = []
    barrier = threading.Barrier(count)

    def guarded(n: int) -> None:
        try:
            target(n, barrier)
        except Exception as exc:  # noqa: BLE001 - a thread's failure must reach the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=guarded, args=(n,)) for n in range(count)]
    for thread in [*threads, *extra]:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return errors


def test_concurrent_appends_form_one_linear_chain():
    def append_events(writer: int, barrier: threading.Barrier) -> None:
        barrier.wait()
        for n in range(EVENTS_PER_WRITER):
            if n % 5 == 0:
                # Some appends ride in a larger transaction with the change they record, as services do.
                with transaction.atomic():
                    Identity.objects.create(chitty_id=f"CHITTY-PEO-W{writer}N{n}-A", entity_type="PEO")
                    record(
                        "identity.register", actor=f"writer:{writer}", target=f"CHITTY-PEO-W{writer}N{n}-A"
                    )
            else:
                record("test.concurrent", actor=f"writer:{writer}", details={"n": n})

    errors = run_in_threads(append_events, WRITERS)

    assert errors == []
    total = WRITERS * EVENTS_PER_WRITER
    rows = list(AuditEvent.objects.order_by("sequence").values_list("sequence", "prev_hash", "hash", "actor"))
    assert [sequence for sequence, *_ in rows] == list(range(1, total + 1))
    assert rows[0][1] == GENESIS_HASH
    for (_, _, previous_hash, _), (sequence, prev_hash, _, _) in itertools.pairwise(rows):
        assert prev_hash == previous_hash, f"fork at sequence {sequence}"
    assert len({row[2] for row in rows}) == total
    assert {actor for *_, actor in rows} == {f"writer:{w}" for w in range(WRITERS)}
    head = AuditChainHead.objects.get()
    assert (head.sequence, head.hash) == (total, rows[-1][2])
    assert verify_chain().intact
    assert verify_chain().events_checked == total


def test_verifying_while_events_are_appended_raises_no_false_alarm():
    """An append landing between the walk and the head check is new, not forged."""
    writers_done = threading.Event()
    verdicts = []

    def verify_repeatedly() -> None:
        try:
            while not writers_done.is_set():
                verdicts.append(verify_chain(batch_size=50))
        finally:
            connection.close()

    verifier = threading.Thread(target=verify_repeatedly)

    def append_events(writer: int, barrier: threading.Barrier) -> None:
        barrier.wait()
        for n in range(EVENTS_PER_WRITER):
            record("test.concurrent", actor=f"writer:{writer}", details={"n": n})

    errors = run_in_threads(append_events, 8, verifier)
    writers_done.set()
    verifier.join(timeout=120)

    assert errors == []
    assert len(verdicts) > 1
    assert [v for v in verdicts if not v.intact] == []
    assert verify_chain().events_checked == 8 * EVENTS_PER_WRITER
