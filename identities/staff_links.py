"""Linking staff logins to the ChittyIDs they act as in the admin.

A link hands a Django user every grant of an identity, which is as much as minting a `*` credential for it,
so only superusers (and the system) make or remove links, and each change is audited in its transaction.
"""

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from audit.models import AuditEvent
from audit.services import record
from identities.models import Identity, StaffLink
from identities.selectors import get_identity
from kernel.callers import Caller
from kernel.errors import Conflict, PermissionDenied, ValidationFailed


def linked_identity(user: AbstractBaseUser) -> Identity | None:
    """The identity a staff user acts as, or None: an unlinked non-superuser holds no grants at all."""
    if not user.is_authenticated:
        return None
    return Identity.objects.filter(staff_links__user=user).first()


def link_staff_user(caller: Caller, user: AbstractBaseUser, chitty_id: str) -> StaffLink:
    """Let `user` act as `chitty_id` in the admin. Superusers only; the identity must be active."""
    _require_exempt(caller, "staff_link.create", f"staff:{user.get_username()}")
    identity = get_identity(chitty_id)
    if not identity.is_active:
        raise ValidationFailed(f"{chitty_id} is {identity.status}", code="IDENTITY_SUSPENDED")
    try:
        with transaction.atomic():
            link = StaffLink.objects.create(user=user, identity=identity, linked_by=caller.actor)
            record(
                "staff_link.create",
                actor=caller.actor,
                target=f"staff:{user.get_username()}",
                client_address=caller.client_address,
                details={"chitty_id": chitty_id},
            )
    except IntegrityError:
        raise Conflict(
            f"{user.get_username()} is already linked to an identity; remove that link first",
            code="STAFF_LINK_EXISTS",
        ) from None
    return link


def unlink_staff_user(caller: Caller, link: StaffLink) -> None:
    """Remove a link: from the next request on, the staff user holds no grants. Superusers only."""
    username = link.user.get_username()
    _require_exempt(caller, "staff_link.delete", f"staff:{username}")
    with transaction.atomic():
        deleted, _ = StaffLink.objects.filter(pk=link.pk).delete()
        if deleted:
            record(
                "staff_link.delete",
                actor=caller.actor,
                target=f"staff:{username}",
                client_address=caller.client_address,
                details={"chitty_id": link.identity.chitty_id},
            )


def _require_exempt(caller: Caller, action: str, target: str) -> None:
    if caller.is_exempt:
        return
    record(
        action,
        outcome=AuditEvent.Outcome.DENIED,
        actor=caller.actor,
        target=target,
        client_address=caller.client_address,
        details={"reason": "only superusers link staff logins to identities"},
    )
    raise PermissionDenied("Only superusers link staff logins to identities", code="SUPERUSER_REQUIRED")
