"""What one request is, for its log lines and audit events: a request id (the client's `X-Request-ID` when it is a
sane one, otherwise a new one), returned on every HTTP answer, and the principal and credential once the request
has authenticated. One mutable record per request in a context variable: every task and thread serving the
request (Django runs its view in a task and a thread of its own) sees what any of them learns. Each HTTP request is timed for the metrics and gets one access line on the `chittyauth.access` logger (path only: a query string
may carry a secret), so daphne's own plain-text access log can be switched off (`daphne -v 0`)."""

import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent, Scope

from kernel.metrics import HTTP_REQUEST_DURATION

access_log = logging.getLogger("chittyauth.access")

HEADER = b"x-request-id"
# Long enough for a UUID or a trace id, short and plain enough to log and index as it is.
_ACCEPTED = re.compile(rb"[A-Za-z0-9._:-]{8,128}")
_CREDENTIAL_PREFIXES = (b"chitty_", b"eyJ")  # an API key; a JWT's encoded header


@dataclass
class RequestContext:
    request_id: str = ""
    principal: str = ""
    credential_id: str = ""


_current: ContextVar[RequestContext | None] = ContextVar("request_context", default=None)

Asgi = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[Any]]


def request_id_for(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's request id when it sent exactly one acceptable one; a new one otherwise. One shaped like a
    credential (an API key, a JWT) is refused: ids are stored unmasked in the audit trail."""
    sent = [value for name, value in headers if name.lower() == HEADER]
    if len(sent) == 1 and _ACCEPTED.fullmatch(sent[0]) and not sent[0].startswith(_CREDENTIAL_PREFIXES):
        return sent[0].decode("ascii")
    return secrets.token_hex(16)


_PLAIN_MESSAGE_ID = re.compile(r"[A-Za-z0-9._-]{1,40}")


def enter_message(message_id: object) -> Token:
    """Give one message on a long-lived connection (an MCP WebSocket frame) a request id of its own: the
    connection's, a colon, and the message's JSON-RPC id when that is plain (so a client finds its own call),
    otherwise a random suffix. Undo with `leave_message` once the frame is handled."""
    connection = current()
    text = str(message_id) if isinstance(message_id, int | str) and not isinstance(message_id, bool) else ""
    suffix = text if _PLAIN_MESSAGE_ID.fullmatch(text) else secrets.token_hex(4)
    own = RequestContext(f"{connection.request_id}:{suffix}", connection.principal, connection.credential_id)
    return _current.set(own)


def leave_message(token: Token) -> None:
    _current.reset(token)


def current() -> RequestContext:
    """This request's record; an empty one outside any request (a worker, a shell)."""
    return _current.get() or RequestContext()


def identify(chitty_id: str, credential: str) -> None:
    """The request has authenticated as `chitty_id` with `credential` (an id, never the secret)."""
    context = _current.get()
    if context is not None:
        context.principal, context.credential_id = chitty_id, credential


def with_request_id(app: Asgi) -> Asgi:
    """Outermost ASGI wrapper: every HTTP request and WebSocket gets its id; HTTP answers carry it back."""

    async def application(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await app(scope, receive, send)
        current = request_id_for(list(scope.get("headers", ())))
        token = _current.set(RequestContext(request_id=current))
        try:
            if scope["type"] == "websocket":
                return await app(scope, receive, send)
            return await _answer_with_id(app, scope, receive, send, current)
        finally:
            # A server that runs the next request in this context (a test's in-process ASGI call) must not
            # find this request's id and principal still set.
            _current.reset(token)

    return application


async def _answer_with_id(
    app: Asgi, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable, current: str
) -> None:
    started, status = time.perf_counter(), 0

    async def send_with_id(event: ASGISendEvent) -> None:
        nonlocal status
        if event["type"] == "http.response.start":
            status = event["status"]
            headers = [(name, value) for name, value in event.get("headers", ()) if name.lower() != HEADER]
            event = {**event, "headers": [*headers, (b"X-Request-ID", current.encode("ascii"))]}
        await send(event)

    try:
        await app(scope, receive, send_with_id)
    finally:
        seconds = time.perf_counter() - started
        _log_access(scope, status, seconds)
        door = front_door(scope.get("path", ""))
        if not (door == "mcp_http" and scope.get("method") == "GET"):  # a GET there is an event stream
            HTTP_REQUEST_DURATION.labels(door).observe(seconds)


def front_door(path: str) -> str:
    """Which interface an HTTP request came in by, for the metrics: a few fixed names, never the path."""
    if path.startswith("/api/"):
        return "rest"
    if path == "/mcp" or path.startswith("/mcp/"):
        return "mcp_http"
    if path.startswith("/admin/"):
        return "admin"
    return "other"


def _log_access(scope: Scope, status: int, seconds: float) -> None:
    method, path, milliseconds = scope.get("method", ""), scope.get("path", ""), round(seconds * 1000, 1)
    fields = {"method": method, "path": path, "status": status, "duration_ms": milliseconds}
    access_log.info("%s %s %s %sms", method, path, status or "-", milliseconds, extra=fields)
