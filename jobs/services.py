"""The scheduled jobs: cleanup and ChittyID revalidation. Beat's tasks and the management commands call these.

Cleanup works in bounded batches, each in its own short transaction that locks only the rows it takes
(`SKIP LOCKED` on PostgreSQL) and walks up the primary key, so no transaction holds locks for long, the cost
per row stays flat however large the backlog, and two runs at once split the rows between them instead of
both acting on the same ones. Every run leaves one `JobRun` row for the admin and one audit event with its
counts, written together in one transaction.
"""

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from functools import partial
from typing import Protocol

from django.conf import settings
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import record
from grants.checks import authorize
from grants.models import Grant
from identities import authority
from identities.authority import AuthorityAnswer
from identities.models import Identity
from jobs.models import JobRun
from kernel.callers import Caller
from kernel.errors import AuthorityUnavailable, Conflict
from kernel.invalidation import invalidate, session_topic
from kernel.metrics import JOB_RUN_DURATION, JOB_RUNS
from keys.models import ApiKey, RevokedToken, VerificationHour
from keys.verification_history import HISTORY_DAYS
from principals.services import suspend_identity
from sessions.models import AuthSession
from sessions.services import close_live_connections

logger = logging.getLogger(__name__)

RUN_PERMISSION = "jobs:run"
CLEANUP_ACTION = "jobs.cleanup"
REVALIDATE_ACTION = "jobs.revalidate"
MAX_MESSAGE_LENGTH = 500


class Progress(Protocol):
    """Where a job tells how far it got; the management commands draw it as a progress bar."""

    def stage(self, description: str, total: int) -> None: ...

    def advance(self, done: int) -> None: ...


@dataclass
class CleanupReport:
    run_id: int
    sessions_ended_expired: int = 0
    sessions_ended_idle: int = 0
    revoked_tokens_deleted: int = 0
    api_keys_deleted: int = 0
    grants_deleted: int = 0
    sessions_deleted: int = 0
    job_runs_deleted: int = 0
    verification_hours_deleted: int = 0

    def counts(self) -> dict[str, int]:
        return {name: value for name, value in asdict(self).items() if name != "run_id"}

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"Cleanup: ended {self.sessions_ended_expired} expired and {self.sessions_ended_idle} idle "
            f"sessions; deleted {self.revoked_tokens_deleted} expired revoked-token entries, "
            f"{self.api_keys_deleted} API keys, {self.grants_deleted} grants, {self.sessions_deleted} "
            f"sessions and {self.job_runs_deleted} job runs past the {settings.CLEANUP_RETENTION_DAYS}-day "
            f"retention, and {self.verification_hours_deleted} hourly verification counts older than "
            f"{HISTORY_DAYS} days."
        )


@dataclass
class RevalidationReport:
    run_id: int
    checked: int = 0
    validated: int = 0
    suspended: int = 0
    # Rejected by the authority but no longer active here by the time it was their turn.
    skipped: int = 0
    # Set when the authority stopped answering: the run stopped there, and the next run starts over.
    authority_error: str = ""
    message: str = ""

    @property
    def authority_unavailable(self) -> bool:
        return bool(self.authority_error)

    def counts(self) -> dict[str, int]:
        return {
            "checked": self.checked,
            "validated": self.validated,
            "suspended": self.suspended,
            "skipped": self.skipped,
        }

    def as_dict(self) -> dict:
        return {**asdict(self), "authority_unavailable": self.authority_unavailable}

    def summary(self) -> str:
        if self.message:
            return f"ChittyID revalidation: {self.message}"
        done = (
            f"checked {self.checked} ChittyIDs: {self.validated} still valid, {self.suspended} suspended, "
            f"{self.skipped} already inactive"
        )
        if self.authority_unavailable:
            return f"ChittyID revalidation stopped, {self.authority_error}; before that it {done}."
        return f"ChittyID revalidation {done}."


# ---------------------------------------------------------------------------------------------------------
# Job runs: what the admin shows, finished together with the run's one audit event


