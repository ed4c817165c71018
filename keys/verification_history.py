"""Verifications per hour, by credential type and outcome, and per API key, for the dashboard chart and
`GET /api/v1/keys/{key_id}/usage`: the same figures as `chittyauth_credential_verifications_total`, kept in the
database for every node. Counted in memory on the hot path (once the answer has succeeded) and added to the
database by the use-count writer (`keys.usage`) at most `API_KEY_USAGE_WRITE_SECONDS` later, so no
verification waits on a write. Cleanup deletes hours older than `HISTORY_DAYS`."""

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from django.db import connection, transaction
from django.db.models import Q, Sum

from kernel.memory_only import when_answered
from keys.models import VerificationHour

logger = logging.getLogger(__name__)

HISTORY_DAYS = 30
VALID = "VALID"
UPSERT_ROWS = 500  # rows per statement: well within SQLite's and PostgreSQL's parameter limits

_Slot = tuple[int, str, str, str]  # hour number since the epoch, credential type, outcome, key id
_pending: Counter[_Slot] = Counter()
_pending_lock = threading.Lock()


def count_verification(credential_type: str, outcome: str, key_id: str | None) -> None:
    when_answered(partial(_count, (int(time.time() // 3600), credential_type, str(outcome), key_id or "")))


def _count(slot: _Slot) -> None:
    with _pending_lock:
        _pending[slot] += 1


def write_pending_hours() -> int:
    """Add what was counted since the last write to the database, a few statements for any number of keys; on
    any failure keep it for the next write."""
    with _pending_lock:
        counted = dict(_pending)
        _pending.clear()
    if not counted:
        return 0
    try:
        with transaction.atomic():
            slots = sorted(counted)  # the same order everywhere, so concurrent writers cannot deadlock
            for start in range(0, len(slots), UPSERT_ROWS):
                _add_up([(slot, counted[slot]) for slot in slots[start : start + UPSERT_ROWS]])
    except Exception as exc:  # noqa: BLE001 - the counts survive whatever failed (InterfaceError too)
        logger.warning(
            "Could not record %d hourly verification counts (%s); keeping them to retry",
            len(counted),
            type(exc).__name__,
        )
        with _pending_lock:
            _pending.update(counted)
        return 0
    return len(counted)


def forget_pending_hours() -> None:
    with _pending_lock:
        _pending.clear()


def _add_up(rows: list[tuple[_Slot, int]]) -> None:
    """One INSERT … ON CONFLICT adding to the counts already there (PostgreSQL, and SQLite since 3.24)."""
    table = connection.ops.quote_name(VerificationHour._meta.db_table)
    values, parameters = [], []
    for (hour_number, credential_type, outcome, key_id), count in rows:
        hour = connection.ops.adapt_datetimefield_value(datetime.fromtimestamp(hour_number * 3600, UTC))
        values.append("(%s, %s, %s, %s, %s)")
        parameters += [hour, credential_type, outcome, key_id, count]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (hour, credential_type, outcome, key_id, count) VALUES {', '.join(values)} "  # noqa: S608 - our own table and placeholders
            "ON CONFLICT (hour, credential_type, outcome, key_id) "
            f"DO UPDATE SET count = {table}.count + excluded.count",
            parameters,
        )


@dataclass(frozen=True)
class HourOfVerifications:
    start: datetime
    valid: int
    failed: int


def hourly_verifications(
    first_hour: datetime, hours: int, *, key_id: str | None = None
) -> list[HourOfVerifications]:
    """Every hour from `first_hour` (on the hour), oldest first, hours without verifications included."""
    rows = VerificationHour.objects.filter(hour__gte=first_hour, hour__lt=first_hour + timedelta(hours=hours))
    if key_id is not None:
        rows = rows.filter(key_id=key_id)
    totals = rows.values("hour").annotate(
        valid=Sum("count", filter=Q(outcome=VALID)), failed=Sum("count", filter=~Q(outcome=VALID))
    )
    by_hour = {row["hour"]: row for row in totals.order_by()}
    result = []
    for index in range(hours):
        start = first_hour + timedelta(hours=index)
        row = by_hour.get(start, {})
        result.append(HourOfVerifications(start, row.get("valid") or 0, row.get("failed") or 0))
    return result


def key_outcomes_by_hour(key_id: str, since: datetime) -> list[dict]:
    """One row per hour and outcome with verifications of the key, oldest first."""
    rows = VerificationHour.objects.filter(key_id=key_id, credential_type="api_key", hour__gte=since)
    return [
        {"hour": hour, "outcome": outcome, "count": count}
        for hour, outcome, count in rows.order_by("hour", "outcome").values_list("hour", "outcome", "count")
    ]
