"""MCP over stdio: the Python SDK's stdio client launching `manage.py mcp_stdio`, calling every tool."""

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

import anyio
import pytest
from django.core.management import CommandError, call_command
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from audit.models import AuditEvent
from sessions.models import AuthSession
from tests.mcp_live import ADMIN, ALICE, BOB, PYTHON, REPO_ROOT, base_env, service_database

ALL_TOOLS = {
    "generate_api_key",
    "validate_api_key",
    "generate_jwt",
    "validate_jwt",
    "check_permission",
    "check_permissions",
    "grant_authorization",
    "list_sessions",
    "revoke_api_key",
    "rotate_api_key",
    "list_api_keys",
    "revoke_jwt",
    "revoke_authorization",
    "revoke_session",
    "whoami",
}
MISTYPED_KEY = "chitty_live_" + "A" * 49


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mcp-stdio")
    with service_database(folder) as live_database:
        yield live_database


def stdio(database_url: str, credential: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=PYTHON,
        args=["manage.py", "mcp_stdio"],
        cwd=str(REPO_ROOT),
        env=base_env(database_url, CHITTYAUTH_API_KEY=credential),
    )


def text(result) -> str:
    return result.content[0].text


def assert_tool_error(result, code: str) -> dict:
    assert result.is_error, text(result)
    assert text(result).startswith(f"❌ {code}: ")
    error = result.structured_content["error"]
    assert error["code"] == code
    assert error["message"]
    return error


