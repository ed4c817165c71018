"""The scheduled jobs through their services, tasks and commands: cleanup and ChittyID revalidation."""

import asyncio
import io
import itertools
import sqlite3
import sys
import threading
from datetime import datetime, timedelta

import psycopg
import pytest
from asgiref.sync import async_to_sync
from celery.signals import task_retry
from channels.layers import get_channel_layer
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from audit.models import AuditEvent
from audit.services import record, verify_chain
from grants.models import Grant
from grants.services import grant_permission
from identities.models import Identity
from jobs import tasks
from jobs.models import JobRun
from jobs.schedules import CLEANUP_TASK, DEFAULT_SCHEDULES, REVALIDATE_TASK, install_default_schedules
from jobs.services import revalidate_identities, run_cleanup
from kernel.callers import Caller
from kernel.errors import PermissionDenied
from keys.models import ApiKey, RevokedToken, VerificationHour
from keys.services import generate_api_key, verify_api_key
from sessions.models import AuthSession
from sessions.services import open_session, session_group

pytestmark = pytest.mark.django_db

SESSION_TIMEOUT = 3600
RETENTION_DAYS = 30
_serial = itertools.count(1)


@pytest.fixture(autouse=True)
def job_settings(settings):
    settings.SESSION_TIMEOUT = SESSION_TIMEOUT
    settings.CLEANUP_RETENTION_DAYS = RETENTION_DAYS
    settings.CLEANUP_BATCH_SIZE = 5000
    settings.REVALIDATION_BATCH_SIZE = 200
    settings.CHITTYID_ENDPOINT = ""
    return settings


def ago(**delta) -> datetime:
    return timezone.now() - timedelta(**delta)


def from_now(**delta) -> datetime:
    return timezone.now() + timedelta(**delta)


def key_row(identity: Identity, **fields) -> ApiKey:
    n = next(_serial)
    return ApiKey(
        key_id=f"key_test{n}",
        principal=identity,
        secret_hash=f"{n:064x}",
        display_prefix="chitty_test_",
        **fields,
    )


def session_row(identity: Identity, **fields) -> AuthSession:
    fields.setdefault("last_seen_at", timezone.now())
    fields.setdefault("credential_type", AuthSession.CredentialType.API_KEY)
    fields.setdefault("channel", AuthSession.Channel.REST)
    return AuthSession(
        session_id=f"ses_test{next(_serial)}", principal=identity, credential_id="key_x", **fields
    )


def token_row(**fields) -> RevokedToken:
    return RevokedToken(jti=f"jti-{next(_serial)}", **fields)


def grant_row(identity: Identity, **fields) -> Grant:
    return Grant(principal=identity, permission="api_keys:generate", granted_by="system:tests", **fields)


def save(*rows):
    for row in rows:
        row.save()
    return rows


def exists(row) -> bool:
    return type(row).objects.filter(pk=row.pk).exists()


def cleanup_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="jobs.cleanup").order_by("sequence"))


# ---------------------------------------------------------------------------------------------------------
# Cleanup, category by category


def test_sessions_past_their_expiry_or_idle_past_the_timeout_are_ended(make_identity, system_caller):
    identity = make_identity()
    expired, idle, active, fresh, jwt_unused, ended = save(
        session_row(identity, expires_at=ago(minutes=1)),
        session_row(identity, last_seen_at=ago(seconds=SESSION_TIMEOUT + 60)),
        session_row(identity, last_seen_at=ago(seconds=SESSION_TIMEOUT - 60), expires_at=from_now(hours=1)),
        session_row(identity),
        # A JWT's session lasts as long as its token, used or not.
        session_row(
            identity,
            credential_type=AuthSession.CredentialType.JWT,
            channel=AuthSession.Channel.JWT,
            last_seen_at=ago(hours=5),
            expires_at=from_now(hours=1),
        ),
        session_row(identity, ended_at=ago(hours=2), end_reason="ended by request", ended_by="someone"),
    )

    report = run_cleanup(system_caller)

    assert (report.sessions_ended_expired, report.sessions_ended_idle) == (1, 1)
    for session, reason in ((expired, "expired"), (idle, f"idle for more than {SESSION_TIMEOUT} seconds")):
        session.refresh_from_db()
        assert session.ended_at is not None
        assert (session.end_reason, session.ended_by) == (reason, "system:tests")
    for session in (active, fresh, jwt_unused):
        session.refresh_from_db()
        assert session.ended_at is None
    ended.refresh_from_db()
    assert (ended.end_reason, ended.ended_by) == ("ended by request", "someone")


