"""MCP over Streamable HTTP at `/mcp`, with RFC 9728 protected-resource metadata.

The SDK does the protocol: its bearer middleware (with our `TokenVerifier`, so the rules are REST's) and its
stateful `StreamableHTTPSessionManager`. What is ours:

- Sessions. A handshake-era MCP session (an `initialize` answered with an `Mcp-Session-Id`) is one ChittyAuth
  session on channel `mcp-http`, ended when the client deletes the MCP session, when the server stops, or
  once it has idled past `SESSION_TIMEOUT` (as the SDK drops it; noticed when the next MCP session opens). Ending the ChittyAuth session elsewhere makes the MCP session
  answer 404 (the client starts a new one). A 2026-era request carries no session; it runs in its credential's
  `mcp-http` session, as REST calls run in their `rest` one.
- Lifecycle. daphne sends no ASGI lifespan events, so the session manager starts on the first request and
  stops before the reactor shuts down, letting daphne exit promptly on SIGTERM.
- Host and browser-origin checks, as Django applies `ALLOWED_HOSTS` to every other path.
"""

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from django.conf import settings
from mcp.server.auth.handlers.metadata import ProtectedResourceMetadataHandler
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import BearerAuthBackend, RequireAuthMiddleware
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.routes import build_resource_metadata_url, cors_middleware
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.auth import ProtectedResourceMetadata
from mcp_types import INVALID_REQUEST, ErrorData, JSONRPCError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import AnyHttpUrl, PrivateAttr
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.responses import Response
from starlette.routing import Route

from kernel.callers import Caller
from kernel.errors import ServiceError
from kernel.graceful_shutdown import before_server_shutdown
from kernel.origins import host_allowed, origin_allowed
from keys.credentials import CredentialRejected, authenticate_bearer
from mcp_endpoint.connections import ConnectionSession, FixedCaller, SessionEnded
from mcp_endpoint.server import current_caller_source, mcp_server, run_in_worker
from oauth.rules import supported_scopes
from sessions.models import AuthSession
from sessions.services import touch_credential_session

logger = logging.getLogger(__name__)

MCP_PATH = "/mcp"
METADATA_PATHS = ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource")
PROTOCOL_VERSION_HEADER = b"mcp-protocol-version"
SESSION_HEADER = MCP_SESSION_ID_HEADER.lower().encode()
STOP_TIMEOUT_SECONDS = 5.0
SESSION_GONE = "Session not found: its ChittyAuth session has ended"

# Who is sending the request being authenticated, for the audit record of a refused credential.
_request_client: contextvars.ContextVar[tuple[str | None, str]] = contextvars.ContextVar("mcp_request_client")

Asgi = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]


def _header(headers: list[tuple[bytes, bytes]], wanted: bytes) -> str | None:
    return next((value.decode("latin-1") for name, value in headers if name.lower() == wanted), None)


def _jsonrpc_error_response(message: str, status: int) -> Response:
    body = JSONRPCError(jsonrpc="2.0", id=None, error=ErrorData(code=INVALID_REQUEST, message=message))
    return Response(
        body.model_dump_json(by_alias=True, exclude_unset=True), status, media_type="application/json"
    )


# ---------------------------------------------------------------------------------------------------------
# Authentication


class CallerAccessToken(AccessToken):
    """The SDK's view of a bearer, remembering the `Caller` it authenticated as."""

    _caller: Caller = PrivateAttr()

    @property
    def caller(self) -> Caller:
        return self._caller


class ChittyAuthTokenVerifier(TokenVerifier):
    """The SDK's bearer check, answered by `authenticate_bearer` (refusals are audited there)."""

    async def verify_token(self, token: str) -> CallerAccessToken | None:
        client_address, user_agent = _request_client.get((None, ""))
        try:
            caller = await run_in_worker(
                authenticate_bearer, token, client_address=client_address, user_agent=user_agent
            )
        except CredentialRejected:
            return None
        access = CallerAccessToken(
            token=token, client_id=caller.credential_id, scopes=list(caller.scopes), subject=caller.chitty_id
        )
        access._caller = caller
        return access


# ---------------------------------------------------------------------------------------------------------
# MCP sessions ↔ ChittyAuth sessions


@dataclass
class _HttpSession:
    credential_id: str
    opener: Caller
    session: ConnectionSession | None  # None: the SDK opened it but we could not back it with a session
    in_flight: int = 0
    last_active: float = field(default_factory=time.monotonic)
    ended: bool = False