async def admin_session(params: StdioServerParameters, keys: dict) -> str:
    """Every tool as the administrator (on the 2026 protocol, which `auto` negotiates), success and failure."""
    async with Client(params) as client:
        assert client.protocol_version == "2026-07-28"

        listed = (await client.list_tools()).tools
        assert {tool.name for tool in listed} == ALL_TOOLS
        for tool in listed:
            assert tool.input_schema["type"] == "object"
            assert tool.output_schema["type"] == "object"
            assert tool.description

        me = await client.call_tool("whoami", {})
        assert text(me).startswith(f"👤 {ADMIN}")
        assert me.structured_content["credential_id"] == keys[ADMIN]["key_id"]
        session_id = me.structured_content["session_id"]
        assert session_id.startswith("ses_")

        generated = await client.call_tool(
            "generate_api_key", {"chitty_id": ALICE, "name": "agent", "scopes": ["api_keys:generate"]}
        )
        lines = text(generated).splitlines()
        new_key, new_key_id = generated.structured_content["api_key"], generated.structured_content["key_id"]
        assert lines[:3] == ["✅ API Key Generated", f"Key ID: {new_key_id}", f"API Key: {new_key}"]
        assert new_key.startswith("chitty_live_") and new_key_id.startswith("key_")
        assert generated.structured_content["scopes"] == ["api_keys:generate"]

        valid = await client.call_tool("validate_api_key", {"api_key": new_key})
        assert text(valid).startswith("✅ Valid API Key")
        assert valid.structured_content == {
            **valid.structured_content,
            "valid": True,
            "code": "VALID",
            "key_id": new_key_id,
            "chitty_id": ALICE,
        }
        invalid = await client.call_tool("validate_api_key", {"api_key": MISTYPED_KEY})
        assert not invalid.is_error
        assert text(invalid).startswith("❌ Invalid API Key: BAD_CHECKSUM")
        assert (invalid.structured_content["valid"], invalid.structured_content["code"]) == (
            False,
            "BAD_CHECKSUM",
        )

        minted = await client.call_tool(
            "generate_jwt", {"chitty_id": ADMIN, "expires_in": "15m", "claims": {"role": "auditor"}}
        )
        token = minted.structured_content["token"]
        assert text(minted).startswith("✅ JWT Generated")
        assert f"Token: {token}" in text(minted).splitlines()
        assert_tool_error(
            await client.call_tool("generate_jwt", {"chitty_id": ADMIN, "claims": {"sub": "someone-else"}}),
            "RESERVED_CLAIM",
        )

        checked = await client.call_tool("validate_jwt", {"token": token})
        assert text(checked).startswith("✅ Valid JWT")
        assert checked.structured_content["claims"]["role"] == "auditor"
        garbage = await client.call_tool("validate_jwt", {"token": "not.a.jwt"})
        assert text(garbage).startswith("❌ Invalid JWT: MALFORMED")

        held = await client.call_tool(
            "check_permission", {"chitty_id": ALICE, "permission": "api_keys:generate"}
        )
        assert text(held).startswith("✅ Permission Granted")
        assert held.structured_content["allowed"] is True
        not_held = await client.call_tool(
            "check_permission", {"chitty_id": ALICE, "permission": "audit:read"}
        )
        assert text(not_held).startswith("❌ Permission Denied")
        assert not_held.structured_content["allowed"] is False
        assert_tool_error(
            await client.call_tool("check_permission", {"chitty_id": ALICE, "permission": "nonsense"}),
            "INVALID_PERMISSION",
        )
        mistyped = await client.call_tool("check_permission", {"chitty_id": 5})
        bad_arguments = assert_tool_error(mistyped, "INVALID_INPUT")
        assert '• chitty_id: must satisfy type "string"' in text(mistyped).splitlines()
        assert bad_arguments["fields"] == {
            "chitty_id": 'must satisfy type "string"',
            "(arguments)": "'permission' is a required property",
        }

        granted = await client.call_tool(
            "grant_authorization",
            {"grantor_chitty_id": ADMIN, "grantee_chitty_id": BOB, "permission": "sessions:read"},
        )
        assert text(granted).startswith("✅ Authorization Granted")
        assert granted.structured_content["permission"] == "sessions:read"
        extra = await client.call_tool(
            "grant_authorization", {"grantee_chitty_id": BOB, "permission": "audit:read"}
        )
        assert_tool_error(
            await client.call_tool(
                "grant_authorization",
                {"grantor_chitty_id": ALICE, "grantee_chitty_id": BOB, "permission": "audit:read"},
            ),
            "GRANTOR_MISMATCH",
        )
        revoked_grant = await client.call_tool(
            "revoke_authorization", {"grant_id": extra.structured_content["id"]}
        )
        assert text(revoked_grant).startswith("✅ Authorization Revoked")
        assert revoked_grant.structured_content["active"] is False
        assert_tool_error(
            await client.call_tool("revoke_authorization", {"grant_id": 999_999}), "GRANT_NOT_FOUND"
        )

        sessions = await client.call_tool("list_sessions", {})
        assert text(sessions).startswith("📋 Active Sessions")
        assert session_id in {row["session_id"] for row in sessions.structured_content["sessions"]}

        listed_keys = await client.call_tool("list_api_keys", {"chitty_id": ALICE})
        assert text(listed_keys).startswith("🔑 API Keys")
        assert new_key_id in {row["key_id"] for row in listed_keys.structured_content["keys"]}

        rotated = await client.call_tool("rotate_api_key", {"key_id": new_key_id, "overlap_seconds": 0})
        assert text(rotated).startswith("✅ API Key Rotated")
        assert rotated.structured_content["rotated_from"] == new_key_id
        replaced = await client.call_tool("validate_api_key", {"api_key": new_key})
        assert text(replaced).startswith("❌ Invalid API Key: REVOKED")

        revoked_key = await client.call_tool(
            "revoke_api_key", {"key_id": rotated.structured_content["key_id"]}
        )
        assert text(revoked_key).startswith("✅ API Key Revoked")
        assert revoked_key.structured_content["revoked_at"]
        assert_tool_error(
            await client.call_tool("revoke_api_key", {"key_id": "key_doesnotexist"}), "KEY_NOT_FOUND"
        )

        revoked_token = await client.call_tool("revoke_jwt", {"token": token, "reason": "test"})
        assert text(revoked_token).startswith("✅ JWT Revoked")
        assert text(await client.call_tool("validate_jwt", {"token": token})).startswith(
            "❌ Invalid JWT: REVOKED"
        )
        assert_tool_error(await client.call_tool("revoke_jwt", {}), "INVALID_INPUT")

        assert_tool_error(
            await client.call_tool("revoke_session", {"session_id": "ses_nope"}), "SESSION_NOT_FOUND"
        )

        with pytest.raises(MCPError) as unknown:
            await client.call_tool("no_such_tool", {})
        assert unknown.value.error.code == INVALID_PARAMS
    return session_id


