"""OpenTelemetry traces, off unless an OTLP endpoint is set (README "Traces"). Started by each process's entry
point: `chittyauth_site/asgi.py`, `chittyauth_site/celery.py`, `mcp_stdio`.

On, every process (daphne, Celery workers and beat, `mcp_stdio`) exports its spans over OTLP/HTTP, configured by
the standard `OTEL_*` variables, which the SDK reads itself: one server span per HTTP request (REST, MCP
Streamable HTTP, the admin), the MCP SDK's span per MCP request on every transport, a client span per call to
the ChittyID authority or an audit webhook, and a span per Celery task, joined into one trace through W3C
`traceparent` headers. A credential must never reach a tracing backend, so every span is cleaned on its way
out: no query string or `user:password@` in a URL, no captured header, and every name, attribute, event and
status masked as log lines are (`kernel/masking.py`), whatever the instrumentations put there.
"""

import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

from kernel import request_context
from kernel.masking import mask_secret_string

# Attributes naming a URL that the instrumentations fill in with its query string or credentials.
_URL_ATTRIBUTES = ("http.url", "url.full", "http.target")
_UNTRACED = r"^https?://[^/]+/(healthz|readyz|metrics)/?(\?.*)?$"
_started = False
_starting = threading.Lock()


def start_tracing() -> None:
    """Once per process, when tracing is on: the SDK with a cleaning OTLP/HTTP exporter, W3C trace context
    only (a caller's baggage is not passed on), and httpx and Celery instrumented. A forked Celery child keeps
    its parent's setup (the SDK restarts its export thread)."""
    global _started
    if not settings.TRACING_ENABLED:
        return
    with _starting:
        if _started:
            return
        _started = True
    from opentelemetry import propagate, trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    resource = Resource.create()
    if resource.attributes.get(SERVICE_NAME, "").startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "chittyauth"}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(_cleaning_exporter(OTLPSpanExporter())))
    trace.set_tracer_provider(provider)
    propagate.set_global_textmap(TraceContextTextMapPropagator())
    HTTPXClientInstrumentor().instrument(
        request_hook=_outgoing_request, async_request_hook=_outgoing_request_async
    )
    CeleryInstrumentor().instrument()


def flush_traces() -> None:
    """Export what is buffered now: for a process about to end without its exit handlers (a Celery child)."""
    if _started:
        from opentelemetry import trace

        trace.get_tracer_provider().force_flush()


def traced_http(app: Any) -> Any:
    """`app` inside a server span per HTTP request when tracing is on; `app` itself otherwise."""
    if not settings.TRACING_ENABLED:
        return app
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(
        app,
        excluded_urls=_UNTRACED,
        default_span_details=_span_name,
        server_request_hook=_incoming_request,
        exclude_spans=["receive", "send"],
    )


def _span_name(scope: dict) -> tuple[str, dict]:
    """The method alone: a path can hold what a client wrongly put there (a key where a key id belongs)."""
    return scope.get("method", "HTTP"), {}


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


def cleaned_attributes(attributes: Any) -> dict:
    """No captured header (`OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*` would put `authorization` there), and
    every text masked."""
    return {
        name: _masked(value)
        for name, value in (attributes or {}).items()
        if ".header." not in name and not name.startswith("http.request.header")
    }


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_secret_string(value)
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        return tuple(_masked(item) for item in value)
    return value


def _cleaning_exporter(exporter: Any) -> Any:
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Status

    def cleaned(span: ReadableSpan) -> ReadableSpan:
        status = span.status
        if status.description:
            status = Status(status.status_code, mask_secret_string(status.description))
        return ReadableSpan(
            name=mask_secret_string(span.name),
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=cleaned_attributes(span.attributes),
            events=[
                Event(mask_secret_string(event.name), cleaned_attributes(event.attributes), event.timestamp)
                for event in span.events
            ],
            links=span.links,
            kind=span.kind,
            instrumentation_scope=span.instrumentation_scope,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
        )

    class CleaningExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> Any:
            return exporter.export([cleaned(span) for span in spans])

        def shutdown(self) -> None:
            exporter.shutdown()

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            return exporter.force_flush(timeout_millis)

    return CleaningExporter()
