"""OAuth clients: service clients created for an identity, their revocation, and dynamic registration."""

from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model

from audit.services import record
from grants.checks import authorize, refuse_unheld_scopes
from grants.permissions import WILDCARD
from kernel.callers import Caller
from kernel.errors import ValidationFailed
from keys.credentials import authenticate_authorization_header
from keys.token_format import MAX_SCOPES
from oauth.models import Client
from oauth.rules import (
    normalized_scopes,
)
from principals.services import resolve_principal


@dataclass(frozen=True)
class IssuedClient:
    client: Client
    client_secret: str = field(repr=False)


def create_service_client(
    caller: Caller, *, chitty_id: str, name: str = "", scopes: list[str] | None = None
) -> IssuedClient:
    """A confidential client-credentials client acting for `chitty_id` (`oauth_clients:manage`). Its tokens
    never carry more than `scopes` (default `*`) nor than that identity's grants, and nobody gives it a
    scope they do not hold."""
    authorize(caller, "oauth_clients:manage", target=chitty_id)
    allowed = normalized_scopes(scopes or [WILDCARD])
    if len(allowed) > MAX_SCOPES:
        raise ValidationFailed(f"At most {MAX_SCOPES} scopes", code="INVALID_SCOPES")
    identity = resolve_principal(chitty_id)
    refuse_unheld_scopes(
        caller,
        identity,
        allowed,
        action="oauth.client.register",
        minting="a client",
        wildcard_defers_to_grants=True,
    )
    secret = generate_client_secret()
    client = Client(
        name=name,
        client_type=Client.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Client.GRANT_CLIENT_CREDENTIALS,
        identity=identity,
        allowed_scopes=list(allowed),
        client_secret=secret,
        registered_by=caller.actor,
    )
    try:
        client.full_clean()
    except ValidationError as exc:
        raise ValidationFailed(
            "; ".join(f"{name}: {' '.join(errors)}" for name, errors in exc.message_dict.items()),
            code="INVALID_CLIENT",
        ) from None
    with transaction.atomic():
        client.save()
        record(
            "oauth.client.register",
            actor=caller.actor,
            target=client.client_id,
            client_address=caller.client_address,
            details={
                "source": "manual",
                "grant_type": "client_credentials",
                "chitty_id": identity.chitty_id,
                "scopes": list(allowed),
                "name": client.name,
            },
        )
    return IssuedClient(client, secret)


def revoke_client(caller: Caller, client: Client, *, reason: str = "") -> Client:
    """Revoke a client for good (`oauth_clients:manage`, or your own service client): it can no longer
    authenticate, and every token and code it holds is revoked at once. Revoking it again changes nothing."""
    if client.identity_id is None or not caller.is_principal(client.identity):
        authorize(caller, "oauth_clients:manage", target=client.client_id)
    with transaction.atomic():
        client = Client.objects.select_for_update().get(pk=client.pk)
        if client.revoked_at is not None:
            return client
        client.revoked_at, client.revoked_by, client.revoke_reason = (
            timezone.now(),
            caller.actor,
            reason[:255],
        )
        client.save(update_fields=["revoked_at", "revoked_by", "revoke_reason"])
        for refresh_token in get_refresh_token_model().objects.filter(
            application=client, revoked__isnull=True
        ):
            refresh_token.revoke()
        get_access_token_model().objects.filter(application=client).delete()
        get_grant_model().objects.filter(application=client).delete()
        record(
            "oauth.client.revoke",
            actor=caller.actor,
            target=client.client_id,
            client_address=caller.client_address,
            details={"name": client.name, "reason": reason[:255]},
        )
    return client


def authorize_registration(authorization: str, *, client_address: str | None, user_agent: str) -> str:
    """Who may register a client dynamically (RFC 7591); returns the registrar for the record. Anyone while
    OAUTH_DCR_REQUIRE_INITIAL_ACCESS_TOKEN is off; otherwise the initial access token is a ChittyAuth bearer
    credential whose effective permissions include `oauth_clients:register`."""
    if not settings.OAUTH_DCR_REQUIRE_INITIAL_ACCESS_TOKEN:
        return "anonymous"
    caller = authenticate_authorization_header(
        authorization, client_address=client_address, user_agent=user_agent
    )
    authorize(caller, "oauth_clients:register", target="oauth-clients")
    return caller.actor


def record_registration(client_id: str, *, registrar: str, client_address: str | None) -> Client:
    """A client registered itself (RFC 7591): note who let it, and audit it."""
    Client.objects.filter(client_id=client_id).update(registered_by=registrar)
    client = Client.objects.get(client_id=client_id)
    record(
        "oauth.client.register",
        actor=registrar,
        target=client_id,
        client_address=client_address,
        details={
            "source": "dcr",
            "name": client.name,
            "client_type": client.client_type,
            "grant_type": client.authorization_grant_type,
            "redirect_uris": client.redirect_uris.split(),
        },
    )
    return client


def record_registration_change(client_id: str, change: str, *, client_address: str | None) -> None:
    """A dynamically registered client updated or deleted its own registration (RFC 7592)."""
    record(
        f"oauth.client.{change}",
        actor=f"oauth-client:{client_id}",
        target=client_id,
        client_address=client_address,
        details={"source": "dcr"},
    )
