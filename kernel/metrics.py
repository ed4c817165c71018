"""The service's Prometheus metrics, all in one place, so a reader finds every series by its name here.

Counted through `prometheus_client`. With `PROMETHEUS_MULTIPROC_DIR` set (as `./dev run` does), every process
(daphne, `mcp_stdio`, Celery workers) writes its values to files there and `/metrics` adds them up; without it,
a process counts for itself alone. `METRICS_ENABLED = False` makes every series below a no-op (and `/metrics`
answer 404), for the benchmark that weighs what counting costs.

What a change inside `answering_from_memory()` counts must wait for the answer to succeed: such a block may be
run again elsewhere (`counted_when_answered`), and nothing may be counted twice.
"""

import atexit
import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from prometheus_client import Counter, Gauge, Histogram, multiprocess

from kernel.memory_only import when_answered

logger = logging.getLogger(__name__)

# From half a millisecond (a warm validation) to ten seconds (a slow authority, a long job).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
JOB_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900)


class _Off:
    """Stands in for every series when metrics are off: accepts every call and keeps nothing."""

    def labels(self, *_args: Any, **_kwargs: Any) -> "_Off":
        return self

    def inc(self, _amount: float = 1) -> None:
        pass

    def dec(self, _amount: float = 1) -> None:
        pass

    def observe(self, _amount: float) -> None:
        pass


_OFF = _Off()


class _Guarded:
    """A series whose writes never fail the work they count. In multiprocess mode a write can open a file (the
    first value of a kind in a process, or after a fork), and that fails once the directory is gone or
    unwritable: the count is lost and logged, the request it counts goes on."""

    __slots__ = ("_series",)

    def __init__(self, series: Any) -> None:
        self._series = series

    def labels(self, *labels: str) -> "_Guarded | _Off":
        try:
            return _Guarded(self._series.labels(*labels))
        except OSError:
            _lost()
            return _OFF

    def inc(self, amount: float = 1) -> None:
        try:
            self._series.inc(amount)
        except OSError:
            _lost()

    def dec(self, amount: float = 1) -> None:
        try:
            self._series.dec(amount)
        except OSError:
            _lost()

    def observe(self, amount: float) -> None:
        try:
            self._series.observe(amount)
        except OSError:
            _lost()


_reported_loss = threading.Event()


def _lost() -> None:
    """Said once per process: the cause (a missing directory) would otherwise repeat on every request."""
    if not _reported_loss.is_set():
        _reported_loss.set()
        logger.warning(
            "A metric could not be written to PROMETHEUS_MULTIPROC_DIR; counts are being lost (said once)",
            exc_info=True,
        )


def _series(kind: type, name: str, documentation: str, labels: tuple[str, ...] = (), **options: Any) -> Any:
    if not settings.METRICS_ENABLED:
        return _OFF
    return _Guarded(kind(name, documentation, labels, **options))


CREDENTIAL_VERIFICATIONS = _series(
    Counter,
    "chittyauth_credential_verifications",
    "Credentials verified, by type (api_key, jwt) and outcome code (VALID, REVOKED, ...).",
    ("credential_type", "outcome"),
)
PERMISSION_CHECKS = _series(
    Counter,
    "chittyauth_permission_checks",
    "Permission checks asked for (check_permission, POST /permissions/check), by outcome.",
    ("outcome",),
)
HTTP_REQUEST_DURATION = _series(
    Histogram,
    "chittyauth_http_request_duration_seconds",
    "HTTP requests, from the first byte in to the last byte out, by front door (rest, mcp_http, admin, other).",
    ("front_door",),
    buckets=LATENCY_BUCKETS,
)
MCP_TOOL_CALLS = _series(
    Counter,
    "chittyauth_mcp_tool_calls",
    "MCP tool calls, by transport (mcp-websocket, mcp-http, mcp-stdio), tool and outcome (ok, error).",
    ("transport", "tool", "outcome"),
)
MCP_TOOL_CALL_DURATION = _series(
    Histogram,
    "chittyauth_mcp_tool_call_duration_seconds",
    "MCP tool calls, from the call reaching the server to its result, by transport.",
    ("transport",),
    buckets=LATENCY_BUCKETS,
)
CACHE_LOOKUPS = _series(
    Counter,
    "chittyauth_cache_lookups",
    "Per-process cache lookups, by cache and result (hit: answered from memory; miss: read again).",
    ("cache", "result"),
)
WEBSOCKET_CONNECTIONS = _series(
    Gauge,
    "chittyauth_mcp_websocket_connections",
    "MCP WebSocket connections open now.",
    multiprocess_mode="livesum",
)
AUTHORITY_CALLS = _series(
    Counter,
    "chittyauth_authority_calls",
    "Calls to the ChittyID authority, one per attempt, by outcome (valid, not_found, rejected, "
    "unusable_answer, client_error, server_error, timeout, connect_error).",
    ("outcome",),
)
AUTHORITY_CALL_DURATION = _series(
    Histogram,
    "chittyauth_authority_call_duration_seconds",
    "Calls to the ChittyID authority, one per attempt.",
    buckets=LATENCY_BUCKETS,
)
JOB_RUNS = _series(
    Counter,
    "chittyauth_job_runs",
    "Scheduled job runs (cleanup, revalidation), by job and outcome (success, failure, unrecorded: the "
    "database refused the run's record).",
    ("job", "outcome"),
)
AUDIT_EXPORTS = _series(
    Counter,
    "chittyauth_audit_exports",
    "Audit events and checkpoints sent to export sinks, by sink and outcome (delivered, dead_lettered, "
    "redelivered; failed counts failed deliveries, each of which is retried).",
    ("sink", "outcome"),
)
JOB_RUN_DURATION = _series(
    Histogram,
    "chittyauth_job_run_duration_seconds",
    "Scheduled job runs, by job.",
    ("job",),
    buckets=JOB_BUCKETS,
)


def counted_when_answered(series: Any, *labels: str) -> None:
    """Add one to `series{labels}` now, or once the memory answer this runs in has succeeded."""
    when_answered(series.labels(*labels).inc)


def forget_this_process_at_exit() -> None:
    """Once this process stops, its live gauges (open WebSockets) stop counting; its counters stay, as totals.
    A process killed without its exit handlers (SIGKILL, a crash) is forgotten by the next one to start."""
    if settings.METRICS_ENABLED and settings.METRICS_MULTIPROCESS_DIR:
        _forget_dead_processes(settings.METRICS_MULTIPROCESS_DIR)
        atexit.register(multiprocess.mark_process_dead, os.getpid(), settings.METRICS_MULTIPROCESS_DIR)


def _forget_dead_processes(directory: str) -> None:
    """The directory is one node's (its processes share a PID namespace), so a PID that is gone is dead."""
    for live_gauge in Path(directory).glob("gauge_live*_*.db"):
        pid = live_gauge.stem.rpartition("_")[2]
        if pid.isdigit() and not _is_running(int(pid)):
            with contextlib.suppress(OSError):  # another process starting beside this one forgot it first
                multiprocess.mark_process_dead(int(pid), directory)


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
