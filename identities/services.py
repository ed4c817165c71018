"""Registering ChittyID principals and changing their status. Every change is audited in its transaction."""

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import record
from chittyauth_site.errors import Conflict, NotFound, ValidationFailed
from identities import authority
from identities.chitty_ids import parse_chitty_id
from identities.invalidation import bump_epoch
from identities.models import Identity


def get_identity(chitty_id: str) -> Identity:
    parse_chitty_id(chitty_id)
    try:
        return Identity.objects.get(chitty_id=chitty_id)
    except Identity.DoesNotExist:
        raise NotFound(f"No identity {chitty_id} is registered", code="IDENTITY_NOT_FOUND") from None


def register_identity(
    chitty_id: str, *, display_name: str = "", actor: str = "", client_address: str | None = None
) -> Identity:
    """Register a principal. With a remote authority it must vouch for the ID first (fail closed)."""
    parsed = parse_chitty_id(chitty_id)
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
                actor=actor,
                target=chitty_id,
                client_address=client_address,
                details={"source": source, "entity_type": parsed.entity_type},
            )
    except IntegrityError:
        raise Conflict(f"{chitty_id} is already registered", code="IDENTITY_EXISTS") from None
    return identity


def resolve_principal(chitty_id: str) -> Identity:
    """The active identity behind `chitty_id`, confirmed by the authority; for issuing credentials to it.

    With a remote authority an ID it vouches for but we have not seen is registered on first use.
    """
    parse_chitty_id(chitty_id)
    answer = authority.verify_chitty_id(chitty_id)
    if not answer.is_valid:
        raise ValidationFailed(
            f"{chitty_id} is not a valid ChittyID: {answer.reason}", code=f"CHITTY_ID_{answer.verdict.value}"
        )
    identity = Identity.objects.filter(chitty_id=chitty_id).first()
    if identity is None:
        identity = register_identity(chitty_id, actor="chittyid-authority")
    if not identity.is_active:
        raise ValidationFailed(f"{chitty_id} is {identity.status}", code="IDENTITY_SUSPENDED")
    return identity


def change_status(
    identity: Identity, status: str, *, actor: str, reason: str = "", client_address: str | None = None
) -> Identity:
    """Suspend, revoke or reactivate. Leaving `active` stops every credential and session of the identity."""
    if status not in Identity.Status.values:
        raise ValidationFailed(f"Unknown status {status!r}", code="INVALID_STATUS")
    if identity.status == Identity.Status.REVOKED and status != Identity.Status.REVOKED:
        raise Conflict(
            f"{identity.chitty_id} is revoked for good and cannot be reactivated", code="IDENTITY_REVOKED"
        )
    previous = identity.status
    with transaction.atomic():
        identity.status = status
        identity.status_reason = reason[:255]
        identity.save(update_fields=["status", "status_reason", "updated_at"])
        bump_epoch()
        record(
            f"identity.{_ACTION_BY_STATUS[status]}",
            actor=actor,
            target=identity.chitty_id,
            client_address=client_address,
            details={"from": previous, "to": status, "reason": reason},
        )
        if status != Identity.Status.ACTIVE:
            _stop_everything_of(identity, actor=actor, reason=reason or f"identity {status}")
    return identity


_ACTION_BY_STATUS = {
    Identity.Status.ACTIVE: "reactivate",
    Identity.Status.SUSPENDED: "suspend",
    Identity.Status.REVOKED: "revoke",
}


def suspend_identity(
    identity: Identity, *, actor: str, reason: str = "", client_address: str | None = None
) -> Identity:
    return change_status(
        identity, Identity.Status.SUSPENDED, actor=actor, reason=reason, client_address=client_address
    )


def reactivate_identity(
    identity: Identity, *, actor: str, reason: str = "", client_address: str | None = None
) -> Identity:
    return change_status(
        identity, Identity.Status.ACTIVE, actor=actor, reason=reason, client_address=client_address
    )


def _stop_everything_of(identity: Identity, *, actor: str, reason: str) -> None:
    """Keys, tokens and grants check the identity's status on every use; live sessions must be ended."""
    from sessions.services import end_sessions_of_principal

    end_sessions_of_principal(identity, actor=actor, reason=reason)
