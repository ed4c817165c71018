"""`GET /metrics`: the Prometheus exposition of kernel/metrics.py's series, for a bearer holding `metrics:read`.

With `PROMETHEUS_MULTIPROC_DIR` set, the answer adds up what every process of the node wrote there (daphne,
`mcp_stdio`, Celery workers); without it, this process's own series and its process metrics. Figures that
belong to the whole service rather than a process (live sessions, the audit chain) are read from the database
at each scrape, so every node reports the same.
"""

from collections.abc import Iterator

from django.conf import settings
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

from audit.selectors import chain_length, last_checkpoint_sequence
from grants.checks import authorize
from sessions.services import count_live_sessions


class ServiceStateCollector:
    """The service-wide gauges, read from the database when scraped."""

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "chittyauth_sessions_live", "Sessions not ended and not expired.", value=count_live_sessions()
        )
        yield GaugeMetricFamily(
            "chittyauth_audit_chain_length",
            "Events in the audit chain (its head's sequence).",
            value=chain_length(),
        )
        yield GaugeMetricFamily(
            "chittyauth_audit_last_checkpoint_sequence",
            "The audit sequence the newest signed checkpoint covers.",
            value=last_checkpoint_sequence(),
        )


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
            (200, "text/plain"): OpenApiResponse(OpenApiTypes.STR, description="Prometheus text format")
        }
    )
    def get(self, request: Request) -> HttpResponse:
        if not settings.METRICS_ENABLED:
            raise Http404
        authorize(request.auth, "metrics:read")
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return HttpResponse(encoder(scrape_registry()), content_type=content_type)