def test_ended_sessions_close_their_live_connections_after_commit(
    make_identity, system_caller, django_capture_on_commit_callbacks
):
    (idle,) = save(session_row(make_identity(), last_seen_at=ago(hours=2)))
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(session_group(idle.session_id), channel)

    with django_capture_on_commit_callbacks(execute=True):
        run_cleanup(system_caller)

    async def receive() -> dict:
        return await asyncio.wait_for(layer.receive(channel), timeout=5)

    assert async_to_sync(receive)() == {
        "type": "session.ended",
        "session_id": idle.session_id,
        "reason": f"idle for more than {SESSION_TIMEOUT} seconds",
    }


def test_revoked_token_entries_are_purged_once_their_token_expired(system_caller):
    past, future = save(
        token_row(chitty_id="CHITTY-PEO-A-1", expires_at=ago(seconds=1)),
        token_row(chitty_id="CHITTY-PEO-A-1", expires_at=from_now(minutes=5)),
    )

    report = run_cleanup(system_caller)

    assert report.revoked_tokens_deleted == 1
    assert not exists(past)
    assert exists(future)


def test_api_keys_expired_or_revoked_longer_than_the_retention_are_deleted(make_identity, system_caller):
    identity = make_identity()
    old_expired, old_revoked, recent_expired, recent_revoked, in_overlap, live = save(
        key_row(identity, expires_at=ago(days=RETENTION_DAYS, hours=1)),
        key_row(identity, revoked_at=ago(days=RETENTION_DAYS + 5)),
        key_row(identity, expires_at=ago(days=RETENTION_DAYS - 1)),
        key_row(identity, revoked_at=ago(days=1)),
        # A rotated key's revocation can lie in the future: the end of its overlap window.
        key_row(identity, revoked_at=from_now(minutes=5)),
        key_row(identity, expires_at=from_now(days=300)),
    )
    (successor,) = save(key_row(identity, rotated_from=old_revoked))

    report = run_cleanup(system_caller)

    assert report.api_keys_deleted == 2
    assert not exists(old_expired)
    assert not exists(old_revoked)
    assert all(exists(key) for key in (recent_expired, recent_revoked, in_overlap, live, successor))
    successor.refresh_from_db()
    assert successor.rotated_from is None


def test_grants_expired_or_revoked_longer_than_the_retention_are_deleted(make_identity, system_caller):
    identity = make_identity()
    old_expired, old_revoked, recent_expired, recent_revoked, live = save(
        grant_row(identity, expires_at=ago(days=RETENTION_DAYS + 1)),
        grant_row(identity, revoked_at=ago(days=RETENTION_DAYS + 1), revoked_by="system:tests"),
        grant_row(identity, expires_at=ago(days=2)),
        grant_row(identity, revoked_at=ago(days=2), revoked_by="system:tests"),
        grant_row(identity),
    )

    report = run_cleanup(system_caller)

    assert report.grants_deleted == 2
    assert not exists(old_expired)
    assert not exists(old_revoked)
    assert all(exists(grant) for grant in (recent_expired, recent_revoked, live))


def test_sessions_ended_longer_than_the_retention_ago_are_deleted(make_identity, system_caller):
    identity = make_identity()
    old, recent, live = save(
        session_row(identity, last_seen_at=ago(days=40), ended_at=ago(days=RETENTION_DAYS + 1)),
        session_row(identity, last_seen_at=ago(days=5), ended_at=ago(days=RETENTION_DAYS - 1)),
        session_row(identity),
    )

    report = run_cleanup(system_caller)

    assert report.sessions_deleted == 1
    assert not exists(old)
    assert exists(recent)
    assert exists(live)


