"""Cleanup at scale on PostgreSQL: how fast the scheduled cleanup clears a large backlog, how long its longest
transaction holds locks, whether its cost per row stays flat as the backlog grows tenfold, and what it does to
the hot path (key validation and permission checks) of a service running beside it.

    .venv/bin/python -m bench.cleanup_bench                    # 100,000 then 1,000,000 rows, about 3 to 5 min
    .venv/bin/python -m bench.cleanup_bench --write-results    # also replace its section of RESULTS.md
    .venv/bin/python -m bench.cleanup_bench --sizes 20000      # a quick look

Needs PostgreSQL (`BENCH_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432); works in a throwaway
database. Each size is a backlog of that many rows to act on (expired revoked-token entries, old keys, grants
and ended sessions, idle sessions), mixed with a tenth as many live rows that must survive, inserted with
`generate_series`. The hot path is measured uncached (every cache is invalidated before each call, so each
call reads the database) in a separate process, first idle, then while the cleanup runs.
"""

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from dataclasses import dataclass

import django

from bench.harness import BACKENDS, machine_summary, throwaway_database, write_results_section

HEADING = "Cleanup at scale"
DATABASE_NAME = "chittyauth_cleanup_bench"
DEFAULT_SIZES = (100_000, 1_000_000)
# How a backlog of N rows splits between the kinds of work cleanup does.
SHARES = {
    "revoked_tokens": 0.40,
    "api_keys": 0.20,
    "grants": 0.20,
    "ended_sessions": 0.15,
    "idle_sessions": 0.05,
}
LIVE_SHARE = 0.10
IDLE_PROBE_SECONDS = 5
MAX_ROWS_PER_SECOND_SPREAD = 0.25
PROBE_PRINCIPAL = "CHITTY-PEO-BENCHPROBE-1"
DATA_PRINCIPAL = "CHITTY-PEO-BENCHDATA-1"


# ---------------------------------------------------------------------------------------------------------
# The backlog


