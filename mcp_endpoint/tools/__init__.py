"""The MCP tools: the seed's seven and seven more, each a thin adapter over one service call.

A tool checks its arguments against its declared input schema, calls one service with the connection's
`Caller`, and answers twice: `structuredContent` following its declared output schema, and the seed's human
text (integrations match on its first line, e.g. `✅ Valid API Key`). A `ServiceError` becomes a tool error
(`isError`, text `❌ <CODE>: <message>`, structured `{"error": {...}}`); any other failure is logged and
answered with a generic error, never a traceback. Everything here is synchronous Django code: the transports
run `call_tool` in a worker thread.
"""

import json
import logging
from typing import Any, NoReturn

import fastjsonschema
from jsonschema import ValidationError

from kernel.callers import Caller
from kernel.errors import DATABASE_DOWN, ServiceError, ValidationFailed, database_unavailable
from kernel.memory_only import NeedsIO
from mcp_endpoint.tools.catalogue import TOOLS, ToolSpec
from mcp_endpoint.tools.results import ToolOutcome, error_outcome, internal_error_outcome

__all__ = ["TOOLS", "ToolOutcome", "ToolSpec", "call_tool", "error_outcome", "internal_error_outcome"]

logger = logging.getLogger(__name__)


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
    except DATABASE_DOWN as exc:
        error = database_unavailable(exc, f"MCP tool {name}")
        return error_outcome(error.code, error.message)
    except Exception:  # the boundary: a bug must not reach the client as a traceback
        logger.exception("MCP tool %s failed for %s", name, caller.actor)
        return internal_error_outcome()
