"""MCP over WebSocket at `/mcp/ws`: one JSON-RPC message per text frame, bridged to the SDK server's run loop.

The bearer credential comes in the `Authorization` header or, because the TypeScript SDK's
WebSocketClientTransport cannot send headers, an `access_token` query parameter. The socket joins its
session's channel-layer group, so ending the session anywhere closes it; and before each message, if the
session, credential or principal was invalidated, they are re-checked, which covers a close broadcast lost
while the channel layer was down. Closing, the server says why in a last JSON-RPC error (id null, code -32000; daphne
drops close reasons) and closes with 4401 (credential refused), 4403 (session ended), 4409 (no session could
be opened), 4503 (the server is stopping; the session is ended first) or 4500 (internal error).

A warm read-only tool call is answered here as it arrives, the way the SDK would answer it (`warm_calls`);
every other message goes to the SDK server task.

Frames the SDK cannot take (not JSON, a batch, binary, over `MCP_MAX_FRAME_BYTES`, not a JSON-RPC message)
are answered here with a JSON-RPC error and the connection stays usable.
"""

import asyncio
import contextlib
import contextvars
import json
import logging
import random
import time
from typing import Any
from urllib.parse import parse_qs

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from asgiref.typing import ASGIReceiveCallable, ASGISendCallable
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from mcp.shared.message import SessionMessage
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from kernel import request_context
from kernel.errors import ServiceError
from kernel.graceful_shutdown import before_server_shutdown
from kernel.memory_only import NeedsIO, answering_from_memory
from kernel.metrics import WEBSOCKET_CONNECTIONS
from keys.credentials import CredentialRejected
from mcp_endpoint.connections import LiveConnection, SessionEnded
from mcp_endpoint.server import current_caller_source, jsonrpc_error, mcp_server, not_a_message, run_in_worker
from mcp_endpoint.warm_calls import WarmCalls
from sessions.models import AuthSession
from sessions.services import session_group

logger = logging.getLogger(__name__)

SUBPROTOCOL = "mcp"
CLOSE_UNAUTHENTICATED = 4401
CLOSE_SESSION_ENDED = 4403
CLOSE_REFUSED = 4409
CLOSE_INTERNAL_ERROR = 4500  # daphne (autobahn) closes only with 1000 or 3000-4999
CLOSE_SERVER_STOPPED = 4503
SESSION_ENDED = "session ended"
SERVER_STOPPED = "server stopped"
MAX_CLOSE_REASON_BYTES = 123  # RFC 6455: a close frame's reason fits in 123 bytes
INBOX_SIZE = 64
FINISH_GRACE_SECONDS = 5
FOLLOW_RETRY_SECONDS = (0.5, 30.0)  # first and longest wait before following a failed channel layer again


def _close_reason(text: str) -> str:
    return text.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")


def _presented_credential(scope: dict) -> str:
    """The bearer from `Authorization: Bearer …`, else the `access_token` query parameter; "" if neither."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, credential = value.decode("latin-1").strip().partition(" ")
            return credential.strip() if scheme.lower() == "bearer" else ""
    tokens = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("access_token", [])
    return tokens[0] if tokens else ""


def _header(scope: dict, wanted: bytes) -> str:
    return next((value.decode("latin-1") for name, value in scope.get("headers", []) if name == wanted), "")


def _error_frame(code: int, message: str, request_id: Any = None) -> str:
    return jsonrpc_error(code, message, request_id).model_dump_json(by_alias=True, exclude_unset=True)


def _read_frame_slowly(text: str) -> tuple[types.JSONRPCMessage | None, str]:
    """A frame the one-pass parse refused: parse it step by step to say what is wrong with it (or accept it,
    where only the JSON parsers disagree, e.g. on NaN)."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        return None, _error_frame(types.PARSE_ERROR, "Parse error: the frame is not JSON")
    try:
        return types.jsonrpc_message_adapter.validate_python(raw, by_name=False), ""
    except ValidationError:
        return None, _answer_frame(not_a_message(raw))


def _answer_frame(message: types.JSONRPCMessage) -> str:
    try:
        return message.model_dump_json(by_alias=True, exclude_unset=True)
    except PydanticSerializationError:  # e.g. a lone surrogate echoed back from the request
        request_id = getattr(message, "id", None)
        return _error_frame(types.INTERNAL_ERROR, "The answer could not be encoded as JSON", request_id)


