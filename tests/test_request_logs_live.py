"""Request ids and JSON logs on a live daphne: every answer carries an id (the client's when it sent a sane one),
the id lands in the audit events and log lines of that request, every log line is one JSON object, and no secret
is in any of them."""

import asyncio
import json
import re

import httpx
import websockets

from tests.mcp_live import ADMIN, ALICE, base_env, daphne_server, rest, service_database
from tests.test_mcp_websocket import call, initialized

SENT_ID = "trace-4bf92f3577b34da6"
GENERATED_ID = re.compile(r"[0-9a-f]{32}")
FORGED_KEY = "chitty_live_" + "A" * 43 + "Zz0000"  # well-formed enough to reach the database, unknown there


def test_request_ids_travel_into_logs_and_audit_and_every_log_line_is_json_without_secrets(tmp_path):
    with service_database(tmp_path) as (database_url, keys):
        env = base_env(database_url, CHITTYAUTH_VAR_DIR=str(tmp_path), LOG_FORMAT="json", LOG_LEVEL="INFO")
        admin, alice = keys[ADMIN]["key"], keys[ALICE]["key"]
        with daphne_server(env, tmp_path) as server, httpx.Client(base_url=server.url, timeout=30) as client:
            forged = client.get(
                "/api/v1/whoami", headers={"Authorization": f"Bearer {FORGED_KEY}", "X-Request-ID": SENT_ID}
            )
            generated = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {alice}"})
            too_short = client.get("/healthz", headers={"X-Request-ID": "x"})
            a_key_as_id = client.get("/healthz", headers={"X-Request-ID": alice})  # would be stored unmasked
            denied = client.get(
                "/api/v1/audit/events",
                headers={"Authorization": f"Bearer {alice}", "X-Request-ID": "denied-request-0001"},
            )
            # A secret in a query string (where it must never be sent) reaches Django's request warning.
            client.get(f"/api/v1/audit/events?api_key={alice}", headers={"Authorization": f"Bearer {alice}"})
            validated = client.post(
                "/api/v1/keys/validate", json={"api_key": alice}, headers={"Authorization": f"Bearer {admin}"}
            )
            events = client.get(
                "/api/v1/audit/events?limit=1000", headers={"Authorization": f"Bearer {admin}"}
            ).json()["events"]
        log = server.output()

    assert (forged.status_code, forged.headers["X-Request-ID"]) == (401, SENT_ID)
    assert generated.status_code == 200 and GENERATED_ID.fullmatch(generated.headers["X-Request-ID"])
    assert GENERATED_ID.fullmatch(too_short.headers["X-Request-ID"])
    assert GENERATED_ID.fullmatch(a_key_as_id.headers["X-Request-ID"])
    assert denied.status_code == 403 and validated.status_code == 200

    refusal = next(event for event in events if event["details"].get("request_id") == SENT_ID)
    assert (refusal["action"], refusal["outcome"]) == ("auth.failed", "failure")

    lines = [json.loads(line) for line in log.splitlines() if line.strip()]  # every line parses
    assert {"timestamp", "level", "logger", "message", "request_id"} <= set(lines[0])
    warning, access = [line for line in lines if line["request_id"] == "denied-request-0001"]
    assert (warning["logger"], warning["level"], warning["principal"]) == ("django.request", "WARNING", ALICE)
    assert warning["credential_id"] == keys[ALICE]["key_id"]
    assert (access["logger"], access["path"], access["status"]) == (
        "chittyauth.access",
        "/api/v1/audit/events",
        403,
    )
    assert access["principal"] == ALICE
    for secret in (admin, alice, FORGED_KEY, env.get("JWT_SECRET", "dev-only-jwt-secret")):
        assert secret not in log


def test_each_mcp_websocket_frame_has_its_own_request_id_in_the_audit_trail(tmp_path):
    """One id per connection would make every call of a long session look like one request: each frame's id is
    the connection's, a colon and the frame's JSON-RPC id, on the SDK's worker path and the warm path alike."""
    connection_id = "ws-connection-0001"
    with service_database(tmp_path) as (database_url, keys):
        env = base_env(database_url, CHITTYAUTH_VAR_DIR=str(tmp_path))
        admin = keys[ADMIN]["key"]
        with daphne_server(env, tmp_path) as server:

            async def two_calls() -> None:
                async with websockets.connect(
                    f"{server.ws_url}/mcp/ws?access_token={admin}",
                    additional_headers={"X-Request-ID": connection_id},
                    open_timeout=30,
                ) as ws:
                    await initialized(ws)
                    issued = await call(ws, 7, "generate_api_key", {"chitty_id": ALICE, "name": "frame 7"})
                    assert not issued.get("isError"), issued
                    refused = await call(ws, "call-8", "validate_api_key", {"api_key": FORGED_KEY})
                    assert refused["structuredContent"]["valid"] is False
                    again = await call(ws, "call-9", "validate_api_key", {"api_key": FORGED_KEY})
                    assert again["structuredContent"]["valid"] is False

            asyncio.run(two_calls())
            status, body = rest(server, "GET", "/api/v1/audit/events?limit=1000", admin)
    assert status == 200
    ids = {
        (event["action"], event["details"].get("request_id"))
        for event in body["events"]
        if str(event["details"].get("request_id", "")).startswith(connection_id)
    }
    assert ("api_key.generate", f"{connection_id}:7") in ids
    assert ("api_key.validate", f"{connection_id}:call-8") in ids
    assert ("api_key.validate", f"{connection_id}:call-9") in ids
