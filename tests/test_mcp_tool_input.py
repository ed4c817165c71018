"""Bad tool arguments get INVALID_INPUT from the MCP adapter, never an internal error."""

import pytest
from mcp.server._otel import OpenTelemetryMiddleware

from grants.callers import Caller
from grants.services import grant_permission
from mcp_endpoint.server import mcp_server
from mcp_endpoint.tools import call_tool

ADMIN = "CHITTY-PEO-ADMIN1-A"
BOB = "CHITTY-PEO-BOB1-A"


@pytest.mark.parametrize("expires_at", ["2024-02-30T00:00:00", "tomorrow", 12])
def test_an_impossible_or_malformed_timestamp_is_invalid_input(make_identity, expires_at):
    admin = make_identity(ADMIN)
    make_identity(BOB)
    grant_permission(Caller.system("tests"), grantee_chitty_id=ADMIN, permission="*")
    caller = Caller(
        actor=ADMIN, identity=admin, credential_type="api_key", credential_id="key_test", scopes=("*",)
    )
    arguments = {"grantee_chitty_id": BOB, "permission": "documents:read", "expires_at": expires_at}
    outcome = call_tool(caller, "grant_authorization", arguments)
    assert outcome.is_error
    assert outcome.structured["error"]["code"] == "INVALID_INPUT"


@pytest.mark.parametrize("enabled", [True, False])
def test_the_sdk_opentelemetry_span_per_request_is_opt_in(settings, enabled):
    settings.MCP_OPENTELEMETRY = enabled
    mcp_server.cache_clear()
    try:
        spans = [m for m in mcp_server().middleware if isinstance(m, OpenTelemetryMiddleware)]
        assert len(spans) == (1 if enabled else 0)
    finally:
        mcp_server.cache_clear()
