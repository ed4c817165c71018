"""A cache-only limit on failed staff logins per address and per username, in front of django-axes.

Axes locks an address or account out after a few failures, but every further attempt still costs a database
write and an audit event, so a flood of them fills the audit trail. Past `ADMIN_LOGIN_RATE_LIMIT` failures in
`ADMIN_LOGIN_RATE_WINDOW_SECONDS` from one address or for one username, a login is refused with 429 before
axes or the password check run: no database write, and one audit event per address or username per window.
Counts live in the cache (Redis when configured, so every node shares them); if the cache is down the limit
is not applied and axes' lockout, kept in the database, still holds.
"""

import logging
import time
import unicodedata

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

_PREFIX = "chittyauth:staff-login"
MAX_USERNAME_LENGTH = 150


def _same_login(username: str) -> str:
    """One name for every spelling the login form accepts as the same user (it strips and NFKC-normalises),
    so padding or case never starts a fresh count."""
    return unicodedata.normalize("NFKC", username.strip())[:MAX_USERNAME_LENGTH].casefold()


def _window() -> tuple[int, int]:
    """The current fixed window's number and the seconds left in it."""
    length = settings.ADMIN_LOGIN_RATE_WINDOW_SECONDS
    now = time.time()
    return int(now // length), max(int(length - now % length), 1)


def _keys(address: str, username: str, window: int) -> list[str]:
    keys = [f"{_PREFIX}:address:{address}:{window}"] if address else []
    username = _same_login(username)
    return [*keys, f"{_PREFIX}:username:{username}:{window}"] if username else keys


def count_failure(address: str, username: str) -> None:
    window, remaining = _window()
    try:
        for key in _keys(address, username, window):
            cache.add(key, 0, remaining + 1)
            cache.incr(key)
    except Exception:  # noqa: BLE001 - see the module docstring: axes still holds
        logger.warning("Could not count a failed staff login in the cache")


def retry_after(address: str, username: str) -> int | None:
    """Seconds until this address and username may try again, or None when neither is over the limit."""
    window, remaining = _window()
    try:
        counts = cache.get_many(_keys(address, username, window))
    except Exception:  # noqa: BLE001
        logger.warning("Could not read failed staff login counts from the cache")
        return None
    return remaining if any(count >= settings.ADMIN_LOGIN_RATE_LIMIT for count in counts.values()) else None


def first_in_window(kind: str, address: str, username: str) -> bool:
    """True once per kind (`refused`, `lockout`), address and username per window: only that one is audited.
    (Axes signals a lockout on every attempt while locked.)"""
    window, remaining = _window()
    try:
        return cache.add(f"{_PREFIX}:{kind}:{address}:{_same_login(username)}:{window}", 1, remaining + 1)
    except Exception:  # noqa: BLE001 - better one event too many than none
        return True
