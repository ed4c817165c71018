"""MCP over WebSocket against a live daphne, with raw frames from the `websockets` library."""

import asyncio
import itertools
import json
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.mcp_live import (
    ADMIN,
    AIMED_GRANT_IDS,
    AIMED_TOOL_CALLS,
    ALICE,
    BOB,
    GHOST,
    SLOW,
    aimed_at,
    authority_env,
    cast_authority,
    daphne_server,
    rest,
    service_database,
)

MAX_FRAME_BYTES = 64 * 1024
SLOW_AUTHORITY_SECONDS = 3.0
CONCURRENT_CALLS = 50
EXIT_WITHIN_SECONDS = 10
INITIALIZE = {
    "protocolVersion": "2025-11-25",
    "capabilities": {},
    "clientInfo": {"name": "raw-websocket-test", "version": "1"},
}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """daphne on a fresh database, asking a loopback ChittyID authority that answers for SLOW slowly."""
    folder = tmp_path_factory.mktemp("mcp-websocket")
    with (
        cast_authority(SLOW_AUTHORITY_SECONDS) as authority,
        service_database(folder) as (database_url, keys),
    ):
        env = authority_env(database_url, authority, MCP_MAX_FRAME_BYTES=str(MAX_FRAME_BYTES))
        with daphne_server(env, folder) as server:
            yield server, keys


def connect(server, key: str | None = None, *, header: bool = False, **options):
    url = f"{server.ws_url}/mcp/ws"
    if key is not None and header:
        options["additional_headers"] = {"Authorization": f"Bearer {key}"}
    elif key is not None:
        url += f"?access_token={key}"
    return websockets.connect(url, open_timeout=30, **options)


async def answer(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), 30))


async def request(ws, request_id: int, method: str, params: dict | None = None) -> dict:
    await ws.send(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}))
    return await answer(ws)


async def initialized(ws) -> dict:
    result = (await request(ws, 0, "initialize", INITIALIZE))["result"]
    await ws.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
    return result


async def call(ws, request_id: int, name: str, arguments: dict | None = None) -> dict:
    return (await request(ws, request_id, "tools/call", {"name": name, "arguments": arguments or {}}))[
        "result"
    ]


async def closed(ws, within: float = 30) -> tuple[int, list[dict]]:
    """Frames received until the server closes the socket, and its close code."""
    frames = []
    try:
        async with asyncio.timeout(within):
            async for frame in ws:
                frames.append(json.loads(frame))
    except ConnectionClosed:
        pass
    return ws.close_code, frames


def run(coroutine):
    return asyncio.run(coroutine)


def test_initialize_list_and_call_with_an_access_token(live):
    server, keys = live

    async def scenario():
        async with connect(server, keys[ADMIN]["key"], subprotocols=["mcp"]) as ws:
            assert ws.subprotocol == "mcp"
            result = await initialized(ws)
            assert result["serverInfo"]["name"] == "chittyauth"
            assert "tools" in result["capabilities"]
            tools = (await request(ws, 1, "tools/list"))["result"]["tools"]
            assert len(tools) == 15
            assert all(tool["inputSchema"]["type"] == "object" and "outputSchema" in tool for tool in tools)
            me = await call(ws, 2, "whoami")
            assert me["structuredContent"]["chitty_id"] == ADMIN
            assert me["structuredContent"]["session_id"].startswith("ses_")
            valid = await call(ws, 3, "validate_api_key", {"api_key": keys[ALICE]["key"]})
            assert valid["content"][0]["text"].startswith("✅ Valid API Key")
            assert valid["isError"] is False

    run(scenario())


def test_generate_jwt_refuses_scopes_the_principal_does_not_hold(live):
    server, keys = live

    async def scenario():
        async with connect(server, keys[ALICE]["key"]) as ws:
            await initialized(ws)
            refusals = [
                await call(ws, number, "generate_jwt", {"chitty_id": ALICE, "scopes": [scope]})
                for number, scope in enumerate(("audit:read", "tokens:manage", "*"), start=1)
            ]
            held = await call(ws, 9, "generate_jwt", {"chitty_id": ALICE})
            return refusals, held

    refusals, held = run(scenario())
    for refused in refusals:
        assert refused["isError"] is True
        assert refused["structuredContent"]["error"]["code"] == "SCOPE_EXCEEDS_GRANTS"
    assert [refused["structuredContent"]["error"]["scope"] for refused in refusals] == [
        "audit:read",
        "tokens:manage",
        "*",
    ]
    assert held["content"][0]["text"].startswith("✅ JWT Generated")
    assert held["structuredContent"]["scopes"] == ["api_keys:generate", "tokens:generate"]


