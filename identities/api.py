"""REST adapters for identities and `whoami`: parse, call one service, render."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from identities.serializers import (
    IdentityListQuerySerializer,
    IdentitySerializer,
    RegisterIdentitySerializer,
    StatusChangeSerializer,
)
from kernel.rest import listed, validated, validated_query
from principals import services


class IdentityListView(APIView):
    @extend_schema(
        parameters=[IdentityListQuerySerializer],
        operation_id="api_v1_identities_list",
        responses=listed("IdentityList", "identities", IdentitySerializer),
    )
    def get(self, request: Request) -> Response:
        query = validated_query(IdentityListQuerySerializer, request)
        identities = services.list_identities(
            request.auth, status=query.get("status"), search=query["search"]
        )
        return Response({"identities": IdentitySerializer(identities, many=True).data})

    @extend_schema(request=RegisterIdentitySerializer, responses={201: IdentitySerializer})
    def post(self, request: Request) -> Response:
        data = validated(RegisterIdentitySerializer, request.data)
        identity = services.register_identity(
            request.auth, data["chitty_id"], display_name=data["display_name"]
        )
        return Response(IdentitySerializer(identity).data, status=201)


class IdentityDetailView(APIView):
    @extend_schema(responses=IdentitySerializer)
    def get(self, request: Request, chitty_id: str) -> Response:
        return Response(IdentitySerializer(services.show_identity(request.auth, chitty_id)).data)


class IdentityStatusView(APIView):
    """POST /identities/{id}/suspend or /reactivate."""

    change = None

    @extend_schema(request=StatusChangeSerializer, responses=IdentitySerializer)
    def post(self, request: Request, chitty_id: str) -> Response:
        data = validated(StatusChangeSerializer, request.data)
        identity = services.identity_to_manage(request.auth, chitty_id)
        changed = type(self).change(request.auth, identity, reason=data["reason"])
        return Response(IdentitySerializer(changed).data)


class SuspendIdentityView(IdentityStatusView):
    change = staticmethod(services.suspend_identity)


class ReactivateIdentityView(IdentityStatusView):
    change = staticmethod(services.reactivate_identity)


class WhoAmIView(APIView):
    @extend_schema(
        responses=inline_serializer(
            "WhoAmI",
            {
                "chitty_id": serializers.CharField(),
                "credential_type": serializers.CharField(),
                "credential_id": serializers.CharField(),
                "scopes": serializers.ListField(child=serializers.CharField()),
                "session_id": serializers.CharField(allow_null=True),
                "identity": IdentitySerializer(),
            },
        )
    )
    def get(self, request: Request) -> Response:
        caller = request.auth
        return Response(
            {
                "chitty_id": caller.chitty_id,
                "credential_type": caller.credential_type,
                "credential_id": caller.credential_id,
                "scopes": list(caller.scopes),
                "session_id": caller.session_id,
                "identity": IdentitySerializer(caller.identity).data,
            }
        )
