from rest_framework import serializers

from identities.serializers import ChittyIdField
from kernel.rest import StrictCharField
from sessions.models import AuthSession


class SessionSerializer(serializers.ModelSerializer):
    chitty_id = serializers.CharField(source="principal.chitty_id")
    live = serializers.BooleanField(source="is_live", read_only=True)

    class Meta:
        model = AuthSession
        fields = [
            "session_id",
            "chitty_id",
            "credential_type",
            "credential_id",
            "channel",
            "client_address",
            "user_agent",
            "started_at",
            "last_seen_at",
            "expires_at",
            "ended_at",
            "end_reason",
            "ended_by",
            "live",
        ]


class SessionListQuerySerializer(serializers.Serializer):
    chitty_id = ChittyIdField(required=False)
    channel = serializers.ChoiceField(choices=AuthSession.Channel.values, required=False)
    active = serializers.BooleanField(required=False, allow_null=True, default=None)


class EndSessionSerializer(serializers.Serializer):
    reason = StrictCharField(max_length=255, required=False, allow_blank=True, default="")


class EndAllSessionsSerializer(serializers.Serializer):
    chitty_id = ChittyIdField(required=False)
    reason = StrictCharField(max_length=255, required=False, allow_blank=True, default="")
    keep_current = serializers.BooleanField(required=False, default=False)
