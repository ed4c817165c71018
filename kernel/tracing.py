"""OpenTelemetry traces, off unless an OTLP endpoint is set (README "Traces"). Started by each process's entry point: `chittyauth_site/asgi.py`, `chittyauth_site/celery.py`, `mcp_stdio`.

On, every process (daphne, Celery workers and beat, `mcp_stdio`) exports its spans over OTLP/HTTP, configured by
the standard `OTEL_*` variables, which the SDK reads itself: one server span per HTTP request (REST, MCP
Streamable HTTP, the admin), the MCP SDK's span per MCP request on every transport, a client span per call to
the ChittyID authority or an audit webhook, and a span per Celery task, joined into one trace through
`traceparent` headers. Spans carry no query string and no URL credentials: a credential must never reach a
tracing backend. Off, nothing is imported or wrapped, so tracing costs nothing.
"""

import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

from kernel import request_context

# Attributes naming a URL that the instrumentations fill in with its query string or credentials.
_URL_ATTRIBUTES = ("http.url", "url.full", "http.target")
_UNTRACED_PATHS = "/healthz,/readyz,/metrics"
_started = False
_starting = threading.Lock()


def start_tracing() -> None:
    """Once per process, when tracing is on: the SDK with an OTLP/HTTP exporter, and httpx and Celery
    instrumented. A forked Celery child keeps its parent's setup (the SDK restarts its export thread)."""
    global _started
    if not settings.TRACING_ENABLED:
        return
    with _starting:
        if _started:
            return
        _started = True
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()
    if resource.attributes.get(SERVICE_NAME, "").startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "chittyauth"}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    HTTPXClientInstrumentor().instrument(
        request_hook=_outgoing_request, async_request_hook=_outgoing_request_async
    )
    CeleryInstrumentor().instrument()


def traced_http(app: Any) -> Any:
    """`app` inside a server span per HTTP request when tracing is on; `app` itself otherwise."""
    if not settings.TRACING_ENABLED:
        return app
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(
        app,
        excluded_urls=_UNTRACED_PATHS,
        server_request_hook=_incoming_request,
        exclude_spans=["receive", "send"],
    )


def _incoming_request(span: Any, scope: dict) -> None:
    if not span.is_recording():
        return
    _strip_urls(span)
    if request_id := request_context.current().request_id:
        span.set_attribute("chittyauth.request_id", request_id)


def _outgoing_request(span: Any, request: Any) -> None:
    if span.is_recording():
        _strip_urls(span)


async def _outgoing_request_async(span: Any, request: Any) -> None:
    _outgoing_request(span, request)


def _strip_urls(span: Any) -> None:
    for name in _URL_ATTRIBUTES:
        value = span.attributes.get(name)
        if isinstance(value, str):
            span.set_attribute(name, without_query_or_credentials(value))
    if "url.query" in span.attributes:
        span.set_attribute("url.query", "")


def without_query_or_credentials(url: str) -> str:
    """`url` without its query string, fragment and `user:password@`."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
