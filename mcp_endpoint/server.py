"""The one MCP server every transport drives: the SDK's low-level `Server` with ChittyAuth's tools.

Transports say who is calling by setting `current_caller_source` (a context variable the SDK carries from
the message's sender to its handler). Tool calls run the synchronous services in a pool of worker threads
(`MCP_WORKER_THREADS`), not on the single thread-sensitive executor, so concurrent calls really run
concurrently; each call starts and ends with Django's stale-connection cleanup, as a request would. A call
whose caller is cancelled (a disconnect) still runs to its end in its thread: a transaction is not cut short.

A read-only tool whose services guard their I/O (`answers_from_memory`) is first tried on the event loop
when the connection has nothing to re-check: validating a key or token the process already knows needs no
thread. If anything needs I/O (a cache miss, a due write, an audit record) it is run again in a worker.
On a WebSocket such a call does not even reach this server: `warm_calls` answers it as the SDK would.
"""

import asyncio
import contextvars
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from contextvars import ContextVar
from typing import Any, TypeVar

import mcp_types as types
from django.conf import settings
from django.db import close_old_connections
from mcp.server import Server
from mcp.server._otel import OpenTelemetryMiddleware
from mcp.shared.exceptions import MCPError

from kernel.errors import DATABASE_DOWN, ServiceError, database_unavailable
from kernel.memory_only import NeedsIO, answering_from_memory
from kernel.metrics import MCP_TOOL_CALL_DURATION, MCP_TOOL_CALLS
from mcp_endpoint import tools
from mcp_endpoint.connections import CallerSource

SERVER_NAME = "chittyauth"
SERVER_VERSION = "1.0.0"
INSTRUCTIONS = (
    "ChittyAuth: API keys, JWTs, permission grants and sessions for ChittyIDs. Every tool acts as the "
    "credential this connection authenticated with, within its scopes and its principal's grants."
)

logger = logging.getLogger(__name__)

current_caller_source: ContextVar[CallerSource] = ContextVar("mcp_caller_source")

_Result = TypeVar("_Result")


