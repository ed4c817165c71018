from rest_framework import serializers

from grants.checks import Decision
from grants.models import Grant
from grants.services import MAX_BULK_CHECKS, CheckOutcome, PermissionQuery
from identities.serializers import ChittyIdField
from kernel.rest import StrictCharField


class GrantRequestSerializer(serializers.Serializer):
    grantee_chitty_id = ChittyIdField()
    permission = StrictCharField(max_length=200)
    resource = StrictCharField(max_length=255, required=False, allow_blank=True, default="")
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    grantor_chitty_id = StrictCharField(max_length=128, required=False, allow_blank=True, allow_null=True)


class GrantSerializer(serializers.ModelSerializer):
    chitty_id = serializers.CharField(source="principal.chitty_id")
    resource = serializers.CharField(source="resource_id")
    active = serializers.BooleanField(source="is_live", read_only=True)

    class Meta:
        model = Grant
        fields = [
            "id",
            "chitty_id",
            "permission",
            "resource",
            "expires_at",
            "granted_by",
            "created_at",
            "revoked_at",
            "revoked_by",
            "active",
        ]


class GrantListQuerySerializer(serializers.Serializer):
    chitty_id = ChittyIdField(required=False)
    include_inactive = serializers.BooleanField(required=False, default=False)


class PermissionCheckSerializer(serializers.Serializer):
    # Any string: a malformed ChittyID is an answer (not allowed, INVALID_CHITTY_ID), not a refused request.
    chitty_id = StrictCharField(max_length=128)
    permission = StrictCharField(max_length=200)
    resource = StrictCharField(max_length=255, required=False, allow_blank=True, default="")


class BulkPermissionCheckSerializer(serializers.Serializer):
    checks = serializers.ListField(
        child=PermissionCheckSerializer(), min_length=1, max_length=MAX_BULK_CHECKS
    )

    def validate_checks(self, checks: list[dict]) -> list[PermissionQuery]:
        return [
            PermissionQuery(check["chitty_id"], check["permission"], check["resource"]) for check in checks
        ]


def decision_as_dict(chitty_id: str, decision: Decision) -> dict:
    return {
        "allowed": decision.allowed,
        "chitty_id": chitty_id,
        "permission": decision.permission,
        "resource": decision.resource_id,
        "grant_id": decision.grant.grant_id if decision.grant else None,
        "granted_permission": decision.grant.permission if decision.grant else None,
        "reason": decision.reason,
    }


def outcome_as_dict(outcome: CheckOutcome) -> dict:
    """A decision's fields either way, so a check that failed reads as not allowed, plus its error (or null)."""
    query = outcome.query
    if outcome.decision is not None:
        return {**decision_as_dict(query.chitty_id, outcome.decision), "error": None}
    return {
        "allowed": False,
        "chitty_id": query.chitty_id,
        "permission": query.permission,
        "resource": query.resource_id,
        "grant_id": None,
        "granted_permission": None,
        "reason": outcome.error.message,
        "error": outcome.error.as_dict(),
    }


def bulk_outcome_as_dict(outcomes: list[CheckOutcome]) -> dict:
    return {
        "all_allowed": all(outcome.allowed for outcome in outcomes),
        "results": [outcome_as_dict(outcome) for outcome in outcomes],
    }
