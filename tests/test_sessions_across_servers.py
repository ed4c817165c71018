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

from mcp_endpoint.consumers import FOLLOW_RETRY_SECONDS
from tests.conftest import free_port
from tests.mcp_live import ADMIN, LiveServer, base_env, daphne_server, rest, service_database
from tests.test_mcp_websocket import call, closed, connect, initialized

pytestmark = pytest.mark.redis

RETURN_WITHIN_SECONDS = 2 * FOLLOW_RETRY_SECONDS[1]  # more than the longest wait between two retries
IDLE_SECONDS = 12  # more than two of channels_redis' 5 s blocking reads


async def started_session(ws) -> str:
    """Initialize the socket; its session's id."""
    await initialized(ws)
    return (await call(ws, 1, "whoami"))["structuredContent"]["session_id"]


async def end_session(server, key: str, session_id: str, reason: str = "test") -> dict:
    status, body = await asyncio.to_thread(
        rest, server, "POST", f"/api/v1/sessions/{session_id}/end", key, {"reason": reason}
    )
    assert status == 200, body
    return body


@contextlib.contextmanager
def server_on_redis(tmp_path, redis_url: str) -> Iterator[tuple[LiveServer, str]]:
    """A daphne on a fresh database and the shared Redis; it and the administrator's key."""
    with (
        service_database(tmp_path) as (database_url, keys),
        daphne_server(base_env(database_url, REDIS_URL=redis_url), tmp_path) as server,
    ):
        yield server, keys[ADMIN]["key"]


def assert_closed_as_ended(code: int, frames: list[dict]) -> None:
    assert code == 4403
    assert frames[-1]["error"]["message"] == "Connection closed: session ended"


def test_a_session_opened_on_one_server_and_ended_through_another_closes_its_socket(tmp_path, settings):
    with service_database(tmp_path) as (database_url, keys):
        env = base_env(database_url, REDIS_URL=settings.REDIS_URL)
        with daphne_server(env, tmp_path) as first, daphne_server(env, tmp_path) as second:
            key = keys[ADMIN]["key"]

            async def scenario():
                async with connect(first, key) as ws:
                    body = await end_session(second, key, await started_session(ws), "other node")
                    assert body["ended_by"] == ADMIN
                    return await closed(ws, within=1)

            code, frames = asyncio.run(scenario())
    assert_closed_as_ended(code, frames)


