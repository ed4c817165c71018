"""Celery tasks for beat: thin wrappers over the job services. All are idempotent, so a lost
acknowledgement or a retry after a database or broker hiccup does no harm."""

from dataclasses import asdict

from celery import shared_task
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from audit.export import deliver_audit_events as deliver_audit_events_service
from jobs.schedules import CHECKPOINT_TASK, CLEANUP_TASK, EXPORT_TASK, REVALIDATE_TASK
from jobs.services import revalidate_identities as revalidate_identities_service
from jobs.services import run_cleanup
from kernel.callers import Caller
from keys.checkpoints import sign_checkpoint

RETRYABLE_ERRORS = (
    OperationalError,
    InterfaceError,
    BrokerOperationalError,
    RedisConnectionError,
    RedisTimeoutError,
)
RETRY_POLICY = {
    "autoretry_for": RETRYABLE_ERRORS,
    "retry_backoff": 5,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 5,
    "ignore_result": True,
}


@shared_task(name=CLEANUP_TASK, **RETRY_POLICY)
def cleanup() -> dict:
    return run_cleanup(Caller.system("cleanup")).as_dict()


@shared_task(name=REVALIDATE_TASK, **RETRY_POLICY)
def revalidate_identities() -> dict:
    """An unreachable authority is not retried here: the run reports it and the next scheduled run retries."""
    return revalidate_identities_service(Caller.system("revalidation")).as_dict()


@shared_task(name=CHECKPOINT_TASK, **RETRY_POLICY)
def sign_audit_checkpoint() -> dict:
    checkpoint = sign_checkpoint(Caller.system("audit-checkpoint"))
    return {"sequence": checkpoint.sequence if checkpoint else 0}


@shared_task(name=EXPORT_TASK, ignore_result=True)
def deliver_audit_events() -> list[dict]:
    """Not retried: beat sends the next run in seconds, and it resumes where this one stopped."""
    return [asdict(run) for run in deliver_audit_events_service()]