def test_job_runs_past_the_retention_are_deleted(system_caller):
    old = JobRun.objects.create(
        job="cleanup", actor="system:cleanup", started_at=ago(days=RETENTION_DAYS + 1)
    )
    recent = JobRun.objects.create(job="cleanup", actor="system:cleanup", started_at=ago(days=1))

    report = run_cleanup(system_caller)

    assert report.job_runs_deleted == 1
    assert not exists(old)
    assert exists(recent)


def test_hourly_verification_counts_older_than_30_days_are_deleted(system_caller):
    def hour(days: int) -> VerificationHour:
        start = ago(days=days).replace(minute=0, second=0, microsecond=0)
        return VerificationHour.objects.create(hour=start, credential_type="jwt", outcome="VALID", count=3)

    old, kept = hour(31), hour(29)

    report = run_cleanup(system_caller)

    assert report.verification_hours_deleted == 1
    assert not exists(old)
    assert exists(kept)


def test_the_retention_is_a_setting(make_identity, system_caller, job_settings):
    job_settings.CLEANUP_RETENTION_DAYS = 3
    (key,) = save(key_row(make_identity(), revoked_at=ago(days=4)))

    assert run_cleanup(system_caller).api_keys_deleted == 1
    assert not exists(key)


# ---------------------------------------------------------------------------------------------------------
# Batches, idempotency, the audit trail and the job run


class RecordedProgress:
    def __init__(self) -> None:
        self.stages: list[tuple[str, int, list[int]]] = []

    def stage(self, description: str, total: int) -> None:
        self.stages.append((description, total, []))

    def advance(self, done: int) -> None:
        self.stages[-1][2].append(done)


def test_rows_are_deleted_in_batches_of_the_configured_size(system_caller, job_settings):
    job_settings.CLEANUP_BATCH_SIZE = 3
    save(*(token_row(expires_at=ago(minutes=n + 1)) for n in range(10)))
    progress = RecordedProgress()

    with CaptureQueriesContext(connection) as queries:
        report = run_cleanup(system_caller, progress=progress)

    assert report.revoked_tokens_deleted == 10
    assert not RevokedToken.objects.exists()
    deletes = [q["sql"] for q in queries if q["sql"].startswith('DELETE FROM "keys_revokedtoken"')]
    assert len(deletes) == 4
    assert ("expired revoked-token entries deleted", 10, [3, 3, 3, 1]) in progress.stages


def test_sessions_are_ended_in_batches_too(make_identity, system_caller, job_settings):
    job_settings.CLEANUP_BATCH_SIZE = 2
    identity = make_identity()
    save(*(session_row(identity, last_seen_at=ago(hours=2)) for _ in range(5)))
    progress = RecordedProgress()

    report = run_cleanup(system_caller, progress=progress)

    assert report.sessions_ended_idle == 5
    assert not AuthSession.objects.filter(ended_at__isnull=True).exists()
    assert (f"sessions ended (idle for more than {SESSION_TIMEOUT} seconds)", 5, [2, 2, 1]) in progress.stages


def test_a_second_run_finds_nothing_left_to_do(make_identity, system_caller):
    identity = make_identity()
    save(
        token_row(expires_at=ago(minutes=1)),
        key_row(identity, revoked_at=ago(days=RETENTION_DAYS + 1)),
        grant_row(identity, expires_at=ago(days=RETENTION_DAYS + 1)),
        session_row(identity, last_seen_at=ago(hours=2)),
        session_row(identity, last_seen_at=ago(days=40), ended_at=ago(days=40)),
    )

    def remaining() -> tuple:
        return (
            list(ApiKey.objects.values_list("pk", flat=True)),
            list(Grant.objects.values_list("pk", flat=True)),
            list(AuthSession.objects.values_list("pk", "ended_at")),
        )

    first = run_cleanup(system_caller)
    after_first = remaining()
    second = run_cleanup(system_caller)

    assert sum(first.counts().values()) == 5
    assert set(second.counts().values()) == {0}
    assert remaining() == after_first


