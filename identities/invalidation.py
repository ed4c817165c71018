"""One shared epoch that every security-relevant change bumps (revocations, grants, identity status).

Hot paths (key and token validation, permission checks) keep per-process caches tagged with the epoch
they were filled under. A single cache read per call tells them whether anything changed anywhere; in
production that cache is Redis, so a revocation on one node takes effect on the next call on every node.
"""

import time

from django.core.cache import cache
from django.db import transaction

EPOCH_CACHE_KEY = "chittyauth:security-epoch"


def current_epoch() -> int:
    epoch = cache.get(EPOCH_CACHE_KEY)
    if epoch is None:
        # A cold or flushed cache must invalidate every process: start from a value no process has seen.
        cache.add(EPOCH_CACHE_KEY, time.time_ns(), timeout=None)
        epoch = cache.get(EPOCH_CACHE_KEY, 0)
    return int(epoch)


def _bump() -> None:
    try:
        cache.incr(EPOCH_CACHE_KEY)
    except ValueError:
        cache.set(EPOCH_CACHE_KEY, time.time_ns(), timeout=None)


def bump_epoch() -> None:
    """Call inside the transaction that changes security state; the bump lands after it commits."""
    _bump()
    transaction.on_commit(_bump)
