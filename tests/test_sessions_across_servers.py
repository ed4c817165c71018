"""Ending a session on one server process closes its WebSocket on another, through the shared Redis layer;
and a socket whose layer goes away still stops when its session ends."""

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis

from tests.conftest import free_port
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


@contextlib.contextmanager
def private_redis() -> Iterator[tuple[str, subprocess.Popen]]:
    """A Redis of this test's own, so it can be stopped without touching the shared one."""
    server = shutil.which("redis-server")
    assert server, "redis-server is not installed (the Redis pass needs it)"
    port = free_port()
    process = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while not _answers(url):
            assert time.monotonic() < deadline, "the private Redis did not start"
            time.sleep(0.05)
        yield url, process
    finally:
        process.kill()
        process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        return False


def test_a_socket_outlives_its_channel_layer_and_still_stops_when_its_session_ends(tmp_path):
    """With the layer gone, session-end broadcasts cannot arrive: the socket stays usable, and the re-check
    before each message (every message, while the epoch feed is down) ends it instead."""
    with (
        private_redis() as (redis_url, redis_process),
        service_database(tmp_path) as (database_url, keys),
        daphne_server(base_env(database_url, REDIS_URL=redis_url), tmp_path) as server,
    ):
        key = keys[ADMIN]["key"]

        async def scenario():
            async with connect(server, key) as ws:
                await initialized(ws)
                session_id = (await call(ws, 1, "whoami"))["structuredContent"]["session_id"]
                redis_process.kill()
                await asyncio.to_thread(redis_process.wait, 10)
                still = await call(ws, 2, "whoami")
                assert still["structuredContent"]["session_id"] == session_id
                status, body = await asyncio.to_thread(
                    rest, server, "POST", f"/api/v1/sessions/{session_id}/end", key, {"reason": "gone"}
                )
                assert status == 200, body
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": 3, "method": "ping"}))
                return await closed(ws, within=10)

        code, frames = asyncio.run(scenario())
    assert code == 4403
    assert frames[-1]["error"]["message"] == "Connection closed: session ended"
