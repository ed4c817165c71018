"""A per-process cache with a fixed bound that evicts the least recently used entry, so a working set larger
than the bound still keeps its hot part (clearing a full cache whole would make every lookup miss)."""

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

from django.conf import settings

_Key = TypeVar("_Key")
_Value = TypeVar("_Value")


class BoundedCache(Generic[_Key, _Value]):
    """Reads take no lock (an OrderedDict lookup and a move are single C calls); writes take one. The bound
    is the `HOT_CACHE_MAX_ENTRIES` setting, read when an entry is added."""

    def __init__(self) -> None:
        self._entries: OrderedDict[_Key, _Value] = OrderedDict()
        self._lock = threading.Lock()

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
