"""Authorization requests: who may consent, to which scopes, and the record of it."""

from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser

from audit.models import AuditEvent
from audit.services import record
from grants.checks import held_scopes
from identities.models import Identity
from identities.staff_links import linked_identity
from kernel.errors import PermissionDenied
from oauth.models import Client
from oauth.rules import (
    PKCE_METHOD,
    OAuthRuleBroken,
    ScopeRefused,
    describe_scope,
    normalized_scopes,
    refuse_unheld_token_scopes,
    token_audience,
)


@dataclass(frozen=True)
class ConsentScope:
    scope: str
    description: str


def consent_scopes(scopes: Iterable[str]) -> list[ConsentScope]:
    """The requested scopes as the consenting person sees them."""
    return [ConsentScope(scope, describe_scope(scope)) for scope in scopes]


def consenting_identity(user: AbstractBaseUser) -> Identity:
    """The identity a staff login consents for: the active identity it is linked to."""
    if not (user.is_authenticated and user.is_active and user.is_staff):
        raise PermissionDenied(
            "Sign in with a staff login to authorize a client", code="STAFF_LOGIN_REQUIRED"
        )
    identity = linked_identity(user)
    if identity is None:
        raise PermissionDenied(
            f"The staff login {user.get_username()} is not linked to a ChittyID, so it cannot authorize a "
            "client; a superuser links staff logins to identities",
            code="STAFF_LOGIN_NOT_LINKED",
        )
    if not identity.is_active:
        raise PermissionDenied(f"{identity.chitty_id} is {identity.status}", code="IDENTITY_SUSPENDED")
    return identity


def check_authorization_request(code_challenge_method: str | None, resources: Iterable[str]) -> None:
    """PKCE with S256 only (a missing method means plain, which is refused), and only resources served here."""
    if code_challenge_method != PKCE_METHOD:
        raise OAuthRuleBroken(
            "PKCE with code_challenge_method=S256 is required; plain is refused", code="PKCE_S256_REQUIRED"
        )
    token_audience(resources)


def authorization_scopes(
    client_id: str, identity: Identity, scopes: Iterable[str], *, named: bool, client_address: str | None
) -> list[str]:
    """The scopes a consent page asks for: those the request names, each held by the consenting identity
    (otherwise `invalid_scope`), or when it names none the defaults that identity holds."""
    client = Client.objects.get(client_id=client_id)
    requested = normalized_scopes(scopes)
    if not named:
        requested = held_scopes(identity, requested)
        if not requested:
            raise ScopeRefused(f"{identity.chitty_id} holds none of the scopes this client may ask for")
    refuse_unheld_token_scopes(
        client, identity, requested, action="oauth.authorize", client_address=client_address
    )
    return list(scopes) if named else list(requested)


def record_consent(
    user: AbstractBaseUser,
    identity: Identity,
    client_id: str,
    scopes: Iterable[str],
    *,
    allowed: bool,
    client_address: str | None,
    error: str = "",
) -> None:
    """A staff login allowed (or refused) a client to act as its identity."""
    record(
        "oauth.authorize",
        outcome=AuditEvent.Outcome.SUCCESS if allowed else AuditEvent.Outcome.DENIED,
        actor=f"staff:{user.get_username()}",
        target=client_id,
        client_address=client_address,
        details={
            "chitty_id": identity.chitty_id,
            "client_id": client_id,
            "scopes": list(scopes),
            "error": error,
        },
    )