class HttpSessions:
    """The ChittyAuth session behind each MCP session id of this process. An entry whose session ended
    elsewhere stays (answering 404) until the MCP session is deleted or idles out."""

    def __init__(self) -> None:
        self._by_mcp_id: dict[str, _HttpSession] = {}

    def get(self, mcp_session_id: str) -> _HttpSession | None:
        return self._by_mcp_id.get(mcp_session_id)

    async def open(self, mcp_session_id: str, caller: Caller) -> None:
        await self._end_idle()
        session = await run_in_worker(ConnectionSession.open, caller, AuthSession.Channel.MCP_HTTP)
        self._by_mcp_id[mcp_session_id] = _HttpSession(caller.credential_id, caller, session)

    def refuse(self, mcp_session_id: str, caller: Caller) -> None:
        self._by_mcp_id[mcp_session_id] = _HttpSession(caller.credential_id, caller, None, ended=True)

    async def end(self, mcp_session_id: str, reason: str) -> None:
        """Forget the MCP session, ending its ChittyAuth session unless that has ended already."""
        entry = self._by_mcp_id.pop(mcp_session_id, None)
        if entry is not None and entry.session is not None and not entry.ended:
            entry.ended = True
            await run_in_worker(entry.session.end, entry.opener, reason)

    async def _end_idle(self) -> None:
        """The SDK drops MCP sessions idle past `SESSION_TIMEOUT`; end theirs too."""
        deadline = time.monotonic() - settings.SESSION_TIMEOUT
        idle = [
            mcp_id
            for mcp_id, entry in self._by_mcp_id.items()
            if entry.in_flight == 0 and entry.last_active < deadline
        ]
        for mcp_id in idle:
            await self.end(mcp_id, "idle")

    async def end_all(self, reason: str) -> None:
        for mcp_id in list(self._by_mcp_id):
            await self.end(mcp_id, reason)


# ---------------------------------------------------------------------------------------------------------
# The session manager's lifecycle under daphne


class SessionManagerHost:
    """Starts the SDK's session manager on first use (in a task of its own, outside any request's context)
    and stops it on shutdown."""

    def __init__(self) -> None:
        self.manager: StreamableHTTPSessionManager | None = None
        self._lock: asyncio.Lock | None = None
        self._stopping = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def running_manager(self, on_first_start: Callable[[], None]) -> StreamableHTTPSessionManager:
        if self.manager is not None:
            return self.manager
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.manager is None:
                self.manager = await self._start()
                on_first_start()
        return self.manager

    async def _start(self) -> StreamableHTTPSessionManager:
        manager = StreamableHTTPSessionManager(
            app=mcp_server(), session_idle_timeout=settings.SESSION_TIMEOUT
        )
        started = asyncio.Event()
        self._task = asyncio.create_task(self._run(manager, started), context=contextvars.Context())
        waiting = asyncio.ensure_future(started.wait())
        await asyncio.wait([waiting, self._task], return_when=asyncio.FIRST_COMPLETED)
        if not started.is_set():
            waiting.cancel()
            self._task.result()
        return manager

    async def _run(self, manager: StreamableHTTPSessionManager, started: asyncio.Event) -> None:
        async with manager.run():
            started.set()
            await self._stopping.wait()

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(self._task, STOP_TIMEOUT_SECONDS)
        except TimeoutError:
            logger.warning("The MCP session manager did not stop within %ss", STOP_TIMEOUT_SECONDS)


# ---------------------------------------------------------------------------------------------------------
# The endpoint


