from rest_framework import serializers

from identities.models import Identity


class IdentitySerializer(serializers.ModelSerializer):
    class Meta:
        model = Identity
        fields = [
            "chitty_id",
            "entity_type",
            "display_name",
            "status",
            "status_reason",
            "source",
            "last_validated_at",
            "created_at",
        ]


class RegisterIdentitySerializer(serializers.Serializer):
    chitty_id = serializers.CharField(max_length=128, trim_whitespace=False)
    display_name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class IdentityListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Identity.Status.values, required=False)
    search = serializers.CharField(max_length=128, required=False, default="")


class StatusChangeSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
