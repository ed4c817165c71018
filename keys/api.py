"""REST adapters for API keys and JWTs: parse, call one service, render."""

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kernel.callers import Caller
from kernel.rest import AnswerView, listed, validated, validated_query
from keys import services, tokens
from keys.serializers import (
    ApiKeySerializer,
    GenerateKeySerializer,
    GenerateTokenSerializer,
    KeyListQuerySerializer,
    RevokeKeySerializer,
    RevokeTokenSerializer,
    RotateKeySerializer,
    ValidateKeySerializer,
    ValidateTokenSerializer,
    issued_key_as_dict,
    issued_token_as_dict,
)

VERIFICATION = inline_serializer(
    "Verification",
    {
        "valid": serializers.BooleanField(),
        "code": serializers.CharField(),
        "key_id": serializers.CharField(allow_null=True),
        "chitty_id": serializers.CharField(allow_null=True),
        "scopes": serializers.ListField(child=serializers.CharField()),
        "expires_at": serializers.DateTimeField(allow_null=True),
    },
)
TOKEN_VERIFICATION = inline_serializer(
    "TokenVerification",
    {
        "valid": serializers.BooleanField(),
        "code": serializers.CharField(),
        "chitty_id": serializers.CharField(allow_null=True),
        "jti": serializers.CharField(allow_null=True),
        "scopes": serializers.ListField(child=serializers.CharField()),
        "expires_at": serializers.DateTimeField(allow_null=True),
        "claims": serializers.DictField(allow_null=True),
    },
)
TOKEN_REVOKED = inline_serializer(
    "TokenRevoked",
    {
        "revoked": serializers.BooleanField(),
        "jti": serializers.CharField(),
        "expires_at": serializers.DateTimeField(),
    },
)
SHOWN_ONCE = OpenApiResponse(description="The new key, including `api_key`, which is shown only this once")


class ApiKeyListView(APIView):
    @extend_schema(
        parameters=[KeyListQuerySerializer],
        operation_id="api_v1_keys_list",
        responses=listed("ApiKeyList", "keys", ApiKeySerializer),
    )
    def get(self, request: Request) -> Response:
        query = validated_query(KeyListQuerySerializer, request)
        keys = services.list_api_keys(
            request.auth, chitty_id=query.get("chitty_id"), include_revoked=query["include_revoked"]
        )
        return Response({"keys": ApiKeySerializer(keys, many=True).data})

    @extend_schema(request=GenerateKeySerializer, responses={201: SHOWN_ONCE})
    def post(self, request: Request) -> Response:
        data = validated(GenerateKeySerializer, request.data)
        issued = services.generate_api_key(
            request.auth,
            chitty_id=data.get("chitty_id") or request.auth.chitty_id,
            name=data["name"],
            scopes=data.get("scopes"),
            expires_at=data["expires_at"],
            environment=data["environment"],
        )
        return Response(issued_key_as_dict(issued), status=201)


class ApiKeyDetailView(APIView):
    @extend_schema(responses=ApiKeySerializer)
    def get(self, request: Request, key_id: str) -> Response:
        return Response(ApiKeySerializer(services.get_api_key(request.auth, key_id)).data)


KEY_USAGE = inline_serializer(
    "KeyUsage",
    {
        "key_id": serializers.CharField(),
        "hours": inline_serializer(
            "KeyUsageHour",
            {
                "hour": serializers.DateTimeField(),
                "outcomes": serializers.DictField(child=serializers.IntegerField()),
            },
            many=True,
        ),
    },
)


class ApiKeyUsageView(APIView):
    """Verifications of the key per hour and outcome code, last 30 days (hours without any left out)."""

    @extend_schema(responses=KEY_USAGE)
    def get(self, request: Request, key_id: str) -> Response:
        hours = services.key_usage(request.auth, key_id)
        return Response(
            {
                "key_id": key_id,
                "hours": [{"hour": row["hour"].isoformat(), "outcomes": row["outcomes"]} for row in hours],
            }
        )


class ApiKeyRevokeView(APIView):
    @extend_schema(request=RevokeKeySerializer, responses=ApiKeySerializer)
    def post(self, request: Request, key_id: str) -> Response:
        data = validated(RevokeKeySerializer, request.data)
        key = services.revoke_api_key(request.auth, key_id, reason=data["reason"])
        return Response(ApiKeySerializer(key).data)


class ApiKeyRotateView(APIView):
    @extend_schema(request=RotateKeySerializer, responses={201: SHOWN_ONCE})
    def post(self, request: Request, key_id: str) -> Response:
        data = validated(RotateKeySerializer, request.data)
        issued = services.rotate_api_key(request.auth, key_id, overlap_seconds=data["overlap_seconds"])
        return Response(issued_key_as_dict(issued), status=201)


@extend_schema(request=ValidateKeySerializer, responses=VERIFICATION)
class ApiKeyValidateView(AnswerView):
    """Check an API key: your own freely, anyone's with `api_keys:validate`. Refusals are audited."""

    input_serializer = ValidateKeySerializer

    @staticmethod
    def answer(caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
        return services.validate_api_key(caller, data["api_key"]).as_dict()


class TokenGenerateView(APIView):
    @extend_schema(
        request=GenerateTokenSerializer, responses={201: OpenApiResponse(description="The new JWT")}
    )
    def post(self, request: Request) -> Response:
        data = validated(GenerateTokenSerializer, request.data)
        issued = tokens.generate_jwt(
            request.auth,
            chitty_id=data.get("chitty_id") or request.auth.chitty_id,
            expires_in=data["expires_in"],
            claims=data["claims"],
            scopes=data.get("scopes"),
        )
        return Response(issued_token_as_dict(issued), status=201)


@extend_schema(request=ValidateTokenSerializer, responses=TOKEN_VERIFICATION)
class TokenValidateView(AnswerView):
    """Check a JWT issued here: your own freely, anyone's with `tokens:validate`. Refusals are audited."""

    input_serializer = ValidateTokenSerializer

    @staticmethod
    def answer(caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
        return tokens.validate_jwt(caller, data["token"]).as_dict()


class TokenRevokeView(APIView):
    @extend_schema(request=RevokeTokenSerializer, responses=TOKEN_REVOKED)
    def post(self, request: Request) -> Response:
        data = validated(RevokeTokenSerializer, request.data)
        revoked = tokens.revoke_jwt(
            request.auth, token=data.get("token"), jti=data.get("jti"), reason=data["reason"]
        )
        return Response({"revoked": True, "jti": revoked.jti, "expires_at": revoked.expires_at.isoformat()})
