"""Granting, revoking and checking permissions.

Checks are on the hot path of every request, so each process keeps a principal's live grants and its recent
decisions in memory, tagged with the shared security epoch: any grant, revocation or status change anywhere
bumps the epoch and the next check reloads from the database. Expiry is judged against the clock on
every check, so an expired grant never allows, even before cleanup deletes it.
"""

import threading
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from audit.services import record
from chittyauth_site.errors import NotFound, PermissionDenied, ValidationFailed
from grants.callers import Caller
from grants.models import Grant
from grants.permissions import WILDCARD, covers, parse_pattern
from identities.invalidation import bump_epoch, current_epoch
from identities.models import Identity
from identities.services import get_identity

MAX_CACHED_PRINCIPALS = 10_000
MAX_CACHED_DECISIONS = 256


@dataclass(frozen=True)
class LiveGrant:
    grant_id: int
    permission: str
    resource_id: str
    expires_at: datetime | None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    permission: str
    resource_id: str = ""
    grant: LiveGrant | None = None
    reason: str = ""


class _PrincipalGrants:
    __slots__ = ("decisions", "epoch", "grants", "is_active")

    def __init__(self, epoch: int, is_active: bool, grants: list[LiveGrant]) -> None:
        self.epoch = epoch
        self.is_active = is_active
        self.grants = grants
        self.decisions: dict[tuple[str, str], Decision] = {}


_cache: dict[int, _PrincipalGrants] = {}
_cache_lock = threading.Lock()


def _load(identity_pk: int, epoch: int) -> _PrincipalGrants:
    now = timezone.now()
    status = Identity.objects.filter(pk=identity_pk).values_list("status", flat=True).first()
    rows = Grant.objects.filter(principal_id=identity_pk, revoked_at__isnull=True).exclude(
        expires_at__lte=now
    )
    grants = [
        LiveGrant(pk, permission, resource_id, expires_at)
        for pk, permission, resource_id, expires_at in rows.values_list(
            "pk", "permission", "resource_id", "expires_at"
        )
    ]
    return _PrincipalGrants(epoch, status == Identity.Status.ACTIVE, grants)


def _principal_grants(identity_pk: int) -> _PrincipalGrants:
    epoch = current_epoch()
    entry = _cache.get(identity_pk)
    if entry is None or entry.epoch != epoch:
        entry = _load(identity_pk, epoch)
        with _cache_lock:
            if len(_cache) >= MAX_CACHED_PRINCIPALS:
                _cache.clear()
            _cache[identity_pk] = entry
    return entry


def _decide(entry: _PrincipalGrants, permission: str, resource_id: str, now: datetime) -> Decision:
    if not entry.is_active:
        return Decision(False, permission, resource_id, reason="identity is not active")
    for grant in entry.grants:
        if grant.expires_at is not None and grant.expires_at <= now:
            continue
        if grant.resource_id and grant.resource_id != resource_id:
            continue
        if covers(grant.permission, permission):
            return Decision(True, permission, resource_id, grant)
    return Decision(False, permission, resource_id, reason="no live grant covers it")


def check_permission(identity: Identity, permission: str, resource_id: str = "") -> Decision:
    """Does the principal hold `permission` (on `resource_id`, if given) right now, by its grants alone?"""
    entry = _principal_grants(identity.pk)
    now = timezone.now()
    key = (permission, resource_id)
    decision = entry.decisions.get(key)
    if decision is not None and (
        not decision.allowed or decision.grant.expires_at is None or decision.grant.expires_at > now
    ):
        return decision
    decision = _decide(entry, permission, resource_id, now)
    if len(entry.decisions) >= MAX_CACHED_DECISIONS:
        entry.decisions.clear()
    entry.decisions[key] = decision
    return decision


def scopes_allow(scopes: tuple[str, ...], permission: str) -> bool:
    return any(covers(scope, permission) for scope in scopes)


