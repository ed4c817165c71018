"""`manage.py mcp_stdio`: serve MCP on stdin/stdout, acting as the API key in `CHITTYAUTH_API_KEY`."""

import os
from collections.abc import AsyncIterable
from typing import Any

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectSendStream
from django.core.management.base import BaseCommand, CommandError
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from kernel.errors import ServiceError
from kernel.tracing import start_tracing
from keys.services import start_usage_writer
from mcp_endpoint.connections import LiveConnection
from mcp_endpoint.server import current_caller_source, jsonrpc_error, mcp_server, not_a_message
from sessions.models import AuthSession

CREDENTIAL_VARIABLE = "CHITTYAUTH_API_KEY"


async def serve(connection: LiveConnection) -> None:
    current_caller_source.set(connection)
    server = mcp_server()
    async with stdio_server() as (read_stream, write_stream):
        to_server, from_stdin = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_answer_unreadable_lines, read_stream, to_server, write_stream)
            await server.run(from_stdin, write_stream, server.create_initialization_options())


async def _answer_unreadable_lines(
    lines: AsyncIterable[SessionMessage | Exception],
    to_server: MemoryObjectSendStream[SessionMessage | Exception],
    answers: Any,  # the SDK's stdout stream
) -> None:
    """The SDK's stdio transport passes a line it cannot read on as an exception, which the server only logs;
    answer it with a JSON-RPC error, as the WebSocket does (blank lines are skipped), and pass the rest on."""
    async with to_server:
        async for line in lines:
            if not isinstance(line, ValidationError):
                await to_server.send(line)
            elif (error := _unreadable(line)) is not None:
                await answers.send(SessionMessage(error))


def _unreadable(error: ValidationError) -> types.JSONRPCError | None:
    details = error.errors()
    if any(detail["type"] == "json_invalid" for detail in details):
        line = details[0]["input"]
        if isinstance(line, str) and not line.strip():
            return None
        return jsonrpc_error(types.PARSE_ERROR, "Parse error: the line is not JSON")
    return not_a_message(_parsed_line(details))


def _parsed_line(details: list) -> Any:
    """The line as JSON, from pydantic's report: the input of an error about a whole union member (its type
    is wrong, or a field is missing from it)."""
    for detail in details:
        if len(detail["loc"]) == 1 or (detail["type"] == "missing" and len(detail["loc"]) == 2):
            return detail["input"]
    return None


class Command(BaseCommand):
    help = (
        f"Serve MCP over stdin/stdout for a local agent, authenticated by the API key in ${CREDENTIAL_VARIABLE}. "
        "Only protocol messages go to stdout; logs go to stderr."
    )

    def handle(self, *args, **options) -> None:
        credential = os.environ.get(CREDENTIAL_VARIABLE, "").strip()
        if not credential:
            raise CommandError(
                f"{CREDENTIAL_VARIABLE} is not set: export the API key this MCP server acts as"
            )
        start_usage_writer()
        start_tracing()
        try:
            connection = LiveConnection.open(
                credential, AuthSession.Channel.MCP_STDIO, user_agent="mcp-stdio"
            )
        except ServiceError as exc:
            raise CommandError(f"{CREDENTIAL_VARIABLE} was refused: {exc.code}: {exc.message}") from exc
        try:
            anyio.run(serve, connection)
        finally:
            connection.close("disconnected")