class McpEndpoint:
    """`/mcp` after authentication: binds each request to its ChittyAuth session, then hands it to the SDK."""

    def __init__(self) -> None:
        self.host = SessionManagerHost()
        self.sessions = HttpSessions()

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        caller = scope["user"].access_token.caller
        manager = await self.host.running_manager(lambda: before_server_shutdown(self.shutdown))
        headers = scope["headers"]
        version = _header(headers, PROTOCOL_VERSION_HEADER)
        mcp_session_id = _header(headers, SESSION_HEADER)
        if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            session_id = await run_in_worker(touch_credential_session, caller, AuthSession.Channel.MCP_HTTP)
            await self._serve(manager, replace(caller, session_id=session_id), scope, receive, send)
        elif mcp_session_id is None:
            await manager.handle_request(
                scope, receive, self._binding_new_sessions(caller, scope, receive, send)
            )
        else:
            await self._serve_in_session(manager, mcp_session_id, caller, scope, receive, send)

    async def _serve(
        self,
        manager: StreamableHTTPSessionManager,
        caller: Caller | None,
        scope: Scope,
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
    ) -> None:
        token = current_caller_source.set(FixedCaller(caller)) if caller else None
        try:
            await manager.handle_request(scope, receive, send)
        finally:
            if token is not None:
                current_caller_source.reset(token)

    def _binding_new_sessions(
        self, caller: Caller, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> ASGISendCallable:
        """Open the ChittyAuth session as the SDK answers an `initialize` with a new session id."""
        refused: list[Response] = []

        async def watch(message) -> None:
            if refused:
                return
            new_id = None
            if message["type"] == "http.response.start" and message["status"] == 200:
                new_id = _header(message.get("headers", []), SESSION_HEADER)
            if new_id is not None:
                try:
                    await self.sessions.open(new_id, caller)
                except ServiceError as exc:
                    self.sessions.refuse(new_id, caller)
                    refused.append(_jsonrpc_error_response(f"{exc.code}: {exc.message}", exc.http_status))
                    await refused[0](scope, receive, send)
                    return
            await send(message)

        return watch

    async def _serve_in_session(
        self,
        manager: StreamableHTTPSessionManager,
        mcp_session_id: str,
        caller: Caller,
        scope: Scope,
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
    ) -> None:
        entry = self.sessions.get(mcp_session_id)
        if entry is None or entry.credential_id != caller.credential_id:
            await self._serve(manager, None, scope, receive, send)  # the SDK answers 404 for it
            return
        if entry.ended or entry.session is None:
            await _jsonrpc_error_response(SESSION_GONE, 404)(scope, receive, send)
            return
        try:
            await run_in_worker(entry.session.ensure_live)
        except SessionEnded:
            entry.ended = True
            await _jsonrpc_error_response(SESSION_GONE, 404)(scope, receive, send)
            return
        entry.in_flight += 1

        async def ending_on_delete(message) -> None:
            """A deleted MCP session's ChittyAuth session has ended by the time the client hears so."""
            if (
                scope["method"] == "DELETE"
                and message["type"] == "http.response.start"
                and message["status"] < 300
            ):
                await self.sessions.end(mcp_session_id, "MCP session deleted")
            await send(message)

        try:
            bound = replace(caller, session_id=entry.session.session_id)
            await self._serve(manager, bound, scope, receive, ending_on_delete)
        finally:
            entry.in_flight -= 1
            entry.last_active = time.monotonic()

    async def shutdown(self) -> None:
        await self.host.stop()
        await self.sessions.end_all("server stopped")


def _metadata_route(path: str, handler: ProtectedResourceMetadataHandler) -> Route:
    return Route(
        path, endpoint=cors_middleware(handler.handle, ["GET", "OPTIONS"]), methods=["GET", "OPTIONS"]
    )


def build_mcp_app() -> Starlette:
    """`/mcp` behind the SDK's bearer middleware, and the RFC 9728 metadata naming this service as its
    authorization server."""
    resource = AnyHttpUrl(settings.MCP_RESOURCE_URL)
    metadata = ProtectedResourceMetadata(
        resource=resource,
        authorization_servers=[AnyHttpUrl(settings.OAUTH_ISSUER)],
        scopes_supported=supported_scopes(),
        resource_name="ChittyAuth MCP",
        bearer_methods_supported=["header"],
    )
    handler = ProtectedResourceMetadataHandler(metadata)
    endpoint = McpEndpoint()
    return Starlette(
        routes=[
            Route(
                MCP_PATH, endpoint=RequireAuthMiddleware(endpoint, [], build_resource_metadata_url(resource))
            ),
            *(_metadata_route(path, handler) for path in METADATA_PATHS),
        ],
        middleware=[
            Middleware(AuthenticationMiddleware, backend=BearerAuthBackend(ChittyAuthTokenVerifier())),
            Middleware(AuthContextMiddleware),
        ],
    )


def _is_mcp_path(path: str) -> bool:
    return path in (MCP_PATH, f"{MCP_PATH}/") or path.startswith(METADATA_PATHS[1])


def with_mcp_http(django_app: Asgi) -> Asgi:
    """The HTTP application: MCP paths to the MCP app (after Django's host check and a browser-origin
    check), everything else to Django."""
    mcp_app = build_mcp_app()

    async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if not _is_mcp_path(scope["path"]):
            await django_app(scope, receive, send)
            return
        headers = scope["headers"]
        if not host_allowed(_header(headers, b"host")):
            await Response("Invalid Host header", 400)(scope, receive, send)
            return
        if not origin_allowed(_header(headers, b"origin")):
            await Response("Origin not allowed", 403)(scope, receive, send)
            return
        client = scope.get("client") or (None, None)
        token = _request_client.set((client[0], _header(headers, b"user-agent") or ""))
        try:
            await mcp_app(scope, receive, send)
        finally:
            _request_client.reset(token)

    return app
