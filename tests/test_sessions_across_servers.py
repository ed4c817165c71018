"""Ending a session on one server process closes its WebSocket on another, through the shared Redis layer."""

import asyncio

import pytest

from tests.mcp_live import ADMIN, base_env, daphne_server, rest, service_database
from tests.test_mcp_websocket import call, closed, connect, initialized

pytestmark = pytest.mark.redis


def test_a_session_opened_on_one_server_and_ended_through_another_closes_its_socket(tmp_path, settings):
    with service_database(tmp_path) as (database_url, keys):
        env = base_env(database_url, REDIS_URL=settings.REDIS_URL)
        with daphne_server(env, tmp_path) as first, daphne_server(env, tmp_path) as second:
            key = keys[ADMIN]["key"]

            async def scenario():
                async with connect(first, key) as ws:
                    await initialized(ws)
                    session_id = (await call(ws, 1, "whoami"))["structuredContent"]["session_id"]
                    status, body = await asyncio.to_thread(
                        rest,
                        second,
                        "POST",
                        f"/api/v1/sessions/{session_id}/end",
                        key,
                        {"reason": "other node"},
                    )
                    assert status == 200, body
                    assert body["ended_by"] == ADMIN
                    return await closed(ws, within=1)

            code, frames = asyncio.run(scenario())
    assert code == 4403
    assert frames[-1]["error"]["message"] == "Connection closed: session ended"
