"""The jobs in real processes: a Celery worker runs the cleanup task it is sent (through Redis, and through
the embedded default's filesystem broker), beat fires a schedule kept in the database, and the commands
exit as documented.

The processes share a database of their own: a SQLite file, or on the PostgreSQL pass a separate PostgreSQL
database created for the test and dropped after it.
"""

import base64
import contextlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from standardwebhooks import Webhook

from tests.audit_sink_servers import WebhookReceiver
from tests.chittyid_authority_server import ChittyIDAuthorityServer
from tests.conftest import free_port
from tests.otlp_receiver import OtlpReceiver
from tests.secret_scan import assert_no_secrets_in_postgres

REPO_ROOT = Path(__file__).resolve().parent.parent
WAIT_SECONDS = 90
STOP_SECONDS = 15
# Each process gets exactly the configuration the test gives it.
INHERITED_SETTINGS = (
    "DATABASE_URL",
    "REDIS_URL",
    "CHITTYID_ENDPOINT",
    "ENVIRONMENT",
    "DEBUG",
    "CHITTYAUTH_VAR_DIR",
)


# ---------------------------------------------------------------------------------------------------------
# What the subprocesses run (imported there after django.setup())


def seed_cleanup_work() -> None:
    from django.utils import timezone

    from identities.models import Identity
    from keys.models import RevokedToken
    from sessions.models import AuthSession

    now = timezone.now()
    identity = Identity.objects.create(chitty_id="CHITTY-PEO-WORKER-1", entity_type="PEO")
    RevokedToken.objects.create(jti="expired", expires_at=now - timedelta(minutes=1))
    RevokedToken.objects.create(jti="current", expires_at=now + timedelta(hours=1))
    AuthSession.objects.create(
        session_id="ses_idle",
        principal=identity,
        credential_type="api_key",
        credential_id="key_worker",
        channel="rest",
        last_seen_at=now - timedelta(hours=2),
    )


def seed_every_second_schedule(queue: str) -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    interval, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name="cleanup every second", task="jobs.cleanup", interval=interval, queue=queue
    )


def seed_remote_identity() -> None:
    from identities.models import Identity

    Identity.objects.create(chitty_id="CHITTY-PEO-REMOTE-1", entity_type="PEO", source="remote")


def send_cleanup(queue: str) -> None:
    from jobs.tasks import cleanup

    cleanup.apply_async(queue=queue)


def seed_audit_trail() -> None:
    from audit.services import record

    for n in range(3):
        record("test.event", actor="worker-test", target=f"thing-{n}")


def send_checkpoint(queue: str) -> None:
    from jobs.tasks import sign_audit_checkpoint

    sign_audit_checkpoint.apply_async(queue=queue)


def route_the_export_schedule(queue: str) -> None:
    """Send the installed audit export schedule's runs to this test's worker."""
    from django_celery_beat.models import PeriodicTask

    from jobs.schedules import EXPORT_TASK

    PeriodicTask.objects.filter(task=EXPORT_TASK).update(queue=queue)


def send_revalidation_traced(queue: str) -> None:
    """Send from a process that traces too, so the trace runs from the sender into the worker."""
    from opentelemetry import trace

    from jobs.tasks import revalidate_identities
    from kernel.tracing import start_tracing

    start_tracing()
    revalidate_identities.apply_async(queue=queue)
    trace.get_tracer_provider().force_flush()


def verify_against_the_latest_checkpoint() -> None:
    from django.core.management import call_command

    from audit.models import AuditCheckpoint

    call_command("verify_audit", "--checkpoint", AuditCheckpoint.objects.latest("sequence").token)


# ---------------------------------------------------------------------------------------------------------
# Helpers


@pytest.fixture
def database_url(tmp_path) -> Iterator[str]:
    """A database for the subprocesses, migrated by a subprocess."""
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
        migrate(url, tmp_path)
        yield url
        return
    server = settings.DATABASES["default"]
    params = {
        "host": server["HOST"] or "127.0.0.1",
        "port": server["PORT"] or 5432,
        "user": server["USER"],
        "password": server["PASSWORD"] or None,
    }
    name = f"chittyauth_jobs_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            credentials = params["user"] + (f":{params['password']}" if params["password"] else "")
            url = f"postgres://{credentials}@{params['host']}:{params['port']}/{name}"
            migrate(url, tmp_path)
            yield url
            assert_no_secrets_in_postgres(url)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def process_env(database: str, tmp_path: Path, *, redis: bool = False, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in INHERITED_SETTINGS}
    env.update(
        DJANGO_SETTINGS_MODULE="chittyauth_site.settings",
        DATABASE_URL=database,
        CHITTYAUTH_VAR_DIR=str(tmp_path / "var"),
        **extra,
    )
    if redis:
        env["REDIS_URL"] = settings.REDIS_URL
    return env


def migrate(database: str, tmp_path: Path) -> None:
    env = process_env(database, tmp_path)
    (tmp_path / "var").mkdir(exist_ok=True)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        timeout=180,
    )


def run_here(env: dict[str, str], function: str, *args: str) -> None:
    """Call one of this module's functions in a fresh process configured by `env`."""
    code = (
        f"import sys, django; django.setup(); import tests.test_jobs_worker as m; m.{function}(*sys.argv[1:])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def query(database: str, sql: str) -> list[tuple]:
    if database.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(database.removeprefix("sqlite:///"), timeout=30)) as db:
            return db.execute(sql).fetchall()
    with psycopg.connect(database.replace("postgres://", "postgresql://", 1)) as db:
        return db.execute(sql).fetchall()


@contextlib.contextmanager
def celery(env: dict[str, str], log: Path, *args: str) -> Iterator[subprocess.Popen]:
    """A celery process in its own process group, stopped (group and all) however the test ends."""
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "chittyauth_site", *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_SECONDS)


def worker_args(queue: str) -> tuple[str, ...]:
    return (
        "worker",
        "--pool",
        "solo",
        "--queues",
        queue,
        "--hostname",
        f"{queue}@%h",
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    )


def wait_until(condition: Callable[[], bool], processes: list[subprocess.Popen], logs: list[Path]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return
        for process, log in zip(processes, logs, strict=True):
            assert process.poll() is None, (
                f"{process.args} exited with {process.returncode}:\n{log.read_text()}"
            )
        time.sleep(0.3)
    output = "\n".join(f"--- {log.name}\n{log.read_text()}" for log in logs)
    raise AssertionError(f"Nothing happened within {WAIT_SECONDS}s:\n{output}")


def wait_until_found(
    find: Callable[[], object], processes: list[subprocess.Popen], logs: list[Path]
) -> object:
    wait_until(lambda: find() is not None, processes, logs)
    return find()


def cleanup_ran(database: str) -> bool:
    return query(database, "SELECT outcome FROM jobs_jobrun WHERE job = 'cleanup'") == [("success",)]


def assert_cleanup_effects(database: str) -> None:
    assert query(database, "SELECT jti FROM keys_revokedtoken") == [("current",)]
    ((ended_at, reason),) = query(
        database, "SELECT ended_at, end_reason FROM auth_sessions_authsession WHERE session_id = 'ses_idle'"
    )
    assert ended_at is not None
    assert reason.startswith("idle for more than")
    actors = query(database, "SELECT DISTINCT actor FROM audit_auditevent WHERE action = 'jobs.cleanup'")
    assert actors == [("system:cleanup",)]


# ---------------------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize(
    "broker", [pytest.param("redis", marks=pytest.mark.redis), pytest.param("filesystem", id="filesystem")]
)
def test_a_worker_runs_the_cleanup_task_it_is_sent(broker, database_url, tmp_path):
    env = process_env(database_url, tmp_path, redis=broker == "redis")
    run_here(env, "seed_cleanup_work")
    queue = f"jobs-test-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"

    with celery(env, log, *worker_args(queue)) as worker:
        run_here(env, "send_cleanup", queue)
        wait_until(lambda: cleanup_ran(database_url), [worker], [log])

    assert_cleanup_effects(database_url)


def test_a_worker_signs_an_audit_checkpoint_that_verify_audit_then_holds_the_chain_to(database_url, tmp_path):
    env = process_env(database_url, tmp_path)
    run_here(env, "seed_audit_trail")
    queue = f"jobs-test-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"

    with celery(env, log, *worker_args(queue)) as worker:
        run_here(env, "send_checkpoint", queue)
        wait_until(
            lambda: query(database_url, "SELECT count(*) FROM audit_auditcheckpoint")[0][0] == 1,
            [worker],
            [log],
        )

    ((sequence, signed_hash, event_hash),) = query(
        database_url,
        "SELECT c.sequence, c.hash, e.hash FROM audit_auditcheckpoint c "
        "JOIN audit_auditevent e ON e.sequence = c.sequence",
    )
    assert sequence >= 3 and signed_hash == event_hash
    run_here(env, "verify_against_the_latest_checkpoint")
    # The worker logs through the service's LOGGING (masked, with the request-id field), not Celery's own.
    assert re.search(r" INFO celery\.\S+ \[\] Task jobs\.sign_audit_checkpoint\[", log.read_text()), (
        log.read_text()
    )


def test_beat_fires_a_schedule_kept_in_the_database(database_url, tmp_path):
    env = process_env(database_url, tmp_path, redis=bool(settings.REDIS_URL))
    run_here(env, "seed_cleanup_work")
    queue = f"jobs-test-{uuid.uuid4().hex[:8]}"
    run_here(env, "seed_every_second_schedule", queue)
    worker_log, beat_log = tmp_path / "worker.log", tmp_path / "beat.log"
    beat_args = (
        "beat",
        "--schedule",
        str(tmp_path / "beat-schedule"),
        "--max-interval",
        "1",
        "--loglevel",
        "INFO",
    )

    with celery(env, worker_log, *worker_args(queue)) as worker, celery(env, beat_log, *beat_args) as beat:
        wait_until(
            lambda: (
                query(database_url, "SELECT count(*) FROM jobs_jobrun WHERE outcome = 'success'")[0][0] >= 1
            ),
            [worker, beat],
            [worker_log, beat_log],
        )

    assert "DatabaseScheduler" in beat_log.read_text()
    assert_cleanup_effects(database_url)
    ((last_run_at, runs),) = query(
        database_url,
        "SELECT last_run_at, total_run_count FROM django_celery_beat_periodictask WHERE name = 'cleanup every second'",
    )
    assert last_run_at is not None
    assert runs >= 1


def test_beat_and_a_worker_export_the_audit_trail_on_the_installed_schedule(database_url, tmp_path):
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    with WebhookReceiver() as receiver:
        env = process_env(database_url, tmp_path, AUDIT_WEBHOOK_URL=receiver.url, AUDIT_WEBHOOK_SECRET=secret)
        run_here(env, "seed_audit_trail")
        queue = f"jobs-test-{uuid.uuid4().hex[:8]}"
        run_here(env, "route_the_export_schedule", queue)
        worker_log, beat_log = tmp_path / "worker.log", tmp_path / "beat.log"
        beat_args = ("beat", "--schedule", str(tmp_path / "beat-schedule"), "--max-interval", "1")
        with (
            celery(env, worker_log, *worker_args(queue)) as worker,
            celery(env, beat_log, *beat_args) as beat,
        ):
            wait_until(lambda: len(receiver.accepted) >= 3, [worker, beat], [worker_log, beat_log])

    assert [cloudevent["id"] for cloudevent in receiver.accepted[:3]] == ["1", "2", "3"]
    for request in receiver.requests:
        Webhook(secret).verify(request.body, request.headers)
    assert secret.removeprefix("whsec_") not in worker_log.read_text() + beat_log.read_text()
    assert query(database_url, "SELECT delivered_sequence FROM audit_auditdelivery")[0][0] >= 3


