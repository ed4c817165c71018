"""Reading identities, shared by every app's services."""

from dataclasses import dataclass

from django.utils import timezone

from identities.chitty_ids import parse_chitty_id
from identities.models import Identity
from kernel.errors import NotFound


def get_identity(chitty_id: str) -> Identity:
    """The registered identity, or `INVALID_CHITTY_ID` / `IDENTITY_NOT_FOUND`."""
    parse_chitty_id(chitty_id)
    try:
        return Identity.objects.get(chitty_id=chitty_id)
    except Identity.DoesNotExist:
        raise NotFound(f"No identity {chitty_id} is registered", code="IDENTITY_NOT_FOUND") from None


@dataclass(frozen=True)
class SuspensionCascade:
    """What suspending an identity stops at once, shown to staff before they confirm."""

    identity: Identity
    api_keys: int
    grants: int
    sessions: int
    token_sessions: int
    staff_logins: int


def suspension_cascade(identity: Identity) -> SuspensionCascade:
    """Live keys, grants and sessions of `identity`: what a suspension would stop."""
    now = timezone.now()
    live_sessions = identity.sessions.filter(ended_at__isnull=True).exclude(expires_at__lte=now)
    return SuspensionCascade(
        identity=identity,
        api_keys=identity.api_keys.exclude(revoked_at__lte=now).exclude(expires_at__lte=now).count(),
        grants=identity.grants.filter(revoked_at__isnull=True).exclude(expires_at__lte=now).count(),
        sessions=live_sessions.count(),
        token_sessions=live_sessions.filter(credential_type="jwt").count(),
        staff_logins=identity.staff_links.count(),
    )
