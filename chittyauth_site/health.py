"""Liveness and readiness probes. Anonymous by design, and they reveal no configuration secrets.

Readiness separates what a node needs to serve from what only degrades it. Without its database it can
answer nothing (503). Without Redis, the broker or the ChittyID authority it still serves (from the database,
or by refusing what needs the authority with `AUTHORITY_UNAVAILABLE`), so it stays in the load balancer:
200 with `"status": "degraded"` and the failing check named. `?strict=1` answers 503 unless all is well.
"""

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as ProbeTimeout

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse

from chittyauth_site.celery import app as celery_app
from identities import authority

logger = logging.getLogger(__name__)

# Each check answers within this, or counts as failed: a load balancer's probe must not hang on a dependency.
PROBE_TIMEOUT_SECONDS = 1.0


class CheckFailed(Exception):
    """A check's own account of a failure, fit to show anyone who asks /readyz."""


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()  # the probe's thread is not a request thread: nothing else closes it
    return "ok"


def _check_cache() -> str:
    key, value = f"readyz:{uuid.uuid4().hex}", "1"
    cache.set(key, value, 10)
    ok = cache.get(key) == value
    cache.delete(key)
    if not ok:
        raise CheckFailed("cache did not return what was stored")
    return "ok"


def _check_channel_layer() -> str:
    layer = get_channel_layer()

    async def round_trip() -> bool:
        # A plain channel, not new_channel()'s process-local one: channels_redis reads those through one
        # receive loop per process, which the open sockets hold, and refuses a second event loop (the probe's).
        channel = f"readyz.{uuid.uuid4().hex}"
        await layer.send(channel, {"type": "readyz.ping"})
        message = await asyncio.wait_for(layer.receive(channel), timeout=PROBE_TIMEOUT_SECONDS)
        return message.get("type") == "readyz.ping"

    if not async_to_sync(round_trip)():
        raise CheckFailed("channel layer did not deliver a message")
    return "ok"


def _check_broker() -> str:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=PROBE_TIMEOUT_SECONDS)
    return "ok"


def _check_authority() -> str:
    reachable, detail = authority.check_reachable()
    if not reachable:
        raise CheckFailed(detail)
    return detail


REQUIRED_CHECKS: dict[str, Callable[[], str]] = {"database": _check_database}
DEGRADING_CHECKS: dict[str, Callable[[], str]] = {
    "cache": _check_cache,
    "channel_layer": _check_channel_layer,
    "celery_broker": _check_broker,
    "chittyid_authority": _check_authority,
}

# Checks run side by side, so a probe costs its slowest check. Each has its own threads: one that hangs is
# abandoned, and can hold up only later probes of the same check, never the database's.
_executors = {
    name: ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"readyz-{name}")
    for name in (*REQUIRED_CHECKS, *DEGRADING_CHECKS)
}
_last_status: dict[str, str] = {}
_last_status_lock = threading.Lock()


def _log_if_changed(name: str, status: str, detail: str) -> None:
    """One log line when a check changes state, not one per probe."""
    with _last_status_lock:
        previous = _last_status.get(name, "ok")
        _last_status[name] = status
    if previous == status:
        return
    if status == "ok":
        logger.info("Readiness check %s recovered", name)
    elif name in REQUIRED_CHECKS:
        logger.error("Readiness check %s failed, this node cannot serve: %s", name, detail)
    else:
        logger.warning("Readiness check %s failed, this node serves degraded: %s", name, detail)


def run_checks() -> dict[str, dict]:
    started = time.monotonic()
    checks = {**REQUIRED_CHECKS, **DEGRADING_CHECKS}
    futures = {name: _executors[name].submit(check) for name, check in checks.items()}
    results = {}
    for name, future in futures.items():
        remaining = max(PROBE_TIMEOUT_SECONDS - (time.monotonic() - started), 0.0)
        try:
            result = {"status": "ok", "detail": future.result(timeout=remaining)}
        except ProbeTimeout:
            future.cancel()
            result = {"status": "fail", "detail": f"no answer within {PROBE_TIMEOUT_SECONDS:g} s"}
        except CheckFailed as exc:
            result = {"status": "fail", "detail": str(exc)[:200]}
        except Exception as exc:  # noqa: BLE001 - a failing dependency is reported, never raised
            # Anyone may probe: the body names the error's kind only, the log (once) says what it was, since
            # a driver's message names hosts, ports and users.
            result = {
                "status": "fail",
                "detail": type(exc).__name__,
                "logged": f"{type(exc).__name__}: {exc}",
            }
        result["required"] = name in REQUIRED_CHECKS
        _log_if_changed(name, result["status"], result.pop("logged", result["detail"]))
        results[name] = result
    return results


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    checks = run_checks()
    if any(check["status"] != "ok" for check in checks.values() if check["required"]):
        status = "unavailable"
    elif any(check["status"] != "ok" for check in checks.values()):
        status = "degraded"
    else:
        status = "ok"
    strict = request.GET.get("strict") in ("1", "true")
    code = 200 if status == "ok" or (status == "degraded" and not strict) else 503
    response = JsonResponse({"status": status, "checks": checks}, status=code)
    response._has_been_logged = True  # state changes are logged above; Django would log every 503 probe
    return response
