"""One shared epoch that every security-relevant change bumps (revocations, grants, identity status).

Hot paths (key and token validation, permission checks) keep per-process caches tagged with the epoch
they were filled under. A single cache read per call tells them whether anything changed anywhere; in
production that cache is Redis, so a revocation on one node takes effect on the next call on every node.

When the cache cannot be reached, every call gets a never-seen epoch, so the hot paths answer from the
database (slower, still correct). A bump that could not be written is retried once the cache answers again.
"""

import logging
import threading
import time

from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)

EPOCH_CACHE_KEY = "chittyauth:security-epoch"

_pending_bump = threading.Event()
_cache_down = threading.Event()


def _unseen_epoch() -> int:
    return -time.time_ns()


def current_epoch() -> int:
    try:
        if _pending_bump.is_set():
            _bump()
        epoch = cache.get(EPOCH_CACHE_KEY)
        if epoch is None:
            # A cold or flushed cache must invalidate every process: start from a value no process has seen.
            cache.add(EPOCH_CACHE_KEY, time.time_ns(), timeout=None)
            epoch = cache.get(EPOCH_CACHE_KEY, 0)
    except Exception:  # the shared cache is down: answer from the database until it is back  # noqa: BLE001
        if not _cache_down.is_set():
            _cache_down.set()
            logger.warning(
                "Security epoch unavailable: serving every check from the database until it is back"
            )
        return _unseen_epoch()
    if _cache_down.is_set():
        _cache_down.clear()
        logger.warning("Security epoch available again")
    return int(epoch)


def _bump() -> None:
    try:
        try:
            cache.incr(EPOCH_CACHE_KEY)
        except ValueError:
            cache.set(EPOCH_CACHE_KEY, time.time_ns(), timeout=None)
    except Exception:  # noqa: BLE001
        logger.warning("Could not bump the security epoch; will retry when the cache answers")
        _pending_bump.set()
    else:
        _pending_bump.clear()


def bump_epoch() -> None:
    """Call inside the transaction that changes security state; the bump lands after it commits."""
    _bump()
    transaction.on_commit(_bump)