def test_each_run_records_one_audit_event_with_its_counts_and_a_job_run(make_identity, system_caller):
    identity = make_identity()
    save(
        *(session_row(identity, last_seen_at=ago(hours=2)) for _ in range(3)),
        token_row(expires_at=ago(days=1)),
    )

    report = run_cleanup(system_caller)

    (event,) = cleanup_events()
    assert (event.actor, event.target, event.outcome) == ("system:tests", "cleanup", "success")
    assert event.details["sessions_ended_idle"] == 3
    assert event.details["revoked_tokens_deleted"] == 1
    assert event.details["run_id"] == report.run_id
    assert (event.details["retention_days"], event.details["batch_size"]) == (RETENTION_DAYS, 5000)
    # Bulk ending does not write an event per session: the run's event carries the count.
    assert not AuditEvent.objects.filter(action="session.end").exists()
    run = JobRun.objects.get(pk=report.run_id)
    assert (run.job, run.outcome, run.actor) == ("cleanup", "success", "system:tests")
    assert run.counts == report.counts()
    assert run.finished_at >= run.started_at
    assert run.message == report.summary()
    assert verify_chain().intact


def test_audit_events_are_never_deleted(system_caller, job_settings):
    job_settings.CLEANUP_RETENTION_DAYS = 1
    for n in range(3):
        record("test.old", actor="system:tests", details={"n": n})
    AuditEvent.objects.update(created_at=ago(days=400))
    before = set(AuditEvent.objects.values_list("sequence", flat=True))

    run_cleanup(system_caller)
    run_cleanup(system_caller)

    after = set(AuditEvent.objects.values_list("sequence", flat=True))
    assert before < after
    assert len(after - before) == 2


def test_running_a_job_needs_jobs_run(make_identity, system_caller):
    identity = make_identity()
    caller = Caller(
        actor=identity.chitty_id,
        identity=identity,
        credential_type="api_key",
        credential_id="key_x",
        scopes=("*",),
    )

    with pytest.raises(PermissionDenied):
        run_cleanup(caller)
    with pytest.raises(PermissionDenied):
        revalidate_identities(caller)
    assert not JobRun.objects.exists()
    assert (
        AuditEvent.objects.filter(action="authorization.denied", details__permission="jobs:run").count() == 2
    )

    grant_permission(system_caller, grantee_chitty_id=identity.chitty_id, permission="jobs:run")
    report = run_cleanup(caller)
    assert JobRun.objects.get(pk=report.run_id).actor == identity.chitty_id


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_act_on_each_row_once(make_identity, job_settings):
    job_settings.CLEANUP_BATCH_SIZE = 40
    identity = make_identity()
    RevokedToken.objects.bulk_create(token_row(expires_at=ago(minutes=1)) for _ in range(400))
    AuthSession.objects.bulk_create(session_row(identity, last_seen_at=ago(hours=2)) for _ in range(300))
    AuthSession.objects.bulk_create(
        session_row(identity, last_seen_at=ago(days=40), ended_at=ago(days=40)) for _ in range(200)
    )
    ApiKey.objects.bulk_create(key_row(identity, revoked_at=ago(days=RETENTION_DAYS + 1)) for _ in range(200))
    Grant.objects.bulk_create(
        grant_row(identity, expires_at=ago(days=RETENTION_DAYS + 1)) for _ in range(200)
    )
    barrier = threading.Barrier(2)
    reports, errors = [], []

    def run(n: int) -> None:
        try:
            barrier.wait()
            reports.append(run_cleanup(Caller.system(f"cleanup-{n}")))
        except Exception as exc:  # noqa: BLE001 - a thread's failure must reach the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    totals = {name: sum(report.counts()[name] for report in reports) for name in reports[0].counts()}
    assert totals == {
        "sessions_ended_expired": 0,
        "sessions_ended_idle": 300,
        "revoked_tokens_deleted": 400,
        "api_keys_deleted": 200,
        "grants_deleted": 200,
        "sessions_deleted": 200,
        "job_runs_deleted": 0,
        "verification_hours_deleted": 0,
    }
    assert not RevokedToken.objects.exists()
    assert not ApiKey.objects.exists()
    assert not Grant.objects.exists()
    assert AuthSession.objects.count() == 300
    assert not AuthSession.objects.filter(ended_at__isnull=True).exists()
    assert len(cleanup_events()) == 2
    assert set(JobRun.objects.values_list("outcome", flat=True)) == {"success"}
    assert verify_chain().intact