def test_a_caller_without_permission_cannot_tell_registered_ids_from_unregistered(live):
    server, keys = live

    async def scenario():
        ids = itertools.count(1)
        pairs = []
        async with connect(server, keys[BOB]["key"]) as ws:
            await initialized(ws)
            for tool, arguments, permission in AIMED_TOOL_CALLS:
                registered = await call(ws, next(ids), tool, aimed_at(arguments, ALICE))
                unregistered = await call(ws, next(ids), tool, aimed_at(arguments, GHOST))
                pairs.append((permission, registered, unregistered))
            grants = [
                await call(ws, next(ids), "revoke_authorization", {"grant_id": n}) for n in AIMED_GRANT_IDS
            ]
            pairs.append(("authorizations:revoke", *grants))
        return pairs

    for permission, registered, unregistered in run(scenario()):
        assert registered["isError"] is True
        assert registered["structuredContent"]["error"]["code"] == "PERMISSION_DENIED"
        assert registered["structuredContent"]["error"]["permission"] == permission
        assert registered == unregistered


def test_authorization_header_works_without_a_subprotocol(live):
    server, keys = live

    async def scenario():
        async with connect(server, keys[BOB]["key"], header=True) as ws:
            assert ws.subprotocol is None
            await initialized(ws)
            me = await call(ws, 1, "whoami")
            assert me["structuredContent"]["credential_id"] == keys[BOB]["key_id"]
            refused = await call(ws, 2, "check_permission", {"chitty_id": ADMIN, "permission": "audit:read"})
            assert refused["isError"] is True
            assert refused["structuredContent"]["error"]["code"] == "PERMISSION_DENIED"
            assert refused["content"][0]["text"].startswith("❌ PERMISSION_DENIED: ")

    run(scenario())


def test_bad_frames_get_json_rpc_errors_and_the_socket_stays_usable(live):
    server, keys = live
    bad_frames = [
        ("not json", -32700),
        ("[" * 20_000 + "]" * 20_000, -32700),
        (json.dumps([{"jsonrpc": "2.0", "id": 1, "method": "ping"}]), -32600),
        (b"\x00binary", -32600),
        (json.dumps({"jsonrpc": "2.0", "id": 7, "method": "ping", "padding": "x" * MAX_FRAME_BYTES}), -32600),
        (json.dumps({"hello": "world"}), -32600),
        (json.dumps({"id": "\ud800"}), -32600),  # an id no reply can carry: answered with id null
    ]

    async def scenario():
        async with connect(server, keys[ADMIN]["key"]) as ws:
            await initialized(ws)
            for frame, code in bad_frames:
                await ws.send(frame)
                error = await answer(ws)
                assert error["error"]["code"] == code, frame[:40]
                assert error["id"] is None
            unknown = await request(ws, 8, "no/such/method")
            assert (unknown["id"], unknown["error"]["code"]) == (8, -32601)
            unencodable = await request(ws, 11, "\ud800")  # the SDK echoes the method back in its error
            assert (unencodable["id"], unencodable["error"]["code"]) == (11, -32603)
            assert (await request(ws, 9, "ping")) == {"jsonrpc": "2.0", "id": 9, "result": {}}
            assert (await call(ws, 10, "whoami"))["structuredContent"]["chitty_id"] == ADMIN

    run(scenario())


def test_calls_before_initialize_are_refused(live):
    server, keys = live

    async def scenario():
        async with connect(server, keys[ADMIN]["key"]) as ws:
            early = await request(ws, 1, "tools/call", {"name": "whoami", "arguments": {}})
            assert early["id"] == 1
            assert early["error"]["code"] == -32602
            assert "result" not in early

    run(scenario())


def test_concurrent_calls_are_answered_by_id_as_they_finish(live):
    """A call stuck on a slow ChittyID authority does not hold up the fifty calls sent after it."""
    server, keys = live

    async def scenario():
        async with connect(server, keys[ADMIN]["key"]) as ws:
            await initialized(ws)
            slow = {"name": "generate_api_key", "arguments": {"chitty_id": SLOW, "scopes": ["*"]}}
            frames = [{"jsonrpc": "2.0", "id": 1000, "method": "tools/call", "params": slow}]
            frames += [
                {
                    "jsonrpc": "2.0",
                    "id": n,
                    "method": "tools/call",
                    "params": {"name": "whoami", "arguments": {}},
                }
                for n in range(1, CONCURRENT_CALLS + 1)
            ]
            for frame in frames:
                await ws.send(json.dumps(frame))
            answers = [await answer(ws) for _ in frames]
        order = [reply["id"] for reply in answers]
        assert sorted(order) == sorted(frame["id"] for frame in frames)
        assert order[-1] == 1000
        slow_answer = answers[-1]["result"]
        assert slow_answer["content"][0]["text"].startswith("✅ API Key Generated")
        assert all(reply["result"]["structuredContent"]["chitty_id"] == ADMIN for reply in answers[:-1])

    run(scenario())


