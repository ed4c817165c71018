"""Answering from memory: code run inside `answering_from_memory()` must not wait on the database, Redis or
the network. Each place that would calls `needs_io()` first, which raises `NeedsIO` before anything has
changed; the caller then runs the same call again where blocking is fine (a worker thread, or Django).
A place that would only *read* (a cache miss) calls `needs_read()` instead, which raises `NeedsRead`.

`answering_without_writes()` is the middle way, for a worker thread: reads are allowed, anything else still
raises `NeedsIO`, and a database connection refuses every statement but a SELECT meanwhile (the backstop for
a write nobody guarded). A cold validation is answered that way at the cost of its reads alone.

What an answer in either mode changes (a use to count) is registered with `when_answered()` and happens only
once the whole block has succeeded, so a block that authenticates a caller and then needs I/O for the answer
changes nothing, and running it again elsewhere counts nothing twice.

A value every check in one answer should see the same (the invalidation stamp) is read once per answer with
`fixed_for_this_answer()`.

This lets an MCP connection answer a read-only tool call on its event loop, and the REST fast path answer a
validation without Django's request machinery, when the per-process caches already hold the answer (or, in a
worker, when filling them needs only reads). Django's own guard (no database access from an event loop) stays
in force underneath as the backstop on the loop.
"""

from collections.abc import Callable
from contextlib import ExitStack
from contextvars import ContextVar
from typing import Any, TypeVar

from django.db import connections

_Value = TypeVar("_Value")


class NeedsIO(Exception):
    """The call cannot be answered from memory; nothing was changed. Run it again where blocking is fine."""


class NeedsRead(NeedsIO):
    """All the call lacks is a read: `answering_without_writes()` in a worker thread can answer it."""


class _AnsweringFromMemory:
    """A plain context manager: it wraps every warm call, where a generator-based one costs more."""

    __slots__ = ("_guards", "_token", "effects", "fixed", "reads_allowed")

    def __init__(self, *, reads_allowed: bool = False) -> None:
        self.reads_allowed = reads_allowed

    def __enter__(self) -> None:
        self.effects: list[Callable[[], None]] = []  # waiting for the answer to succeed
        self.fixed: dict[str, Any] = {}
        self._guards = ExitStack() if self.reads_allowed else None
        if self._guards is not None:
            for connection in connections.all():
                self._guards.enter_context(connection.execute_wrapper(_selects_only))
        self._token = _current_answer.set(self)

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        _current_answer.reset(self._token)
        if self._guards is not None:
            self._guards.close()
        if exc_type is None:
            for effect in self.effects:
                effect()


def _selects_only(execute: Callable, sql: str, params: Any, many: bool, context: dict) -> Any:
    if many or sql.lstrip()[:6].upper() != "SELECT":
        raise NeedsIO("a database statement other than SELECT")
    return execute(sql, params, many, context)


_current_answer: ContextVar[_AnsweringFromMemory | None] = ContextVar("memory_answer", default=None)


def answering_from_memory() -> _AnsweringFromMemory:
    return _AnsweringFromMemory()


def answering_without_writes() -> _AnsweringFromMemory:
    """For a worker thread: reads may block, nothing may be written (see the module's docstring)."""
    return _AnsweringFromMemory(reads_allowed=True)


def needs_io(what: str) -> None:
    """Call before blocking on I/O (a write, a publish): inside either mode this raises `NeedsIO` instead."""
    if _current_answer.get() is not None:
        raise NeedsIO(what)


def needs_read(what: str) -> None:
    """Call before a read that fills a cache: inside `answering_from_memory()` this raises `NeedsRead`."""
    answer = _current_answer.get()
    if answer is not None and not answer.reads_allowed:
        raise NeedsRead(what)


def when_answered(effect: Callable[[], None]) -> None:
    """Run `effect` (memory only, no I/O) now, or inside `answering_from_memory()` once the block succeeds."""
    answer = _current_answer.get()
    if answer is None:
        effect()
    else:
        answer.effects.append(effect)


def when_read(effect: Callable[[], None]) -> None:
    """Run `effect` (memory only) now, where the read it stands for happens now, even should the answer later
    fail and run again; inside `answering_from_memory()` the read cannot happen, so it waits like
    `when_answered()`."""
    answer = _current_answer.get()
    if answer is None or answer.reads_allowed:
        effect()
    else:
        answer.effects.append(effect)


def fixed_for_this_answer(name: str, read: Callable[[], _Value]) -> _Value:
    """`read()` once per memory answer, so its checks agree and the read is paid once; every time outside one."""
    answer = _current_answer.get()
    if answer is None:
        return read()
    try:
        return answer.fixed[name]
    except KeyError:
        value = answer.fixed[name] = read()
        return value
