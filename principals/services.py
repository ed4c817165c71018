"""Registering ChittyID principals and changing their status. Every change is audited in its transaction."""

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import record
from grants.checks import authorize, authorized_principal
from identities import authority
from identities.chitty_ids import parse_chitty_id
from identities.models import Identity
from identities.selectors import get_identity
from identities.signals import identity_deactivated
from kernel.callers import Caller
from kernel.errors import Conflict, ValidationFailed
from kernel.invalidation import invalidate, principal_topic


def register_identity(caller: Caller, chitty_id: str, *, display_name: str = "") -> Identity:
    """Register a principal (`identities:manage`). A remote authority must vouch for the ID first (fail closed)."""
    parsed = parse_chitty_id(chitty_id)
    authorize(caller, "identities:manage", target=chitty_id)
    source = Identity.Source.LOCAL
    validated_at = None
    if authority.is_remote():
        answer = authority.verify_chitty_id(chitty_id, bypass_cache=True)
        if not answer.is_valid:
            raise ValidationFailed(
                f"The ChittyID authority does not vouch for {chitty_id}: {answer.reason}",
                code="CHITTY_ID_REJECTED",
            )
        source, validated_at = Identity.Source.REMOTE, timezone.now()
    try:
        with transaction.atomic():
            identity = Identity.objects.create(
                chitty_id=chitty_id,
                entity_type=parsed.entity_type,
                display_name=display_name[:200],
                source=source,
                last_validated_at=validated_at,
            )
            record(
                "identity.register",
                actor=caller.actor,
                target=chitty_id,
                client_address=caller.client_address,
                details={"source": source, "entity_type": parsed.entity_type},
            )
            invalidate(principal_topic(chitty_id))  # a token for it may have been refused as unregistered
    except IntegrityError:
        raise Conflict(f"{chitty_id} is already registered", code="IDENTITY_EXISTS") from None
    return identity


def resolve_principal(chitty_id: str) -> Identity:
    """The active identity behind `chitty_id`, confirmed by the authority; for issuing credentials to it.

    With a remote authority an ID it vouches for but we have not seen is registered on first use.
    """
    parse_chitty_id(chitty_id)
    identity = Identity.objects.filter(chitty_id=chitty_id).first()
    if identity is not None and not identity.is_active:
        raise ValidationFailed(f"{chitty_id} is {identity.status}", code="IDENTITY_SUSPENDED")
    answer = authority.verify_chitty_id(chitty_id)
    if not answer.is_valid:
        raise ValidationFailed(
            f"{chitty_id} is not a valid ChittyID: {answer.reason}", code=f"CHITTY_ID_{answer.verdict.value}"
        )
    return identity or register_identity(Caller.system("chittyid-authority"), chitty_id)


def rename_identity(caller: Caller, identity: Identity, display_name: str) -> Identity:
    """Change the display name (`identities:manage`), audited with the old and new names."""
    authorize(caller, "identities:manage", target=identity.chitty_id)
    display_name = display_name[:200]
    with transaction.atomic():
        identity = Identity.objects.select_for_update().get(pk=identity.pk)
        if identity.display_name == display_name:
            return identity
        previous, identity.display_name = identity.display_name, display_name
        identity.save(update_fields=["display_name", "updated_at"])
        invalidate(principal_topic(identity.chitty_id))
        record(
            "identity.rename",
            actor=caller.actor,
            target=identity.chitty_id,
            client_address=caller.client_address,
            details={"from": previous, "to": display_name},
        )
    return identity


def change_status(caller: Caller, identity: Identity, status: str, *, reason: str = "") -> Identity:
    """Suspend, revoke or reactivate (`identities:manage`). Leaving `active` stops every credential at once
    (its principal topic) and is announced as `identity_deactivated`, on which its sessions end in this transaction."""
    authorize(caller, "identities:manage", target=identity.chitty_id)
    if status not in Identity.Status.values:
        raise ValidationFailed(f"Unknown status {status!r}", code="INVALID_STATUS")
    with transaction.atomic():
        identity = Identity.objects.select_for_update().get(pk=identity.pk)
        if identity.status == Identity.Status.REVOKED and status != Identity.Status.REVOKED:
            raise Conflict(
                f"{identity.chitty_id} is revoked for good and cannot be reactivated", code="IDENTITY_REVOKED"
            )
        previous = identity.status
        identity.status = status
        identity.status_reason = reason[:255]
        identity.save(update_fields=["status", "status_reason", "updated_at"])
        invalidate(principal_topic(identity.chitty_id))
        record(
            f"identity.{_ACTION_BY_STATUS[status]}",
            actor=caller.actor,
            target=identity.chitty_id,
            client_address=caller.client_address,
            details={"from": previous, "to": status, "reason": reason},
        )
        if status != Identity.Status.ACTIVE:
            identity_deactivated.send(
                Identity,
                identity=identity,
                actor=caller.actor,
                reason=reason or f"identity {status}",
                client_address=caller.client_address,
            )
    return identity


_ACTION_BY_STATUS = {
    Identity.Status.ACTIVE: "reactivate",
    Identity.Status.SUSPENDED: "suspend",
    Identity.Status.REVOKED: "revoke",
}


def suspend_identity(caller: Caller, identity: Identity, *, reason: str = "") -> Identity:
    return change_status(caller, identity, Identity.Status.SUSPENDED, reason=reason)


def reactivate_identity(caller: Caller, identity: Identity, *, reason: str = "") -> Identity:
    return change_status(caller, identity, Identity.Status.ACTIVE, reason=reason)


def list_identities(caller: Caller, *, status: str | None = None, search: str = "") -> list[Identity]:
    """All registered principals (`identities:read`)."""
    authorize(caller, "identities:read")
    identities = Identity.objects.all()
    if status:
        identities = identities.filter(status=status)
    if search:
        identities = identities.filter(chitty_id__icontains=search)
    return list(identities[:1000])


def show_identity(caller: Caller, chitty_id: str) -> Identity:
    """One principal: yourself freely, anyone with `identities:read`."""
    return authorized_principal(caller, "identities:read", chitty_id)


def identity_to_manage(caller: Caller, chitty_id: str) -> Identity:
    """The identity a status change names, once the caller holds `identities:manage`: checked before the
    lookup, so a refusal does not tell whether `chitty_id` is registered."""
    parse_chitty_id(chitty_id)
    authorize(caller, "identities:manage", target=chitty_id)
    return get_identity(chitty_id)