class OpenSockets:
    """The sockets this process serves. daphne stops its event loop on SIGTERM without reliably telling the
    connections first, so a shutdown hook ends their sessions (and closes them with 4503) before that."""

    def __init__(self) -> None:
        self._sockets: set[McpWebSocketConsumer] = set()
        self._hooked = False

    def add(self, socket: "McpWebSocketConsumer") -> None:
        if not self._hooked:
            before_server_shutdown(self.shut_down)
            self._hooked = True
        if socket not in self._sockets:
            self._sockets.add(socket)
            WEBSOCKET_CONNECTIONS.inc()

    def discard(self, socket: "McpWebSocketConsumer") -> None:
        if socket in self._sockets:
            self._sockets.discard(socket)
            WEBSOCKET_CONNECTIONS.dec()

    async def shut_down(self) -> None:
        if self._sockets:
            closing = [asyncio.ensure_future(socket.shut_down()) for socket in list(self._sockets)]
            await asyncio.wait(closing, timeout=FINISH_GRACE_SECONDS)


open_sockets = OpenSockets()


_Frame = tuple[contextvars.Context, SessionMessage | Exception]


class _FramesWithContext:
    """The SDK server's read stream: each frame with the context it was received in (its own request id, see
    `request_context.enter_message`), which the SDK runs that frame's handler in (`last_context`)."""

    __slots__ = ("_frames", "last_context")

    def __init__(self, frames: MemoryObjectReceiveStream[_Frame]) -> None:
        self._frames = frames
        self.last_context: contextvars.Context | None = None

    async def receive(self) -> SessionMessage | Exception:
        self.last_context, item = await self._frames.receive()
        return item

    def __aiter__(self) -> "_FramesWithContext":
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def close(self) -> None:
        self._frames.close()

    async def aclose(self) -> None:
        await self._frames.aclose()

    async def __aenter__(self) -> "_FramesWithContext":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class McpWebSocketConsumer(AsyncWebsocketConsumer):
    """One MCP connection: frames are checked here, queued to the SDK server task, and answered as it finishes
    them (concurrent requests complete out of order, matched by id)."""

    connection: LiveConnection | None = None
    serving: asyncio.Task | None = None
    inbox: MemoryObjectSendStream[_Frame] | None = None
    warm_calls: WarmCalls | None = None
    finished = False

    async def connect(self) -> None:
        subprotocol = SUBPROTOCOL if SUBPROTOCOL in self.scope.get("subprotocols", []) else None
        client = self.scope.get("client") or (None, None)
        try:
            self.connection = await run_in_worker(
                LiveConnection.open,
                _presented_credential(self.scope),
                AuthSession.Channel.MCP_WEBSOCKET,
                client_address=client[0],
                user_agent=_header(self.scope, b"user-agent"),
            )
        except ServiceError as exc:
            await self.accept(subprotocol)
            close_code = CLOSE_UNAUTHENTICATED if isinstance(exc, CredentialRejected) else CLOSE_REFUSED
            await self._stop(close_code, f"{exc.code}: {exc.message}")
            return
        if not await self._join_session_group():  # the per-message re-check still ends the socket
            logger.warning("MCP WebSocket could not join its session group; relying on per-message checks")
        await self.accept(subprotocol)
        open_sockets.add(self)
        self.warm_calls = WarmCalls(mcp_server())
        self.inbox, server_inbox = anyio.create_memory_object_stream[_Frame](INBOX_SIZE)
        current_caller_source.set(self.connection)  # in every frame's context, so in every handler's
        self.serving = asyncio.create_task(self._serve(_FramesWithContext(server_inbox)))

    async def _serve(self, inbox: _FramesWithContext) -> None:
        """Drive the SDK server for this socket; its answers go out as text frames, in completion order."""
        server = mcp_server()
        answers, outgoing = anyio.create_memory_object_stream[SessionMessage](INBOX_SIZE)
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._send_answers, outgoing)
                await server.run(inbox, answers, server.create_initialization_options())
        except Exception:  # a bug in the loop: close this socket, never leak a traceback
            logger.exception("MCP WebSocket server loop failed")
            await self._stop(CLOSE_INTERNAL_ERROR, "internal error")

    async def _send_answers(self, outgoing: MemoryObjectReceiveStream[SessionMessage]) -> None:
        async with outgoing:
            async for answer in outgoing:
                self.warm_calls.answered(answer.message)
                await self.send(text_data=_answer_frame(answer.message))

    async def __call__(self, scope: dict, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        """Channels' consumer loop without its cost per frame. Channels waits for the next frame and the next
        channel-layer message together, starting a task and an `asyncio.wait` for every frame, which with many
        calls in flight cost as much as the tool call itself. Here frames are read in this loop and the
        channel layer in a task of its own; handlers still run one at a time, as in Channels."""
        self.scope = scope
        self.base_send = send
        self.channel_layer = get_channel_layer(self.channel_layer_alias)  # settings always configure one
        self.channel_name = await self.channel_layer.new_channel()
        self._handling = asyncio.Lock()
        helpers = [
            asyncio.create_task(self._follow_channel_layer()),
            asyncio.create_task(self._refresh_session_group()),
        ]
        try:
            while True:
                await self._dispatch_in_turn(await receive())
        except StopConsumer:
            pass
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.wait(helpers)

    async def _follow_channel_layer(self) -> None:
        """Session-end broadcasts. While the channel layer fails (Redis is down) the per-message re-check still
        ends the socket when its session ends, and the layer is tried again with backoff (jittered, so sockets
        do not all return at once). Once it answers, the session group is joined again (a restarted Redis has
        forgotten it) and the session re-checked at once, so a session that ended meanwhile closes its socket
        then, not at the socket's next message."""
        retry_in = FOLLOW_RETRY_SECONDS[0]
        while True:
            followed_at = time.monotonic()
            try:
                while True:
                    await self._dispatch_in_turn(await self.channel_layer.receive(self.channel_name))
            except Exception:  # a channel layer that is down, or a broken handler: never a silent task death
                logger.warning(
                    "MCP WebSocket lost its channel layer; following it again when it answers", exc_info=True
                )
            if (
                time.monotonic() - followed_at > FOLLOW_RETRY_SECONDS[1]
            ):  # it had held for a while: start over
                retry_in = FOLLOW_RETRY_SECONDS[0]
            while True:
                await asyncio.sleep(retry_in * random.uniform(0.5, 1))  # noqa: S311 - jitter, not a secret
                retry_in = min(retry_in * 2, FOLLOW_RETRY_SECONDS[1])
                if await self._follow_again():
                    break
            logger.info("MCP WebSocket follows its channel layer again")

    async def _refresh_session_group(self) -> None:
        """Join the session group again every `MCP_SESSION_GROUP_REFRESH_SECONDS` (jittered). A channel layer
        forgets memberships after its group expiry (a day) and Redis forgets them all in a flush or failover,
        without an error reaching this socket; a socket open longer would otherwise stop hearing its session end."""
        while True:
            await asyncio.sleep(settings.MCP_SESSION_GROUP_REFRESH_SECONDS * random.uniform(0.75, 1))  # noqa: S311
            await self._follow_again()

    async def _follow_again(self) -> bool:
        """Join the session group again and re-check the session; False to try again later."""
        if self.connection is None:  # connect() has not run (or refused): it joins the group itself
            return False
        try:
            if not await self._join_session_group():
                return False
            async with self._handling:
                if self.finished:  # closed meanwhile: leave no membership behind
                    await self._leave_session_group()
                elif self.inbox is not None:
                    await self._still_allowed(active=False)
        except Exception:  # e.g. the database is down for the re-check: never a silent task death
            logger.warning("MCP WebSocket could not re-check its session; trying again", exc_info=True)
            return False
        return True

    async def _join_session_group(self) -> bool:
        try:
            await self.channel_layer.group_add(session_group(self.connection.session_id), self.channel_name)
        except Exception:  # the channel layer is down  # noqa: BLE001
            return False
        return True

    async def _leave_session_group(self) -> None:
        with contextlib.suppress(Exception):  # a channel layer that is down forgets the membership anyway
            await self.channel_layer.group_discard(
                session_group(self.connection.session_id), self.channel_name
            )

    async def _dispatch_in_turn(self, message: dict) -> None:
        async with self._handling:
            await self.dispatch(message)

    async def dispatch(self, message: dict) -> None:
        """Channels closes stale database connections on a worker thread before every frame. Every database
        call here goes through `run_in_worker`, which does that itself, so the extra hop is skipped."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """A frame that breaks this code closes the socket (4500, session ended) instead of killing the
        consumer without its clean-up; the traceback goes to the log only."""
        try:
            await self._receive(text_data)
        except Exception:  # the boundary
            logger.exception("MCP WebSocket frame handling failed")
            await self._stop(CLOSE_INTERNAL_ERROR, "internal error")

    async def _receive(self, text_data: str | None) -> None:
        if self.inbox is None:
            return
        if text_data is None:
            await self.send(text_data=_error_frame(types.INVALID_REQUEST, "Binary frames are not accepted"))
            return
        if len(text_data.encode()) > settings.MCP_MAX_FRAME_BYTES:
            limit = settings.MCP_MAX_FRAME_BYTES
            await self.send(
                text_data=_error_frame(types.INVALID_REQUEST, f"Frames are limited to {limit} bytes")
            )
            return
        try:
            message = types.jsonrpc_message_adapter.validate_json(text_data, by_name=False)
        except ValidationError:
            message, error = _read_frame_slowly(text_data)
            if message is None:
                await self.send(text_data=error)
                return
        own_request = request_context.enter_message(getattr(message, "id", None))
        try:
            await self._handle(message)
        finally:
            request_context.leave_message(own_request)

    async def _handle(self, message: types.JSONRPCMessage) -> None:
        inbox = self.inbox
        if not await self._still_allowed():
            return
        warm_answer = self.warm_calls.answer(self.connection, message)
        if warm_answer is not None:
            await self.send(text_data=_answer_frame(warm_answer))
            return
        self.warm_calls.forwarding(message)
        frame = (contextvars.copy_context(), SessionMessage(message))
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):  # closing meanwhile
            try:  # without a checkpoint, so frames read together are handed over together
                inbox.send_nowait(frame)
            except anyio.WouldBlock:  # the server task is INBOX_SIZE frames behind: wait for it
                await inbox.send(frame)

    async def _still_allowed(self, *, active: bool = True) -> bool:
        """Re-check session and credential if either was invalidated; close the socket if either is gone.
        `active`: the client sent something (it counts as the session being used)."""
        if self._settled(active=active):
            return True
        try:
            await run_in_worker(self.connection.caller, active=active)
        except SessionEnded:
            await self._stop(CLOSE_SESSION_ENDED, SESSION_ENDED)
            return False
        except ServiceError as exc:
            await self._stop(CLOSE_UNAUTHENTICATED, f"{exc.code}: {exc.message}")
            return False
        return True

    def _settled(self, *, active: bool) -> bool:
        """Asked on the event loop, so anything that would need I/O (an invalidation publish still owed) means "no"."""
        try:
            with answering_from_memory():
                return self.connection.is_settled(active=active)
        except NeedsIO:
            return False

    async def session_ended(self, event: dict) -> None:
        """The channel-layer message `sessions.services` sends when this socket's session ends."""
        await self._stop(CLOSE_SESSION_ENDED, SESSION_ENDED)

    async def _stop(self, code: int, reason: str) -> None:
        """Say why in a last JSON-RPC error (daphne drops close reasons), then close with `code`."""
        self.inbox = None
        await self.send(text_data=_error_frame(types.CONNECTION_CLOSED, f"Connection closed: {reason}"))
        await self.close(code=code, reason=_close_reason(reason))

    async def disconnect(self, code: int) -> None:
        await self._finish("disconnected")

    async def shut_down(self) -> None:
        """The server is stopping: tell the client, then end the session while the event loop still runs."""
        if self.finished:
            return
        try:
            await self._stop(CLOSE_SERVER_STOPPED, SERVER_STOPPED)
        finally:
            await self._finish(SERVER_STOPPED)

    async def _finish(self, reason: str) -> None:
        """Cancel in-flight calls, leave the group, and end the session if it is ours, once. The session's end
        is seen through even if this task is cancelled meanwhile: its broadcast needs the event loop."""
        if self.finished:
            return
        self.finished = True
        open_sockets.discard(self)
        self.inbox = None
        if self.serving is not None:
            self.serving.cancel()
            await asyncio.wait([self.serving], timeout=FINISH_GRACE_SECONDS)
        if self.connection is None:
            return
        await self._leave_session_group()
        ending = asyncio.ensure_future(run_in_worker(self.connection.close, reason))
        try:
            await asyncio.shield(ending)
        except asyncio.CancelledError:
            await asyncio.wait([ending], timeout=FINISH_GRACE_SECONDS)
            raise