def load_backlog(size: int, principal_pk: int) -> dict[str, int]:
    """Insert `size` rows for cleanup to act on plus live rows it must leave; returns the counts per kind."""
    from django.db import connection

    counts = {kind: int(size * share) for kind, share in SHARES.items()}
    counts["revoked_tokens"] += size - sum(counts.values())
    live = {kind: max(int(count * LIVE_SHARE), 1) for kind, count in counts.items()}
    p = {"principal": principal_pk, "chitty_id": DATA_PRINCIPAL}
    statements = [
        (
            "INSERT INTO keys_revokedtoken (jti, chitty_id, expires_at, revoked_at, revoked_by, reason) "
            "SELECT 'old-' || g, %(chitty_id)s, now() - interval '1 hour', now() - interval '2 hours', 'bench', '' "
            "FROM generate_series(1, %(n)s) g",
            counts["revoked_tokens"],
        ),
        (
            "INSERT INTO keys_revokedtoken (jti, chitty_id, expires_at, revoked_at, revoked_by, reason) "
            "SELECT 'live-' || g, %(chitty_id)s, now() + interval '1 day', now(), 'bench', '' "
            "FROM generate_series(1, %(n)s) g",
            live["revoked_tokens"],
        ),
        (
            "INSERT INTO keys_apikey (key_id, principal_id, name, environment, secret_hash, display_prefix, scopes,"
            " created_by, created_at, expires_at, revoked_at, revoked_by, revoke_reason, use_count) "
            "SELECT 'key_old' || g, %(principal)s, '', 'live', lpad(to_hex(g), 64, '0'), 'chitty_live_', '[]',"
            " 'bench', now() - interval '90 days',"
            " CASE WHEN g %% 2 = 0 THEN now() - interval '40 days' END,"
            " CASE WHEN g %% 2 = 1 THEN now() - interval '40 days' END, '', '', 0 "
            "FROM generate_series(1, %(n)s) g",
            counts["api_keys"],
        ),
        (
            # Live keys rotated from old ones: deleting the old key must unlink, not delete, the live one.
            "INSERT INTO keys_apikey (key_id, principal_id, name, environment, secret_hash, display_prefix, scopes,"
            " created_by, created_at, revoked_by, revoke_reason, use_count, rotated_from_id) "
            "SELECT 'key_live' || g, %(principal)s, '', 'live', 'f' || lpad(to_hex(g), 63, '0'), 'chitty_live_',"
            " '[]', 'bench', now(), '', '', 0, (SELECT id FROM keys_apikey WHERE key_id = 'key_old' || g) "
            "FROM generate_series(1, %(n)s) g",
            live["api_keys"],
        ),
        (
            "INSERT INTO grants_grant (principal_id, permission, resource_id, expires_at, granted_by, created_at,"
            " revoked_at, revoked_by) "
            "SELECT %(principal)s, 'bench:read', '', CASE WHEN g %% 2 = 0 THEN now() - interval '40 days' END,"
            " 'bench', now() - interval '90 days', CASE WHEN g %% 2 = 1 THEN now() - interval '40 days' END, '' "
            "FROM generate_series(1, %(n)s) g",
            counts["grants"],
        ),
        (
            "INSERT INTO grants_grant (principal_id, permission, resource_id, granted_by, created_at, revoked_by) "
            "SELECT %(principal)s, 'bench:live', '', 'bench', now(), '' FROM generate_series(1, %(n)s) g",
            live["grants"],
        ),
        (
            "INSERT INTO auth_sessions_authsession (session_id, principal_id, credential_type, credential_id,"
            " channel, user_agent, started_at, last_seen_at, ended_at, end_reason, ended_by) "
            "SELECT 'ses_old' || g, %(principal)s, 'api_key', 'key_bench', 'rest', '', now() - interval '50 days',"
            " now() - interval '45 days', now() - interval '40 days', 'bench', 'bench' "
            "FROM generate_series(1, %(n)s) g",
            counts["ended_sessions"],
        ),
        (
            "INSERT INTO auth_sessions_authsession (session_id, principal_id, credential_type, credential_id,"
            " channel, user_agent, started_at, last_seen_at, end_reason, ended_by) "
            "SELECT 'ses_idle' || g, %(principal)s, 'api_key', 'key_bench', 'rest', '', now() - interval '3 hours',"
            " now() - interval '2 hours', '', '' FROM generate_series(1, %(n)s) g",
            counts["idle_sessions"],
        ),
        (
            "INSERT INTO auth_sessions_authsession (session_id, principal_id, credential_type, credential_id,"
            " channel, user_agent, started_at, last_seen_at, end_reason, ended_by) "
            "SELECT 'ses_live' || g, %(principal)s, 'api_key', 'key_bench', 'rest', '', now(), now(), '', '' "
            "FROM generate_series(1, %(n)s) g",
            max(int(counts["ended_sessions"] * LIVE_SHARE), 1),
        ),
    ]
    with connection.cursor() as cursor:
        for statement, n in statements:
            cursor.execute(statement, {**p, "n": n})
    vacuum_analyze()
    return counts