# ---------------------------------------------------------------------------------------------------------
# ChittyID revalidation against a loopback authority


def remote_identity(make_identity, authority, behaviour: str, **fields) -> Identity:
    identity = make_identity(source=Identity.Source.REMOTE, **fields)
    authority.behaviours[identity.chitty_id] = behaviour
    return identity


def test_identities_the_authority_still_vouches_for_are_marked_validated(
    make_identity, system_caller, chittyid_authority
):
    identity = remote_identity(make_identity, chittyid_authority, "valid")
    before = timezone.now()

    report = revalidate_identities(system_caller)

    identity.refresh_from_db()
    assert identity.status == "active"
    assert identity.last_validated_at >= before
    assert (report.checked, report.validated, report.suspended) == (1, 1, 0)
    assert len(chittyid_authority.requests_for(identity.chitty_id)) == 1


@pytest.mark.parametrize("behaviour", ["invalid", "404"])
def test_identities_the_authority_rejects_or_does_not_know_are_suspended_with_everything_they_hold(
    behaviour, make_identity, system_caller, chittyid_authority, django_capture_on_commit_callbacks
):
    identity = remote_identity(make_identity, chittyid_authority, "valid")
    issued = generate_api_key(system_caller, chitty_id=identity.chitty_id)
    holder = Caller(
        actor=identity.chitty_id,
        identity=identity,
        credential_type="api_key",
        credential_id=issued.api_key.key_id,
    )
    session = open_session(holder, AuthSession.Channel.MCP_WEBSOCKET)
    assert verify_api_key(issued.secret).valid
    chittyid_authority.behaviours[identity.chitty_id] = behaviour

    with django_capture_on_commit_callbacks(execute=True):
        report = revalidate_identities(system_caller)

    identity.refresh_from_db()
    assert identity.status == "suspended"
    assert identity.status_reason.startswith("ChittyID authority: ")
    assert verify_api_key(issued.secret).code == "IDENTITY_SUSPENDED"
    session.refresh_from_db()
    assert session.ended_at is not None
    assert (report.checked, report.validated, report.suspended) == (1, 0, 1)
    assert AuditEvent.objects.filter(action="identity.suspend", target=identity.chitty_id).exists()


def test_an_unreachable_authority_changes_nothing_and_is_reported(
    make_identity, system_caller, chittyid_authority
):
    valid = remote_identity(make_identity, chittyid_authority, "valid")
    rejected = remote_identity(make_identity, chittyid_authority, "invalid")
    chittyid_authority.down = True

    report = revalidate_identities(system_caller)

    for identity in (valid, rejected):
        identity.refresh_from_db()
        assert (identity.status, identity.last_validated_at) == ("active", None)
    assert report.authority_unavailable
    assert "ChittyID authority unavailable" in report.authority_error
    assert (report.checked, report.validated, report.suspended) == (0, 0, 0)
    event = AuditEvent.objects.get(action="jobs.revalidate")
    assert event.outcome == "failure"
    assert "ChittyID authority unavailable" in event.details["authority_error"]
    assert JobRun.objects.get(pk=report.run_id).outcome == "failure"
    assert not AuditEvent.objects.filter(action="identity.suspend").exists()


def test_when_the_authority_stops_answering_midway_the_run_stops_there(
    make_identity, system_caller, chittyid_authority
):
    first = remote_identity(make_identity, chittyid_authority, "valid")
    failing = remote_identity(make_identity, chittyid_authority, "500")
    after = remote_identity(make_identity, chittyid_authority, "invalid")

    report = revalidate_identities(system_caller)

    first.refresh_from_db()
    assert first.last_validated_at is not None
    failing.refresh_from_db()
    after.refresh_from_db()
    assert (failing.status, after.status) == ("active", "active")
    assert chittyid_authority.requests_for(after.chitty_id) == []
    assert (report.checked, report.validated, report.suspended) == (1, 1, 0)
    assert report.authority_unavailable


