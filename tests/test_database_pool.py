"""`DB_POOL_MAX_SIZE`: a live daphne on PostgreSQL keeps its connections within the pool under concurrent
requests (each request thread would otherwise hold a connection of its own), and answers every request."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.mcp_live import ADMIN, _maintenance_connection, base_env, daphne_server, rest, service_database
from tests.test_settings import manage as manage_with

POOL = 3
REQUESTS = 60


def backends_of(database: str) -> tuple[int, int]:
    """Client connections to `database` now, and how many of them wait on a lock."""
    with _maintenance_connection() as connection:
        ((connected, waiting),) = connection.execute(
            "SELECT count(*) FILTER (WHERE backend_type = 'client backend'),"
            " count(*) FILTER (WHERE wait_event_type = 'Lock')"
            " FROM pg_stat_activity WHERE datname = %s",
            (database,),
        ).fetchall()
    return connected, waiting


@pytest.mark.postgres
def test_a_pooled_node_holds_at_most_its_pool_of_connections_and_answers_every_request(tmp_path):
    with service_database(tmp_path) as (database_url, keys):
        database = urlsplit(database_url).path[1:]
        env = base_env(database_url, DB_POOL_MAX_SIZE=str(POOL), CHITTYAUTH_VAR_DIR=str(tmp_path))
        with daphne_server(env, tmp_path) as server:
            peak, loading = 0, threading.Event()
            loading.set()

            def watch() -> None:
                nonlocal peak
                while loading.is_set():
                    peak = max(peak, backends_of(database)[0])
                    time.sleep(0.01)

            watcher = threading.Thread(target=watch)
            watcher.start()
            try:
                with ThreadPoolExecutor(max_workers=12) as clients:
                    statuses = list(
                        clients.map(
                            lambda _: rest(server, "GET", "/api/v1/grants", keys[ADMIN]["key"])[0],
                            range(REQUESTS),
                        )
                    )
            finally:
                loading.clear()
                watcher.join()
    assert statuses == [200] * REQUESTS
    assert 1 <= peak <= POOL


@pytest.mark.postgres
def test_a_request_that_waits_too_long_for_a_pooled_connection_is_503_database_unavailable(tmp_path):
    """A pool of one, its connection held by a request stuck on a lock: the next request gives up after
    DB_POOL_TIMEOUT_SECONDS with the documented code, and the stuck one completes once the lock goes."""
    with service_database(tmp_path) as (database_url, keys):
        env = base_env(
            database_url,
            DB_POOL_MAX_SIZE="1",
            DB_POOL_TIMEOUT_SECONDS="0.5",
            CHITTYAUTH_VAR_DIR=str(tmp_path),
        )
        admin = keys[ADMIN]["key"]
        with daphne_server(env, tmp_path) as server:
            assert rest(server, "GET", "/api/v1/grants", admin)[0] == 200  # the bearer is known
            database = urlsplit(database_url).path[1:]
            with psycopg.connect(database_url) as locker:
                locker.execute("LOCK TABLE grants_grant IN ACCESS EXCLUSIVE MODE")
                with ThreadPoolExecutor(max_workers=1) as stuck_client:
                    stuck = stuck_client.submit(rest, server, "GET", "/api/v1/grants", admin)
                    deadline = time.monotonic() + 10
                    while not backends_of(database)[1]:
                        assert time.monotonic() < deadline, "the first request never reached the lock"
                        time.sleep(0.05)
                    status, body = rest(server, "GET", "/api/v1/grants", admin)
                    assert (status, body["error"]["code"]) == (503, "DATABASE_UNAVAILABLE")
                    locker.rollback()
                    assert stuck.result(timeout=30)[0] == 200


@pytest.mark.parametrize(
    ("configuration", "named"),
    [
        ({"DB_POOL_MAX_SIZE": "4"}, "DB_POOL_MAX_SIZE needs PostgreSQL"),
        (
            {
                "DB_POOL_MAX_SIZE": "4",
                "DB_CONN_MAX_AGE": "60",
                "DATABASE_URL": "postgres://u@127.0.0.1:5432/x",
            },
            "DB_POOL_MAX_SIZE and DB_CONN_MAX_AGE exclude each other",
        ),
    ],
)
def test_a_pool_is_refused_where_it_cannot_work(tmp_path, configuration, named):
    result = manage_with(tmp_path, configuration, "check")
    assert result.returncode != 0
    assert named in result.stderr
