"""The OpenAPI schema says what every operation can answer, errors included: drf-spectacular documents only the
success a view declares, and a client (or Schemathesis) must be able to rely on the rest."""

from typing import Any

ERROR = {
    "type": "object",
    "description": "Every error has this shape; `code` is stable, `message` is for a person.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "example": "INVALID_INPUT"},
                "message": {"type": "string"},
                "fields": {
                    "type": "object",
                    "description": "For INVALID_INPUT: what is wrong with each field",
                    "additionalProperties": True,
                },
            },
            "additionalProperties": True,
        }
    },
}

EVERYWHERE = {
    "400": "The request is malformed or a field is invalid (INVALID_INPUT, MALFORMED_REQUEST, ...)",
    "401": "No credential, or one that is not valid (AUTHENTICATION_REQUIRED, INVALID_CREDENTIAL, ...)",
    "403": "The caller may not do this (PERMISSION_DENIED, ...)",
    "503": "A dependency is down: the database or the ChittyID authority (DATABASE_UNAVAILABLE, ...)",
}
WITH_PATH_PARAMETERS = {"404": "Nothing with that id (NOT_FOUND, KEY_NOT_FOUND, ...)"}
CHANGES = {"409": "The change conflicts with the current state (CONFLICT, ...)"}
WITH_BODY = {
    "413": "The request body is too large",
    "415": "The body is not JSON (UNSUPPORTED_MEDIA_TYPE)",
}


def document_errors(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the error answers of every operation, one shared Error schema."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            parameters = operation.get("parameters", [])
            errors = dict(EVERYWHERE)
            if any(parameter.get("in") == "path" for parameter in parameters):
                errors.update(WITH_PATH_PARAMETERS)
            if method == "post":
                errors.update(CHANGES)
            if "requestBody" in operation:
                errors.update(WITH_BODY)
            for status, description in errors.items():
                operation["responses"].setdefault(status, _error_response(description))
    return result


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
