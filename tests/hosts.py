"""A ChittyAuth deployment across hosts of the test's own (tests/network_namespaces.py): PostgreSQL, Redis,
two daphne nodes and a Celery worker, each in a network namespace of its own, configured as production is
(real secrets, `ENVIRONMENT=production`, a database pool), for the fault and soak lanes.

    control ─┬─ db ──────── node2, worker      (node1 reaches db through `relay`, which can slow it down)
             ├─ redis ───── node1, node2, worker
             ├─ node1
             └─ node2

`control` is the test process: the clients, and the links it migrates, checks and flushes through.
"""

import contextlib
import json
import os
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from cryptography.fernet import Fernet

from tests import network_namespaces
from tests.mcp_live import ADMIN, DAPHNE, PYTHON, REPO_ROOT, base_env, migrated_and_seeded
from tests.network_namespaces import LatencyRelay, Link, Postgres, Process, Redis
from tests.secret_scan import assert_no_secrets_in_postgres

NODE_PORT = 8000
READY_WITHIN_SECONDS = 90
CLIENT_TIMEOUT_SECONDS = 30
LANE_VARIABLE = "CHITTYAUTH_TEST_LANE"
LANE = "hosts"


def skip_reason() -> str | None:
    """Why these tests do not run here, or None. They run in `./dev test`'s hosts lane, beside the two passes;
    in CI that lane must be able to make namespaces."""
    if os.environ.get(LANE_VARIABLE) != LANE:
        return f"runs in ./dev test's hosts lane ({LANE_VARIABLE}={LANE}), beside the two passes"
    why = network_namespaces.available()
    if why and os.environ.get("CI") == "true":
        raise RuntimeError(f"CI must be able to make network namespaces: {why}")
    return why


@dataclass
class Node:
    name: str
    namespace: str
    address: str  # as the clients reach it
    env: dict[str, str]
    log: Path
    process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}:{NODE_PORT}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.address}:{NODE_PORT}"

    @property
    def up(self) -> bool:
        return self.process is not None and self.process.running

    def launch(self) -> "Node":
        command = [
            DAPHNE,
            "-v",
            "0",
            "-b",
            "0.0.0.0",  # noqa: S104 - its own namespace
            "-p",
            str(NODE_PORT),
            "chittyauth_site.asgi:application",
        ]
        self.process = Process(self.namespace, command, self.log, self.env, REPO_ROOT).start()
        return self

    def wait_until_serving(self) -> "Node":
        deadline = time.monotonic() + READY_WITHIN_SECONDS
        while time.monotonic() < deadline:
            assert self.up, f"{self.name} exited early:\n{self.process.output()[-3000:]}"
            with contextlib.suppress(OSError):
                if request(self, "GET", "/healthz")[0] == 200:
                    return self
            time.sleep(0.2)
        raise AssertionError(
            f"{self.name} did not serve in {READY_WITHIN_SECONDS}s:\n{self.process.output()[-3000:]}"
        )

    def start(self) -> "Node":
        return self.launch().wait_until_serving()


def request(
    node: Node, method: str, path: str, key: str | None = None, body: dict | None = None
) -> tuple[int, dict]:
    """One call; (status, JSON body). A connection that fails raises OSError."""
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
    call = urllib.request.Request(  # noqa: S310 - an address on the test's own network
        f"{node.url}{path}",
        method=method,
        headers=headers,
        data=json.dumps(body).encode() if body is not None else None,
    )
    try:
        with urllib.request.urlopen(call, timeout=CLIENT_TIMEOUT_SECONDS) as response:  # noqa: S310
            return response.status, _json(response.read())
    except urllib.error.HTTPError as error:
        return error.code, _json(error.read())


def _json(raw: bytes) -> dict:
    return json.loads(raw) if raw[:1] == b"{" else {"raw": raw.decode(errors="replace")[:500]}


@dataclass
class Cluster:
    nodes: dict[str, Node]
    links: dict[str, Link]
    postgres: Postgres
    redis: Redis
    relay: LatencyRelay
    worker: Process
    keys: dict[str, dict[str, str]]  # the cast's (tests/mcp_live.py)
    control_env: dict[str, str]  # reaches PostgreSQL and Redis over the control links

    @property
    def admin_key(self) -> str:
        return self.keys[ADMIN]["key"]

    @property
    def control_database_url(self) -> str:
        return self.control_env["DATABASE_URL"]

    def processes(self) -> dict[str, Process]:
        running = {name: node.process for name, node in self.nodes.items() if node.up}
        return running | {"worker": self.worker}