def _start_run(job: str, caller: Caller) -> JobRun:
    return JobRun.objects.create(job=job, actor=caller.actor, started_at=timezone.now())


def _finish_run(
    run: JobRun, caller: Caller, *, action: str, outcome: str, counts: dict, message: str, details: dict
) -> None:
    try:
        _save_finished_run(
            run, caller, action=action, outcome=outcome, counts=counts, message=message, details=details
        )
    except Exception:
        JOB_RUNS.labels(run.job, "unrecorded").inc()  # the run happened; only its record was lost
        raise
    JOB_RUNS.labels(run.job, outcome).inc()
    JOB_RUN_DURATION.labels(run.job).observe((run.finished_at - run.started_at).total_seconds())


def _save_finished_run(
    run: JobRun, caller: Caller, *, action: str, outcome: str, counts: dict, message: str, details: dict
) -> None:
    with transaction.atomic():
        run.finished_at = timezone.now()
        run.outcome = outcome
        run.counts = counts
        run.message = message[:MAX_MESSAGE_LENGTH]
        run.save(update_fields=["finished_at", "outcome", "counts", "message"])
        record(
            action,
            outcome=AuditEvent.Outcome.SUCCESS
            if outcome == JobRun.Outcome.SUCCESS
            else AuditEvent.Outcome.FAILURE,
            actor=caller.actor,
            target=run.job,
            client_address=caller.client_address,
            details={"run_id": run.pk, **counts, **details, "message": run.message},
        )


def _record_crash(run: JobRun, caller: Caller, action: str, counts: dict, error: Exception) -> None:
    """A run cut short by an error still says so in the admin and the trail, if the database lets us."""
    try:
        _finish_run(
            run,
            caller,
            action=action,
            outcome=JobRun.Outcome.FAILURE,
            counts=counts,
            message=f"stopped by {type(error).__name__}: {error}",
            details={"error": type(error).__name__},
        )
    except Exception:  # the database that failed the run may refuse this too; the run's error is the news
        logger.exception("Could not record the failure of job run %s", run.pk)


# ---------------------------------------------------------------------------------------------------------
# Cleanup


def run_cleanup(caller: Caller, *, progress: Progress | None = None) -> CleanupReport:
    """End expired and idle sessions, purge revoked-token entries past their expiry, and delete API keys,
    grants, sessions and job runs past the retention (`jobs:run`). Safe to run twice at once."""
    authorize(caller, RUN_PERMISSION, target=JobRun.Job.CLEANUP)
    run = _start_run(JobRun.Job.CLEANUP, caller)
    report = CleanupReport(run_id=run.pk)
    try:
        _clean(report, caller, progress)
    except Exception as exc:
        _record_crash(run, caller, CLEANUP_ACTION, report.counts(), exc)
        raise
    _finish_run(
        run,
        caller,
        action=CLEANUP_ACTION,
        outcome=JobRun.Outcome.SUCCESS,
        counts=report.counts(),
        message=report.summary(),
        details={
            "retention_days": settings.CLEANUP_RETENTION_DAYS,
            "batch_size": settings.CLEANUP_BATCH_SIZE,
        },
    )
    return report


