"""The hot-path permission checks every interface and service relies on.

Each process keeps a principal's live grants and its recent decisions in memory (least recently used principals
evicted first), depending on the principal's invalidation topic: a grant made or revoked, or a status change,
anywhere, makes that principal's next check reload from the database, and no other principal's. Expiry is
judged against the clock on every check, so an expired grant never allows, even before cleanup deletes it.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import FilteredRelation, Q
from django.utils import timezone

from audit.services import record
from grants.permissions import WILDCARD, covers, intersection, widest
from identities.chitty_ids import parse_chitty_id
from identities.models import Identity
from identities.selectors import get_identity
from kernel.bounded_cache import BoundedCache
from kernel.callers import Caller
from kernel.errors import NotFound, PermissionDenied, ValidationFailed
from kernel.invalidation import current_stamp, is_fresh, principal_topic
from kernel.memory_only import needs_read

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
    __slots__ = ("decisions", "grants", "identity_pk", "is_active", "stamp", "topics")

    def __init__(
        self, chitty_id: str, identity_pk: int, stamp: int | None, is_active: bool, grants: list[LiveGrant]
    ) -> None:
        self.identity_pk = identity_pk
        self.stamp = stamp
        self.topics = (principal_topic(chitty_id),)
        self.is_active = is_active
        self.grants = grants
        self.decisions: dict[tuple[str, str], Decision] = {}


_cache: BoundedCache[str, _PrincipalGrants] = BoundedCache("grants")


def _load(chitty_id: str, stamp: int | None) -> _PrincipalGrants | None:
    """The registered principal's live grants in one query (a row per grant, or one without), or None when
    `chitty_id` is not registered."""
    live = Q(grants__revoked_at__isnull=True) & (
        Q(grants__expires_at__isnull=True) | Q(grants__expires_at__gt=timezone.now())
    )
    rows = list(
        Identity.objects.filter(chitty_id=chitty_id)
        .annotate(live=FilteredRelation("grants", condition=live))
        .values_list("pk", "status", "live__id", "live__permission", "live__resource_id", "live__expires_at")
    )
    if not rows:
        return None
    pk, status = rows[0][:2]
    grants = [LiveGrant(*row[2:]) for row in rows if row[2] is not None]
    return _PrincipalGrants(chitty_id, pk, stamp, status == Identity.Status.ACTIVE, grants)


def _is_current(entry: _PrincipalGrants) -> bool:
    return is_fresh(entry.stamp, entry.topics)


def _principal_grants(chitty_id: str) -> _PrincipalGrants | None:
    entry = _cache.lookup(chitty_id, _is_current)
    if entry is None:
        needs_read("grants lookup")
        entry = _load(chitty_id, current_stamp())
        if entry is None:
            return None
        if entry.stamp is not None:
            _cache.put(chitty_id, entry)
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


def _grants_of(identity: Identity) -> _PrincipalGrants | None:
    """None when the record is gone (deleted, or another one registered under its ChittyID since)."""
    entry = _principal_grants(identity.chitty_id)
    return entry if entry is not None and entry.identity_pk == identity.pk else None


def check_permission(identity: Identity, permission: str, resource_id: str = "") -> Decision:
    """Does the principal hold `permission` (on `resource_id`, if given) right now, by its grants alone?"""
    entry = _grants_of(identity)
    if entry is None:
        return Decision(False, permission, resource_id, reason="identity is not active")
    return _decision(entry, permission, resource_id)


def check_registered_permission(chitty_id: str, permission: str, resource_id: str = "") -> Decision:
    """`check_permission` by ChittyID, without loading the identity: `IDENTITY_NOT_FOUND` if unregistered."""
    entry = _principal_grants(chitty_id)
    if entry is None:
        raise NotFound(f"No identity {chitty_id} is registered", code="IDENTITY_NOT_FOUND")
    return _decision(entry, permission, resource_id)


def _decision(entry: _PrincipalGrants, permission: str, resource_id: str) -> Decision:
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


def authorized_principal(caller: Caller, permission: str, chitty_id: str) -> Identity:
    """The principal a request acts on: yourself freely, anyone else with `permission`. The permission is
    checked before the lookup, so a caller that may not act on others cannot tell registered ChittyIDs
    from unregistered ones: both get the same `PERMISSION_DENIED`."""
    authorize_acting_on(caller, permission, chitty_id)
    return get_identity(chitty_id)


def authorize_acting_on(caller: Caller, permission: str, chitty_id: str) -> None:
    """`authorized_principal` without the lookup, for answers that need no identity record."""
    parse_chitty_id(chitty_id)
    if chitty_id != caller.chitty_id:
        authorize(caller, permission, target=chitty_id)


def refuse_unheld_scopes(
    caller: Caller,
    principal: Identity,
    scopes: tuple[str, ...],
    *,
    action: str,
    minting: str,
    wildcard_defers_to_grants: bool = False,
) -> None:
    """The one rule for every credential minted, rotated or handed out for `principal`: each scope must be
    held by the credential minting it, by the caller's own grants when minting for someone else
    (`ESCALATION_REFUSED`), and by the principal's live grants (`SCOPE_EXCEEDS_GRANTS`), so a credential
    never claims what its principal does not hold. A key's or client's `*` narrows nothing and stands for
    the grants themselves (`wildcard_defers_to_grants`); a token's `*` claims everything, so it needs a
    `*` grant. Refusals are audited."""
    for_self = caller.is_principal(principal)
    for scope in scopes:
        if not caller.is_exempt:
            held = any(covers(own, scope) for own in caller.scopes)
            if not held or not (for_self or caller_covers(caller, scope)):
                _record_scope_refusal(caller, principal, scope, action, "escalation")
                holder = (
                    "you do not hold it yourself" if held else "the credential you are using does not hold it"
                )
                raise PermissionDenied(
                    f"You cannot mint {minting} with the scope {scope}: {holder}",
                    code="ESCALATION_REFUSED",
                    scope=scope,
                )
        if scope == WILDCARD and wildcard_defers_to_grants:
            continue
        if not check_permission(principal, scope).allowed:
            _record_scope_refusal(caller, principal, scope, action, "exceeds the principal's grants")
            raise ValidationFailed(
                f"{principal.chitty_id} holds no grant covering the scope {scope}",
                code="SCOPE_EXCEEDS_GRANTS",
                scope=scope,
            )


def _record_scope_refusal(caller: Caller, principal: Identity, scope: str, action: str, reason: str) -> None:
    record(
        action,
        outcome="denied",
        actor=caller.actor,
        target=principal.chitty_id,
        client_address=caller.client_address,
        details={"scope": scope, "reason": reason, "credential_id": caller.credential_id},
    )


def _backing_grants(principal: Identity) -> list[LiveGrant]:
    """The live grants that can stand behind a credential scope: on any resource, of an active principal."""
    entry = _grants_of(principal)
    if entry is None or not entry.is_active:
        return []
    now = timezone.now()
    return [
        grant
        for grant in entry.grants
        if not grant.resource_id and (grant.expires_at is None or grant.expires_at > now)
    ]


def held_scopes(principal: Identity, ceiling: tuple[str, ...]) -> tuple[str, ...]:
    """The widest scopes within `ceiling` that the principal's grants back: what a token that names no
    scopes carries, so its `scope` claim never lists a permission its subject does not hold."""
    grants = _backing_grants(principal)
    found = (intersection(bound, grant.permission) for bound in ceiling for grant in grants)
    return tuple(sorted(widest([pattern for pattern in found if pattern is not None])))


def bounded_by_grants(principal: Identity, scopes: tuple[str, ...], expires_at: datetime) -> datetime:
    """`expires_at`, or earlier when one of `scopes` loses the last grant behind it by then: a token's `scope`
    claim must not outlive the grants that back it."""
    grants = _backing_grants(principal)
    for scope in scopes:
        expiries = [grant.expires_at for grant in grants if covers(grant.permission, scope)]
        if not expiries:
            return timezone.now()
        if None not in expiries:
            expires_at = min(expires_at, max(expiries))
    return expires_at


def caller_covers(caller: Caller, pattern: str, resource_id: str = "") -> bool:
    """No escalation: does the caller effectively hold everything `pattern` stands for?"""
    if caller.is_exempt:
        return True
    if caller.identity is None or not any(covers(scope, pattern) for scope in caller.scopes):
        return False
    entry = _grants_of(caller.identity)
    now = timezone.now()
    return (
        entry is not None
        and entry.is_active
        and any(
            covers(grant.permission, pattern)
            and (grant.expires_at is None or grant.expires_at > now)
            and (not grant.resource_id or grant.resource_id == resource_id)
            for grant in entry.grants
        )
    )