def test_identities_of_the_local_authority_are_left_alone(make_identity, system_caller, chittyid_authority):
    local = make_identity(source=Identity.Source.LOCAL)
    suspended = remote_identity(
        make_identity, chittyid_authority, "invalid", status=Identity.Status.SUSPENDED
    )

    report = revalidate_identities(system_caller)

    local.refresh_from_db()
    assert (local.status, local.last_validated_at) == ("active", None)
    assert chittyid_authority.requests_for(local.chitty_id) == []
    assert chittyid_authority.requests_for(suspended.chitty_id) == []
    assert report.checked == 0


def test_without_a_remote_authority_there_is_nothing_to_revalidate(make_identity, system_caller):
    identity = make_identity(source=Identity.Source.REMOTE)

    report = revalidate_identities(system_caller)

    identity.refresh_from_db()
    assert (identity.status, identity.last_validated_at) == ("active", None)
    assert report.checked == 0
    assert "nothing to revalidate" in report.summary()
    assert JobRun.objects.get(pk=report.run_id).outcome == "success"


def test_revalidation_walks_every_batch(make_identity, system_caller, chittyid_authority, job_settings):
    job_settings.REVALIDATION_BATCH_SIZE = 2
    behaviours = ["valid", "invalid", "valid", "404", "valid"]
    identities = [remote_identity(make_identity, chittyid_authority, b) for b in behaviours]
    progress = RecordedProgress()

    report = revalidate_identities(system_caller, progress=progress)

    statuses = [Identity.objects.get(pk=identity.pk).status for identity in identities]
    assert statuses == ["active", "suspended", "active", "suspended", "active"]
    assert (report.checked, report.validated, report.suspended) == (5, 3, 2)
    assert progress.stages == [("ChittyIDs revalidated", 5, [1, 1, 1, 1, 1])]
    event = AuditEvent.objects.get(action="jobs.revalidate")
    assert (event.outcome, event.details["checked"], event.details["suspended"]) == ("success", 5, 2)


# ---------------------------------------------------------------------------------------------------------
# Management commands


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_cleanup_command_prints_a_summary_and_draws_no_bar_when_not_on_a_terminal(system_caller, capsys):
    save(token_row(expires_at=ago(minutes=1)))
    out = io.StringIO()

    call_command("cleanup", stdout=out)

    assert "deleted 1 expired revoked-token entries" in out.getvalue()
    assert capsys.readouterr().err == ""
    assert JobRun.objects.get().actor == "system:cleanup-command"


def test_cleanup_command_draws_a_progress_bar_on_a_terminal(monkeypatch):
    save(*(token_row(expires_at=ago(minutes=1)) for _ in range(4)))
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)

    call_command("cleanup", stdout=io.StringIO())

    assert "expired revoked-token entries deleted: 100%" in terminal.getvalue()
    assert "4/4" in terminal.getvalue()


def test_revalidate_command_exits_non_zero_when_the_authority_is_unreachable(
    make_identity, chittyid_authority
):
    remote_identity(make_identity, chittyid_authority, "valid")
    chittyid_authority.down = True
    out = io.StringIO()

    with pytest.raises(CommandError) as raised:
        call_command("revalidate_identities", stdout=out)

    assert raised.value.returncode != 0
    assert "ChittyID authority unavailable" in str(raised.value)
    assert "stopped" in out.getvalue()


def test_revalidate_command_prints_a_summary(make_identity, chittyid_authority):
    remote_identity(make_identity, chittyid_authority, "valid")
    remote_identity(make_identity, chittyid_authority, "invalid")
    out = io.StringIO()

    call_command("revalidate_identities", stdout=out)

    assert "checked 2 ChittyIDs: 1 still valid, 1 suspended" in out.getvalue()


# ---------------------------------------------------------------------------------------------------------
# Schedules


