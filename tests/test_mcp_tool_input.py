"""Bad tool arguments get INVALID_INPUT from the MCP adapter, and a database outage DATABASE_UNAVAILABLE, never
an internal error."""

import fastjsonschema
import pytest
from django.db import OperationalError, connection
from jsonschema import Draft202012Validator
from mcp.server._otel import OpenTelemetryMiddleware

from grants.services import grant_permission
from kernel.callers import Caller
from mcp_endpoint.server import mcp_server
from mcp_endpoint.tools import TOOLS, ToolSpec, call_tool

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


def test_a_database_that_cannot_be_reached_is_database_unavailable_not_an_internal_error(make_identity):
    admin = make_identity(ADMIN)
    caller = Caller(
        actor=ADMIN, identity=admin, credential_type="api_key", credential_id="key_test", scopes=("*",)
    )

    def unreachable(execute, sql, params, many, context):
        raise OperationalError("could not connect to server: Connection refused")

    with connection.execute_wrapper(unreachable):
        outcome = call_tool(caller, "list_api_keys", {})
    assert outcome.is_error
    assert outcome.structured["error"]["code"] == "DATABASE_UNAVAILABLE"
    assert "Connection refused" not in outcome.text


@pytest.mark.parametrize("enabled", [True, False])
def test_the_sdk_opentelemetry_span_per_request_is_opt_in(settings, enabled):
    settings.MCP_OPENTELEMETRY = enabled
    mcp_server.cache_clear()
    try:
        spans = [m for m in mcp_server().middleware if isinstance(m, OpenTelemetryMiddleware)]
        assert len(spans) == (1 if enabled else 0)
    finally:
        mcp_server.cache_clear()


# Keywords that draft-07 (what fastjsonschema compiles) and 2020-12 (what jsonschema explains) read alike.
SHARED_KEYWORDS = {
    "type", "properties", "required", "additionalProperties", "items", "enum",
    "minLength", "maxLength", "minItems", "maxItems", "minimum", "maximum", "description", "format",
}  # fmt: skip
ANY_JSON = [None, True, False, 0, 1, -1, 2.0, 1.5, "", "x", "😀", [], ["x"], [1], {}, {"a": [1]}]


def _subschemas(schema: dict):
    yield schema
    for nested in [*schema.get("properties", {}).values(), schema.get("items")]:
        if isinstance(nested, dict):
            yield from _subschemas(nested)


def _edge_values(schema: dict) -> list:
    """Any JSON value, plus values at and just past each of the schema's limits."""
    values = list(ANY_JSON) + list(schema.get("enum", [])) + ["not-in-enum"]
    for bound in ("minLength", "maxLength"):
        if bound in schema:
            values += [char * (schema[bound] + step) for char in "a😀" for step in (-1, 0, 1)]
    items = schema.get("items", {})
    item = _valid_object(items) if items.get("type") == "object" else "a"
    for bound in ("minItems", "maxItems"):
        if bound in schema:
            values += [[item] * (schema[bound] + step) for step in (-1, 0, 1)]
    if items.get("type") == "object":  # lists of objects: one with each edge value in each property
        values += [[variant] for variant in _object_variants(items)]
    for bound in ("minimum", "maximum"):
        if bound in schema:
            values += [schema[bound] + step for step in (-1, 0, 1)] + [float(schema[bound])]
    return values


def _valid_object(schema: dict) -> dict:
    return {
        name: next(value for value in _edge_values(nested) if Draft202012Validator(nested).is_valid(value))
        for name, nested in schema["properties"].items()
        if name in schema["required"]
    }


def _argument_variants(spec: ToolSpec) -> list[dict]:
    return _object_variants(spec.input_schema)


def _object_variants(schema: dict) -> list[dict]:
    """Valid arguments, then each one taken away, replaced by every edge value, or joined by an unknown one."""
    properties = schema["properties"]
    valid = _valid_object(schema)
    variants = [valid, {**valid, "unexpected": 1}]
    variants += [{key: value for key, value in valid.items() if key != name} for name in valid]
    variants += [
        {**valid, name: value} for name, schema in properties.items() for value in _edge_values(schema)
    ]
    return variants


def _fast_accepts(spec: ToolSpec, arguments: dict) -> bool:
    try:
        spec.accepts(arguments)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


def test_every_input_schema_uses_only_keywords_both_validators_read_alike():
    for spec in TOOLS.values():
        for schema in _subschemas(spec.input_schema):
            assert set(schema) <= SHARED_KEYWORDS, (spec.name, set(schema) - SHARED_KEYWORDS)


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_the_fast_check_accepts_exactly_what_the_explaining_validator_accepts(name):
    """Arguments pass on the fast check alone, so it must never accept what the schema refuses."""
    spec = TOOLS[name]
    verdicts = [
        (_fast_accepts(spec, arguments), spec.validator.is_valid(arguments), arguments)
        for arguments in _argument_variants(spec)
    ]
    disagreements = [arguments for fast, explained, arguments in verdicts if fast != explained]
    assert not disagreements
    assert {fast for fast, _, _ in verdicts} == {True, False}  # both verdicts were exercised
