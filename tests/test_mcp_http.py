"""MCP over Streamable HTTP against a live daphne, with the Python SDK's client."""

import contextlib
import json
import signal
import urllib.error
import urllib.request

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.mcp_live import (
    ADMIN,
    AIMED_GRANT_IDS,
    AIMED_TOOL_CALLS,
    ALICE,
    BOB,
    GHOST,
    aimed_at,
    base_env,
    daphne_server,
    rest,
    service_database,
)

EXIT_WITHIN_SECONDS = 10


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mcp-http")
    with (
        service_database(folder) as (database_url, keys),
        daphne_server(base_env(database_url), folder) as server,
    ):
        yield server, keys, database_url


@contextlib.asynccontextmanager
async def mcp_client(server, key: str, **options):
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http,
        Client(streamable_http_client(f"{server.url}/mcp", http_client=http), **options) as client,
    ):
        yield client


def text(result) -> str:
    return result.content[0].text


def session_row(server, keys, chitty_id: str, session_id: str) -> dict:
    status, body = rest(server, "GET", f"/api/v1/sessions?chitty_id={chitty_id}", keys[ADMIN]["key"])
    assert status == 200, body
    return next(row for row in body["sessions"] if row["session_id"] == session_id)


def test_lists_and_calls_every_tool(live):
    server, keys, _database_url = live

    async def scenario():
        async with mcp_client(server, keys[ADMIN]["key"]) as client:
            assert len((await client.list_tools()).tools) == 15
            me = await client.call_tool("whoami", {})
            session_id = me.structured_content["session_id"]
            key = await client.call_tool("generate_api_key", {"chitty_id": BOB, "name": "http"})
            assert text(key).startswith("✅ API Key Generated")
            key_id, secret = key.structured_content["key_id"], key.structured_content["api_key"]
            assert text(await client.call_tool("validate_api_key", {"api_key": secret})).startswith(
                "✅ Valid API Key"
            )
            token = (
                await client.call_tool("generate_jwt", {"chitty_id": ADMIN, "expires_in": 600})
            ).structured_content
            assert text(await client.call_tool("validate_jwt", {"token": token["token"]})).startswith(
                "✅ Valid JWT"
            )
            check = await client.call_tool(
                "check_permission", {"chitty_id": ALICE, "permission": "tokens:generate"}
            )
            assert text(check).startswith("✅ Permission Granted")
            grant = await client.call_tool(
                "grant_authorization", {"grantee_chitty_id": BOB, "permission": "audit:read"}
            )
            assert text(grant).startswith("✅ Authorization Granted")
            sessions = await client.call_tool("list_sessions", {"chitty_id": ADMIN})
            assert session_id in {row["session_id"] for row in sessions.structured_content["sessions"]}
            assert key_id in {
                row["key_id"]
                for row in (await client.call_tool("list_api_keys", {"chitty_id": BOB})).structured_content[
                    "keys"
                ]
            }
            rotated = await client.call_tool("rotate_api_key", {"key_id": key_id})
            assert text(rotated).startswith("✅ API Key Rotated")
            revoked = await client.call_tool(
                "revoke_api_key", {"key_id": rotated.structured_content["key_id"]}
            )
            assert text(revoked).startswith("✅ API Key Revoked")
            assert text(await client.call_tool("revoke_jwt", {"jti": token["jti"]})).startswith(
                "✅ JWT Revoked"
            )
            ungrant = await client.call_tool(
                "revoke_authorization", {"grant_id": grant.structured_content["id"]}
            )
            assert text(ungrant).startswith("✅ Authorization Revoked")
            failure = await client.call_tool("revoke_session", {"session_id": "ses_unknown"})
            assert failure.is_error
            assert failure.structured_content["error"]["code"] == "SESSION_NOT_FOUND"
            ended = await client.call_tool("revoke_session", {"session_id": session_id})
            assert text(ended).startswith("✅ Session Ended")
        return session_id

    session_id = anyio.run(scenario)
    assert session_row(server, keys, ADMIN, session_id)["channel"] == "mcp-http"


