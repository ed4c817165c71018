"""Who is asking: the principal behind a request and the credential it came with."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.utils import timezone

from kernel.errors import ValidationFailed

if TYPE_CHECKING:  # the kernel imports no app at run time
    from identities.models import Identity

# A credential minted by one about to expire must still be usable for a moment (JWT times are whole seconds).
MIN_REMAINING_LIFETIME = timedelta(seconds=2)


@dataclass(frozen=True)
class Caller:
    """Every interface builds one of these and hands it to the services, which decide what it may do.

    `scopes` narrow the principal's grants (effective permissions = grants ∩ scopes). Staff superusers and
    the system itself (management commands, scheduled jobs) are exempt from grants; their acts are audited.
    """

    actor: str
    identity: Identity | None
    credential_type: str
    credential_id: str
    scopes: tuple[str, ...] = ()
    client_address: str | None = None
    user_agent: str = ""
    is_exempt: bool = False
    session_id: str | None = field(default=None, compare=False)
    # When the credential stops being valid by the clock; long-lived connections re-check at that moment.
    expires_at: datetime | None = field(default=None, compare=False)

    @property
    def chitty_id(self) -> str | None:
        return self.identity.chitty_id if self.identity else None

    def bounded_expiry(self, requested: datetime | None) -> datetime | None:
        """When a credential this caller mints must expire: no later than the caller's own credential, so a
        short-lived token cannot mint a key or token that outlives it. `None` means never."""
        if self.expires_at is None:
            return requested
        bounded = self.expires_at if requested is None else min(requested, self.expires_at)
        if bounded < timezone.now() + MIN_REMAINING_LIFETIME:
            raise ValidationFailed(
                "The credential you are using expires now; authenticate again first",
                code="CREDENTIAL_EXPIRING",
            )
        return bounded

    def is_principal(self, identity: Identity) -> bool:
        return self.identity is not None and self.identity.pk == identity.pk

    @classmethod
    def system(cls, name: str) -> Caller:
        return cls(
            actor=f"system:{name}",
            identity=None,
            credential_type="system",
            credential_id=name,
            is_exempt=True,
        )

    @classmethod
    def staff(cls, user, *, identity: Identity | None = None, client_address: str | None = None) -> Caller:
        """A staff login. Superusers are exempt; other staff act with their linked identity's grants."""
        return cls(
            actor=f"staff:{user.get_username()}",
            identity=identity,
            credential_type="staff",
            credential_id=str(user.pk),
            scopes=("*",),
            client_address=client_address,
            is_exempt=bool(user.is_superuser),
        )
