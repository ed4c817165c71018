"""`/metrics` of a live node: daphne, an `mcp_stdio` process and a Celery worker sharing one
`PROMETHEUS_MULTIPROC_DIR`, driven through every front door (REST, MCP over WebSocket, Streamable HTTP and
stdio), then scraped and read with Prometheus's own text parser. Each count is the traffic sent, once: a warm
answer on the REST fast path or the WebSocket's event loop, and a cold one that falls back, count alike."""

import asyncio
import contextlib
import json
import os
import signal
import time
import urllib.error
import urllib.request
import uuid

import pytest
import websockets
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.mcp_live import ADMIN, PYTHON, REPO_ROOT, base_env, daphne_server, manage, rest, service_database
from tests.test_jobs_worker import celery, worker_args
from tests.test_mcp_http import mcp_client
from tests.test_mcp_websocket import call, connect, initialized
from tests.test_metrics import samples, value

BAD_KEY = "chitty_live_" + "A" * 49  # well-formed, wrong checksum: no front door can count it by accident
WAIT_SECONDS = 60


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    folder = tmp_path_factory.mktemp("metrics-live")
    (folder / "metrics").mkdir()
    (folder / "var").mkdir()
    with service_database(folder) as (database_url, keys):
        env = base_env(
            database_url,
            PROMETHEUS_MULTIPROC_DIR=str(folder / "metrics"),
            CHITTYAUTH_VAR_DIR=str(folder / "var"),
        )
        with daphne_server(env, folder) as server:
            yield server, keys[ADMIN]["key"], env, folder


