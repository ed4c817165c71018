"""A live node whose PostgreSQL database stops taking connections: REST answers 503 DATABASE_UNAVAILABLE, an MCP
tool call over WebSocket a DATABASE_UNAVAILABLE tool error on a socket that stays open, and both work again
once the database is back. The outage is real: the database refuses new connections and its open ones are
ended, as a failover or a restart would."""

import asyncio
import contextlib
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.mcp_live import ADMIN, _maintenance_connection, base_env, daphne_server, rest, service_database
from tests.test_mcp_websocket import call, connect, initialized


@contextlib.contextmanager
def database_down(database: str) -> Iterator[None]:
    with _maintenance_connection() as connection:
        connection.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,)
        )
    try:
        yield
    finally:
        with _maintenance_connection() as connection:
            connection.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')


@pytest.mark.postgres
def test_an_outage_is_database_unavailable_on_rest_and_mcp_and_passes_when_the_database_is_back(tmp_path):
    with service_database(tmp_path) as (database_url, keys):
        database = urlsplit(database_url).path[1:]
        admin = keys[ADMIN]["key"]
        issue = {"chitty_id": ADMIN, "name": "during the outage"}
        with daphne_server(base_env(database_url, CHITTYAUTH_VAR_DIR=str(tmp_path)), tmp_path) as server:

            async def over_websocket() -> None:
                async with connect(server, admin) as ws:
                    await initialized(ws)
                    assert not (await call(ws, 1, "generate_api_key", issue)).get("isError")
                    with database_down(database):
                        status, body = rest(server, "GET", "/api/v1/grants", admin)
                        assert (status, body["error"]["code"]) == (503, "DATABASE_UNAVAILABLE")
                        refused = await call(ws, 2, "generate_api_key", issue)
                        assert refused["isError"] is True
                        assert refused["structuredContent"]["error"]["code"] == "DATABASE_UNAVAILABLE"
                    assert not (await call(ws, 3, "generate_api_key", issue)).get("isError")
                    assert rest(server, "GET", "/api/v1/grants", admin)[0] == 200

            asyncio.run(over_websocket())
            assert "Traceback" not in server.output(), server.output()[-3000:]
