"""Granting and revoking permissions, and answering questions about a principal's grants.

Every change invalidates its principal's topic inside its transaction, so that principal's cached checks
everywhere see it on their next call (and no other principal's are dropped).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from audit.services import record
from grants.checks import (
    Decision,
    authorize,
    authorize_acting_on,
    authorized_principal,
    caller_covers,
    check_registered_permission,
)
from grants.models import Grant
from grants.permissions import WILDCARD, never_resource_limited, parse_pattern
from identities.chitty_ids import parse_chitty_id
from identities.selectors import get_identity
from kernel.callers import Caller
from kernel.errors import NotFound, PermissionDenied, ServiceError, ValidationFailed
from kernel.invalidation import invalidate, principal_topic
from kernel.metrics import PERMISSION_CHECKS, counted_when_answered


def grant_permission(
    caller: Caller,
    *,
    grantee_chitty_id: str,
    permission: str,
    resource_id: str = "",
    expires_at: datetime | None = None,
    grantor_chitty_id: str | None = None,
) -> Grant:
    """Grant `permission` to a principal. The grantor is always the caller: a claimed other grantor is refused."""
    if grantor_chitty_id not in (None, "") and grantor_chitty_id != caller.chitty_id:
        record(
            "authorization.grant",
            outcome="denied",
            actor=caller.actor,
            target=grantee_chitty_id,
            client_address=caller.client_address,
            details={"permission": permission, "claimed_grantor": grantor_chitty_id},
        )
        raise PermissionDenied(
            "grantor_chitty_id must be your own ChittyID: grants are always made in the caller's name",
            code="GRANTOR_MISMATCH",
        )
    parse_pattern(permission)
    resource_id = _clean_resource_id(resource_id)
    if resource_id and never_resource_limited(permission):
        raise ValidationFailed(
            f"{permission} is checked on no particular resource, so a grant of it limited to {resource_id!r} "
            "would never allow anything: grant it without a resource",
            code="RESOURCE_NOT_APPLICABLE",
        )
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationFailed("expires_at must be in the future", code="INVALID_EXPIRY")
    parse_chitty_id(grantee_chitty_id)
    authorize(caller, "authorizations:grant", target=grantee_chitty_id)
    grantee = get_identity(grantee_chitty_id)
    if not grantee.is_active:
        raise ValidationFailed(f"{grantee.chitty_id} is {grantee.status}", code="IDENTITY_SUSPENDED")
    if not caller_covers(caller, permission, resource_id):
        record(
            "authorization.grant",
            outcome="denied",
            actor=caller.actor,
            target=grantee.chitty_id,
            client_address=caller.client_address,
            details={"permission": permission, "resource_id": resource_id, "reason": "escalation"},
        )
        raise PermissionDenied(
            f"You cannot grant {permission} because you do not hold it yourself",
            code="ESCALATION_REFUSED",
            permission=permission,
        )
    with transaction.atomic():
        grant = Grant.objects.create(
            principal=grantee,
            permission=permission,
            resource_id=resource_id,
            expires_at=expires_at,
            granted_by=caller.actor,
        )
        record(
            "authorization.grant",
            actor=caller.actor,
            target=grantee.chitty_id,
            client_address=caller.client_address,
            details={
                "grant_id": grant.pk,
                "permission": permission,
                "resource_id": resource_id,
                "expires_at": expires_at.isoformat() if expires_at else None,
                "exempt": caller.is_exempt,
            },
        )
        invalidate(principal_topic(grantee.chitty_id))
    return grant


def revoke_grant(caller: Caller, grant_id: int) -> Grant:
    """Revoke one grant (`authorizations:revoke`, checked before the lookup: grant ids are sequential, so a
    refusal must not tell which exist). Idempotent: revoking a revoked grant answers with it unchanged."""
    authorize(caller, "authorizations:revoke", target=f"grant:{grant_id}"[:128])
    grant = Grant.objects.select_related("principal").filter(pk=grant_id).first()
    if grant is None:
        raise NotFound(f"No grant {grant_id}", code="GRANT_NOT_FOUND")
    if grant.revoked_at is not None:
        return grant
    with transaction.atomic():
        grant.revoked_at, grant.revoked_by = timezone.now(), caller.actor
        grant.save(update_fields=["revoked_at", "revoked_by"])
        record(
            "authorization.revoke",
            actor=caller.actor,
            target=grant.principal.chitty_id,
            client_address=caller.client_address,
            details={"grant_id": grant.pk, "permission": grant.permission, "resource_id": grant.resource_id},
        )
        invalidate(principal_topic(grant.principal.chitty_id))
    return grant


def list_grants(caller: Caller, chitty_id: str, *, include_inactive: bool = False) -> list[Grant]:
    """A principal's grants: your own freely, anyone's with `permissions:check`."""
    identity = authorized_principal(caller, "permissions:check", chitty_id)
    grants = Grant.objects.filter(principal=identity).select_related("principal")
    if not include_inactive:
        grants = grants.filter(revoked_at__isnull=True).exclude(expires_at__lte=timezone.now())
    return list(grants)


def check_principal_permission(
    caller: Caller, chitty_id: str, permission: str, resource_id: str = ""
) -> Decision:
    """The seed's `check_permission`: your own freely, another principal's with `permissions:check`."""
    authorize_acting_on(caller, "permissions:check", chitty_id)
    if permission != WILDCARD and ":" not in str(permission):
        raise ValidationFailed(
            f"Invalid permission {permission!r}: use resource:action", code="INVALID_PERMISSION"
        )
    parse_pattern(permission)
    decision = check_registered_permission(chitty_id, permission, _clean_resource_id(resource_id))
    counted_when_answered(PERMISSION_CHECKS, "allowed" if decision.allowed else "denied")
    return decision


MAX_BULK_CHECKS = 100


@dataclass(frozen=True)
class PermissionQuery:
    chitty_id: str
    permission: str
    resource_id: str = ""


@dataclass(frozen=True)
class CheckOutcome:
    """One answer of a bulk check: a decision, or the error that check alone ran into."""

    query: PermissionQuery
    decision: Decision | None = None
    error: ServiceError | None = None

    @property
    def allowed(self) -> bool:
        return self.decision is not None and self.decision.allowed


def check_principal_permissions(caller: Caller, queries: Sequence[PermissionQuery]) -> list[CheckOutcome]:
    """Many checks in one call, as SpiceDB's CheckBulkPermissions: each is judged by the single check's rules
    and answered on its own, so a refused or malformed one (never allowed) does not hide the others."""
    if not 1 <= len(queries) <= MAX_BULK_CHECKS:
        raise ValidationFailed(
            f"checks must hold 1 to {MAX_BULK_CHECKS} checks, not {len(queries)}", code="INVALID_CHECKS"
        )
    outcomes = []
    for query in queries:
        try:
            decision = check_principal_permission(
                caller, query.chitty_id, query.permission, query.resource_id
            )
        except ServiceError as error:
            outcomes.append(CheckOutcome(query, error=error))
        else:
            outcomes.append(CheckOutcome(query, decision=decision))
    return outcomes


def _clean_resource_id(resource_id: str | None) -> str:
    resource_id = resource_id or ""
    if not isinstance(resource_id, str) or len(resource_id) > 255:
        raise ValidationFailed("resource must be a string of at most 255 characters", code="INVALID_RESOURCE")
    return resource_id
