"""Answering from memory: code run inside `answering_from_memory()` must not wait on the database, Redis or
the network. Each place that would calls `needs_io()` first, which raises `NeedsIO` before anything has
changed; the caller then runs the same call again where blocking is fine (a worker thread, or Django).

What a memory answer changes (a use to count) is registered with `when_answered()` and happens only once the
whole block has succeeded, so a block that authenticates a caller and then needs I/O for the answer changes
nothing, and running it again elsewhere counts nothing twice.

This lets an MCP connection answer a read-only tool call on its event loop, and the REST fast path answer a
validation without Django's request machinery, when the per-process caches already hold the answer. Django's
own guard (no database access from an event loop) stays in force underneath as the backstop.
"""

from collections.abc import Callable
from contextvars import ContextVar

# The effects waiting for the current memory answer to succeed; None when not answering from memory.
_pending_effects: ContextVar[list[Callable[[], None]] | None] = ContextVar(
    "memory_answer_effects", default=None
)


class NeedsIO(Exception):
    """The call cannot be answered from memory; nothing was changed. Run it again where blocking is fine."""


class _AnsweringFromMemory:
    """A plain context manager: it wraps every warm call, where a generator-based one costs more."""

    __slots__ = ("_effects", "_token")

    def __enter__(self) -> None:
        self._effects: list[Callable[[], None]] = []
        self._token = _pending_effects.set(self._effects)

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        _pending_effects.reset(self._token)
        if exc_type is None:
            for effect in self._effects:
                effect()


def answering_from_memory() -> _AnsweringFromMemory:
    return _AnsweringFromMemory()


def needs_io(what: str) -> None:
    """Call before blocking on I/O: inside `answering_from_memory()` this raises `NeedsIO` instead."""
    if _pending_effects.get() is not None:
        raise NeedsIO(what)


def when_answered(effect: Callable[[], None]) -> None:
    """Run `effect` (memory only, no I/O) now, or inside `answering_from_memory()` once the block succeeds."""
    effects = _pending_effects.get()
    if effects is None:
        effect()
    else:
        effects.append(effect)