def test_a_traced_task_is_one_trace_from_its_sender_through_the_worker_to_the_authority(
    database_url, tmp_path
):
    authority = ChittyIDAuthorityServer().start()
    authority.behaviours["CHITTY-PEO-REMOTE-1"] = "valid"
    with OtlpReceiver() as otlp:
        try:
            env = process_env(
                database_url,
                tmp_path,
                CHITTYID_ENDPOINT=authority.url,
                CHITTYID_API_KEY=authority.api_key,
                OTEL_EXPORTER_OTLP_ENDPOINT=otlp.url,
                OTEL_BSP_SCHEDULE_DELAY="100",
            )
            run_here(env, "seed_remote_identity")
            queue = f"jobs-test-{uuid.uuid4().hex[:8]}"
            log = tmp_path / "worker.log"
            prefork = [arg if arg != "solo" else "prefork" for arg in worker_args(queue)] + [
                "--concurrency",
                "1",
            ]
            with celery(env, log, *prefork) as worker:
                run_here(env, "send_revalidation_traced", queue)
                authority_call = wait_until_found(
                    lambda: next((span for span in otlp.spans if span.kind == "CLIENT"), None),
                    [worker],
                    [log],
                )
        finally:
            authority.stop()

    trace = otlp.in_trace(authority_call.trace_id)
    kinds = {span.kind: span for span in trace}
    assert {"PRODUCER", "CONSUMER", "CLIENT"} <= set(kinds)
    assert kinds["CONSUMER"].name == "run/jobs.revalidate_identities"
    assert kinds["CONSUMER"].parent_id == kinds["PRODUCER"].span_id
    assert authority_call.parent_id == kinds["CONSUMER"].span_id
    assert authority.requests[0]["traceparent"].split("-")[1] == authority_call.trace_id


def test_migrate_installs_the_default_schedules(database_url):
    rows = query(
        database_url,
        "SELECT t.task, i.every, i.period, t.expire_seconds, t.enabled FROM django_celery_beat_periodictask t "
        "JOIN django_celery_beat_intervalschedule i ON i.id = t.interval_id ORDER BY t.task",
    )
    assert rows == [
        ("jobs.cleanup", 15, "minutes", 900, True),
        ("jobs.deliver_audit_events", 10, "seconds", 10, True),
        ("jobs.revalidate_identities", 60, "minutes", 3600, True),
        ("jobs.sign_audit_checkpoint", 60, "minutes", 3600, True),
    ]


def test_the_commands_exit_codes(database_url, tmp_path):
    env = process_env(database_url, tmp_path)
    run_here(env, "seed_cleanup_work")
    run_here(env, "seed_remote_identity")
    manage = [sys.executable, "manage.py"]

    cleaned = subprocess.run(
        [*manage, "cleanup"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    unreachable = {
        **env,
        "CHITTYID_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "CHITTYID_RETRIES": "0",
        "CHITTYID_TIMEOUT_SECONDS": "1",
    }
    revalidated = subprocess.run(
        [*manage, "revalidate_identities"],
        cwd=REPO_ROOT,
        env=unreachable,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert cleaned.returncode == 0, cleaned.stderr
    assert "deleted 1 expired revoked-token entries" in cleaned.stdout
    assert "100%" not in cleaned.stderr, "no progress bar when stderr is not a terminal"
    assert revalidated.returncode == 3
    assert "ChittyID authority unavailable" in revalidated.stderr
    assert "stopped" in revalidated.stdout
    assert query(database_url, "SELECT status FROM identities_identity WHERE source = 'remote'") == [
        ("active",)
    ]


def test_a_metric_that_cannot_be_written_loses_its_count_not_the_work(database_url, tmp_path):
    """A prefork worker's child opens its own metrics files at its first count: with the directory gone by
    then (removed by a clean-up of the disk, say), the job still runs and the loss is logged once."""
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    env = process_env(database_url, tmp_path, PROMETHEUS_MULTIPROC_DIR=str(metrics))
    sender = process_env(database_url, tmp_path)
    run_here(sender, "seed_cleanup_work")
    queue = f"metrics-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    prefork = [*worker_args(queue)]
    prefork[prefork.index("solo")] = "prefork"
    with celery(env, log, *prefork, "--concurrency", "1") as worker:
        wait_until(lambda: " ready." in log.read_text(), [worker], [log])
        shutil.rmtree(metrics)
        run_here(sender, "send_cleanup", queue)
        wait_until(lambda: cleanup_ran(database_url), [worker], [log])
    output = log.read_text()
    assert output.count("counts are being lost (said once)") == 1, output
    assert "succeeded" in output, output