def _service_env(database_url: str, redis_url: str, shared: dict[str, str], folder: Path) -> dict[str, str]:
    (folder / "metrics").mkdir(parents=True, exist_ok=True)
    return base_env(
        database_url,
        REDIS_URL=redis_url,
        ENVIRONMENT="production",
        SECURE_SSL_REDIRECT="false",
        DB_POOL_MAX_SIZE="4",
        CHITTYAUTH_VAR_DIR=str(folder),
        PROMETHEUS_MULTIPROC_DIR=str(folder / "metrics"),
        **shared,
    )


@contextlib.contextmanager
def running_cluster(folder: Path) -> Iterator[Cluster]:
    """The deployment above, migrated and seeded with the cast; its database is scanned for secrets and every
    process stopped on the way out."""
    with network_namespaces.network() as net:
        db, cache, first, second, jobs = (
            net.host(name) for name in ("db", "redis", "node1", "node2", "worker")
        )
        root = network_namespaces.ROOT
        links = {
            "control-db": net.link(root, db),
            "control-redis": net.link(root, cache),
            "client-node1": net.link(root, first),
            "client-node2": net.link(root, second),
            "node1-redis": net.link(first, cache),
            "node2-redis": net.link(second, cache),
            "node2-db": net.link(second, db),
            "worker-db": net.link(jobs, db),
            "worker-redis": net.link(jobs, cache),
        }
        postgres = Postgres(db, links["control-db"].far_address, folder / "postgres.log").start()
        redis_server = Redis(cache, links["control-redis"].far_address, folder / "redis.log").start()
        with psycopg.connect(postgres.url("postgres"), autocommit=True) as connection:
            connection.execute("CREATE DATABASE chittyauth")
        relay = LatencyRelay(links["client-node1"].near_address, (postgres.address, Postgres.PORT))
        shared = {
            "SECRET_KEY": secrets.token_urlsafe(50),
            "JWT_SECRET": secrets.token_urlsafe(32),
            "SIGNING_KEY_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "ALLOWED_HOSTS": ",".join(links[f"client-{name}"].far_address for name in ("node1", "node2")),
        }
        redis_url = redis_server.url
        control_env = _service_env(
            postgres.url("chittyauth"), redis_url(redis_server.address), shared, folder / "control"
        )
        keys = migrated_and_seeded(control_env)
        nodes = {
            "node1": Node(
                "node1",
                first,
                links["client-node1"].far_address,
                _service_env(
                    f"postgres://postgres@{relay.address}:{relay.port}/chittyauth",
                    redis_url(links["node1-redis"].far_address),
                    shared,
                    folder / "node1",
                ),
                folder / "node1.log",
            ),
            "node2": Node(
                "node2",
                second,
                links["client-node2"].far_address,
                _service_env(
                    postgres.url("chittyauth", links["node2-db"].far_address),
                    redis_url(links["node2-redis"].far_address),
                    shared,
                    folder / "node2",
                ),
                folder / "node2.log",
            ),
        }
        worker_env = _service_env(
            postgres.url("chittyauth", links["worker-db"].far_address),
            redis_url(links["worker-redis"].far_address),
            shared,
            folder / "worker",
        )
        worker = Process(
            jobs,
            [
                PYTHON,
                "-m",
                "celery",
                "-A",
                "chittyauth_site",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                "1",
                "--without-gossip",
                "--without-mingle",
            ],
            folder / "worker.log",
            worker_env,
            REPO_ROOT,
        ).start()
        for node in nodes.values():
            node.launch()
        for node in nodes.values():
            node.wait_until_serving()
        cluster = Cluster(nodes, links, postgres, redis_server, relay, worker, keys, control_env)
        try:
            yield cluster
            assert_no_secrets_in_postgres(cluster.control_database_url)
        finally:
            everything = [node.process for node in nodes.values() if node.process] + [worker]
            for process in everything:
                process.terminate()
            for process in everything:
                process.stop()
            relay.close()
            postgres.close()


def tracebacks(cluster: Cluster) -> list[str]:
    """Services' logs that show an unhandled error."""
    return [
        f"{process.log.name}:\n{process.output()[-4000:]}"
        for process in [node.process for node in cluster.nodes.values() if node.process] + [cluster.worker]
        if "Traceback" in process.output()
    ]