def _clean(report: CleanupReport, caller: Caller, progress: Progress | None) -> None:
    now = timezone.now()
    retained_since = now - timedelta(days=settings.CLEANUP_RETENTION_DAYS)
    live = Q(ended_at__isnull=True)
    # A JWT's session lasts as long as the token does, used or not; it ends when the token expires.
    idle = Q(last_seen_at__lt=now - timedelta(seconds=settings.SESSION_TIMEOUT)) & ~Q(
        credential_type=AuthSession.CredentialType.JWT
    )
    end = partial(_end_sessions, actor=caller.actor, progress=progress)
    purge = partial(_purge, progress=progress)

    report.sessions_ended_expired = end(live & Q(expires_at__lte=now), reason="expired")
    report.sessions_ended_idle = end(
        live & idle, reason=f"idle for more than {settings.SESSION_TIMEOUT} seconds"
    )
    report.revoked_tokens_deleted = purge(
        RevokedToken, Q(expires_at__lt=now), "expired revoked-token entries deleted"
    )
    lapsed = Q(expires_at__lt=retained_since) | Q(revoked_at__lt=retained_since)
    report.api_keys_deleted = purge(ApiKey, lapsed, "old API keys deleted", unlink=_unlink_rotated_keys)
    report.grants_deleted = purge(Grant, lapsed, "old grants deleted")
    report.sessions_deleted = purge(AuthSession, Q(ended_at__lt=retained_since), "old sessions deleted")
    report.job_runs_deleted = purge(JobRun, Q(started_at__lt=retained_since), "old job runs deleted")
    report.verification_hours_deleted = purge(
        VerificationHour,
        Q(hour__lt=now - timedelta(days=HISTORY_DAYS)),
        f"hourly verification counts older than {HISTORY_DAYS} days deleted",
    )


def _in_batches(
    model: type[models.Model],
    condition: Q,
    act: Callable[[list[tuple]], int],
    description: str,
    progress: Progress | None,
    fields: tuple[str, ...] = (),
) -> int:
    """Hand `act` the rows matching `condition`, `CLEANUP_BATCH_SIZE` at a time, each batch locked in its own
    transaction. Rows another run has locked are skipped: that run acts on them. Returns the sum of `act`."""
    size = settings.CLEANUP_BATCH_SIZE
    matching = model.objects.filter(condition)
    if progress:
        progress.stage(description, matching.count())
    done, after_pk = 0, 0
    while True:
        with transaction.atomic():
            rows = list(
                matching.select_for_update(skip_locked=True)
                .filter(pk__gt=after_pk)
                .order_by("pk")
                .values_list("pk", *fields)[:size]
            )
            if rows:
                done += act(rows)
        if progress:
            progress.advance(len(rows))
        if len(rows) < size:
            return done
        after_pk = rows[-1][0]


def _exactly(pks: list[int], field: str = "pk") -> dict:
    """A filter for these (ascending) ids that the planner serves from the index: the range bound keeps it
    from scanning the whole table for a long id list, whose cost would grow with the backlog."""
    return {f"{field}__gte": pks[0], f"{field}__lte": pks[-1], f"{field}__in": pks}


def _end_sessions(condition: Q, *, reason: str, actor: str, progress: Progress | None) -> int:
    """End sessions in bulk. Their live connections are told after each batch commits, on every node, and
    each ended session is invalidated, so connections that missed the message re-check it on their next one."""

    def end(rows: list[tuple]) -> int:
        ended = AuthSession.objects.filter(**_exactly([pk for pk, _ in rows])).update(
            ended_at=timezone.now(), end_reason=reason, ended_by=actor
        )
        session_ids = [session_id for _, session_id in rows]
        invalidate(*map(session_topic, session_ids))
        transaction.on_commit(partial(close_live_connections, session_ids, reason))
        return ended

    return _in_batches(
        AuthSession, condition, end, f"sessions ended ({reason})", progress, fields=("session_id",)
    )


def _purge(
    model: type[models.Model],
    condition: Q,
    description: str,
    *,
    progress: Progress | None,
    unlink: Callable[[list[int]], object] | None = None,
) -> int:
    """Delete in batches; the delete checks the condition again itself.

    Without `unlink`, Django deletes: one statement per batch for a model nothing points at (and a relation
    added later is still honoured, only slower). With it, `unlink` does what the pointing relations'
    `on_delete` would and the rows are deleted directly, because Django's delete would load every row of
    the batch to find the pointing ones. A relation it misses fails the batch at commit (foreign key
    violation), never leaves dangling rows; a test lists the relations it knows.
    """

    def delete(rows: list[tuple]) -> int:
        pks = [pk for (pk,) in rows]
        doomed = model.objects.filter(condition, **_exactly(pks))
        if unlink is None:
            return doomed.delete()[1].get(model._meta.label, 0)
        unlink(pks)
        return doomed._raw_delete(doomed.db)

    return _in_batches(model, condition, delete, description, progress)


