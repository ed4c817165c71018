from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from identities.chitty_ids import MAX_LENGTH
from identities.models import Identity
from kernel.rest import StrictCharField


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": MAX_LENGTH, "pattern": "^[A-Z0-9-]+$"})
class ChittyIdField(StrictCharField):
    """A ChittyID as sent. Its structure is checked by `parse_chitty_id` in the service, whose messages say
    what is wrong (INVALID_CHITTY_ID); the schema carries the alphabet so clients and fuzzers know it."""

    def __init__(self, **kwargs) -> None:
        super().__init__(max_length=MAX_LENGTH, trim_whitespace=False, **kwargs)


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
    chitty_id = ChittyIdField()
    display_name = StrictCharField(max_length=200, required=False, allow_blank=True, default="")


class IdentityListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Identity.Status.values, required=False)
    search = StrictCharField(max_length=128, required=False, allow_blank=True, default="")


class StatusChangeSerializer(serializers.Serializer):
    reason = StrictCharField(max_length=255, required=False, allow_blank=True, default="")