def caller_may(caller: Caller, permission: str, resource_id: str = "") -> bool:
    """Effective permission: the principal's grants intersected with the credential's scopes."""
    if caller.is_exempt:
        return True
    if caller.identity is None or not scopes_allow(caller.scopes, permission):
        return False
    return check_permission(caller.identity, permission, resource_id).allowed


def authorize(caller: Caller, permission: str, resource_id: str = "", *, target: str = "") -> None:
    """Raise `PermissionDenied` naming the permission, and audit the refusal, unless the caller may."""
    if caller_may(caller, permission, resource_id):
        return
    record(
        "authorization.denied",
        outcome="denied",
        actor=caller.actor,
        target=target or resource_id,
        client_address=caller.client_address,
        details={"permission": permission, "resource_id": resource_id, "credential_id": caller.credential_id},
    )
    raise PermissionDenied(
        f"This needs the permission {permission}" + (f" on {resource_id}" if resource_id else ""),
        permission=permission,
    )


def caller_covers(caller: Caller, pattern: str, resource_id: str = "") -> bool:
    """No escalation: does the caller effectively hold everything `pattern` stands for?"""
    if caller.is_exempt:
        return True
    if caller.identity is None or not any(covers(scope, pattern) for scope in caller.scopes):
        return False
    entry = _principal_grants(caller.identity.pk)
    now = timezone.now()
    return entry.is_active and any(
        covers(grant.permission, pattern)
        and (grant.expires_at is None or grant.expires_at > now)
        and (not grant.resource_id or grant.resource_id == resource_id)
        for grant in entry.grants
    )


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
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationFailed("expires_at must be in the future", code="INVALID_EXPIRY")
    grantee = get_identity(grantee_chitty_id)
    if not grantee.is_active:
        raise ValidationFailed(f"{grantee.chitty_id} is {grantee.status}", code="IDENTITY_SUSPENDED")
    authorize(caller, "authorizations:grant", target=grantee.chitty_id)
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
        bump_epoch()
    return grant


def revoke_grant(caller: Caller, grant_id: int) -> Grant:
    """Revoke one grant. Idempotent: revoking a revoked grant answers with it unchanged."""
    grant = Grant.objects.select_related("principal").filter(pk=grant_id).first()
    if grant is None:
        raise NotFound(f"No grant {grant_id}", code="GRANT_NOT_FOUND")
    authorize(caller, "authorizations:revoke", target=grant.principal.chitty_id)
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
        bump_epoch()
    return grant


def list_grants(caller: Caller, chitty_id: str, *, include_inactive: bool = False) -> list[Grant]:
    """A principal's grants: your own freely, anyone's with `permissions:check`."""
    identity = get_identity(chitty_id)
    if not caller.is_principal(identity):
        authorize(caller, "permissions:check", target=chitty_id)
    grants = Grant.objects.filter(principal=identity).select_related("principal")
    if not include_inactive:
        grants = grants.filter(revoked_at__isnull=True).exclude(expires_at__lte=timezone.now())
    return list(grants)


def check_principal_permission(
    caller: Caller, chitty_id: str, permission: str, resource_id: str = ""
) -> Decision:
    """The seed's `check_permission`: your own freely, another principal's with `permissions:check`."""
    identity = get_identity(chitty_id)
    if not caller.is_principal(identity):
        authorize(caller, "permissions:check", target=chitty_id)
    if permission != WILDCARD and ":" not in str(permission):
        raise ValidationFailed(
            f"Invalid permission {permission!r}: use resource:action", code="INVALID_PERMISSION"
        )
    parse_pattern(permission)
    return check_permission(identity, permission, _clean_resource_id(resource_id))


def _clean_resource_id(resource_id: str | None) -> str:
    resource_id = resource_id or ""
    if not isinstance(resource_id, str) or len(resource_id) > 255:
        raise ValidationFailed("resource must be a string of at most 255 characters", code="INVALID_RESOURCE")
    return resource_id