def _unlink_rotated_keys(pks: list[int]) -> int:
    """Keys rotated from keys about to be deleted forget where they came from (`rotated_from` is SET_NULL)."""
    return ApiKey.objects.filter(**_exactly(pks, "rotated_from")).update(rotated_from=None)


# ---------------------------------------------------------------------------------------------------------
# ChittyID revalidation


def revalidate_identities(caller: Caller, *, progress: Progress | None = None) -> RevalidationReport:
    """Ask the remote ChittyID authority again about every active identity it vouched for (`jobs:run`);
    suspend those it now rejects or does not know, which stops their keys, tokens and sessions at once.

    When the authority cannot be reached the run stops there and changes nothing more: it is reported as a
    failure and the next run starts over. Identities of the local authority are left alone.
    """
    authorize(caller, RUN_PERMISSION, target=JobRun.Job.REVALIDATE_IDENTITIES)
    run = _start_run(JobRun.Job.REVALIDATE_IDENTITIES, caller)
    report = RevalidationReport(run_id=run.pk)
    try:
        if authority.is_remote():
            _revalidate(report, caller, progress)
        else:
            report.message = "no remote ChittyID authority is configured, so there is nothing to revalidate"
    except Exception as exc:
        _record_crash(run, caller, REVALIDATE_ACTION, report.counts(), exc)
        raise
    _finish_run(
        run,
        caller,
        action=REVALIDATE_ACTION,
        outcome=JobRun.Outcome.FAILURE if report.authority_unavailable else JobRun.Outcome.SUCCESS,
        counts=report.counts(),
        message=report.summary(),
        details={"authority_error": report.authority_error} if report.authority_unavailable else {},
    )
    return report


def _revalidate(report: RevalidationReport, caller: Caller, progress: Progress | None) -> None:
    candidates = Identity.objects.filter(status=Identity.Status.ACTIVE, source=Identity.Source.REMOTE)
    if progress:
        progress.stage("ChittyIDs revalidated", candidates.count())
    after_pk = 0
    while True:
        batch = list(candidates.filter(pk__gt=after_pk).order_by("pk")[: settings.REVALIDATION_BATCH_SIZE])
        if not batch or not _revalidate_batch(batch, report, caller, progress):
            return
        after_pk = batch[-1].pk


def _revalidate_batch(
    batch: list[Identity], report: RevalidationReport, caller: Caller, progress: Progress | None
) -> bool:
    """Ask about each identity of the batch; False when the authority stopped answering."""
    still_valid = []
    answering = True
    for identity in batch:
        try:
            answer = authority.verify_chitty_id(identity.chitty_id, bypass_cache=True)
        except AuthorityUnavailable as exc:
            report.authority_error = exc.message
            answering = False
            break
        report.checked += 1
        if answer.is_valid:
            still_valid.append(identity.pk)
        elif _suspend_rejected(caller, identity, answer):
            report.suspended += 1
        else:
            report.skipped += 1
        if progress:
            progress.advance(1)
    # Only answers the authority actually gave are recorded, even when it stopped answering midway.
    Identity.objects.filter(pk__in=still_valid, status=Identity.Status.ACTIVE).update(
        last_validated_at=timezone.now()
    )
    report.validated += len(still_valid)
    return answering


def _suspend_rejected(caller: Caller, identity: Identity, answer: AuthorityAnswer) -> bool:
    """Suspend an identity the authority no longer vouches for, unless staff already took it out of service."""
    identity.refresh_from_db(fields=["status"])
    if not identity.is_active:
        return False
    reason = f"ChittyID authority: {answer.verdict.value}" + (f" ({answer.reason})" if answer.reason else "")
    try:
        suspend_identity(caller, identity, reason=reason)
    except Conflict:  # revoked for good in the meantime, which already stopped everything it held
        return False
    return True