def clear_backlog(principal_pk: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM keys_revokedtoken")
        for table in ("keys_apikey", "grants_grant", "auth_sessions_authsession"):
            cursor.execute(f"DELETE FROM {table} WHERE principal_id = %s", [principal_pk])  # noqa: S608
    vacuum_analyze()


def vacuum_analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for table in ("keys_revokedtoken", "keys_apikey", "grants_grant", "auth_sessions_authsession"):
            cursor.execute(f"VACUUM ANALYZE {table}")


# ---------------------------------------------------------------------------------------------------------
# Transactions, timed from their first statement to their commit


class TransactionTimer:
    """Times every transaction on the connection: from its first statement to the moment it committed
    (a callback registered at the first statement runs right after COMMIT, before any registered later)."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self._started: float | None = None

    def __call__(self, execute, sql, params, many, context):
        from django.db import connection, transaction

        if connection.in_atomic_block and self._started is None:
            self._started = time.perf_counter()
            transaction.on_commit(self._committed)
        return execute(sql, params, many, context)

    def _committed(self) -> None:
        self.durations.append(time.perf_counter() - self._started)
        self._started = None


class BroadcastTimer:
    """Times the after-commit broadcasts that tell live connections their session ended (outside any
    transaction, but part of the run's time)."""

    def __init__(self, broadcast) -> None:
        self.seconds = 0.0
        self._broadcast = broadcast

    def __call__(self, session_ids: list[str], reason: str) -> list[str]:
        started = time.perf_counter()
        try:
            return self._broadcast(session_ids, reason)
        finally:
            self.seconds += time.perf_counter() - started


# ---------------------------------------------------------------------------------------------------------
# The hot path beside it, in its own process


def probe_hot_path(secret: str, stop, results) -> None:
    """Validate a key and check a permission in a loop, each uncached, recording (wall time, µs, µs)."""
    django.setup()
    from grants.checks import check_permission
    from identities.models import Identity
    from kernel.invalidation import invalidate_everything_now
    from keys.services import verify_api_key

    identity = Identity.objects.get(chitty_id=PROBE_PRINCIPAL)
    samples = []
    while not stop.is_set():
        invalidate_everything_now()
        started = time.perf_counter()
        valid = verify_api_key(secret).valid
        validated = time.perf_counter()
        invalidate_everything_now()
        checked_from = time.perf_counter()
        allowed = check_permission(identity, "api_keys:generate").allowed
        checked = time.perf_counter()
        if not (valid and allowed):
            raise RuntimeError("the probe's key or grant stopped working")
        samples.append((time.time(), (validated - started) * 1e6, (checked - checked_from) * 1e6))
        time.sleep(0.002)
    results.put(samples)


@dataclass(frozen=True)
class Latency:
    samples: int
    p50: float
    p99: float

    @classmethod
    def of(cls, values: list[float]) -> "Latency":
        if len(values) < 2:
            return cls(len(values), float("nan"), float("nan"))
        return cls(len(values), statistics.median(values), statistics.quantiles(values, n=100)[98])

    def __str__(self) -> str:
        return f"{self.p50:.0f} / {self.p99:.0f} µs"


# ---------------------------------------------------------------------------------------------------------
# One run


@dataclass(frozen=True)
class Run:
    size: int
    seconds: float
    rows: int
    transactions: list[float]
    broadcast_seconds: float
    validation_idle: Latency
    validation_busy: Latency
    permission_idle: Latency
    permission_busy: Latency

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds


def measure(size: int, data_principal_pk: int, secret: str) -> Run:
    from django.db import connection

    from jobs import services
    from kernel.callers import Caller

    print(f"[cleanup bench] loading {size:,} rows", flush=True)
    expected = load_backlog(size, data_principal_pk)
    context = multiprocessing.get_context("spawn")
    stop, results = context.Event(), context.Queue()
    probe = context.Process(target=probe_hot_path, args=(secret, stop, results))
    probe.start()
    time.sleep(IDLE_PROBE_SECONDS)
    print(f"[cleanup bench] cleaning {size:,} rows", flush=True)
    timer = TransactionTimer()
    broadcasts = BroadcastTimer(services.close_live_connections)
    services.close_live_connections = broadcasts
    began_at, began = time.time(), time.perf_counter()
    try:
        with connection.execute_wrapper(timer):
            report = services.run_cleanup(Caller.system("cleanup-bench"))
    finally:
        services.close_live_connections = broadcasts._broadcast
    seconds, ended_at = time.perf_counter() - began, time.time()
    stop.set()
    samples = results.get(timeout=60)
    probe.join(timeout=60)

    done = {
        "revoked_tokens": report.revoked_tokens_deleted,
        "api_keys": report.api_keys_deleted,
        "grants": report.grants_deleted,
        "ended_sessions": report.sessions_deleted,
        "idle_sessions": report.sessions_ended_idle,
    }
    if done != expected:
        raise RuntimeError(f"cleanup did {done}, expected {expected}")
    idle = [s for s in samples if s[0] < began_at]
    busy = [s for s in samples if began_at <= s[0] <= ended_at]
    return Run(
        size=size,
        seconds=seconds,
        rows=sum(done.values()),
        transactions=timer.durations,
        broadcast_seconds=broadcasts.seconds,
        validation_idle=Latency.of([s[1] for s in idle]),
        validation_busy=Latency.of([s[1] for s in busy]),
        permission_idle=Latency.of([s[2] for s in idle]),
        permission_busy=Latency.of([s[2] for s in busy]),
    )


def make_principals() -> tuple[int, str]:
    """The principal whose rows are cleaned, and the probe's key (its principal holds `api_keys:generate`)."""
    from grants.services import grant_permission
    from identities.models import Identity
    from kernel.callers import Caller
    from keys.services import generate_api_key

    system = Caller.system("cleanup-bench")
    data = Identity.objects.create(chitty_id=DATA_PRINCIPAL, entity_type="PEO")
    Identity.objects.create(chitty_id=PROBE_PRINCIPAL, entity_type="PEO")
    grant_permission(system, grantee_chitty_id=PROBE_PRINCIPAL, permission="api_keys:generate")
    return data.pk, generate_api_key(system, chitty_id=PROBE_PRINCIPAL).secret


# ---------------------------------------------------------------------------------------------------------
# Report


def render(runs: list[Run], batch_size: int, command: str) -> tuple[str, bool]:
    rates = [run.rows_per_second for run in runs]
    spread = (max(rates) - min(rates)) / max(rates) if len(rates) > 1 else 0.0
    flat = spread <= MAX_ROWS_PER_SECOND_SPREAD
    lines = [
        f"`{command}` — {machine_summary()}; PostgreSQL, batch size {batch_size}, local-memory cache.",
        "",
        "Each backlog mixes expired revoked-token entries (40%), API keys and grants past the retention (20% "
        "each), sessions ended past it (15%) and idle sessions to end (5%), plus 10% live rows that must stay. "
        "Broadcasts: telling the live connections of each ended session, after its batch commits, one "
        "channel-layer call per session (`sessions.services.close_live_connections`; in-memory layer here). "
        "Latency is of uncached calls (each reads the database) in a separate process; p50 / p99.",
        "",
        "| backlog | time | of which broadcasts | rows/s | transactions | longest transaction "
        "| median transaction | key validation idle → during | permission check idle → during |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for run in runs:
        lines.append(
            f"| {run.size:,} | {run.seconds:.1f} s | {run.broadcast_seconds:.1f} s | {run.rows_per_second:,.0f} "
            f"| {len(run.transactions)} "
            f"| {max(run.transactions) * 1000:.0f} ms | {statistics.median(run.transactions) * 1000:.0f} ms "
            f"| {run.validation_idle} → {run.validation_busy} | {run.permission_idle} → {run.permission_busy} |"
        )
    if len(runs) > 1:
        lines += [
            "",
            f"Rows/s spread between sizes: {spread:.0%} (limit {MAX_ROWS_PER_SECOND_SPREAD:.0%}): "
            + ("flat, as the batches walk the primary key." if flat else "NOT flat."),
        ]
    return "\n".join(lines), flat


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--write-results", action="store_true", help="also replace its section of RESULTS.md")
    args = parser.parse_args()
    command = ".venv/bin/python -m bench.cleanup_bench" + (
        f" --sizes {' '.join(map(str, args.sizes))}" if args.sizes != list(DEFAULT_SIZES) else ""
    )
    with throwaway_database(BACKENDS["postgres"], DATABASE_NAME) as database_url:
        os.environ.update(DJANGO_SETTINGS_MODULE="chittyauth_site.settings", DATABASE_URL=database_url)
        os.environ["LOG_LEVEL"] = "WARNING"
        for name in ("REDIS_URL", "CHITTYID_ENDPOINT"):
            os.environ.pop(name, None)
        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0)
        data_principal_pk, secret = make_principals()
        runs = []
        for size in args.sizes:
            runs.append(measure(size, data_principal_pk, secret))
            clear_backlog(data_principal_pk)
        connection.close()
    body, flat = render(runs, settings.CLEANUP_BATCH_SIZE, command)
    print(body)
    if args.write_results:
        write_results_section(HEADING, body)
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
