"""Readiness on a live daphne with a dependency gone: without Redis the node stays in service (degraded),
without its database it is taken out (503)."""

import json
import urllib.error
import urllib.request

from tests.conftest import free_port
from tests.mcp_live import base_env, daphne_server


def probe(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - a loopback URL we built
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def failing(body: dict) -> set[str]:
    return {name for name, check in body["checks"].items() if check["status"] != "ok"}


def test_with_redis_down_the_node_is_ready_but_degraded(tmp_path):
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    env = base_env(
        f"sqlite:///{tmp_path / 'db.sqlite3'}", REDIS_URL=dead_redis, CHITTYAUTH_VAR_DIR=str(tmp_path)
    )
    with daphne_server(env, tmp_path) as server:
        status, body = probe(f"{server.url}/readyz")
        strict_status, _ = probe(f"{server.url}/readyz?strict=1")
        probe(f"{server.url}/readyz")
        log = server.output()

    assert status == 200, body
    assert body["status"] == "degraded"
    assert failing(body) == {"cache", "channel_layer", "celery_broker"}
    assert body["checks"]["database"] == {"status": "ok", "detail": "ok", "required": True}
    assert strict_status == 503
    assert log.count("Readiness check cache failed") == 1, log
    assert "ERROR" not in log, log


def test_with_its_database_down_the_node_is_not_ready(tmp_path):
    dead_port = free_port()
    dead_database = f"postgres://postgres@127.0.0.1:{dead_port}/test"
    env = base_env(dead_database, CHITTYAUTH_VAR_DIR=str(tmp_path))
    env.pop("REDIS_URL", None)
    with daphne_server(env, tmp_path) as server:
        status, body = probe(f"{server.url}/readyz")
        log = server.output()

    assert status == 503
    assert body["status"] == "unavailable"
    assert failing(body) == {"database"}
    # Anyone may probe: the answer names the kind of error, only the log says where the database was.
    assert body["checks"]["database"]["detail"] == "OperationalError"
    assert str(dead_port) in log
