"""What a tool answers (`ToolOutcome`) and the small helpers every tool family shapes its answer with."""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.utils.dateparse import parse_datetime

from kernel.errors import ValidationFailed, error_body

MAX_LISTED = 200
NEVER = "never"


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
        text_lines(f"❌ {code}: {message}", *details), error_body(code, message, **extra), is_error=True
    )


def plain(data: Any) -> dict:
    """DRF's ordered return types as plain JSON-ready dicts."""
    if isinstance(data, dict):
        return {key: plain(value) if isinstance(value, dict | list) else value for key, value in data.items()}
    return [plain(item) if isinstance(item, dict | list) else item for item in data]


def text_lines(*lines: str) -> str:
    return "\n".join(lines)


def or_never(value: str | None) -> str:
    return value or NEVER


def scope_text(scopes: list[str]) -> str:
    return " ".join(scopes) if scopes else "(none)"


def parse_timestamp(value: Any, field: str) -> datetime | None:
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


def internal_error_outcome() -> ToolOutcome:
    return error_outcome("INTERNAL_ERROR", "Something went wrong on our side; it has been logged.")
