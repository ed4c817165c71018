"""REST adapters for sessions: parse, call one service, render."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kernel.rest import listed, validated, validated_query
from sessions import services
from sessions.serializers import (
    EndAllSessionsSerializer,
    EndSessionSerializer,
    SessionListQuerySerializer,
    SessionSerializer,
)

MAX_LISTED = 500


class SessionListView(APIView):
    @extend_schema(
        parameters=[SessionListQuerySerializer],
        operation_id="api_v1_sessions_list",
        responses=listed("SessionList", "sessions", SessionSerializer),
    )
    def get(self, request: Request) -> Response:
        query = validated_query(SessionListQuerySerializer, request)
        sessions = services.list_sessions(
            request.auth,
            chitty_id=query.get("chitty_id"),
            channel=query.get("channel"),
            active=query["active"],
        )
        return Response({"sessions": SessionSerializer(sessions[:MAX_LISTED], many=True).data})


class SessionEndView(APIView):
    @extend_schema(request=EndSessionSerializer, responses=SessionSerializer)
    def post(self, request: Request, session_id: str) -> Response:
        data = validated(EndSessionSerializer, request.data)
        return Response(
            SessionSerializer(services.end_session(request.auth, session_id, reason=data["reason"])).data
        )


class SessionEndAllView(APIView):
    @extend_schema(
        request=EndAllSessionsSerializer,
        responses=inline_serializer("SessionsEnded", {"ended": serializers.IntegerField()}),
    )
    def post(self, request: Request) -> Response:
        data = validated(EndAllSessionsSerializer, request.data)
        ended = services.end_principal_sessions(
            request.auth,
            data.get("chitty_id") or request.auth.chitty_id,
            reason=data["reason"],
            keep_current=data["keep_current"],
        )
        return Response({"ended": ended})
