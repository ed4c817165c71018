"""A per-process cache with a fixed bound that evicts the least recently used entry, so a working set larger
than the bound still keeps its hot part (clearing a full cache whole would make every lookup miss)."""

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from django.conf import settings

from kernel.memory_only import when_answered, when_read
from kernel.metrics import CACHE_LOOKUPS

_Key = TypeVar("_Key")
_Value = TypeVar("_Value")


class BoundedCache(Generic[_Key, _Value]):
    """Reads take no lock (an OrderedDict lookup and a move are single C calls); writes take one. The bound
    is the `HOT_CACHE_MAX_ENTRIES` setting, read when an entry is added. `name` labels its hits and misses in
    the metrics."""

    def __init__(self, name: str) -> None:
        self._entries: OrderedDict[_Key, _Value] = OrderedDict()
        self._lock = threading.Lock()
        self._hit = CACHE_LOOKUPS.labels(name, "hit").inc
        self._miss = CACHE_LOOKUPS.labels(name, "miss").inc

    def lookup(self, key: _Key, usable: Callable[[_Value], bool]) -> _Value | None:
        """The entry for `key` if there is one and `usable` says it still holds (fresh, not expired), counted
        as a hit once the answer succeeds; otherwise None, counted as a miss as soon as the caller may read it
        again (the fill stays even if the answer is then run again elsewhere, and that run hits)."""
        value = self.get(key)
        if value is not None and usable(value):
            when_answered(self._hit)
            return value
        when_read(self._miss)
        return None

    def get(self, key: _Key) -> _Value | None:
        value = self._entries.get(key)
        if value is not None:
            try:  # noqa: SIM105 (suppress() costs a context manager on every hit)
                self._entries.move_to_end(key)
            except KeyError:  # evicted by another thread meanwhile: still a good answer for this call
                pass
        return value

    def put(self, key: _Key, value: _Value) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > max(1, settings.HOT_CACHE_MAX_ENTRIES):
                self._entries.popitem(last=False)

    def discard(self, key: _Key) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def values(self) -> list[_Value]:
        return list(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)