class DaemonThreadPool(Executor):
    """A fixed pool of daemon threads. Unlike `ThreadPoolExecutor`'s, they never hold up interpreter exit:
    a service call that broadcasts through the channel layer hops back onto the event loop (`async_to_sync`),
    and if daphne stops that loop meanwhile, such a call would wait forever and keep daphne from exiting."""

    def __init__(self, workers: int, name: str) -> None:
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        for number in range(workers):
            threading.Thread(target=self._serve, name=f"{name}-{number}", daemon=True).start()

    def submit(self, function: Callable[..., _Result], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        self._work.put((future, function, args, kwargs))
        return future

    def _serve(self) -> None:
        while True:
            future, function, args, kwargs = self._work.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(function(*args, **kwargs))
            except BaseException as exc:  # handed to the awaiting caller, like ThreadPoolExecutor  # noqa: BLE001
                future.set_exception(exc)


@functools.cache
def _executor() -> DaemonThreadPool:
    return DaemonThreadPool(settings.MCP_WORKER_THREADS, "mcp-service")


def _with_fresh_connections(function: Callable[..., _Result], *args: Any, **kwargs: Any) -> _Result:
    close_old_connections()
    try:
        return function(*args, **kwargs)
    finally:
        close_old_connections()


async def run_in_worker(function: Callable[..., _Result], /, *args: Any, **kwargs: Any) -> _Result:
    """Run synchronous Django code on the MCP worker pool, in a copy of the caller's context (what
    `sync_to_async` would do, without building a wrapper per call on this hot path)."""
    context = contextvars.copy_context()
    call = functools.partial(context.run, _with_fresh_connections, function, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_executor(), call)


def jsonrpc_error(code: int, message: str, request_id: Any = None) -> types.JSONRPCError:
    """A JSON-RPC error answer; an id that no reply could carry back is answered as null."""
    if not isinstance(request_id, str | int) or isinstance(request_id, bool) or not _encodable(request_id):
        request_id = None
    return types.JSONRPCError(jsonrpc="2.0", id=request_id, error=types.ErrorData(code=code, message=message))


def not_a_message(value: Any) -> types.JSONRPCError:
    """The answer to parsed JSON that is not one JSON-RPC 2.0 message (a transport's own check refused it)."""
    if isinstance(value, list):
        return jsonrpc_error(types.INVALID_REQUEST, "JSON-RPC batches are not supported")
    request_id = value.get("id") if isinstance(value, dict) else None
    return jsonrpc_error(types.INVALID_REQUEST, "Not a JSON-RPC 2.0 message", request_id)


def _encodable(value: str | int) -> bool:
    """JSON text may escape lone surrogates ("\\ud800") that no reply can carry back."""
    try:
        str(value).encode()
    except UnicodeEncodeError:
        return False
    return True


def _run_tool(source: CallerSource, name: str, arguments: dict[str, Any] | None) -> tools.ToolOutcome:
    try:
        caller = source.caller()
    except ServiceError as exc:
        return tools.error_outcome(exc.code, exc.message, **exc.extra)
    except NeedsIO:
        raise
    except DATABASE_DOWN as exc:
        error = database_unavailable(exc, f"MCP caller check before tool {name}")
        return tools.error_outcome(error.code, error.message)
    except Exception:  # the boundary, as in tools.call_tool (the SDK would send the exception's text)
        logger.exception("MCP caller check failed before tool %s", name)
        return tools.internal_error_outcome()
    return tools.call_tool(caller, name, arguments)


def answer_from_memory(
    source: CallerSource, name: str, arguments: dict[str, Any] | None
) -> tools.ToolOutcome | None:
    """The tool's outcome if it can be had on the event loop with no I/O; None means run it in a worker."""
    spec = tools.TOOLS.get(name)
    if spec is None or not spec.answers_from_memory:
        return None
    try:
        with answering_from_memory():
            return _run_tool(
                source, name, arguments
            )  # `caller()` raises NeedsIO if it has anything to re-check
    except NeedsIO:
        return None


def _tool_listing(spec: tools.ToolSpec) -> types.Tool:
    return types.Tool(
        name=spec.name,
        title=spec.title,
        description=spec.description,
        input_schema=spec.input_schema,
        output_schema=spec.output_schema,
        annotations=types.ToolAnnotations(
            title=spec.title,
            read_only_hint=spec.read_only,
            destructive_hint=spec.destructive,
            idempotent_hint=spec.read_only,
            open_world_hint=False,
        ),
    )


_LISTING = types.ListToolsResult(tools=[_tool_listing(spec) for spec in tools.TOOLS.values()])


async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    return _LISTING


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    if params.name not in tools.TOOLS:
        raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {params.name}")
    source = current_caller_source.get(None)
    if source is None:
        raise MCPError(code=types.INTERNAL_ERROR, message="This connection has no authenticated caller")
    started = time.perf_counter()
    outcome = answer_from_memory(source, params.name, params.arguments)
    if outcome is None:
        outcome = await run_in_worker(_run_tool, source, params.name, params.arguments)
    count_tool_call(source, params.name, outcome, started)
    return tool_result(outcome)


def count_tool_call(source: CallerSource, name: str, outcome: tools.ToolOutcome, started: float) -> None:
    """Count a finished call of a known tool, begun at `started` (`time.perf_counter()`), in the metrics."""
    MCP_TOOL_CALLS.labels(source.transport, name, "error" if outcome.is_error else "ok").inc()
    MCP_TOOL_CALL_DURATION.labels(source.transport).observe(time.perf_counter() - started)


def tool_result(outcome: tools.ToolOutcome) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=outcome.text)],
        structured_content=outcome.structured,
        is_error=outcome.is_error,
    )


def _input_schema(name: str) -> dict | None:
    spec = tools.TOOLS.get(name)
    return spec.input_schema if spec else None


@functools.cache
def mcp_server() -> Server:
    """The process's MCP server (handlers hold no per-connection state)."""
    server = Server(
        SERVER_NAME,
        version=SERVER_VERSION,
        title="ChittyAuth",
        instructions=INSTRUCTIONS,
        get_tool_input_schema=_input_schema,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
    if not settings.MCP_OPENTELEMETRY:
        server.middleware = [m for m in server.middleware if not isinstance(m, OpenTelemetryMiddleware)]
    return server
