"""REST adapter for reading the audit trail (`audit:read`)."""

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.selectors import list_checkpoints, list_events
from audit.serializers import (
    AuditCheckpointSerializer,
    AuditEventSerializer,
    AuditQuerySerializer,
    CheckpointQuerySerializer,
)
from grants.checks import authorize
from kernel.rest import listed, validated_query


class AuditEventListView(APIView):
    @extend_schema(
        parameters=[AuditQuerySerializer],
        operation_id="api_v1_audit_events_list",
        responses=listed("AuditEventList", "events", AuditEventSerializer),
    )
    def get(self, request: Request) -> Response:
        query = validated_query(AuditQuerySerializer, request)
        limit = query.pop("limit")
        authorize(request.auth, "audit:read")
        events = list_events(**query)[:limit]
        return Response({"events": AuditEventSerializer(events, many=True).data})


class AuditCheckpointListView(APIView):
    """The signed checkpoints of the chain (`keys/checkpoints.py`), for outside parties to keep."""

    @extend_schema(
        parameters=[CheckpointQuerySerializer],
        operation_id="api_v1_audit_checkpoints_list",
        responses=listed("AuditCheckpointList", "checkpoints", AuditCheckpointSerializer),
    )
    def get(self, request: Request) -> Response:
        query = validated_query(CheckpointQuerySerializer, request)
        limit = query.pop("limit")
        authorize(request.auth, "audit:read")
        checkpoints = list_checkpoints(**query)[:limit]
        return Response({"checkpoints": AuditCheckpointSerializer(checkpoints, many=True).data})
