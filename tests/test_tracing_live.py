"""OpenTelemetry traces from a live daphne to a real OTLP/HTTP receiver: one trace per request, from the server
span through the MCP SDK's span to the call to the ChittyID authority (which receives the trace context), with
no query string and no secret in any span."""

import time

import anyio
import httpx
import pytest
from django.conf import settings

from kernel.tracing import traced_http, without_query_or_credentials
from tests.mcp_live import ADMIN, ALICE, BOB, authority_env, cast_authority, daphne_server, service_database
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.test_mcp_http import mcp_client

WAIT_SECONDS = 30
PROBE = "query-probe-value-7f3a"


def wait_for(condition, what: str):
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {WAIT_SECONDS}s")


def server_span(otlp: OtlpReceiver, method: str, path: str) -> ReceivedSpan | None:
    return next(
        (
            span
            for span in otlp.spans
            if span.kind == "SERVER"
            and span.attributes.get("http.method", span.attributes.get("http.request.method")) == method
            and span.attributes.get("http.target", span.attributes.get("url.path")) == path
        ),
        None,
    )


def test_one_trace_per_request_across_rest_mcp_and_the_authority(tmp_path):
    with (
        OtlpReceiver() as otlp,
        cast_authority(slow_seconds=0) as authority,
        service_database(tmp_path) as (database_url, keys),
    ):
        env = authority_env(
            database_url,
            authority,
            OTEL_EXPORTER_OTLP_ENDPOINT=otlp.url,
            OTEL_BSP_SCHEDULE_DELAY="100",
            # Asking the instrumentations for the headers must not get them the credentials in there.
            OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST="authorization,cookie,x-request-id",
            OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST="authorization",
        )
        admin = keys[ADMIN]["key"]
        with daphne_server(env, tmp_path) as server, httpx.Client(base_url=server.url, timeout=30) as client:
            generated = client.post(
                f"/api/v1/keys?probe={PROBE}",
                json={"chitty_id": ALICE, "name": "traced"},
                headers={"Authorization": f"Bearer {admin}"},
            )
            assert generated.status_code == 201, generated.text
            # A key sent where its id belongs (a client's mistake) is in the path: not in the span.
            misplaced = client.get(
                f"/api/v1/keys/{keys[ALICE]['key']}/usage", headers={"Authorization": f"Bearer {admin}"}
            )
            assert misplaced.status_code == 404
            assert client.get("/healthz").status_code == 200

            async def validate_over_mcp() -> None:
                async with mcp_client(server, admin) as mcp:
                    await mcp.call_tool("generate_jwt", {"chitty_id": BOB})

            anyio.run(validate_over_mcp)
            rest_span = wait_for(lambda: server_span(otlp, "POST", "/api/v1/keys"), "REST server span")
            mcp_span = wait_for(
                lambda: next((span for span in otlp.spans if span.name.startswith("tools/call")), None),
                "MCP SDK span",
            )
            authority_calls = wait_for(
                lambda: [span for span in otlp.spans if span.kind == "CLIENT"] or None, "authority spans"
            )

    assert {span.service for span in otlp.spans} == {"chittyauth"}
    # REST: the server span, tagged with the request id, and the authority call inside it.
    assert rest_span.attributes["chittyauth.request_id"] == generated.headers["X-Request-ID"]
    rest_trace = otlp.in_trace(rest_span.trace_id)
    (rest_authority_call,) = [span for span in rest_trace if span.kind == "CLIENT"]
    assert rest_authority_call.attributes["http.url"] == f"{authority.url}/v1/verify"
    assert authority.requests[0]["traceparent"].split("-")[1] == rest_span.trace_id
    # MCP: the HTTP server span, the SDK's span for the tool call within it, and the authority call within that.
    mcp_trace = otlp.in_trace(mcp_span.trace_id)
    assert any(span.kind == "SERVER" and span.attributes.get("http.target") == "/mcp" for span in mcp_trace)
    mcp_authority_call = next(span for span in authority_calls if span.trace_id == mcp_span.trace_id)
    ancestors = {span.span_id: span.parent_id for span in mcp_trace}
    parent, chain = mcp_authority_call.parent_id, []
    while parent:
        chain.append(parent)
        parent = ancestors.get(parent, "")
    assert mcp_span.span_id in chain
    assert rest_span.name == "POST"
    assert not [span for span in otlp.spans if "/healthz" in repr(span.attributes)]
    assert not [name for span in otlp.spans for name in span.attributes if ".header." in name]
    # Nothing secret and no query string in any span.
    everything = repr([(span.name, span.attributes, span.events, span.status_message) for span in otlp.spans])
    for secret in (admin, keys[ALICE]["key"], authority.api_key, generated.json()["api_key"], PROBE):
        assert secret not in everything


def test_tracing_is_off_without_an_otlp_endpoint():
    assert settings.TRACING_ENABLED is False and settings.MCP_OPENTELEMETRY is False

    async def app(scope, receive, send):
        pass

    assert traced_http(app) is app


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://user:pw@siem.example.org:8443/hook?token=abc#x", "https://siem.example.org:8443/hook"),
        ("/api/v1/keys?api_key=chitty_live_x", "/api/v1/keys"),
        ("http://127.0.0.1:9/v1/verify", "http://127.0.0.1:9/v1/verify"),
    ],
)
def test_span_urls_lose_their_query_and_credentials(url, kept):
    assert without_query_or_credentials(url) == kept
