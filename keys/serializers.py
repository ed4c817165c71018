from rest_framework import serializers

from keys.models import ApiKey
from keys.services import IssuedApiKey
from keys.tokens import IssuedToken


class ApiKeySerializer(serializers.ModelSerializer):
    """A key's public face: never its secret or hash."""

    chitty_id = serializers.CharField(source="principal.chitty_id")
    rotated_from = serializers.CharField(source="rotated_from.key_id", default=None)

    class Meta:
        model = ApiKey
        fields = [
            "key_id",
            "chitty_id",
            "name",
            "environment",
            "display_prefix",
            "scopes",
            "created_by",
            "created_at",
            "expires_at",
            "revoked_at",
            "revoked_by",
            "revoke_reason",
            "rotated_from",
            "last_used_at",
            "use_count",
        ]


def issued_key_as_dict(issued: IssuedApiKey) -> dict:
    return {
        **ApiKeySerializer(issued.api_key).data,
        "api_key": issued.secret,
        "notice": "Store this key now: it is shown once and cannot be read back.",
    }


def issued_token_as_dict(issued: IssuedToken) -> dict:
    return {
        "token": issued.token,
        "token_type": "Bearer",
        "jti": issued.jti,
        "chitty_id": issued.chitty_id,
        "expires_at": issued.expires_at.isoformat(),
        "algorithm": issued.algorithm,
        "kid": issued.kid,
        "scopes": list(issued.scopes),
    }


class GenerateKeySerializer(serializers.Serializer):
    chitty_id = serializers.CharField(max_length=128, required=False)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    scopes = serializers.ListField(child=serializers.CharField(max_length=200), required=False, max_length=50)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    environment = serializers.ChoiceField(choices=ApiKey.Environment.values, default=ApiKey.Environment.LIVE)


class KeyListQuerySerializer(serializers.Serializer):
    chitty_id = serializers.CharField(max_length=128, required=False)
    include_revoked = serializers.BooleanField(required=False, default=False)


class ValidateKeySerializer(serializers.Serializer):
    api_key = serializers.CharField(max_length=512, trim_whitespace=False)


class RevokeKeySerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


class RotateKeySerializer(serializers.Serializer):
    overlap_seconds = serializers.IntegerField(required=False, allow_null=True, default=None)


class GenerateTokenSerializer(serializers.Serializer):
    chitty_id = serializers.CharField(max_length=128, required=False)
    expires_in = serializers.CharField(max_length=32, required=False, allow_null=True, default=None)
    claims = serializers.DictField(required=False, default=dict)
    scopes = serializers.ListField(child=serializers.CharField(max_length=200), required=False, max_length=50)


class ValidateTokenSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=8192, trim_whitespace=False)


class RevokeTokenSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=8192, required=False, trim_whitespace=False)
    jti = serializers.CharField(max_length=64, required=False)
    reason = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")

    def validate(self, attrs: dict) -> dict:
        if not attrs.get("token") and not attrs.get("jti"):
            raise serializers.ValidationError("Give the token or its jti")
        return attrs
