"""Sessions' answers to what lower apps announce."""

from identities.models import Identity
from identities.signals import identity_deactivated
from sessions.services import end_sessions_of_principal


def connect() -> None:
    identity_deactivated.connect(
        end_sessions_when_deactivated, dispatch_uid="chittyauth.sessions.deactivated"
    )


def end_sessions_when_deactivated(
    sender, *, identity: Identity, actor: str, reason: str, client_address: str | None, **kwargs
) -> None:
    end_sessions_of_principal(identity, actor=actor, reason=reason, client_address=client_address)
