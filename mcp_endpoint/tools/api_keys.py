"""The API-key tools: generate, validate, revoke, rotate, list."""

from kernel.callers import Caller
from keys import services as key_services
from keys.serializers import ApiKeySerializer, issued_key_as_dict
from mcp_endpoint.tools.results import (
    MAX_LISTED,
    ToolOutcome,
    or_never,
    parse_timestamp,
    plain,
    scope_text,
    text_lines,
)


def generate_api_key(caller: Caller, arguments: dict) -> ToolOutcome:
    issued = key_services.generate_api_key(
        caller,
        chitty_id=arguments["chitty_id"],
        name=arguments.get("name", ""),
        scopes=arguments.get("scopes"),
        expires_at=parse_timestamp(arguments.get("expires_at"), "expires_at"),
        environment=arguments.get("environment", "live"),
    )
    data = plain(issued_key_as_dict(issued))
    return ToolOutcome(
        text_lines(
            "✅ API Key Generated",
            f"Key ID: {data['key_id']}",
            f"API Key: {data['api_key']}",
            f"ChittyID: {data['chitty_id']}",
            f"Scopes: {scope_text(data['scopes'])}",
            f"Expires: {or_never(data['expires_at'])}",
            f"⚠️ {data['notice']}",
        ),
        data,
    )


def validate_api_key(caller: Caller, arguments: dict) -> ToolOutcome:
    data = key_services.validate_api_key(caller, arguments["api_key"]).as_dict()
    if not data["valid"]:
        lines = [f"❌ Invalid API Key: {data['code']}"]
        if data["key_id"]:
            lines.append(f"Key ID: {data['key_id']}")
        return ToolOutcome(text_lines(*lines), data)
    return ToolOutcome(
        text_lines(
            "✅ Valid API Key",
            f"Key ID: {data['key_id']}",
            f"ChittyID: {data['chitty_id']}",
            f"Scopes: {scope_text(data['scopes'])}",
            f"Expires: {or_never(data['expires_at'])}",
        ),
        data,
    )


def revoke_api_key(caller: Caller, arguments: dict) -> ToolOutcome:
    api_key = key_services.revoke_api_key(caller, arguments["key_id"], reason=arguments.get("reason", ""))
    data = plain(ApiKeySerializer(api_key).data)
    return ToolOutcome(
        text_lines(
            "✅ API Key Revoked",
            f"Key ID: {data['key_id']}",
            f"ChittyID: {data['chitty_id']}",
            f"Revoked: {data['revoked_at']}",
        ),
        data,
    )


def rotate_api_key(caller: Caller, arguments: dict) -> ToolOutcome:
    issued = key_services.rotate_api_key(
        caller, arguments["key_id"], overlap_seconds=arguments.get("overlap_seconds")
    )
    data = plain(issued_key_as_dict(issued))
    data["previous_key_valid_until"] = issued.api_key.rotated_from.revoked_at.isoformat()
    return ToolOutcome(
        text_lines(
            "✅ API Key Rotated",
            f"Key ID: {data['key_id']}",
            f"API Key: {data['api_key']}",
            f"Replaces: {data['rotated_from']} (valid until {data['previous_key_valid_until']})",
            f"⚠️ {data['notice']}",
        ),
        data,
    )


def list_api_keys(caller: Caller, arguments: dict) -> ToolOutcome:
    keys = key_services.list_api_keys(
        caller, chitty_id=arguments.get("chitty_id"), include_revoked=arguments.get("include_revoked", False)
    )
    rows = plain(ApiKeySerializer(keys[:MAX_LISTED], many=True).data)
    heading = f"🔑 API Keys ({len(rows)})"
    if not rows:
        return ToolOutcome(text_lines(heading, "No API keys."), {"keys": rows, "count": 0})
    lines = [
        f"• {row['key_id']} {row['display_prefix']}… “{row['name']}” scopes {scope_text(row['scopes'])}, "
        f"expires {or_never(row['expires_at'])}"
        + (f", revoked {row['revoked_at']}" if row["revoked_at"] else "")
        for row in rows
    ]
    return ToolOutcome(text_lines(heading, *lines), {"keys": rows, "count": len(rows)})
