"""Who is asking: the principal behind a request and the credential it came with."""

from dataclasses import dataclass, field
from datetime import datetime

from identities.models import Identity


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

    def is_principal(self, identity: Identity) -> bool:
        return self.identity is not None and self.identity.pk == identity.pk

    @classmethod
    def system(cls, name: str) -> "Caller":
        return cls(
            actor=f"system:{name}",
            identity=None,
            credential_type="system",
            credential_id=name,
            is_exempt=True,
        )

    @classmethod
    def staff(cls, user, *, identity: Identity | None = None, client_address: str | None = None) -> "Caller":
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
