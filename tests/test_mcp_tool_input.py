"""Bad tool arguments get INVALID_INPUT from the MCP adapter, never an internal error."""

import pytest

from grants.callers import Caller
from grants.services import grant_permission
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
