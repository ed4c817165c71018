"""REST adapters for grants and permission checks: parse, call one service, render."""

from typing import Any

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from grants import services
from grants.serializers import (
    BulkPermissionCheckSerializer,
    GrantListQuerySerializer,
    GrantRequestSerializer,
    GrantSerializer,
    PermissionCheckSerializer,
    bulk_outcome_as_dict,
    decision_as_dict,
)
from kernel.callers import Caller
from kernel.rest import AnswerView, listed, validated, validated_query


class GrantListView(APIView):
    @extend_schema(
        parameters=[GrantListQuerySerializer],
        operation_id="api_v1_grants_list",
        responses=listed("GrantList", "grants", GrantSerializer),
    )
    def get(self, request: Request) -> Response:
        query = validated_query(GrantListQuerySerializer, request)
        chitty_id = query.get("chitty_id") or request.auth.chitty_id
        grants = services.list_grants(request.auth, chitty_id, include_inactive=query["include_inactive"])
        return Response({"grants": GrantSerializer(grants, many=True).data})

    @extend_schema(request=GrantRequestSerializer, responses={201: GrantSerializer})
    def post(self, request: Request) -> Response:
        data = validated(GrantRequestSerializer, request.data)
        grant = services.grant_permission(
            request.auth,
            grantee_chitty_id=data["grantee_chitty_id"],
            permission=data["permission"],
            resource_id=data["resource"],
            expires_at=data["expires_at"],
            grantor_chitty_id=data.get("grantor_chitty_id"),
        )
        return Response(GrantSerializer(grant).data, status=201)


class GrantRevokeView(APIView):
    @extend_schema(request=None, responses=GrantSerializer)
    def post(self, request: Request, grant_id: int) -> Response:
        return Response(GrantSerializer(services.revoke_grant(request.auth, grant_id)).data)


def _decision_fields() -> dict:
    return {
        "allowed": serializers.BooleanField(),
        "chitty_id": serializers.CharField(),
        "permission": serializers.CharField(),
        "resource": serializers.CharField(),
        "grant_id": serializers.IntegerField(allow_null=True),
        "granted_permission": serializers.CharField(allow_null=True),
        "reason": serializers.CharField(),
    }


DECISION = inline_serializer("PermissionDecision", _decision_fields())

BULK_DECISIONS = inline_serializer(
    "PermissionDecisions",
    {
        "all_allowed": serializers.BooleanField(),
        "results": inline_serializer(
            "PermissionCheckResult",
            {
                **_decision_fields(),
                "error": inline_serializer(
                    "PermissionCheckError",
                    {"code": serializers.CharField(), "message": serializers.CharField()},
                    allow_null=True,
                ),
            },
            many=True,
        ),
    },
)


class PermissionCheckView(AnswerView):
    """One check (`chitty_id`, `permission`, `resource`), or many at once (`{"checks": [...]}`)."""

    input_serializer = PermissionCheckSerializer

    @classmethod
    def input_serializer_for(cls, data: Any) -> type[Serializer]:
        if isinstance(data, dict) and "checks" in data:
            return BulkPermissionCheckSerializer
        return PermissionCheckSerializer

    @staticmethod
    def answer(caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
        if "checks" in data:
            return bulk_outcome_as_dict(services.check_principal_permissions(caller, data["checks"]))
        decision = services.check_principal_permission(
            caller, data["chitty_id"], data["permission"], data["resource"]
        )
        return decision_as_dict(data["chitty_id"], decision)

    @extend_schema(
        request=PolymorphicProxySerializer(
            "PermissionCheckRequest",
            serializers=[PermissionCheckSerializer, BulkPermissionCheckSerializer],
            resource_type_field_name=None,
        ),
        responses=PolymorphicProxySerializer(
            "PermissionCheckAnswer", serializers=[DECISION, BULK_DECISIONS], resource_type_field_name=None
        ),
    )
    def post(self, request: Request) -> Response:
        return super().post(request)