def scrape(server, key: str) -> dict[tuple[str, tuple], float]:
    request = urllib.request.Request(f"{server.url}/metrics", headers={"Authorization": f"Bearer {key}"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback URL we built
        return samples(response.read().decode())


def eventually(server, key: str, name: str, expected: float, **labels: str) -> dict:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        scraped = scrape(server, key)
        if value(scraped, name, **labels) == expected or time.monotonic() > deadline:
            assert value(scraped, name, **labels) == expected, (name, labels, server.output()[-3000:])
            return scraped
        time.sleep(0.2)


def test_every_front_door_and_process_is_counted_once(node):
    server, key, env, folder = node

    for _ in range(3):  # the first is cold and falls back to Django; the rest are answered on the fast path
        status, body = rest(server, "POST", "/api/v1/keys/validate", key, {"api_key": BAD_KEY})
        assert (status, body["code"]) == (200, "BAD_CHECKSUM")
    for _ in range(4):
        assert rest(server, "GET", "/api/v1/whoami", key)[0] == 200

    async def over_websocket() -> None:
        async with connect(server, key) as ws:
            await initialized(ws)
            for request_id in range(1, 3):
                result = await call(ws, request_id, "validate_api_key", {"api_key": BAD_KEY})
                assert result["structuredContent"]["code"] == "BAD_CHECKSUM"
            assert (await call(ws, 3, "whoami"))["structuredContent"]["chitty_id"] == ADMIN
            open_now = scrape(server, key)
            assert value(open_now, "chittyauth_mcp_websocket_connections") == 1

    async def over_streamable_http() -> None:
        async with mcp_client(server, key) as client:
            for _ in range(3):
                assert (await client.call_tool("whoami", {})).structured_content["chitty_id"] == ADMIN

    async def over_stdio() -> None:
        params = StdioServerParameters(
            command=PYTHON,
            args=["manage.py", "mcp_stdio"],
            cwd=str(REPO_ROOT),
            env={**env, "CHITTYAUTH_API_KEY": key},
        )
        async with Client(params) as client:
            for _ in range(2):
                assert (await client.call_tool("whoami", {})).structured_content["chitty_id"] == ADMIN

    asyncio.run(over_websocket())
    asyncio.run(over_streamable_http())
    listen = urllib.request.Request(  # noqa: S310 - loopback URL we built
        f"{server.url}/mcp", headers={"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
    )
    with pytest.raises(urllib.error.HTTPError) as no_session:  # a stream needs an initialized session
        urllib.request.urlopen(listen, timeout=30)  # noqa: S310
    assert no_session.value.code == 400
    asyncio.run(over_stdio())

    queue = f"metrics-{uuid.uuid4().hex[:8]}"
    with celery(env, folder / "worker.log", *worker_args(queue)):
        manage(
            env,
            "shell",
            "-v",
            "0",
            "-c",
            f"from jobs.tasks import cleanup; cleanup.apply_async(queue={queue!r})",
        )
        eventually(server, key, "chittyauth_job_runs_total", 1, job="cleanup", outcome="success")

    scraped = eventually(server, key, "chittyauth_mcp_websocket_connections", 0)
    verifications = "chittyauth_credential_verifications_total"
    assert value(scraped, verifications, credential_type="api_key", outcome="BAD_CHECKSUM") == 3 + 2
    tool_calls = {
        (labels["transport"], labels["tool"], labels["outcome"]): count
        for (name, label_items), count in scraped.items()
        if name == "chittyauth_mcp_tool_calls_total" and count
        for labels in [dict(label_items)]
    }
    assert tool_calls == {
        ("mcp-websocket", "validate_api_key", "ok"): 2,
        ("mcp-websocket", "whoami", "ok"): 1,
        ("mcp-http", "whoami", "ok"): 3,
        ("mcp-stdio", "whoami", "ok"): 2,
    }
    for transport, calls in (("mcp-websocket", 3), ("mcp-http", 3), ("mcp-stdio", 2)):
        assert value(scraped, "chittyauth_mcp_tool_call_duration_seconds_count", transport=transport) == calls
    assert value(scraped, "chittyauth_http_request_duration_seconds_count", front_door="rest") == 3 + 4
    mcp_requests = sum(  # what the SDK client sent to /mcp, by the access log; not its GET event stream
        1
        for line in server.output().splitlines()
        if " /mcp " in line and "chittyauth.access" in line and " GET " not in line
    )
    assert mcp_requests >= 3 + 2  # initialize, initialized, three calls
    assert any(" GET /mcp " in line for line in server.output().splitlines())
    assert (
        value(scraped, "chittyauth_http_request_duration_seconds_count", front_door="mcp_http")
        == mcp_requests
    )
    assert value(scraped, "chittyauth_job_run_duration_seconds_count", job="cleanup") == 1
    assert value(scraped, "chittyauth_cache_lookups_total", cache="api_keys", result="hit") > 0


def test_each_cache_lookup_is_counted_once_as_a_hit_or_a_miss(node):
    """A new key validating itself: its first request misses on the fast path, reads the key in a worker
    thread, then needs a write (its REST session) and is answered by Django, which finds the key cached. That
    is one miss, not the hit the fill gives the fallback. Between two scrapes nothing else changes, so every
    lookup is the new key's or the scraper's bearer."""
    server, key, _env, _folder = node
    status, issued = rest(server, "POST", "/api/v1/keys", key, {"chitty_id": ADMIN})
    assert status == 201, issued
    new_key = issued["api_key"]
    before = scrape(server, key)
    for _ in range(3):
        status, body = rest(server, "POST", "/api/v1/keys/validate", new_key, {"api_key": new_key})
        assert (status, body["valid"]) == (200, True)
    after = scrape(server, key)

    def moved(result: str) -> float:
        name = "chittyauth_cache_lookups_total"
        return value(after, name, cache="api_keys", result=result) - value(
            before, name, cache="api_keys", result=result
        )

    # The first bearer lookup misses; hits: both lookups (bearer, validated key) of Django's run of the first
    # request and of the second and third requests, and the second scrape's bearer.
    assert (moved("miss"), moved("hit")) == (1, 2 + 4 + 1)


def test_the_answer_is_prometheus_text_and_refusals_are_json(node):
    server, key, _env, _folder = node
    request = urllib.request.Request(f"{server.url}/metrics", headers={"Accept": "text/plain"})  # noqa: S310
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)  # noqa: S310 - loopback URL we built
    assert refused.value.code == 401
    assert json.loads(refused.value.read())["error"]["code"] == "UNAUTHENTICATED"
    request = urllib.request.Request(  # noqa: S310
        f"{server.url}/metrics", headers={"Authorization": f"Bearer {key}", "Accept": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")


def test_a_killed_node_s_open_websockets_stop_counting_when_the_next_one_starts(tmp_path):
    """SIGKILL runs no exit handler, so the killed daphne's gauge file stays; the next daphne forgets it."""
    (tmp_path / "metrics").mkdir()
    with service_database(tmp_path) as (database_url, keys):
        env = base_env(
            database_url, PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"), CHITTYAUTH_VAR_DIR=str(tmp_path)
        )
        key = keys[ADMIN]["key"]
        with daphne_server(env, tmp_path) as killed:

            async def open_then_kill() -> None:
                async with connect(killed, key) as ws:
                    await initialized(ws)
                    assert value(scrape(killed, key), "chittyauth_mcp_websocket_connections") == 1
                    os.killpg(killed.process.pid, signal.SIGKILL)
                    killed.process.wait(timeout=30)

            with contextlib.suppress(ConnectionError, websockets.exceptions.ConnectionClosed):
                asyncio.run(open_then_kill())
        with daphne_server(env, tmp_path) as next_node:
            assert value(scrape(next_node, key), "chittyauth_mcp_websocket_connections") == 0
