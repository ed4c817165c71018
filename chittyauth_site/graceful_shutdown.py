"""Stopping daphne cleanly while Django requests are in flight.

On SIGTERM daphne cancels every running application instance. A Django request cancelled that way leaves
its worker thread running the middleware chain; when that thread next needs the event loop, the loop has
stopped, so the thread waits forever and the process never exits (seen under load in `bench/rest_bench.py`).
`with_request_draining` shields each Django request from that cancellation and holds the shutdown until they
have finished (at most `DRAIN_SECONDS`): they complete, and answers still reach clients that are connected.
"""

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable, Scope

DRAIN_SECONDS = 10.0

Asgi = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[Any]]


def before_server_shutdown(stop: Callable[[], Awaitable[None]]) -> None:
    """Run `stop` while daphne's Twisted reactor shuts down, before it stops the event loop (daphne sends no
    ASGI lifespan events, and its own cancelling of open connections is not to be relied on)."""
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None or not reactor.running:
        return
    from twisted.internet import defer

    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: defer.Deferred.fromFuture(asyncio.ensure_future(stop()))
    )


def with_request_draining(app: Asgi) -> Asgi:
    in_flight: set[asyncio.Task] = set()
    drain_registered = False

    async def drain() -> None:
        if in_flight:
            await asyncio.wait(set(in_flight), timeout=DRAIN_SECONDS)

    async def application(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        nonlocal drain_registered
        if not drain_registered:
            before_server_shutdown(drain)
            drain_registered = True
        request = asyncio.ensure_future(app(scope, receive, send))
        in_flight.add(request)
        request.add_done_callback(in_flight.discard)
        await asyncio.shield(request)

    return application
