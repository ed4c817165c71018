"""The MCP tools: the seed's seven and seven more, each a thin adapter over one service call.

A tool checks its arguments against its declared input schema, calls one service with the connection's
`Caller`, and answers twice: `structuredContent` following its declared output schema, and the seed's human
text (integrations match on its first line, e.g. `✅ Valid API Key`). A `ServiceError` becomes a tool error
(`isError`, text `❌ <CODE>: <message>`, structured `{"error": {...}}`); any other failure is logged and
answered with a generic error, never a traceback. Everything here is synchronous Django code: the transports
run `call_tool` in a worker thread.
"""

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

import fastjsonschema
from django.utils.dateparse import parse_datetime
from jsonschema import Draft202012Validator, ValidationError

from grants import services as grant_services
from grants.serializers import GrantSerializer, decision_as_dict
from identities.serializers import IdentitySerializer
from kernel.callers import Caller
from kernel.errors import ServiceError, ValidationFailed, error_body
from kernel.memory_only import NeedsIO
from keys import services as key_services
from keys import tokens
from keys.serializers import ApiKeySerializer, issued_key_as_dict, issued_token_as_dict
from sessions import services as session_services
from sessions.serializers import SessionSerializer

logger = logging.getLogger(__name__)

MAX_LISTED = 200
NEVER = "never"

# ---------------------------------------------------------------------------------------------------------
# Schema building blocks


def _string(description: str, **extra: Any) -> dict:
    return {"type": "string", "description": description, **extra}


def _object(properties: dict, *, required: list[str] | None = None) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }


def _arguments(properties: dict, *, required: list[str]) -> dict:
    return {**_object(properties, required=required), "additionalProperties": False}


STRING = {"type": "string"}
INTEGER = {"type": "integer"}
BOOLEAN = {"type": "boolean"}
NULLABLE_STRING = {"type": ["string", "null"]}
NULLABLE_INTEGER = {"type": ["integer", "null"]}
TIMESTAMP = {"type": "string", "format": "date-time"}
NULLABLE_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}
STRINGS = {"type": "array", "items": STRING}

CHITTY_ID = _string("A ChittyID, e.g. CHITTY-PEO-USER123-ABC", minLength=1, maxLength=128)
SCOPES = {
    "type": "array",
    "items": {"type": "string", "minLength": 1, "maxLength": 200},
    "maxItems": 64,
    "description": "Permissions (resource:action, * wildcards) the credential may use; a bare word means "
    "that action on any resource. Never wider than what you hold.",
}
EXPIRES_AT = _string("When it stops working: an ISO 8601 timestamp in the future", format="date-time")
REASON = _string("Why, for the audit trail", maxLength=255)

