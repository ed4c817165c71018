"""`manage.py mcp_stdio`: serve MCP on stdin/stdout, acting as the API key in `CHITTYAUTH_API_KEY`."""

import os

import anyio
from django.core.management.base import BaseCommand, CommandError
from mcp.server.stdio import stdio_server

from chittyauth_site.errors import ServiceError
from mcp_endpoint.connections import LiveConnection
from mcp_endpoint.server import current_caller_source, mcp_server
from sessions.models import AuthSession

CREDENTIAL_VARIABLE = "CHITTYAUTH_API_KEY"


async def serve(connection: LiveConnection) -> None:
    current_caller_source.set(connection)
    server = mcp_server()
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


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