class PrivateRedis:
    """A Redis of this test's own on a fixed port, so it can be stopped and started again (empty, as a Redis
    that keeps nothing on disk restarts) without touching the shared one."""

    def __init__(self) -> None:
        self.executable = shutil.which("redis-server")
        assert self.executable, "redis-server is not installed (the Redis pass needs it)"
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        port = str(self.port)
        command = [self.executable, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.answers():
            assert self.process.poll() is None, "the private Redis exited (its port taken meanwhile?)"
            assert time.monotonic() < deadline, "the private Redis did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def answers(self) -> bool:
        try:
            with redis.Redis.from_url(self.url, socket_connect_timeout=0.5) as client:
                return client.ping()
        except redis.RedisError:
            return False

    def has_group_for(self, session_id: str) -> bool:
        with redis.Redis.from_url(self.url) as client:
            return bool(self._group_keys(client, session_id))

    async def until_group_for(self, session_id: str) -> None:
        async with asyncio.timeout(RETURN_WITHIN_SECONDS):
            while not await asyncio.to_thread(self.has_group_for, session_id):
                await asyncio.sleep(0.1)

    def forget_group_of(self, session_id: str) -> bool:
        with redis.Redis.from_url(self.url) as client:
            return client.delete(*self._group_keys(client, session_id)) > 0

    @staticmethod
    def _group_keys(client: redis.Redis, session_id: str) -> list[bytes]:
        return [key for key in client.keys("*group*") if session_id in key.decode()]


def test_an_idle_socket_keeps_hearing_its_session_end(tmp_path, settings):
    """channels_redis blocks up to 5 s per read, and redis-py times reads out after 5 s by default: an idle
    socket's reader failed every few seconds. With the configured read timeout it never fails while idle, so
    a session ended after a long quiet spell still closes its socket at once."""
    with server_on_redis(tmp_path, settings.REDIS_URL) as (server, key):

        async def scenario():
            async with connect(server, key) as ws:
                session_id = await started_session(ws)
                await asyncio.sleep(IDLE_SECONDS)
                await end_session(server, key, session_id, "idle")
                return await closed(ws, within=1)

        code, frames = asyncio.run(scenario())
        log = server.log.read_text()
    assert_closed_as_ended(code, frames)
    assert "lost its channel layer" not in log


@contextlib.contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_socket_outlives_its_channel_layer_and_still_stops_when_its_session_ends(tmp_path):
    """With the layer gone, session-end broadcasts cannot arrive: the socket stays usable, and the re-check
    before each message (every message, while the invalidation feed is down) ends it instead."""
    with (
        private_redis() as layer,
        service_database(tmp_path) as (database_url, keys),
        daphne_server(base_env(database_url, REDIS_URL=layer.url), tmp_path) as server,
    ):
        key = keys[ADMIN]["key"]

        async def scenario():
            async with connect(server, key) as ws:
                session_id = await started_session(ws)
                await asyncio.to_thread(layer.stop)
                still = await call(ws, 2, "whoami")
                assert still["structuredContent"]["session_id"] == session_id
                await end_session(server, key, session_id, "gone")
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": 3, "method": "ping"}))
                return await closed(ws, within=10)

        code, frames = asyncio.run(scenario())
    assert_closed_as_ended(code, frames)


def test_a_socket_follows_its_channel_layer_again_when_redis_is_back(tmp_path):
    """Redis restarts empty. A session ended while it was down closes its socket once it is back, with no
    message from the client; another socket joins its session group again, so ending its session closes it
    at once, as before the outage."""
    with (
        private_redis() as layer,
        service_database(tmp_path) as (database_url, keys),
        daphne_server(base_env(database_url, REDIS_URL=layer.url), tmp_path) as server,
    ):
        key = keys[ADMIN]["key"]

        async def scenario():
            async with connect(server, key) as ended_meanwhile, connect(server, key) as ended_after:
                sessions = [await started_session(ws) for ws in (ended_meanwhile, ended_after)]
                await asyncio.to_thread(layer.stop)
                await end_session(server, key, sessions[0])
                await asyncio.to_thread(layer.start)
                first = await closed(ended_meanwhile, within=RETURN_WITHIN_SECONDS)
                await layer.until_group_for(sessions[1])
                await end_session(server, key, sessions[1])
                return first, await closed(ended_after, within=1)

        for code, frames in asyncio.run(scenario()):
            assert_closed_as_ended(code, frames)


def test_a_socket_joins_its_session_group_again_after_the_layer_forgot_it(tmp_path):
    """Channel layers drop a membership after their group expiry (a day) without any error reaching the
    socket; the periodic re-join restores it, so ending the session still closes the socket at once. The
    re-joins come seconds apart, so the close within a second right after one is the broadcast's doing."""
    with (
        private_redis() as layer,
        service_database(tmp_path) as (database_url, keys),
        daphne_server(
            base_env(database_url, REDIS_URL=layer.url, MCP_SESSION_GROUP_REFRESH_SECONDS="4"), tmp_path
        ) as server,
    ):
        key = keys[ADMIN]["key"]

        async def scenario():
            async with connect(server, key) as ws:
                session_id = await started_session(ws)
                assert await asyncio.to_thread(layer.forget_group_of, session_id)  # as its expiry would
                await layer.until_group_for(session_id)
                await end_session(server, key, session_id)
                return await closed(ws, within=1)

        code, frames = asyncio.run(scenario())
    assert_closed_as_ended(code, frames)


def test_readiness_probes_beside_open_sockets_disturb_neither(tmp_path, settings):
    """The soak found it: the channel layer probe received on the layer the sockets share, from an event loop of
    its own. channels_redis refuses two loops at once, so with any socket open the node read as degraded, and
    a socket could lose its layer (and stop hearing its session end) when a probe ran."""
    with server_on_redis(tmp_path, settings.REDIS_URL) as (server, key):

        async def scenario():
            async with connect(server, key) as ws:
                session_id = await started_session(ws)
                answers = [
                    await asyncio.to_thread(rest, server, "GET", "/readyz?strict=1", key) for _ in range(5)
                ]
                await end_session(server, key, session_id)
                return answers, await closed(ws, within=1)

        answers, (code, frames) = asyncio.run(scenario())
        log = server.output()
    assert [status for status, _ in answers] == [200] * 5, answers
    assert_closed_as_ended(code, frames)
    assert "lost its channel layer" not in log, log
