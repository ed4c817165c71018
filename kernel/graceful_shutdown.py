"""Stopping daphne cleanly while Django requests are in flight.

On SIGTERM daphne cancels every running application instance. A Django request cancelled that way leaves
its worker thread running the middleware chain; when that thread next needs the event loop, the loop has
stopped, so the thread waits forever and the process never exits (seen under load in `bench/rest_bench.py`).
`with_request_draining` shields each Django request from that cancellation and holds the shutdown until no
request is running, including any that arrived meanwhile (at most `DRAIN_SECONDS`, after which what is left
is logged): they complete, and answers still reach clients that are connected.
"""

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable, Scope

logger = logging.getLogger(__name__)

DRAIN_SECONDS = 10.0

Asgi = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[Any]]


def before_server_shutdown(stop: Callable[[], Awaitable[None]]) -> None:
    """Run `stop` while daphne's Twisted reactor shuts down, before it stops the event loop (daphne sends no
    ASGI lifespan events, and its own cancelling of open connections is not to be relied on)."""
    reactor = sys.modules.get("twisted.internet.reactor")  # daphne installs it before loading the app
    if reactor is None:
        return
    from twisted.internet import defer

    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: defer.Deferred.fromFuture(asyncio.ensure_future(stop()))
    )


def with_request_draining(app: Asgi) -> Asgi:
    in_flight: set[asyncio.Task] = set()

    async def drain() -> None:
        deadline = asyncio.get_running_loop().time() + DRAIN_SECONDS
        while in_flight:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                logger.warning("Stopping with %d Django requests still running", len(in_flight))
                return
            await asyncio.wait(set(in_flight), timeout=left)

    before_server_shutdown(drain)

    async def application(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        request = asyncio.ensure_future(app(scope, receive, send))
        in_flight.add(request)
        request.add_done_callback(in_flight.discard)
        try:
            await asyncio.shield(request)
        except asyncio.CancelledError:
            request.add_done_callback(_log_failure)  # nobody is left to see it fail
            raise

    return application


def _log_failure(request: asyncio.Task) -> None:
    if not request.cancelled() and request.exception() is not None:
        logger.error("A Django request failed while the server was stopping", exc_info=request.exception())