def test_generate_jwt_refuses_scopes_the_principal_does_not_hold(live):
    server, keys, _database_url = live

    async def scenario():
        async with mcp_client(server, keys[ALICE]["key"]) as client:
            for scope in ("audit:read", "tokens:manage", "*"):
                refused = await client.call_tool("generate_jwt", {"chitty_id": ALICE, "scopes": [scope]})
                assert refused.is_error, text(refused)
                assert refused.structured_content["error"]["code"] == "SCOPE_EXCEEDS_GRANTS"
                assert text(refused).startswith("❌ SCOPE_EXCEEDS_GRANTS")
            held = await client.call_tool("generate_jwt", {"chitty_id": ALICE})
            assert text(held).startswith("✅ JWT Generated")
            return held.structured_content["scopes"]

    assert anyio.run(scenario) == ["api_keys:generate", "tokens:generate"]
    query = f"/api/v1/audit/events?action=token.generate&outcome=denied&target={ALICE}"
    status, body = rest(server, "GET", query, keys[ADMIN]["key"])
    assert status == 200, body
    assert {event["details"]["scope"] for event in body["events"]} == {"audit:read", "tokens:manage", "*"}


def test_a_caller_without_permission_cannot_tell_registered_ids_from_unregistered(live):
    server, keys, _database_url = live

    async def scenario():
        answers = []
        async with mcp_client(server, keys[BOB]["key"]) as client:
            for tool, arguments, permission in AIMED_TOOL_CALLS:
                registered = await client.call_tool(tool, aimed_at(arguments, ALICE))
                unregistered = await client.call_tool(tool, aimed_at(arguments, GHOST))
                answers.append((tool, permission, registered, unregistered))
            for grant_id in AIMED_GRANT_IDS:
                revoked = await client.call_tool("revoke_authorization", {"grant_id": grant_id})
                answers.append(("revoke_authorization", "authorizations:revoke", revoked, revoked))
        return answers

    answers = anyio.run(scenario)
    for tool, permission, registered, unregistered in answers:
        assert registered.is_error and unregistered.is_error, tool
        assert registered.structured_content["error"]["code"] == "PERMISSION_DENIED", tool
        assert registered.structured_content["error"]["permission"] == permission, tool
        assert (text(registered), registered.structured_content) == (
            text(unregistered),
            unregistered.structured_content,
        ), tool
    first_grant, other_grant = answers[-2][2], answers[-1][2]
    assert (text(first_grant), first_grant.structured_content) == (
        text(other_grant),
        other_grant.structured_content,
    )


def test_check_permissions_answers_each_check_on_its_own(live):
    server, keys, _database_url = live
    checks = [
        {"chitty_id": BOB, "permission": "api_keys:generate"},
        {"chitty_id": GHOST, "permission": "api_keys:generate"},
        {"chitty_id": ALICE, "permission": "tokens:generate"},
        {"chitty_id": ALICE, "permission": "audit:read"},
    ]

    async def scenario():
        async with mcp_client(server, keys[ALICE]["key"]) as client:
            bulk = await client.call_tool("check_permissions", {"checks": checks})
            refused = await client.call_tool("check_permissions", {"checks": []})
            return bulk, refused

    bulk, refused = anyio.run(scenario)
    assert not bulk.is_error, text(bulk)
    assert text(bulk).splitlines() == [
        "🔍 Permission Checks: 1 of 4 allowed",
        f"❌ {BOB} api_keys:generate: PERMISSION_DENIED",
        f"❌ {GHOST} api_keys:generate: PERMISSION_DENIED",
        f"✅ {ALICE} tokens:generate",
        f"❌ {ALICE} audit:read: no live grant covers it",
    ]
    results = bulk.structured_content["results"]
    assert [result["allowed"] for result in results] == [False, False, True, False]
    assert results[0]["error"] == results[1]["error"]
    assert bulk.structured_content["all_allowed"] is False
    assert refused.is_error and refused.structured_content["error"]["code"] == "INVALID_INPUT"