async def bob_session(params: StdioServerParameters, admin_session_id: str) -> None:
    """A principal without grants, on the handshake protocol: refusals, and its own session's end."""
    async with Client(params, mode="legacy") as client:
        assert client.protocol_version == "2025-11-25"
        refused = assert_tool_error(
            await client.call_tool("generate_api_key", {"chitty_id": ADMIN}), "PERMISSION_DENIED"
        )
        assert refused["permission"] == "api_keys:manage"

        history = await client.call_tool("list_sessions", {"chitty_id": ADMIN, "active_only": False})
        assert text(history).startswith(f"📋 Sessions ({history.structured_content['count']})")
        ended = next(
            row for row in history.structured_content["sessions"] if row["session_id"] == admin_session_id
        )
        assert (ended["live"], ended["channel"], ended["end_reason"]) == (False, "mcp-stdio", "disconnected")

        own = (await client.call_tool("whoami", {})).structured_content["session_id"]
        ended_own = await client.call_tool("revoke_session", {"session_id": own, "reason": "done"})
        assert text(ended_own).startswith("✅ Session Ended")
        assert ended_own.structured_content["end_reason"] == "done"
        assert_tool_error(await client.call_tool("whoami", {}), "SESSION_ENDED")


def test_every_tool_over_stdio_with_texts_structured_content_and_failures(live):
    database_url, keys = live
    admin_session_id = anyio.run(admin_session, stdio(database_url, keys[ADMIN]["key"]), keys)
    anyio.run(bob_session, stdio(database_url, keys[BOB]["key"]), admin_session_id)


def test_stdout_carries_only_protocol_messages(live, tmp_path):
    """With verbose logging on, stdout still holds nothing but JSON-RPC answers (an unreadable line gets a
    JSON-RPC error); the logs go to stderr."""
    database_url, keys = live
    initialize = {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"},
    }
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [PYTHON, "manage.py", "mcp_stdio", "-v", "3"],
            cwd=REPO_ROOT,
            env=base_env(database_url, CHITTYAUTH_API_KEY=keys[ADMIN]["key"], LOG_LEVEL="DEBUG"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        process.stdin.write(
            json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": initialize})
        )
        process.stdin.write(
            "\n" + json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n"
        )
        unreadable = [
            "not json",
            "",  # a blank line is skipped, not answered
            json.dumps({"hello": "world"}),
            json.dumps({"jsonrpc": "2.0", "id": 7, "method": 5}),
            json.dumps([{"jsonrpc": "2.0", "id": 8, "method": "ping"}]),
        ]
        process.stdin.write("".join(line + "\n" for line in unreadable))
        call = {"name": "whoami", "arguments": {}}
        process.stdin.write(
            json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call}) + "\n"
        )
        process.stdin.flush()
        with ThreadPoolExecutor(1) as reader:  # a missing answer fails the test instead of hanging it
            answers = [json.loads(reader.submit(process.stdout.readline).result(60)) for _ in range(6)]
        process.stdin.close()
        rest_of_stdout = process.stdout.read()
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = log.read_text()
    assert process.returncode == 0, stderr
    assert [answer["id"] for answer in answers] == [1, None, None, 7, None, 2]
    assert [answer["error"]["code"] for answer in answers[1:5]] == [-32700, -32600, -32600, -32600]
    assert answers[4]["error"]["message"] == "JSON-RPC batches are not supported"
    assert answers[5]["result"]["structuredContent"]["chitty_id"] == ADMIN  # the line after is served
    assert rest_of_stdout == ""
    assert "DEBUG" in stderr


def test_refuses_to_start_without_a_key(monkeypatch):
    monkeypatch.delenv("CHITTYAUTH_API_KEY", raising=False)
    with pytest.raises(CommandError, match="CHITTYAUTH_API_KEY is not set"):
        call_command("mcp_stdio")


@pytest.mark.django_db
def test_refuses_to_start_with_a_refused_key_and_audits_it(monkeypatch):
    monkeypatch.setenv("CHITTYAUTH_API_KEY", MISTYPED_KEY)
    with pytest.raises(CommandError, match="CHITTYAUTH_API_KEY was refused: INVALID_CREDENTIAL"):
        call_command("mcp_stdio")
    failure = AuditEvent.objects.get(action="auth.failed")
    assert failure.details["code"] == "BAD_CHECKSUM"
    assert not AuthSession.objects.exists()
