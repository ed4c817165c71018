"""The JSON Schemas the tools declare: their arguments, and the results they answer with."""

from typing import Any


def string_schema(description: str, **extra: Any) -> dict:
    return {"type": "string", "description": description, **extra}


def object_schema(properties: dict, *, required: list[str] | None = None) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }


def arguments_schema(properties: dict, *, required: list[str]) -> dict:
    return {**object_schema(properties, required=required), "additionalProperties": False}


STRING = {"type": "string"}
INTEGER = {"type": "integer"}
BOOLEAN = {"type": "boolean"}
NULLABLE_STRING = {"type": ["string", "null"]}
NULLABLE_INTEGER = {"type": ["integer", "null"]}
TIMESTAMP = {"type": "string", "format": "date-time"}
NULLABLE_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}
STRINGS = {"type": "array", "items": STRING}

CHITTY_ID = string_schema("A ChittyID, e.g. CHITTY-PEO-USER123-ABC", minLength=1, maxLength=128)
SCOPES = {
    "type": "array",
    "items": {"type": "string", "minLength": 1, "maxLength": 200},
    "maxItems": 64,
    "description": "Permissions (resource:action, * wildcards) the credential may use; a bare word means "
    "that action on any resource. Never wider than what you hold.",
}
EXPIRES_AT = string_schema("When it stops working: an ISO 8601 timestamp in the future", format="date-time")
REASON = string_schema("Why, for the audit trail", maxLength=255)
CHECK_ARGUMENTS = {
    "chitty_id": CHITTY_ID,
    "permission": string_schema("resource:action, e.g. api_keys:generate", minLength=1, maxLength=200),
    "resource": string_schema("A resource id the grant may be limited to", maxLength=255),
}

API_KEY = object_schema(
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
GRANT = object_schema(
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
SESSION = object_schema(
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
IDENTITY = object_schema(
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
KEY_VERIFICATION = object_schema(
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
TOKEN_VERIFICATION = object_schema(
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
ISSUED_TOKEN = object_schema(
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
DECISION = object_schema(
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

DECISIONS = object_schema(
    {
        "all_allowed": BOOLEAN,
        "results": {
            "type": "array",
            "items": object_schema(
                {
                    **DECISION["properties"],
                    "error": {
                        "anyOf": [object_schema({"code": STRING, "message": STRING}), {"type": "null"}]
                    },
                }
            ),
        },
    }
)

ERROR_RESULT = object_schema({"error": object_schema({"code": STRING, "message": STRING})})