@pytest.mark.parametrize("key", [None, "not-a-credential", "chitty_live_" + "A" * 49])
def test_a_bad_or_missing_credential_is_refused_with_4401(live, key):
    server, _keys = live

    async def scenario():
        async with connect(server, key) as ws:
            return await closed(ws)

    code, frames = run(scenario())
    assert code == 4401
    assert frames[0]["error"]["code"] == -32000
    assert "INVALID_CREDENTIAL" in frames[0]["error"]["message"]


def test_a_page_from_another_site_cannot_open_the_socket(live):
    server, keys = live

    async def scenario():
        async with connect(server, keys[ADMIN]["key"], origin="https://evil.example"):
            pass

    with pytest.raises(InvalidStatus) as refused:
        run(scenario())
    assert refused.value.response.status_code == 403


def test_ending_the_session_through_rest_closes_the_socket_within_a_second(live):
    server, keys = live

    async def scenario():
        async with connect(server, keys[ADMIN]["key"]) as ws:
            await initialized(ws)
            session_id = (await call(ws, 1, "whoami"))["structuredContent"]["session_id"]
            status, body = await asyncio.to_thread(
                rest,
                server,
                "POST",
                f"/api/v1/sessions/{session_id}/end",
                keys[ADMIN]["key"],
                {"reason": "test"},
            )
            assert status == 200, body
            return await closed(ws, within=1)

    code, frames = run(scenario())
    assert code == 4403
    assert frames[-1]["error"]["message"] == "Connection closed: session ended"


def test_a_key_revoked_meanwhile_stops_the_socket_at_its_next_message(live):
    """Revoking a key does not end its sessions; the socket re-checks its credential when an invalidation names it."""
    server, keys = live
    status, issued = rest(
        server, "POST", "/api/v1/keys", keys[ADMIN]["key"], {"chitty_id": ALICE, "scopes": ["*"]}
    )
    assert status == 201, issued

    async def scenario():
        async with connect(server, issued["api_key"]) as ws:
            await initialized(ws)
            assert (await call(ws, 1, "whoami"))["structuredContent"]["credential_id"] == issued["key_id"]
            status, body = await asyncio.to_thread(
                rest, server, "POST", f"/api/v1/keys/{issued['key_id']}/revoke", keys[ADMIN]["key"], {}
            )
            assert status == 200, body
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "ping"}))
            return await closed(ws)

    code, frames = run(scenario())
    assert code == 4401
    message = "Connection closed: INVALID_CREDENTIAL: The credential has been revoked"
    assert frames == [{"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": message}}]


def test_warm_validations_answered_on_the_event_loop_see_a_revocation_at_once(live):
    """Repeat validations are answered from memory; revoking the key (another connection) changes the next
    answer, and each refused validation is audited exactly once."""
    server, keys = live
    admin = keys[ADMIN]["key"]
    status, issued = rest(server, "POST", "/api/v1/keys", admin, {"chitty_id": ALICE})
    assert status == 201, issued

    def refusals() -> int:
        path = f"/api/v1/audit/events?action=api_key.validate&target={ALICE}&limit=200"
        status, body = rest(server, "GET", path, admin)
        assert status == 200, body
        return len(body["events"])

    async def scenario():
        async with connect(server, admin) as ws:
            await initialized(ws)
            for request_id in range(1, 6):
                valid = await call(ws, request_id, "validate_api_key", {"api_key": issued["api_key"]})
                assert valid["structuredContent"]["valid"] is True, valid
            status, body = await asyncio.to_thread(
                rest, server, "POST", f"/api/v1/keys/{issued['key_id']}/revoke", admin, {}
            )
            assert status == 200, body
            before = await asyncio.to_thread(refusals)
            for request_id in range(6, 9):
                refused = await call(ws, request_id, "validate_api_key", {"api_key": issued["api_key"]})
                assert refused["structuredContent"]["code"] == "REVOKED", refused
            assert await asyncio.to_thread(refusals) == before + 3

    run(scenario())


