"""How the console's lists show times and states: one cell for what would otherwise take several columns, so
each list fits a 1440 px screen, and every time to the second with its zone (as `chittyauth_site/formats`)."""

from datetime import datetime

from django.utils import formats, timezone


def full_time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return formats.date_format(timezone.localtime(value), "DATETIME_FORMAT")


def last_use(last_used_at: datetime | None, use_count: int) -> str:
    if last_used_at is None:
        return "never used"
    return f"{full_time(last_used_at)} · {use_count} use{'' if use_count == 1 else 's'}"


def ending(*, ended_at: datetime | None, reason: str = "", expires_at: datetime | None) -> str:
    """When something ended (and why), or when it will."""
    if ended_at is not None:
        return f"ended {full_time(ended_at)}" + (f" ({reason})" if reason else "")
    if expires_at is not None:
        return f"expires {full_time(expires_at)}"
    return "-"