API_KEY = _object(
    {
        "key_id": STRING,
        "chitty_id": STRING,
        "name": STRING,
        "environment": STRING,
        "display_prefix": STRING,
        "scopes": STRINGS,
        "created_by": STRING,
        "created_at": TIMESTAMP,
        "expires_at": NULLABLE_TIMESTAMP,
        "revoked_at": NULLABLE_TIMESTAMP,
        "revoked_by": STRING,
        "revoke_reason": STRING,
        "rotated_from": NULLABLE_STRING,
        "last_used_at": NULLABLE_TIMESTAMP,
        "use_count": INTEGER,
    }
)
ISSUED_API_KEY = {
    **API_KEY,
    "properties": {**API_KEY["properties"], "api_key": STRING, "notice": STRING},
    "required": [*API_KEY["required"], "api_key", "notice"],
}
GRANT = _object(
    {
        "id": INTEGER,
        "chitty_id": STRING,
        "permission": STRING,
        "resource": STRING,
        "expires_at": NULLABLE_TIMESTAMP,
        "granted_by": STRING,
        "created_at": TIMESTAMP,
        "revoked_at": NULLABLE_TIMESTAMP,
        "revoked_by": STRING,
        "active": BOOLEAN,
    }
)
SESSION = _object(
    {
        "session_id": STRING,
        "chitty_id": STRING,
        "credential_type": STRING,
        "credential_id": STRING,
        "channel": STRING,
        "client_address": NULLABLE_STRING,
        "user_agent": STRING,
        "started_at": TIMESTAMP,
        "last_seen_at": TIMESTAMP,
        "expires_at": NULLABLE_TIMESTAMP,
        "ended_at": NULLABLE_TIMESTAMP,
        "end_reason": STRING,
        "ended_by": STRING,
        "live": BOOLEAN,
    }
)
IDENTITY = _object(
    {
        "chitty_id": STRING,
        "entity_type": STRING,
        "display_name": STRING,
        "status": STRING,
        "status_reason": STRING,
        "source": STRING,
        "last_validated_at": NULLABLE_TIMESTAMP,
        "created_at": TIMESTAMP,
    }
)
KEY_VERIFICATION = _object(
    {
        "valid": BOOLEAN,
        "code": STRING,
        "key_id": NULLABLE_STRING,
        "chitty_id": NULLABLE_STRING,
        "scopes": STRINGS,
        "expires_at": NULLABLE_TIMESTAMP,
        "name": STRING,
        "environment": STRING,
    }
)
TOKEN_VERIFICATION = _object(
    {
        "valid": BOOLEAN,
        "code": STRING,
        "message": STRING,
        "chitty_id": NULLABLE_STRING,
        "jti": NULLABLE_STRING,
        "scopes": STRINGS,
        "expires_at": NULLABLE_TIMESTAMP,
        "claims": {"type": ["object", "null"]},
    }
)
ISSUED_TOKEN = _object(
    {
        "token": STRING,
        "token_type": STRING,
        "jti": STRING,
        "chitty_id": STRING,
        "expires_at": TIMESTAMP,
        "algorithm": STRING,
        "kid": NULLABLE_STRING,
        "scopes": STRINGS,
    }
)
DECISION = _object(
    {
        "allowed": BOOLEAN,
        "chitty_id": STRING,
        "permission": STRING,
        "resource": STRING,
        "grant_id": NULLABLE_INTEGER,
        "granted_permission": NULLABLE_STRING,
        "reason": STRING,
    }
)

# ---------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class ToolOutcome:
    """What a tool answers: the human text, the structured content, and whether it is a tool error."""

    text: str
    structured: dict
    is_error: bool = False


def error_outcome(code: str, message: str, **extra: Any) -> ToolOutcome:
    """`❌ <CODE>: <message>`, then one line per invalid field, so a model can correct its call."""
    fields = extra.get("fields")
    details = [f"• {name}: {problem}" for name, problem in fields.items()] if isinstance(fields, dict) else []
    return ToolOutcome(
        _lines(f"❌ {code}: {message}", *details), error_body(code, message, **extra), is_error=True
    )


def _plain(data: Any) -> dict:
    """DRF's ordered return types as plain JSON-ready dicts."""
    if isinstance(data, dict):
        return {
            key: _plain(value) if isinstance(value, dict | list) else value for key, value in data.items()
        }
    return [_plain(item) if isinstance(item, dict | list) else item for item in data]


def _lines(*lines: str) -> str:
    return "\n".join(lines)


def _when(value: str | None) -> str:
    return value or NEVER


def _scopes(scopes: list[str]) -> str:
    return " ".join(scopes) if scopes else "(none)"


