"""Liveness and readiness probes. Anonymous by design, and they reveal no configuration secrets."""

import asyncio
import time
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse

from chittyauth_site.celery import app as celery_app
from identities import authority

PROBE_TIMEOUT_SECONDS = 2.0


def _check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _check_cache() -> str:
    key, value = f"readyz:{uuid.uuid4().hex}", "1"
    cache.set(key, value, 10)
    ok = cache.get(key) == value
    cache.delete(key)
    if not ok:
        raise RuntimeError("cache did not return what was stored")
    return "ok"


def _check_channel_layer() -> str:
    layer = get_channel_layer()

    async def round_trip() -> bool:
        channel = await layer.new_channel("readyz.")
        await layer.send(channel, {"type": "readyz.ping"})
        # A layer that loses the message must fail the probe, not hang it.
        message = await asyncio.wait_for(layer.receive(channel), timeout=PROBE_TIMEOUT_SECONDS)
        return message.get("type") == "readyz.ping"

    if not async_to_sync(round_trip)():
        raise RuntimeError("channel layer did not deliver a message")
    return "ok"


def _check_broker() -> str:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=PROBE_TIMEOUT_SECONDS)
    return "ok"


def _check_authority() -> str:
    reachable, detail = authority.check_reachable()
    if not reachable:
        raise RuntimeError(detail)
    return detail


READINESS_CHECKS = {
    "database": _check_database,
    "cache": _check_cache,
    "channel_layer": _check_channel_layer,
    "celery_broker": _check_broker,
    "chittyid_authority": _check_authority,
}


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    checks = {}
    for name, check in READINESS_CHECKS.items():
        started = time.monotonic()
        try:
            detail = check()
            checks[name] = {"status": "ok", "detail": detail}
        except Exception as exc:  # noqa: BLE001 - a failing dependency is reported, never raised
            checks[name] = {"status": "fail", "detail": f"{type(exc).__name__}: {exc}"[:200]}
        checks[name]["ms"] = round((time.monotonic() - started) * 1000, 1)
    ready = all(check["status"] == "ok" for check in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )
