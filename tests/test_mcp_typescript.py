"""The TypeScript SDK's WebSocketClientTransport (which cannot send headers, hence `?access_token=`) against a
live daphne: every tool, including failure paths, with the SDK checking each result against its schema."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.mcp_live import ADMIN, BOB, base_env, daphne_server, service_database

PACKAGE = Path(__file__).resolve().parent / "mcp_ts"
INSTALL_TIMEOUT_SECONDS = 300
RUN_TIMEOUT_SECONDS = 120
FIRST_NODE_WITH_GLOBAL_WEBSOCKET = 22


def node_and_npm() -> tuple[str, str]:
    """Node and npm, installing the locked SDK once; a missing toolchain fails in CI and skips locally."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node and npm are required in CI for the TypeScript SDK interoperability test")
        pytest.skip("node and npm are not installed: the TypeScript SDK interoperability test needs them")
    if not (PACKAGE / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=PACKAGE, check=True, timeout=INSTALL_TIMEOUT_SECONDS
        )
    return node, npm


def node_command(node: str) -> list[str]:
    major = int(
        subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
        .stdout[1:]
        .split(".")[0]
    )
    return [node] if major >= FIRST_NODE_WITH_GLOBAL_WEBSOCKET else [node, "--experimental-websocket"]


def test_typescript_sdk_calls_every_tool_over_websocket(tmp_path):
    node, _npm = node_and_npm()
    with (
        service_database(tmp_path) as (database_url, keys),
        daphne_server(base_env(database_url), tmp_path) as server,
    ):
        config = {
            "url": f"{server.ws_url}/mcp/ws",
            "key": keys[ADMIN]["key"],
            "chittyId": ADMIN,
            "other": BOB,
        }
        run = subprocess.run(
            [*node_command(node), "client.mjs", json.dumps(config)],
            cwd=PACKAGE,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_SECONDS,
        )
        assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{server.output()}"
    summary = json.loads(run.stdout.strip().splitlines()[-1])

    assert summary["server"]["name"] == "chittyauth"
    assert len(summary["tools"]) == 15
    assert all(tool["hasInputSchema"] and tool["hasOutputSchema"] for tool in summary["tools"])
    assert summary["sessionId"].startswith("ses_")

    results = summary["results"]
    expected_first_lines = {
        "whoami": f"👤 {ADMIN}",
        "generate_api_key": "✅ API Key Generated",
        "validate_api_key": "✅ Valid API Key",
        "validate_api_key_invalid": "❌ Invalid API Key: BAD_CHECKSUM",
        "generate_jwt": "✅ JWT Generated",
        "validate_jwt": "✅ Valid JWT",
        "check_permission": "✅ Permission Granted",
        "check_permissions": "🔍 Permission Checks: 1 of 2 allowed",
        "grant_authorization": "✅ Authorization Granted",
        "revoke_authorization": "✅ Authorization Revoked",
        "rotate_api_key": "✅ API Key Rotated",
        "revoke_api_key": "✅ API Key Revoked",
        "revoke_jwt": "✅ JWT Revoked",
    }
    for label, first_line in expected_first_lines.items():
        assert results[label]["firstLine"] == first_line, (label, results[label])
        assert results[label]["isError"] is False
    assert results["list_sessions"]["firstLine"].startswith("📋 Active Sessions (")
    assert summary["sessionId"] in {
        row["session_id"] for row in results["list_sessions"]["structured"]["sessions"]
    }
    assert results["list_api_keys"]["firstLine"].startswith("🔑 API Keys (")

    expected_errors = {
        "grant_authorization_mismatch": "GRANTOR_MISMATCH",
        "revoke_api_key_unknown": "KEY_NOT_FOUND",
        "revoke_session_unknown": "SESSION_NOT_FOUND",
        "invalid_arguments": "INVALID_INPUT",
    }
    for label, code in expected_errors.items():
        assert results[label]["isError"] is True, (label, results[label])
        assert results[label]["firstLine"].startswith(f"❌ {code}: ")
        assert results[label]["structured"]["error"]["code"] == code
    assert summary["unknownTool"]["code"] == -32602
