from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from identities.serializers import ChittyIdField
from kernel.rest import StrictCharField
from keys.models import ApiKey
from keys.services import IssuedApiKey
from keys.tokens import IssuedToken


class ApiKeySerializer(serializers.ModelSerializer):
    """A key's public face: never its secret or hash."""

    chitty_id = serializers.CharField(source="principal.chitty_id")
    rotated_from = serializers.CharField(source="rotated_from.key_id", default=None, allow_null=True)

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
    chitty_id = ChittyIdField(required=False)
    name = StrictCharField(max_length=200, required=False, allow_blank=True, default="")
    scopes = serializers.ListField(child=StrictCharField(max_length=200), required=False, max_length=50)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    environment = serializers.ChoiceField(choices=ApiKey.Environment.values, default=ApiKey.Environment.LIVE)


class KeyListQuerySerializer(serializers.Serializer):
    chitty_id = ChittyIdField(required=False)
    include_revoked = serializers.BooleanField(required=False, default=False)


class ValidateKeySerializer(serializers.Serializer):
    api_key = StrictCharField(max_length=512, trim_whitespace=False)


class RevokeKeySerializer(serializers.Serializer):
    reason = StrictCharField(max_length=255, required=False, allow_blank=True, default="")


class RotateKeySerializer(serializers.Serializer):
    overlap_seconds = serializers.IntegerField(required=False, allow_null=True, default=None)


MAX_EXPIRES_IN_CHARS = 32


@extend_schema_field(
    {
        "oneOf": [
            {"type": "integer", "minimum": 1, "description": "seconds"},
            {"type": "string", "maxLength": MAX_EXPIRES_IN_CHARS, "example": "15m"},
        ]
    }
)
class ExpiresInField(serializers.Field):
    """Seconds as a number, or text such as `15m`: handed to `parse_expires_in` as sent, which knows the rules
    (and says what is wrong in one place for REST and MCP alike)."""

    default_error_messages = {"invalid": "Must be a number of seconds or a string such as 15m, 24h or 7d."}

    def to_internal_value(self, data: object) -> int | str:
        if (
            isinstance(data, bool)
            or not isinstance(data, int | str)
            or (isinstance(data, str) and len(data) > MAX_EXPIRES_IN_CHARS)
        ):
            self.fail("invalid")
        return data

    def to_representation(self, value: object) -> object:
        return value


class GenerateTokenSerializer(serializers.Serializer):
    chitty_id = ChittyIdField(required=False)
    expires_in = ExpiresInField(required=False, allow_null=True, default=None)
    claims = serializers.DictField(required=False, default=dict)
    scopes = serializers.ListField(child=StrictCharField(max_length=200), required=False, max_length=50)


class ValidateTokenSerializer(serializers.Serializer):
    token = StrictCharField(max_length=8192, trim_whitespace=False)


class RevokeTokenSerializer(serializers.Serializer):
    token = StrictCharField(max_length=8192, required=False, trim_whitespace=False)
    jti = StrictCharField(max_length=64, required=False)
    reason = StrictCharField(max_length=255, required=False, allow_blank=True, default="")

    def validate(self, attrs: dict) -> dict:
        if not attrs.get("token") and not attrs.get("jti"):
            raise serializers.ValidationError("Give the token or its jti")
        return attrs
