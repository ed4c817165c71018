"""Counting API key uses: in memory, written with F() increments about once a minute per key (a write takes
what falls due in the next few seconds too), so the hot path never waits on a write it does not need (and a warm
answer from memory counts only once it succeeded). In a serving process a writer thread also writes counts as
they fall due, so "last used" lags by at most `API_KEY_USAGE_WRITE_SECONDS` plus a second even when no further
use arrives, and what is pending is written when the process exits."""

import atexit
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Greatest

from kernel.memory_only import needs_io, when_answered
from keys.models import ApiKey
from keys.verification_history import forget_pending_hours, write_pending_hours

logger = logging.getLogger(__name__)

USAGE_FLUSH_INTERVAL_SECONDS = settings.API_KEY_USAGE_WRITE_SECONDS
WRITER_TICK_SECONDS = 1.0
# A due write also takes the counts falling due within this share of the interval. Deadlines are per key, so
# a stream of new keys (cold validations) would otherwise bring one due every few milliseconds, and every such
# request would leave the fast path to write; this way one write per process every few seconds at most.
WRITE_AHEAD_SHARE = 1 / 12


@dataclass
class _PendingUse:
    count: int
    last_used_at: datetime


_usage_lock = threading.Lock()
_pending_uses: dict[str, _PendingUse] = {}
_write_deadlines: deque[tuple[float, str]] = deque()


def _add_pending(key_id: str, count: int, last_used_at: datetime, now: float) -> None:
    pending = _pending_uses.get(key_id)
    if pending is None:
        _pending_uses[key_id] = _PendingUse(count, last_used_at)
        _write_deadlines.append((now + USAGE_FLUSH_INTERVAL_SECONDS, key_id))
    else:
        pending.count += count
        pending.last_used_at = max(pending.last_used_at, last_used_at)


def _write_due(key_id: str, now: float) -> bool:
    """Would counting a use now also write counts out?"""
    if _write_deadlines and _write_deadlines[0][0] <= now:
        return True
    return key_id not in _pending_uses and USAGE_FLUSH_INTERVAL_SECONDS <= 0


def count_use(key_id: str, used_at: datetime) -> None:
    now = time.monotonic()
    with _usage_lock:
        write_due = _write_due(key_id, now)
    if not write_due:
        when_answered(partial(_count_pending_use, key_id, used_at, now))
        return
    needs_io("API key use counts")
    with _usage_lock:
        _add_pending(key_id, 1, used_at, now)
        due = _take_due(now + USAGE_FLUSH_INTERVAL_SECONDS * WRITE_AHEAD_SHARE)
    if due:
        _write_uses(due)


def _take_due(horizon: float) -> dict[str, _PendingUse]:
    """The pending uses whose write deadline is at or before `horizon` (call holding the lock)."""
    due = {}
    while _write_deadlines and _write_deadlines[0][0] <= horizon:
        due_key_id = _write_deadlines.popleft()[1]
        due[due_key_id] = _pending_uses.pop(due_key_id)
    return due


def _count_pending_use(key_id: str, used_at: datetime, now: float) -> None:
    """Counted in memory only; a write that fell due meanwhile is done by the next use."""
    with _usage_lock:
        _add_pending(key_id, 1, used_at, now)


def _write_uses(uses: dict[str, _PendingUse]) -> bool:
    """One transaction, rows in key order so concurrent writers cannot deadlock. Failures are retried later."""
    try:
        with transaction.atomic():
            for key_id in sorted(uses):
                use = uses[key_id]
                stamp = Value(use.last_used_at)
                ApiKey.objects.filter(key_id=key_id).update(
                    use_count=F("use_count") + use.count,
                    last_used_at=Greatest(Coalesce(F("last_used_at"), stamp), stamp),
                )
    except Exception as exc:  # noqa: BLE001 - the counts survive whatever failed (InterfaceError too)
        logger.warning(
            "Could not record the use of %d API keys (%s); keeping the counts to retry",
            len(uses),
            type(exc).__name__,
        )
        now = time.monotonic()
        with _usage_lock:
            for key_id, use in uses.items():
                _add_pending(key_id, use.count, use.last_used_at, now)
        return False
    return True


_writer_pid: int | None = None


def start_usage_writer() -> None:
    """Run in each serving process (daphne, the stdio MCP server): write counts as they fall due without
    waiting for the next use, and write what is left at exit. Idempotent; a forked child starts its own."""
    global _writer_pid
    with _usage_lock:
        if _writer_pid == os.getpid():
            return
        _writer_pid = os.getpid()
    threading.Thread(target=_write_as_due, name="api-key-usage-writer", daemon=True).start()
    atexit.register(flush_usage)


_writing = (
    threading.Lock()
)  # held while the writer has counts out of the pending map, so a flush waits for them


def _write_as_due() -> None:
    hours_due = time.monotonic() + USAGE_FLUSH_INTERVAL_SECONDS
    while True:
        time.sleep(WRITER_TICK_SECONDS)
        try:
            with _writing:
                with _usage_lock:
                    due = _take_due(time.monotonic())
                write_hours = time.monotonic() >= hours_due
                if write_hours:
                    hours_due = time.monotonic() + USAGE_FLUSH_INTERVAL_SECONDS
                try:
                    if due:
                        _write_uses(due)
                    if write_hours:
                        write_pending_hours()
                finally:
                    if due or write_hours:
                        connection.close()  # this thread's own connection: it may sleep for a long time
        except Exception:  # the thread must outlive any one failure, or counts would wait for the next use
            logger.exception("The API key use writer failed; it goes on")


def forget_pending_counts() -> None:
    """Drop every use and verification count not yet written, for tests and benchmarks: counts taken against
    one test's rows (rolled back since) must not fall due, and be written, in the middle of the next test."""
    with _writing, _usage_lock:
        _pending_uses.clear()
        _write_deadlines.clear()
        forget_pending_hours()


def flush_usage() -> int:
    """Write every pending use count and hourly verification count now (for shutdown and tests); returns how
    many keys' use counts were written."""
    with _writing:
        with _usage_lock:
            uses = dict(_pending_uses)
            _pending_uses.clear()
            _write_deadlines.clear()
        write_pending_hours()
        written = bool(uses) and _write_uses(uses)
    if not written:
        return 0
    return len(uses)
