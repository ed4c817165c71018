"""Warm tool calls answered beside the SDK (mcp_endpoint/warm_calls.py) answer exactly as the SDK does.

The SDK server runs here over memory streams, driven as the WebSocket consumer drives it, with the consumer's
`WarmCalls` watching the same messages; each call is put to both and the answers compared as JSON text.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import mcp_types as types
import pytest
from channels.testing import WebsocketCommunicator
from mcp.server import Server
from mcp.shared.message import SessionMessage
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION

from grants.services import grant_permission
from kernel.callers import Caller
from keys.services import generate_api_key, validate_api_key
from keys.tokens import generate_jwt, validate_jwt
from mcp_endpoint.connections import CallerSource, LiveConnection
from mcp_endpoint.consumers import McpWebSocketConsumer, _answer_frame
from mcp_endpoint.server import current_caller_source, mcp_server
from mcp_endpoint.warm_calls import WarmCalls
from sessions.models import AuthSession

SYSTEM = Caller.system("tests")
VALIDATOR = "CHITTY-PEO-WARMVALIDATOR-A"
OWNER = "CHITTY-PEO-WARMOWNER-A"
ANSWER_SECONDS = 10


@dataclass(frozen=True)
class Cast:
    bearer: str
    connection: LiveConnection
    key: str  # another principal's key, already validated once (so in memory)
    token: str  # likewise a JWT
    cold_key: str  # a key never validated


@pytest.fixture
def cast(make_identity) -> Cast:
    make_identity(VALIDATOR)
    make_identity(OWNER)
    for permission in ("api_keys:validate", "tokens:validate"):
        grant_permission(SYSTEM, grantee_chitty_id=VALIDATOR, permission=permission)
    grant_permission(SYSTEM, grantee_chitty_id=OWNER, permission="documents:read")
    bearer = generate_api_key(SYSTEM, chitty_id=VALIDATOR, name="warm caller").secret
    connection = LiveConnection.open(bearer, AuthSession.Channel.MCP_WEBSOCKET)
    caller = connection.caller()
    key = generate_api_key(SYSTEM, chitty_id=OWNER, name="warm key", scopes=["documents:read"]).secret
    token = generate_jwt(SYSTEM, chitty_id=OWNER, scopes=["documents:read"]).token
    assert validate_api_key(caller, key).valid and validate_jwt(caller, token).valid
    cold_key = generate_api_key(SYSTEM, chitty_id=OWNER, name="cold key").secret
    return Cast(bearer, connection, key, token, cold_key)


def request(request_id: int | str, method: str, params: dict | None = None) -> types.JSONRPCRequest:
    return types.JSONRPCRequest(jsonrpc="2.0", id=request_id, method=method, params=params)


def tool_call(request_id: int | str, name: str, arguments: dict | None = None) -> types.JSONRPCRequest:
    params = {"name": name} if arguments is None else {"name": name, "arguments": arguments}
    return request(request_id, "tools/call", params)


def initialize(request_id: int, version: str) -> types.JSONRPCRequest:
    client = {"name": "warm-calls-test", "version": "1"}
    return request(
        request_id, "initialize", {"protocolVersion": version, "capabilities": {}, "clientInfo": client}
    )


class Socket:
    """What the consumer does with each message: offer it to `WarmCalls`, else hand it to the SDK."""

    def __init__(self, connection: CallerSource, warm_calls: WarmCalls, to_server, from_server) -> None:
        self.connection = connection
        self.warm_calls = warm_calls
        self._to_server = to_server
        self._from_server = from_server

    def warm_answer(self, message: types.JSONRPCMessage) -> str | None:
        answer = self.warm_calls.answer(self.connection, message)
        return None if answer is None else _answer_frame(answer)

    async def sdk_answer(self, message: types.JSONRPCRequest) -> str:
        self.warm_calls.forwarding(message)
        await self._to_server.send(SessionMessage(message))
        with anyio.fail_after(ANSWER_SECONDS):
            answer = (await self._from_server.receive()).message
        self.warm_calls.answered(answer)
        return _answer_frame(answer)

    async def handshake(self, version: str) -> None:
        await self.sdk_answer(initialize(0, version))
        self.warm_calls.forwarding(
            types.JSONRPCNotification(jsonrpc="2.0", method="notifications/initialized")
        )


@contextlib.asynccontextmanager
async def sdk_socket(connection: CallerSource, server: Server | None = None) -> AsyncIterator[Socket]:
    server = server or mcp_server()
    to_server, inbox = anyio.create_memory_object_stream[SessionMessage](16)
    answers, from_server = anyio.create_memory_object_stream[SessionMessage](16)
    current_caller_source.set(connection)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(server.run, inbox, answers, server.create_initialization_options())
        yield Socket(connection, WarmCalls(server), to_server, from_server)
        tasks.cancel_scope.cancel()


def warm_calls(cast: Cast) -> list[tuple[str, dict | None]]:
    return [
        ("validate_api_key", {"api_key": cast.key}),
        ("validate_jwt", {"token": cast.token}),
        ("validate_api_key", {"api_key": cast.key, "unexpected": 1}),  # INVALID_INPUT, a tool error
        ("validate_api_key", None),  # no arguments at all: INVALID_INPUT too
    ]


@pytest.mark.parametrize("version", sorted(HANDSHAKE_PROTOCOL_VERSIONS))
def test_a_warm_call_is_answered_exactly_as_the_sdk_answers_it(cast, version):
    async def scenario():
        async with sdk_socket(cast.connection) as socket:
            await socket.handshake(version)
            for number, (name, arguments) in enumerate(warm_calls(cast), start=1):
                for request_id in (number, f"call-{number}"):
                    call = tool_call(request_id, name, arguments)
                    warm = socket.warm_answer(call)
                    assert warm is not None, (name, arguments)
                    assert warm == await socket.sdk_answer(call)

    asyncio.run(scenario())


def test_calls_the_warm_path_cannot_vouch_for_go_to_the_sdk(cast):
    calls = [
        request(1, "ping"),
        tool_call(2, "validate_api_key", {"api_key": cast.cold_key}),  # not in memory: needs a worker
        tool_call(3, "validate_jwt", {"token": cast.key}),  # a refusal is audited: needs a worker
        tool_call(4, "whoami", {}),  # not a tool that answers from memory
        tool_call(5, "no_such_tool", {}),
        request(5, "tools/call", {"arguments": {"api_key": cast.key}}),  # no name: the SDK words it
        request(
            6, "tools/call", {"name": "validate_api_key", "arguments": {"api_key": cast.key}, "_meta": {}}
        ),
        request(7, "tools/call", {"name": "validate_api_key", "arguments": "not an object"}),
        *(  # the version's surface lets these by; the SDK handler's own parameter model refuses them
            request(
                8, "tools/call", {"name": "validate_api_key", "arguments": {"api_key": cast.key}, **extra}
            )
            for extra in ({"requestState": 5}, {"inputResponses": "nope"}, {"inputResponses": [1, 2]})
        ),
    ]

    async def scenario():
        async with sdk_socket(cast.connection) as socket:
            await socket.handshake(LATEST_HANDSHAKE_VERSION)
            assert socket.warm_answer(tool_call(8, "validate_api_key", {"api_key": cast.key})) is not None
            for call in calls:
                assert socket.warm_answer(call) is None, call
            refused = json.loads(await socket.sdk_answer(calls[-1]))
            assert refused["error"]["code"] == types.INVALID_PARAMS

    asyncio.run(scenario())


def test_only_after_the_sdk_accepted_the_one_initialize(cast):
    call = tool_call(9, "validate_api_key", {"api_key": cast.key})

    async def scenario():
        async with sdk_socket(cast.connection) as socket:
            assert socket.warm_answer(call) is None
            refused = json.loads(await socket.sdk_answer(request(1, "initialize", {})))
            assert "error" in refused
            assert socket.warm_answer(call) is None
        async with sdk_socket(cast.connection) as socket:
            socket.warm_calls.forwarding(initialize(1, LATEST_HANDSHAKE_VERSION))
            assert socket.warm_answer(call) is None  # sent, not yet answered
        async with sdk_socket(cast.connection) as socket:
            await socket.handshake(LATEST_HANDSHAKE_VERSION)
            assert socket.warm_answer(call) is not None
            await socket.sdk_answer(initialize(2, "2025-03-26"))  # a second handshake
            assert socket.warm_answer(call) is None
            answered = json.loads(await socket.sdk_answer(call))["result"]
            assert answered["content"][0]["text"].startswith("✅ Valid API Key")

    asyncio.run(scenario())


@pytest.mark.parametrize("switch", ["MCP_WARM_CALLS", "MCP_OPENTELEMETRY"])
def test_switched_off_by_setting_or_by_sdk_middleware(cast, settings, switch):
    settings.MCP_WARM_CALLS = switch != "MCP_WARM_CALLS"
    settings.MCP_OPENTELEMETRY = switch == "MCP_OPENTELEMETRY"
    mcp_server.cache_clear()

    async def scenario():
        async with sdk_socket(cast.connection, mcp_server()) as socket:
            await socket.handshake(LATEST_HANDSHAKE_VERSION)
            call = tool_call(1, "validate_api_key", {"api_key": cast.key})
            assert socket.warm_answer(call) is None
            assert "✅ Valid API Key" in await socket.sdk_answer(call)

    try:
        asyncio.run(scenario())
    finally:
        mcp_server.cache_clear()


class BrokenSource:
    """A transport whose caller check fails unexpectedly (say its database is gone)."""

    transport = "mcp-websocket"

    def caller(self) -> Caller:
        raise RuntimeError("could not connect: password hunter2 rejected")


def test_a_failing_caller_check_is_the_same_generic_tool_error_on_both_paths(cast):
    call = tool_call(1, "validate_api_key", {"api_key": cast.key})

    async def scenario():
        async with sdk_socket(BrokenSource()) as socket:
            await socket.handshake(LATEST_HANDSHAKE_VERSION)
            warm = socket.warm_answer(call)
            assert warm is not None
            assert warm == await socket.sdk_answer(call)
            return warm

    warm = asyncio.run(scenario())
    result = json.loads(warm)["result"]
    assert result["isError"] is True
    assert result["structuredContent"]["error"]["code"] == "INTERNAL_ERROR"
    assert "hunter2" not in warm


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("warm", [True, False])
def test_the_websocket_consumer_answers_a_warm_call_as_it_arrives(cast, settings, warm):
    """A ping and then a warm call, read together: the call is answered before the consumer even yields to
    the SDK's tasks, so its answer comes first; through the SDK, the ping's does."""
    settings.MCP_WARM_CALLS = warm
    frames = [
        initialize(0, LATEST_HANDSHAKE_VERSION),
        tool_call(1, "validate_api_key", {"api_key": cast.key}),
        request(2, "ping"),
        tool_call(3, "validate_api_key", {"api_key": cast.key}),
    ]

    async def scenario():
        communicator = WebsocketCommunicator(
            McpWebSocketConsumer.as_asgi(),
            "/mcp/ws",
            headers=[(b"authorization", f"Bearer {cast.bearer}".encode())],
            subprotocols=["mcp"],
        )
        connected, _ = await communicator.connect(timeout=ANSWER_SECONDS)
        assert connected
        for frame in frames[:2]:  # the handshake, then one call to warm this connection
            await communicator.send_to(text_data=_answer_frame(frame))
            await communicator.receive_from(timeout=ANSWER_SECONDS)
        for frame in frames[2:]:
            await communicator.send_to(text_data=_answer_frame(frame))
        answers = [json.loads(await communicator.receive_from(timeout=ANSWER_SECONDS)) for _ in frames[2:]]
        await communicator.disconnect()
        return answers

    answers = asyncio.run(scenario())
    assert [answer["id"] for answer in answers] == ([3, 2] if warm else [2, 3])
    validation = next(answer for answer in answers if answer["id"] == 3)
    assert validation["result"]["content"][0]["text"].startswith("✅ Valid API Key")
