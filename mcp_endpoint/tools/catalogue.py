"""Every tool: its name, title, description, schemas, hints and the function that runs it."""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator

from grants.services import MAX_BULK_CHECKS
from kernel.callers import Caller
from mcp_endpoint.tools.api_keys import (
    generate_api_key,
    list_api_keys,
    revoke_api_key,
    rotate_api_key,
    validate_api_key,
)
from mcp_endpoint.tools.permissions import (
    check_permission,
    check_permissions,
    grant_authorization,
    revoke_authorization,
)
from mcp_endpoint.tools.results import ToolOutcome
from mcp_endpoint.tools.schemas import (
    API_KEY,
    BOOLEAN,
    CHECK_ARGUMENTS,
    CHITTY_ID,
    DECISION,
    DECISIONS,
    ERROR_RESULT,
    EXPIRES_AT,
    GRANT,
    IDENTITY,
    INTEGER,
    ISSUED_API_KEY,
    ISSUED_TOKEN,
    KEY_VERIFICATION,
    NULLABLE_STRING,
    REASON,
    SCOPES,
    SESSION,
    STRING,
    STRINGS,
    TIMESTAMP,
    TOKEN_VERIFICATION,
    arguments_schema,
    object_schema,
    string_schema,
)
from mcp_endpoint.tools.sessions import list_sessions, revoke_session, whoami
from mcp_endpoint.tools.tokens import generate_jwt, revoke_jwt, validate_jwt


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
        arguments_schema(
            {
                "chitty_id": CHITTY_ID,
                "name": string_schema("A name to recognise the key by", maxLength=200),
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
        arguments_schema(
            {"api_key": string_schema("The API key (chitty_…)", maxLength=512)}, required=["api_key"]
        ),
        KEY_VERIFICATION,
        validate_api_key,
        read_only=True,
        answers_from_memory=True,
    ),
    ToolSpec(
        "generate_jwt",
        "Generate a JWT",
        "Mint a JWT access token (for yourself with tokens:generate, for another ChittyID with tokens:manage).",
        arguments_schema(
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
        arguments_schema({"token": string_schema("The JWT", maxLength=8192)}, required=["token"]),
        TOKEN_VERIFICATION,
        validate_jwt,
        read_only=True,
        answers_from_memory=True,
    ),
    ToolSpec(
        "check_permission",
        "Check a permission",
        "Does a ChittyID hold a permission (on a resource)? Your own freely, another's with permissions:check.",
        arguments_schema(
            CHECK_ARGUMENTS,
            required=["chitty_id", "permission"],
        ),
        DECISION,
        check_permission,
        read_only=True,
    ),
    ToolSpec(
        "check_permissions",
        "Check many permissions",
        "Several checks in one call, each answered on its own (1 to 100). Your own freely, another's with "
        "permissions:check. The text starts with '🔍 Permission Checks: <allowed> of <n> allowed'.",
        arguments_schema(
            {
                "checks": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_BULK_CHECKS,
                    "items": arguments_schema(CHECK_ARGUMENTS, required=["chitty_id", "permission"]),
                }
            },
            required=["checks"],
        ),
        DECISIONS,
        check_permissions,
        read_only=True,
    ),
    ToolSpec(
        "grant_authorization",
        "Grant a permission",
        "Grant a permission you hold yourself to a ChittyID (authorizations:grant). grantor_chitty_id, if "
        "given, must be your own ChittyID.",
        arguments_schema(
            {
                "grantor_chitty_id": string_schema("Your own ChittyID (grants are always made in your name)"),
                "grantee_chitty_id": CHITTY_ID,
                "permission": string_schema(
                    "resource:action with optional * wildcards", minLength=1, maxLength=200
                ),
                "resource": string_schema("Limit the grant to this resource id", maxLength=255),
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
        arguments_schema(
            {
                "chitty_id": CHITTY_ID,
                "active_only": {"type": "boolean", "description": "Only live sessions (default true)"},
            },
            required=[],
        ),
        object_schema({"sessions": {"type": "array", "items": SESSION}, "count": INTEGER}),
        list_sessions,
        read_only=True,
    ),
    ToolSpec(
        "revoke_api_key",
        "Revoke an API key",
        "Revoke an API key at once: your own freely, anyone else's with api_keys:manage.",
        arguments_schema(
            {"key_id": string_schema("The key's id (key_…)", maxLength=64), "reason": REASON},
            required=["key_id"],
        ),
        API_KEY,
        revoke_api_key,
        destructive=True,
    ),
    ToolSpec(
        "rotate_api_key",
        "Rotate an API key",
        "Reroll an API key keeping its settings; the old key keeps working for overlap_seconds.",
        arguments_schema(
            {
                "key_id": string_schema("The key's id (key_…)", maxLength=64),
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
        arguments_schema(
            {
                "chitty_id": CHITTY_ID,
                "include_revoked": {"type": "boolean", "description": "Include revoked keys (default false)"},
            },
            required=[],
        ),
        object_schema({"keys": {"type": "array", "items": API_KEY}, "count": INTEGER}),
        list_api_keys,
        read_only=True,
    ),
    ToolSpec(
        "revoke_jwt",
        "Revoke a JWT",
        "Revoke a JWT by the token itself or by its jti (a bare jti, or another principal's token, needs "
        "tokens:manage). Give exactly one of token or jti.",
        arguments_schema(
            {
                "token": string_schema("The JWT to revoke", maxLength=8192),
                "jti": string_schema("The token's jti", maxLength=64),
                "reason": REASON,
            },
            required=[],
        ),
        object_schema({"revoked": BOOLEAN, "jti": STRING, "expires_at": TIMESTAMP}),
        revoke_jwt,
        destructive=True,
    ),
    ToolSpec(
        "revoke_authorization",
        "Revoke a grant",
        "Revoke a permission grant (authorizations:revoke).",
        arguments_schema(
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
        arguments_schema(
            {"session_id": string_schema("The session's id (ses_…)", maxLength=40), "reason": REASON},
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
        arguments_schema({}, required=[]),
        object_schema(
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
