"""Answering from memory: code run inside `answering_from_memory()` must not wait on the database, Redis or
the network. Each place that would calls `needs_io()` first, which raises `NeedsIO` before anything has
changed; the caller then runs the same call again where blocking is fine (a worker thread).

This lets an MCP connection answer a read-only tool call on its event loop when the per-process caches
already hold the answer, without the hop to a worker thread and back. Django's own guard (no database access
from an event loop) stays in force underneath as the backstop.
"""

from contextvars import ContextVar

_answering_from_memory: ContextVar[bool] = ContextVar("answering_from_memory", default=False)


class NeedsIO(Exception):
    """The call cannot be answered from memory; nothing was changed. Run it again in a worker thread."""


class _AnsweringFromMemory:
    """A plain context manager: it wraps every warm MCP tool call, where a generator-based one costs more."""

    __slots__ = ("_token",)

    def __enter__(self) -> None:
        self._token = _answering_from_memory.set(True)

    def __exit__(self, *exc_info: object) -> None:
        _answering_from_memory.reset(self._token)


def answering_from_memory() -> _AnsweringFromMemory:
    return _AnsweringFromMemory()


def needs_io(what: str) -> None:
    """Call before blocking on I/O: inside `answering_from_memory()` this raises `NeedsIO` instead."""
    if _answering_from_memory.get():
        raise NeedsIO(what)
