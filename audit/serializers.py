from rest_framework import serializers

from audit.models import AuditCheckpoint, AuditEvent
from kernel.rest import StrictCharField


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "sequence",
            "created_at",
            "actor",
            "action",
            "target",
            "outcome",
            "client_address",
            "details",
            "prev_hash",
            "hash",
        ]


class AuditQuerySerializer(serializers.Serializer):
    actor = StrictCharField(max_length=255, required=False, allow_blank=True, default="")
    action = StrictCharField(max_length=100, required=False, allow_blank=True, default="")
    target = StrictCharField(max_length=255, required=False, allow_blank=True, default="")
    outcome = serializers.ChoiceField(choices=AuditEvent.Outcome.values, required=False, default="")
    since = serializers.DateTimeField(required=False, default=None)
    after_sequence = serializers.IntegerField(required=False, default=None, min_value=0)
    limit = serializers.IntegerField(required=False, default=100, min_value=1, max_value=1000)


class AuditCheckpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditCheckpoint
        fields = ["sequence", "hash", "created_at", "kid", "token"]


class CheckpointQuerySerializer(serializers.Serializer):
    after_sequence = serializers.IntegerField(required=False, default=None, min_value=0)
    limit = serializers.IntegerField(required=False, default=100, min_value=1, max_value=1000)
