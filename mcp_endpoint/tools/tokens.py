"""The JWT tools: generate, validate, revoke."""

from kernel.callers import Caller
from keys import tokens
from keys.serializers import issued_token_as_dict
from mcp_endpoint.tools.results import ToolOutcome, scope_text, text_lines


def generate_jwt(caller: Caller, arguments: dict) -> ToolOutcome:
    issued = tokens.generate_jwt(
        caller,
        chitty_id=arguments["chitty_id"],
        expires_in=arguments.get("expires_in"),
        claims=arguments.get("claims"),
        scopes=arguments.get("scopes"),
    )
    data = issued_token_as_dict(issued)
    return ToolOutcome(
        text_lines(
            "✅ JWT Generated",
            f"JTI: {data['jti']}",
            f"Token: {data['token']}",
            f"ChittyID: {data['chitty_id']}",
            f"Scopes: {scope_text(data['scopes'])}",
            f"Expires: {data['expires_at']}",
        ),
        data,
    )


def validate_jwt(caller: Caller, arguments: dict) -> ToolOutcome:
    data = tokens.validate_jwt(caller, arguments["token"]).as_dict()
    if not data["valid"]:
        return ToolOutcome(text_lines(f"❌ Invalid JWT: {data['code']}", data["message"]), data)
    return ToolOutcome(
        text_lines(
            "✅ Valid JWT",
            f"ChittyID: {data['chitty_id']}",
            f"JTI: {data['jti']}",
            f"Scopes: {scope_text(data['scopes'])}",
            f"Expires: {data['expires_at']}",
        ),
        data,
    )


def revoke_jwt(caller: Caller, arguments: dict) -> ToolOutcome:
    revoked = tokens.revoke_jwt(
        caller, token=arguments.get("token"), jti=arguments.get("jti"), reason=arguments.get("reason", "")
    )
    data = {"revoked": True, "jti": revoked.jti, "expires_at": revoked.expires_at.isoformat()}
    return ToolOutcome(text_lines("✅ JWT Revoked", f"JTI: {revoked.jti}"), data)