def test_a_handshake_session_is_one_chittyauth_session_ended_by_delete(live):
    server, keys, _database_url = live

    async def scenario():
        async with mcp_client(server, keys[ALICE]["key"], mode="legacy") as client:
            assert client.protocol_version == "2025-11-25"
            first = (await client.call_tool("whoami", {})).structured_content["session_id"]
            second = (await client.call_tool("whoami", {})).structured_content["session_id"]
            assert first == second
            assert session_row(server, keys, ALICE, first)["live"] is True
        return first

    session_id = anyio.run(scenario)
    row = session_row(server, keys, ALICE, session_id)
    assert (row["live"], row["channel"], row["end_reason"]) == (False, "mcp-http", "MCP session deleted")


def test_ending_the_chittyauth_session_ends_the_mcp_session(live):
    server, keys, _database_url = live

    async def scenario():
        async with mcp_client(server, keys[BOB]["key"], mode="legacy") as client:
            session_id = (await client.call_tool("whoami", {})).structured_content["session_id"]
            status, body = rest(server, "POST", f"/api/v1/sessions/{session_id}/end", keys[ADMIN]["key"], {})
            assert status == 200, body
            with pytest.raises(MCPError) as gone:
                await client.call_tool("whoami", {})
            return gone.value

    error = anyio.run(scenario)
    assert error.error.message == "Session not found: its ChittyAuth session has ended"


def test_without_a_token_401_names_the_resource_metadata(live):
    server, _keys, _database_url = live
    request = urllib.request.Request(  # noqa: S310 - loopback URL we built
        f"{server.url}/mcp", method="POST", data=b"{}", headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)  # noqa: S310
    assert refused.value.code == 401
    challenge = refused.value.headers["WWW-Authenticate"]
    metadata_url = "http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp"
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{metadata_url}"' in challenge

    for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
        with urllib.request.urlopen(f"{server.url}{path}", timeout=30) as response:  # noqa: S310
            document = json.loads(response.read())
        assert document["resource"] == "http://127.0.0.1:8000/mcp"
        assert document["authorization_servers"] == ["http://127.0.0.1:8000/"]


def test_a_bad_token_is_401_too(live):
    server, _keys, _database_url = live
    request = urllib.request.Request(  # noqa: S310 - loopback URL we built
        f"{server.url}/mcp",
        method="POST",
        data=b"{}",
        headers={"Content-Type": "application/json", "Authorization": "Bearer chitty_live_" + "A" * 49},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)  # noqa: S310
    assert refused.value.code == 401


@pytest.mark.parametrize(
    ("headers", "status"), [({"Host": "evil.example"}, 400), ({"Origin": "https://evil.example"}, 403)]
)
def test_foreign_hosts_and_browser_origins_are_refused(live, headers, status):
    server, keys, _database_url = live
    request = urllib.request.Request(  # noqa: S310 - loopback URL we built
        f"{server.url}/mcp",
        method="POST",
        data=b"{}",
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {keys[ADMIN]['key']}",
            **headers,
        },
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)  # noqa: S310
    assert refused.value.code == status


def test_daphne_exits_promptly_on_sigterm_while_an_mcp_session_is_open(live, tmp_path):
    """daphne sends no lifespan events: the lazily started session manager must not keep it alive, and the
    sessions it served end with it."""
    module_server, keys, database_url = live
    with daphne_server(base_env(database_url), tmp_path) as server:

        async def scenario():
            async with mcp_client(server, keys[ALICE]["key"], mode="legacy") as client:
                session_id = (await client.call_tool("whoami", {})).structured_content["session_id"]
                server.process.send_signal(signal.SIGTERM)
                exit_code = await anyio.to_thread.run_sync(server.process.wait, EXIT_WITHIN_SECONDS)
                return session_id, exit_code

        session_id, exit_code = anyio.run(scenario)
    assert exit_code == 0, server.output()
    row = session_row(module_server, keys, ALICE, session_id)
    assert (row["live"], row["end_reason"]) == (False, "server stopped")