def _timestamp(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = parse_datetime(value) if isinstance(value, str) else None
    except ValueError:  # well-formed but impossible, e.g. 2024-02-30
        parsed = None
    if parsed is None:
        raise ValidationFailed(
            f"{field} must be an ISO 8601 timestamp", code="INVALID_INPUT", fields={field: value}
        )
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------------------------------
# The tools


def generate_api_key(caller: Caller, arguments: dict) -> ToolOutcome:
    issued = key_services.generate_api_key(
        caller,
        chitty_id=arguments["chitty_id"],
        name=arguments.get("name", ""),
        scopes=arguments.get("scopes"),
        expires_at=_timestamp(arguments.get("expires_at"), "expires_at"),
        environment=arguments.get("environment", "live"),
    )
    data = _plain(issued_key_as_dict(issued))
    return ToolOutcome(
        _lines(
            "✅ API Key Generated",
            f"Key ID: {data['key_id']}",
            f"API Key: {data['api_key']}",
            f"ChittyID: {data['chitty_id']}",
            f"Scopes: {_scopes(data['scopes'])}",
            f"Expires: {_when(data['expires_at'])}",
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
        return ToolOutcome(_lines(*lines), data)
    return ToolOutcome(
        _lines(
            "✅ Valid API Key",
            f"Key ID: {data['key_id']}",
            f"ChittyID: {data['chitty_id']}",
            f"Scopes: {_scopes(data['scopes'])}",
            f"Expires: {_when(data['expires_at'])}",
        ),
        data,
    )


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
        _lines(
            "✅ JWT Generated",
            f"JTI: {data['jti']}",
            f"Token: {data['token']}",
            f"ChittyID: {data['chitty_id']}",
            f"Scopes: {_scopes(data['scopes'])}",
            f"Expires: {data['expires_at']}",
        ),
        data,
    )


def validate_jwt(caller: Caller, arguments: dict) -> ToolOutcome:
    data = tokens.validate_jwt(caller, arguments["token"]).as_dict()
    if not data["valid"]:
        return ToolOutcome(_lines(f"❌ Invalid JWT: {data['code']}", data["message"]), data)
    return ToolOutcome(
        _lines(
            "✅ Valid JWT",
            f"ChittyID: {data['chitty_id']}",
            f"JTI: {data['jti']}",
            f"Scopes: {_scopes(data['scopes'])}",
            f"Expires: {data['expires_at']}",
        ),
        data,
    )


def check_permission(caller: Caller, arguments: dict) -> ToolOutcome:
    chitty_id, resource = arguments["chitty_id"], arguments.get("resource", "")
    decision = grant_services.check_principal_permission(caller, chitty_id, arguments["permission"], resource)
    data = decision_as_dict(chitty_id, decision)
    subject = [f"ChittyID: {chitty_id}", f"Permission: {data['permission']}"]
    if data["resource"]:
        subject.append(f"Resource: {data['resource']}")
    if data["allowed"]:
        granted_by = f"Grant: {data['grant_id']} ({data['granted_permission']})"
        return ToolOutcome(_lines("✅ Permission Granted", *subject, granted_by), data)
    return ToolOutcome(_lines("❌ Permission Denied", *subject, f"Reason: {data['reason']}"), data)


def grant_authorization(caller: Caller, arguments: dict) -> ToolOutcome:
    grant = grant_services.grant_permission(
        caller,
        grantee_chitty_id=arguments["grantee_chitty_id"],
        permission=arguments["permission"],
        resource_id=arguments.get("resource", ""),
        expires_at=_timestamp(arguments.get("expires_at"), "expires_at"),
        grantor_chitty_id=arguments.get("grantor_chitty_id"),
    )
    data = _plain(GrantSerializer(grant).data)
    return ToolOutcome(
        _lines(
            "✅ Authorization Granted",
            f"Grant ID: {data['id']}",
            f"ChittyID: {data['chitty_id']}",
            f"Permission: {data['permission']}",
            f"Resource: {data['resource'] or '(any)'}",
            f"Expires: {_when(data['expires_at'])}",
        ),
        data,
    )


def revoke_authorization(caller: Caller, arguments: dict) -> ToolOutcome:
    data = _plain(GrantSerializer(grant_services.revoke_grant(caller, arguments["grant_id"])).data)
    return ToolOutcome(
        _lines(
            "✅ Authorization Revoked",
            f"Grant ID: {data['id']}",
            f"ChittyID: {data['chitty_id']}",
            f"Permission: {data['permission']}",
            f"Revoked: {data['revoked_at']}",
        ),
        data,
    )


def list_sessions(caller: Caller, arguments: dict) -> ToolOutcome:
    active_only = arguments.get("active_only", True)
    sessions = session_services.list_sessions(
        caller, chitty_id=arguments.get("chitty_id"), active=True if active_only else None
    )
    rows = _plain(SessionSerializer(sessions[:MAX_LISTED], many=True).data)
    heading = f"📋 {'Active Sessions' if active_only else 'Sessions'} ({len(rows)})"
    if not rows:
        return ToolOutcome(_lines(heading, "No sessions."), {"sessions": rows, "count": 0})
    lines = [
        f"• {row['session_id']} {row['chitty_id']} on {row['channel']} via {row['credential_id']}, "
        f"since {row['started_at']}" + ("" if row["live"] else f", ended {row['ended_at']}")
        for row in rows
    ]
    return ToolOutcome(_lines(heading, *lines), {"sessions": rows, "count": len(rows)})


def revoke_session(caller: Caller, arguments: dict) -> ToolOutcome:
    session = session_services.end_session(
        caller, arguments["session_id"], reason=arguments.get("reason", "")
    )
    data = _plain(SessionSerializer(session).data)
    return ToolOutcome(
        _lines(
            "✅ Session Ended",
            f"Session: {data['session_id']}",
            f"ChittyID: {data['chitty_id']}",
            f"Reason: {data['end_reason']}",
        ),
        data,
    )


def revoke_api_key(caller: Caller, arguments: dict) -> ToolOutcome:
    api_key = key_services.revoke_api_key(caller, arguments["key_id"], reason=arguments.get("reason", ""))
    data = _plain(ApiKeySerializer(api_key).data)
    return ToolOutcome(
        _lines(
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
    data = _plain(issued_key_as_dict(issued))
    data["previous_key_valid_until"] = issued.api_key.rotated_from.revoked_at.isoformat()
    return ToolOutcome(
        _lines(
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
    rows = _plain(ApiKeySerializer(keys[:MAX_LISTED], many=True).data)
    heading = f"🔑 API Keys ({len(rows)})"
    if not rows:
        return ToolOutcome(_lines(heading, "No API keys."), {"keys": rows, "count": 0})
    lines = [
        f"• {row['key_id']} {row['display_prefix']}… “{row['name']}” scopes {_scopes(row['scopes'])}, "
        f"expires {_when(row['expires_at'])}"
        + (f", revoked {row['revoked_at']}" if row["revoked_at"] else "")
        for row in rows
    ]
    return ToolOutcome(_lines(heading, *lines), {"keys": rows, "count": len(rows)})


def revoke_jwt(caller: Caller, arguments: dict) -> ToolOutcome:
    revoked = tokens.revoke_jwt(
        caller, token=arguments.get("token"), jti=arguments.get("jti"), reason=arguments.get("reason", "")
    )
    data = {"revoked": True, "jti": revoked.jti, "expires_at": revoked.expires_at.isoformat()}
    return ToolOutcome(_lines("✅ JWT Revoked", f"JTI: {revoked.jti}"), data)


def whoami(caller: Caller, arguments: dict) -> ToolOutcome:
    data = {
        "chitty_id": caller.chitty_id,
        "credential_type": caller.credential_type,
        "credential_id": caller.credential_id,
        "scopes": list(caller.scopes),
        "session_id": caller.session_id,
        "identity": _plain(IdentitySerializer(caller.identity).data),
    }
    return ToolOutcome(
        _lines(
            f"👤 {caller.chitty_id}",
            f"Credential: {caller.credential_type} {caller.credential_id}",
            f"Scopes: {_scopes(data['scopes'])}",
            f"Session: {caller.session_id}",
        ),
        data,
    )


# ---------------------------------------------------------------------------------------------------------
# The catalogue


ERROR_RESULT = _object({"error": _object({"code": STRING, "message": STRING})})


@dataclass(frozen=True)
class ToolSpec:
    name: str
    title: str
    description: str
    input_schema: dict
    result_schema: dict
    run: Callable[[Caller, dict], ToolOutcome]
    read_only: bool = False
    destructive: bool = False
    # Its services guard every wait on I/O with `needs_io`, so a warm call can be answered on the event loop.
    answers_from_memory: bool = False

    @property
    def output_schema(self) -> dict:
        """The result's shape, or a tool error's `{"error": {code, message, ...}}`: clients (the TypeScript SDK
        among them) check `structuredContent` against this even when `isError` is set."""
        return {"type": "object", "anyOf": [self.result_schema, ERROR_RESULT]}

    @functools.cached_property
    def accepts(self) -> Callable[[dict], Any]:
        """The input schema compiled to Python (fastjsonschema): arguments that pass, nearly every call, cost
        next to nothing. It stops at the first problem, so refused ones are explained by `validator`.
        Formats are annotations here, as in `validator`; the tools parse timestamps themselves."""
        return fastjsonschema.compile(self.input_schema, use_formats=False)

    @functools.cached_property
    def validator(self) -> Draft202012Validator:
        return Draft202012Validator(self.input_schema)


_SPECS = [
    ToolSpec(
        "generate_api_key",
        "Generate an API key",
        "Mint an API key for a ChittyID (your own needs api_keys:generate, anyone else's api_keys:manage). "
        "The key is shown once.",
        _arguments(
            {
                "chitty_id": CHITTY_ID,
                "name": _string("A name to recognise the key by", maxLength=200),
                "scopes": SCOPES,
                "expires_at": EXPIRES_AT,
                "environment": {"type": "string", "enum": ["live", "test"], "description": "Key environment"},
            },
            required=["chitty_id"],
        ),
        ISSUED_API_KEY,
        generate_api_key,
    ),
    ToolSpec(
        "validate_api_key",
        "Validate an API key",
        "Check an API key: your own freely, anyone's with api_keys:validate. The text starts with "
        "'✅ Valid API Key' or '❌ Invalid API Key: <CODE>'.",
        _arguments({"api_key": _string("The API key (chitty_…)", maxLength=512)}, required=["api_key"]),
        KEY_VERIFICATION,
        validate_api_key,
        read_only=True,
        answers_from_memory=True,
    ),
    ToolSpec(
        "generate_jwt",
        "Generate a JWT",
        "Mint a JWT access token (for yourself with tokens:generate, for another ChittyID with tokens:manage).",
        _arguments(
            {
                "chitty_id": CHITTY_ID,
                "expires_in": {
                    "type": ["string", "integer"],
                    "description": "Lifetime: seconds, or a number with s, m, h or d (90s, 15m, 24h, 7d)",
                },
                "claims": {
                    "type": "object",
                    "description": "Extra claims; registered and reserved claim names are refused",
                },
                "scopes": SCOPES,
            },
            required=["chitty_id"],
        ),
        ISSUED_TOKEN,
        generate_jwt,
    ),
    ToolSpec(
        "validate_jwt",
        "Validate a JWT",
        "Verify a JWT issued here: your own freely, anyone's with tokens:validate. The text starts with "
        "'✅ Valid JWT' or '❌ Invalid JWT: <CODE>'.",
        _arguments({"token": _string("The JWT", maxLength=8192)}, required=["token"]),
        TOKEN_VERIFICATION,
        validate_jwt,
        read_only=True,
        answers_from_memory=True,
    ),
    ToolSpec(
        "check_permission",
        "Check a permission",
        "Does a ChittyID hold a permission (on a resource)? Your own freely, another's with permissions:check.",
        _arguments(
            {
                "chitty_id": CHITTY_ID,
                "permission": _string("resource:action, e.g. api_keys:generate", minLength=1, maxLength=200),
                "resource": _string("A resource id the grant may be limited to", maxLength=255),
            },
            required=["chitty_id", "permission"],
        ),
        DECISION,
        check_permission,
        read_only=True,
    ),
    ToolSpec(
        "grant_authorization",
        "Grant a permission",
        "Grant a permission you hold yourself to a ChittyID (authorizations:grant). grantor_chitty_id, if "
        "given, must be your own ChittyID.",
        _arguments(
            {
                "grantor_chitty_id": _string("Your own ChittyID (grants are always made in your name)"),
                "grantee_chitty_id": CHITTY_ID,
                "permission": _string(
                    "resource:action with optional * wildcards", minLength=1, maxLength=200
                ),
                "resource": _string("Limit the grant to this resource id", maxLength=255),
                "expires_at": EXPIRES_AT,
            },
            required=["grantee_chitty_id", "permission"],
        ),
        GRANT,
        grant_authorization,
    ),
    ToolSpec(
        "list_sessions",
        "List sessions",
        "Sessions of a ChittyID: your own freely, another's (or everyone's) with sessions:read.",
        _arguments(
            {
                "chitty_id": CHITTY_ID,
                "active_only": {"type": "boolean", "description": "Only live sessions (default true)"},
            },
            required=[],
        ),
        _object({"sessions": {"type": "array", "items": SESSION}, "count": INTEGER}),
        list_sessions,
        read_only=True,
    ),
    ToolSpec(
        "revoke_api_key",
        "Revoke an API key",
        "Revoke an API key at once: your own freely, anyone else's with api_keys:manage.",
        _arguments(
            {"key_id": _string("The key's id (key_…)", maxLength=64), "reason": REASON}, required=["key_id"]
        ),
        API_KEY,
        revoke_api_key,
        destructive=True,
    ),
    ToolSpec(
        "rotate_api_key",
        "Rotate an API key",
        "Reroll an API key keeping its settings; the old key keeps working for overlap_seconds.",
        _arguments(
            {
                "key_id": _string("The key's id (key_…)", maxLength=64),
                "overlap_seconds": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "How long the old key keeps working (0 ends it now)",
                },
            },
            required=["key_id"],
        ),
        {
            **ISSUED_API_KEY,
            "properties": {**ISSUED_API_KEY["properties"], "previous_key_valid_until": TIMESTAMP},
            "required": [*ISSUED_API_KEY["required"], "previous_key_valid_until"],
        },
        rotate_api_key,
    ),
    ToolSpec(
        "list_api_keys",
        "List API keys",
        "API keys of a ChittyID (default: yours), newest first; another's needs api_keys:manage.",
        _arguments(
            {
                "chitty_id": CHITTY_ID,
                "include_revoked": {"type": "boolean", "description": "Include revoked keys (default false)"},
            },
            required=[],
        ),
        _object({"keys": {"type": "array", "items": API_KEY}, "count": INTEGER}),
        list_api_keys,
        read_only=True,
    ),
    ToolSpec(
        "revoke_jwt",
        "Revoke a JWT",
        "Revoke a JWT by the token itself or by its jti (a bare jti, or another principal's token, needs "
        "tokens:manage). Give exactly one of token or jti.",
        _arguments(
            {
                "token": _string("The JWT to revoke", maxLength=8192),
                "jti": _string("The token's jti", maxLength=64),
                "reason": REASON,
            },
            required=[],
        ),
        _object({"revoked": BOOLEAN, "jti": STRING, "expires_at": TIMESTAMP}),
        revoke_jwt,
        destructive=True,
    ),
    ToolSpec(
        "revoke_authorization",
        "Revoke a grant",
        "Revoke a permission grant (authorizations:revoke).",
        _arguments(
            {"grant_id": {"type": "integer", "minimum": 1, "description": "The grant's id"}},
            required=["grant_id"],
        ),
        GRANT,
        revoke_authorization,
        destructive=True,
    ),
    ToolSpec(
        "revoke_session",
        "End a session",
        "End a session at once, closing its live connections: your own freely, anyone's with sessions:revoke.",
        _arguments(
            {"session_id": _string("The session's id (ses_…)", maxLength=40), "reason": REASON},
            required=["session_id"],
        ),
        SESSION,
        revoke_session,
        destructive=True,
    ),
    ToolSpec(
        "whoami",
        "Who am I",
        "The ChittyID, credential, scopes and session this connection acts with.",
        _arguments({}, required=[]),
        _object(
            {
                "chitty_id": STRING,
                "credential_type": STRING,
                "credential_id": STRING,
                "scopes": STRINGS,
                "session_id": NULLABLE_STRING,
                "identity": IDENTITY,
            }
        ),
        whoami,
        read_only=True,
    ),
]

TOOLS: dict[str, ToolSpec] = {spec.name: spec for spec in _SPECS}


def _problem(error: ValidationError) -> str:
    """What is wrong with an argument, without echoing its value (it may be a secret)."""
    if error.validator in ("required", "additionalProperties"):
        return error.message
    return f"must satisfy {error.validator} {json.dumps(error.validator_value)}"


def _check_arguments(spec: ToolSpec, arguments: dict) -> None:
    try:
        spec.accepts(arguments)
    except fastjsonschema.JsonSchemaValueException:
        _refuse_arguments(spec, arguments)


def _refuse_arguments(spec: ToolSpec, arguments: dict) -> NoReturn:
    """Every problem, per field, so a model can correct its call in one go."""
    problems: dict[str, list[str]] = {}
    for error in spec.validator.iter_errors(arguments):
        path = ".".join(str(part) for part in error.absolute_path) or "(arguments)"
        problems.setdefault(path, []).append(_problem(error))
    fields = {path: "; ".join(messages) for path, messages in problems.items()}
    raise ValidationFailed(f"Invalid arguments for {spec.name}", code="INVALID_INPUT", fields=fields)


def call_tool(caller: Caller, name: str, arguments: dict[str, Any] | None) -> ToolOutcome:
    """Run one tool for `caller`. Every failure is an outcome: a `ServiceError` keeps its code and message;
    anything unexpected is logged (never the arguments, which may hold secrets) and answered generically."""
    spec = TOOLS[name]
    arguments = arguments or {}
    try:
        _check_arguments(spec, arguments)
        return spec.run(caller, arguments)
    except ServiceError as exc:
        return error_outcome(exc.code, exc.message, **exc.extra)
    except NeedsIO:  # not answerable from memory: the caller runs the call again in a worker thread
        raise
    except Exception:  # the boundary: a bug must not reach the client as a traceback
        logger.exception("MCP tool %s failed for %s", name, caller.actor)
        return internal_error_outcome()


def internal_error_outcome() -> ToolOutcome:
    return error_outcome("INTERNAL_ERROR", "Something went wrong on our side; it has been logged.")