def test_default_schedules_are_installed_and_staff_edits_are_kept():
    names = [default.name for default in DEFAULT_SCHEDULES]
    PeriodicTask.objects.filter(name__in=names).delete()

    assert install_default_schedules() == dict.fromkeys(names, "created")
    cleanup_task = PeriodicTask.objects.get(task=CLEANUP_TASK)
    revalidate_task = PeriodicTask.objects.get(task=REVALIDATE_TASK)
    assert (cleanup_task.interval.every, cleanup_task.interval.period) == (15, "minutes")
    assert (revalidate_task.interval.every, revalidate_task.interval.period) == (60, "minutes")
    assert (cleanup_task.expire_seconds, revalidate_task.expire_seconds) == (15 * 60, 60 * 60)

    cleanup_task.interval = IntervalSchedule.objects.create(every=5, period="minutes")
    cleanup_task.enabled = False
    cleanup_task.save()
    revalidate_task.delete()
    out = io.StringIO()
    call_command("install_schedules", stdout=out)

    assert out.getvalue().splitlines() == [
        f"{names[0]}: kept",
        f"{names[1]}: created",
        *(f"{name}: kept" for name in names[2:]),
    ]
    cleanup_task.refresh_from_db()
    assert (cleanup_task.interval.every, cleanup_task.enabled) == (5, False)

    assert install_default_schedules(reset=True) == dict.fromkeys(names, "reset")
    cleanup_task.refresh_from_db()
    assert (cleanup_task.interval.every, cleanup_task.enabled) == (15, True)
    assert PeriodicTask.objects.filter(task__in=[CLEANUP_TASK, REVALIDATE_TASK]).count() == 2


# ---------------------------------------------------------------------------------------------------------
# Tasks: thin wrappers that retry on a database hiccup


def test_the_tasks_run_the_jobs(system_caller):
    (token,) = save(token_row(expires_at=ago(minutes=1)))

    cleaned = tasks.cleanup.apply()
    revalidated = tasks.revalidate_identities.apply()

    assert cleaned.successful()
    assert cleaned.result["revoked_tokens_deleted"] == 1
    assert not exists(token)
    assert revalidated.successful()
    assert revalidated.result["authority_unavailable"] is False
    assert set(JobRun.objects.values_list("actor", flat=True)) == {"system:cleanup", "system:revalidation"}


class TableLock:
    """Another connection holding a write lock on a table until released: a real database hiccup."""

    def __init__(self, table: str) -> None:
        self.released = False
        if connection.vendor == "postgresql":
            params = connection.get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            self._connection = psycopg.connect(**params)
            self._connection.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')
        else:
            # The SQLite test database is shared in memory; a second connection's open write locks it.
            self._connection = sqlite3.connect(connection.settings_dict["NAME"], uri=True)
            self._connection.execute(f'DELETE FROM "{table}" WHERE 0')  # noqa: S608

    def release(self) -> None:
        if not self.released:
            self._connection.rollback()
            self._connection.close()
            self.released = True


@pytest.mark.django_db(transaction=True)
def test_a_task_retries_after_a_database_hiccup_and_then_succeeds(make_identity):
    (idle,) = save(session_row(make_identity(), last_seen_at=ago(hours=2)))
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '300ms'")
    lock = TableLock(AuthSession._meta.db_table)
    retries = []

    def release_lock(sender, reason, **kwargs) -> None:
        retries.append(reason)
        lock.release()

    task_retry.connect(release_lock, sender=tasks.cleanup, weak=False)
    try:
        result = tasks.cleanup.apply()
    finally:
        task_retry.disconnect(release_lock, sender=tasks.cleanup)
        lock.release()

    assert result.successful()
    assert len(retries) == 1
    idle.refresh_from_db()
    assert idle.ended_at is not None
    runs = list(JobRun.objects.order_by("started_at").values_list("outcome", "message"))
    if connection.vendor == "postgresql":
        # The lock stopped the run at its first batch; the failed run says so in the admin.
        assert [outcome for outcome, _ in runs] == ["failure", "success"]
        assert "lock timeout" in runs[0][1]
    else:
        # SQLite refuses the run's first write, before there is a run to record.
        assert [outcome for outcome, _ in runs] == ["success"]
        assert "locked" in str(retries[0].exc)


def test_cleanup_knows_every_relation_pointing_at_api_keys():
    """Cleanup deletes keys directly after unlinking rotated successors; a new relation needs handling there."""
    assert [(r.related_model, r.field.name) for r in ApiKey._meta.related_objects] == [
        (ApiKey, "rotated_from")
    ]
