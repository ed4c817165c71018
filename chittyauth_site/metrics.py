"""`GET /metrics`: the Prometheus exposition of kernel/metrics.py's series, for a bearer holding `metrics:read`.

With `PROMETHEUS_MULTIPROC_DIR` set, the answer adds up what every process of the node wrote there (daphne,
`mcp_stdio`, Celery workers); without it, this process's own series and its process metrics. Figures that
belong to the whole service rather than a process (live sessions, the audit chain) are read from the database
at each scrape, so every node reports the same.
"""

import logging
from collections.abc import Iterator

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.views import APIView

from audit.selectors import chain_length, export_pending_by_sink, last_checkpoint_sequence
from audit.sinks import configured_sink_names
from grants.checks import authorize
from sessions.services import count_live_sessions

logger = logging.getLogger(__name__)


class ServiceStateCollector:
    """The service-wide gauges, read from the database when scraped. With the database down a scrape still
    answers with every process's series: these are left out and `chittyauth_database_readable` says why."""

    def collect(self) -> Iterator[Metric]:
        try:
            state = [
                GaugeMetricFamily(
                    "chittyauth_sessions_live",
                    "Sessions not ended and not expired.",
                    value=count_live_sessions(),
                ),
                GaugeMetricFamily(
                    "chittyauth_audit_chain_length",
                    "Events in the audit chain (its head's sequence).",
                    value=chain_length(),
                ),
                GaugeMetricFamily(
                    "chittyauth_audit_last_checkpoint_sequence",
                    "The audit sequence the newest signed checkpoint covers.",
                    value=last_checkpoint_sequence(),
                ),
                _export_pending(),
            ]
        except (OperationalError, InterfaceError) as exc:
            logger.warning("Metrics scrape without the database's figures: %s", type(exc).__name__)
            state = []
        yield GaugeMetricFamily(
            "chittyauth_database_readable",
            "1 when this scrape read the service-wide figures from the database, 0 when it could not.",
            value=1 if state else 0,
        )
        yield from state


def _export_pending() -> GaugeMetricFamily:
    pending = GaugeMetricFamily(
        "chittyauth_audit_export_pending",
        "Audit events recorded but not yet delivered, per configured export sink.",
        labels=["sink"],
    )
    for sink, count in export_pending_by_sink(configured_sink_names()).items():
        pending.add_metric([sink], count)
    return pending


def scrape_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    if settings.METRICS_MULTIPROCESS_DIR:
        MultiProcessCollector(registry, path=settings.METRICS_MULTIPROCESS_DIR)
    else:
        registry.register(REGISTRY)
    registry.register(ServiceStateCollector())
    return registry


class ErrorsAsJson(BaseContentNegotiation):
    """Refusals are JSON like every other error here, whatever the scraper accepts; the metrics themselves are
    encoded as the scraper asks (Prometheus text or OpenMetrics)."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class MetricsView(APIView):
    content_negotiation_class = ErrorsAsJson

    @extend_schema(
        responses={
            (200, "text/plain"): OpenApiResponse(OpenApiTypes.STR, description="Prometheus text format"),
            404: OpenApiResponse(description="Metrics are switched off (METRICS_ENABLED=false)"),
        }
    )
    def get(self, request: Request) -> HttpResponse:
        if not settings.METRICS_ENABLED:
            raise Http404
        authorize(request.auth, "metrics:read")
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return HttpResponse(encoder(scrape_registry()), content_type=content_type)
