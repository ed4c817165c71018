"""Warm read-only tool calls on a WebSocket, answered as they arrive instead of through the SDK's pipeline.

The SDK hands every request through a relay stream, its dispatcher, a task of its own and its middleware
chain: about three quarters of a warm `validate_api_key` call's server time, and the reason calls in flight
went little faster than calls one after another. A call that `answer_from_memory` can answer on the event
loop needs none of that. It is answered here the way the SDK would: its parameters checked by the SDK's own
rules for the connection's protocol version (`mcp_types.methods`), its result built by the same
`tool_result` and shaped by the same per-version serializer. A test holds every answer given here to the
SDK's own answer for the same call, at every handshake protocol version.

Anything else goes to the SDK unchanged, and so does everything this module cannot be sure of:

- every request until the SDK has answered the connection's `initialize` (that answer fixes the protocol
  version), and every request after a second `initialize`;
- a call whose parameters carry `_meta` (the 2026-07-28 per-request envelope, progress tokens), or that either
  of the SDK's parameter checks refuses (the SDK words the refusal);
- every call when the server has middleware (`MCP_OPENTELEMETRY`) or cache hints, or `MCP_WARM_CALLS` is off;
- a call the tool cannot answer from memory: a cache miss, an audit record or a due write needs a worker.
"""

import logging
import time
from typing import Any

import mcp_types as types
from django.conf import settings
from mcp.server import Server
from mcp_types import methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from mcp_endpoint.connections import CallerSource
from mcp_endpoint.server import answer_from_memory, count_tool_call, jsonrpc_error, tool_result

logger = logging.getLogger(__name__)

CALL_TOOL = "tools/call"


class WarmCalls:
    """One connection's view of its MCP handshake, enough to know when a tool call may skip the SDK."""

    def __init__(self, server: Server) -> None:
        self._enabled = settings.MCP_WARM_CALLS and not server.middleware and not server.cache_hints
        self._params_type = server.get_request_handler(CALL_TOOL).params_type
        self._initialize_id: types.RequestId | None = None
        self._version: str | None = None

    def forwarding(self, message: types.JSONRPCMessage) -> None:
        """Note a message handed to the SDK: its `initialize` is watched for its answer."""
        if isinstance(message, types.JSONRPCRequest) and message.method == "initialize":
            if self._initialize_id is not None:
                self._enabled = False  # a second handshake: the SDK alone keeps track from here
            self._initialize_id = message.id

    def answered(self, message: types.JSONRPCMessage) -> None:
        """Note an answer the SDK sent: a successful `initialize` answer opens the way for warm calls."""
        if (
            self._version is None
            and isinstance(message, types.JSONRPCResponse)
            and message.id == self._initialize_id
        ):
            version = message.result.get("protocolVersion")
            if version in HANDSHAKE_PROTOCOL_VERSIONS and version not in MODERN_PROTOCOL_VERSIONS:
                self._version = version

    def answer(
        self, source: CallerSource, message: types.JSONRPCMessage
    ) -> types.JSONRPCResponse | types.JSONRPCError | None:
        """The answer to a warm tool call, or None: hand the message to the SDK."""
        if not (
            self._enabled
            and self._version is not None
            and isinstance(message, types.JSONRPCRequest)
            and message.method == CALL_TOOL
        ):
            return None
        params = message.params
        if params is None or "_meta" in params:
            return None
        try:  # the SDK's two checks: the protocol version's surface, then its handler's own parameter model
            methods.validate_client_request(CALL_TOOL, self._version, params)
            call = self._params_type.model_validate(params, by_name=False)
        except (ValidationError, KeyError, ValueError):  # the SDK words the refusal
            return None
        started = time.perf_counter()
        outcome = answer_from_memory(source, call.name, call.arguments)
        if outcome is None:
            return None
        count_tool_call(source, call.name, outcome, started)
        return self._response(
            message.id, tool_result(outcome).model_dump(by_alias=True, mode="json", exclude_none=True)
        )

    def _response(
        self, request_id: types.RequestId, result: dict[str, Any]
    ) -> types.JSONRPCResponse | types.JSONRPCError:
        try:
            shaped = methods.serialize_server_result(CALL_TOOL, self._version, result)
        except ValidationError:  # as the SDK answers a handler's malformed result
            logger.exception("a warm tool result does not fit protocol version %s", self._version)
            return jsonrpc_error(types.INTERNAL_ERROR, "Handler returned an invalid result", request_id)
        return types.JSONRPCResponse(jsonrpc="2.0", id=request_id, result=shaped)