def test_a_key_that_expires_while_connected_stops_the_socket_at_its_next_message(live):
    """Expiry sends no invalidation: the connection must notice the clock itself."""
    server, keys = live
    expires_at = datetime.now(UTC) + timedelta(seconds=2)
    status, issued = rest(
        server,
        "POST",
        "/api/v1/keys",
        keys[ADMIN]["key"],
        {"name": "short-lived", "expires_at": expires_at.isoformat()},
    )
    assert status == 201, issued

    async def scenario():
        async with connect(server, issued["api_key"]) as ws:
            await initialized(ws)
            assert not (await call(ws, 1, "whoami")).get("isError")
            await asyncio.sleep(max((expires_at - datetime.now(UTC)).total_seconds(), 0) + 0.3)
            await ws.send(
                json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": 2,
                        "method": "tools/call",
                        "params": {"name": "whoami", "arguments": {}},
                    }
                )
            )
            return await closed(ws, within=5)

    code, frames = run(scenario())
    assert code == 4401
    assert (
        frames[-1]["error"]["message"] == "Connection closed: INVALID_CREDENTIAL: The credential has expired"
    )


def test_ending_a_session_mid_request_loses_no_audit_record(live):
    """A slow call (the authority takes seconds for SLOW) is in flight when the session is ended: the socket
    closes, the call still finishes in its thread, and both its audit event and the session's end are chained."""
    server, keys = live
    admin = keys[ADMIN]["key"]

    async def scenario():
        async with connect(server, admin) as ws:
            await initialized(ws)
            session_id = (await call(ws, 1, "whoami"))["structuredContent"]["session_id"]
            slow_call = {"name": "generate_api_key", "arguments": {"chitty_id": SLOW, "name": "mid-request"}}
            await ws.send(
                json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": slow_call})
            )
            await asyncio.sleep(0.5)
            status, body = await asyncio.to_thread(
                rest, server, "POST", f"/api/v1/sessions/{session_id}/end", admin, {"reason": "mid-request"}
            )
            assert status == 200, body
            code, _ = await closed(ws, within=2)
            return session_id, code

    session_id, code = run(scenario())
    assert code == 4403
    deadline = time.monotonic() + SLOW_AUTHORITY_SECONDS * 4
    while time.monotonic() < deadline:
        _, generated = rest(
            server, "GET", f"/api/v1/audit/events?action=api_key.generate&target={SLOW}", admin
        )
        mid_request = [e for e in generated["events"] if e["details"].get("name") == "mid-request"]
        if mid_request:
            break
        time.sleep(0.2)
    assert len(mid_request) == 1, generated
    _, ended = rest(server, "GET", f"/api/v1/audit/events?action=session.end&target={session_id}", admin)
    assert [e["details"]["reason"] for e in ended["events"]] == ["mid-request"]
    _, recent = rest(server, "GET", "/api/v1/audit/events?limit=200", admin)
    chain = sorted(recent["events"], key=lambda event: event["sequence"])
    for before, after in itertools.pairwise(chain):
        assert after["sequence"] == before["sequence"] + 1
        assert after["prev_hash"] == before["hash"]


def test_disconnecting_ends_the_session(live):
    server, keys = live

    async def scenario():
        async with connect(server, keys[BOB]["key"]) as ws:
            await initialized(ws)
            return (await call(ws, 1, "whoami"))["structuredContent"]["session_id"]

    session_id = run(scenario())
    deadline = time.monotonic() + 30
    while True:
        status, body = rest(
            server, "GET", f"/api/v1/sessions?chitty_id={BOB}&active=false", keys[ADMIN]["key"]
        )
        assert status == 200, body
        ended = [row for row in body["sessions"] if row["session_id"] == session_id]
        if ended or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert ended, f"session {session_id} was not ended after the disconnect"
    assert (ended[0]["channel"], ended[0]["end_reason"], ended[0]["ended_by"]) == (
        "mcp-websocket",
        "disconnected",
        BOB,
    )


def test_daphne_stops_promptly_with_a_socket_open_and_ends_its_session(live, tmp_path):
    module_server, keys = live
    with daphne_server(module_server.env, tmp_path) as server:

        async def scenario():
            async with connect(server, keys[ALICE]["key"]) as ws:
                await initialized(ws)
                session_id = (await call(ws, 1, "whoami"))["structuredContent"]["session_id"]
                server.process.send_signal(signal.SIGTERM)
                exit_code = await asyncio.to_thread(server.process.wait, EXIT_WITHIN_SECONDS)
                return session_id, exit_code

        session_id, exit_code = run(scenario())
    assert exit_code == 0, server.output()
    status, body = rest(module_server, "GET", f"/api/v1/sessions?chitty_id={ALICE}", keys[ADMIN]["key"])
    assert status == 200, body
    ended = next(row for row in body["sessions"] if row["session_id"] == session_id)
    assert (ended["live"], ended["end_reason"]) == (False, "server stopped"), server.output()
