"""Access tokens: whom they act for, minting them, refreshing, introspecting and revoking them.

- Who a token acts for: the identity linked to the consenting staff login (authorization code), the client's
  own identity (client credentials), or the identity its refresh token family was issued to (refresh).
- What it carries: scopes in the permission grammar, narrowed at every use by the principal's grants.
- Where it may be used (RFC 8707): this service's own resources (anything under CHITTYAUTH_BASE_URL or
  MCP_RESOURCE_URL) map to the audience JWT_AUDIENCE, which REST, both MCP transports and `validate_jwt`
  accept; a resource in OAUTH_EXTERNAL_RESOURCES becomes the token's audience, which this service refuses;
  any other resource is `invalid_target`.
- One token, one path: an access token is a ChittyAuth JWT with a session, signed by `keys.token_format.sign`.
  Revoking it through OAuth revokes its `jti` and ends its session; revoking it through ChittyAuth stops its
  refresh token family from minting another.
"""

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from oauth2_provider.models import get_refresh_token_model

from audit.models import AuditEvent
from audit.services import record
from grants.checks import bounded_by_grants, caller_may
from identities.models import Identity
from kernel.callers import Caller
from kernel.errors import PermissionDenied, ValidationFailed
from keys.models import RevokedToken
from keys.token_format import JTI_BYTES, issuer, sign
from keys.token_verification import verify_jwt
from keys.tokens import revoke_jti_for_session
from oauth.consent import consenting_identity
from oauth.models import Client, IssuedAccessToken
from oauth.rules import (
    INTROSPECTED_CLAIMS,
    SYSTEM_ACTOR,
    RefreshRefused,
    ScopeRefused,
    client_actor,
    client_caller,
    normalized_scopes,
    refuse_unheld_token_scopes,
    token_audience,
)
from principals.services import resolve_principal
from sessions.models import AuthSession
from sessions.services import end_sessions_of_credential, open_session


@dataclass(frozen=True)
class MintedToken:
    token: str = field(repr=False)
    jti: str
    identity: Identity
    scopes: tuple[str, ...]
    audience: str | list[str]
    expires_in: int
    expires_at: datetime


def token_identity(
    *,
    grant_type: str,
    client: Client,
    user: AbstractBaseUser | None,
    refresh_identity: Identity | None,
) -> Identity:
    """Who a new access token acts for: the client's identity (client credentials), the identity the consenting
    staff login still acts as (authorization code), or the refresh token family's (refresh)."""
    if grant_type == "client_credentials":
        identity = client.identity
    elif grant_type == "authorization_code" and user is not None:
        identity = consenting_identity(user)
    elif grant_type == "refresh_token":
        identity = refresh_identity
    else:
        identity = None
    if identity is None:
        raise ValidationFailed("No ChittyID is behind this grant", code="NO_PRINCIPAL")
    return identity


def mint_access_token(
    *,
    client: Client,
    identity: Identity,
    scopes: Iterable[str],
    resources: Iterable[str],
    grant_type: str,
    client_address: str | None,
    user_agent: str,
) -> MintedToken:
    """Sign an RFC 9068 access token for `identity`, good for OAUTH_ACCESS_TOKEN_LIFETIME_SECONDS (or until
    the grants behind its scopes expire), open its session and audit it, in the caller's transaction. The
    principal must be active, vouched for by the ChittyID authority, and hold every scope; on a refresh the
    grants are judged again, so a family whose scopes were revoked refreshes no more."""
    principal = resolve_principal(identity.chitty_id)
    granted = normalized_scopes(scopes)
    refuse_unheld_token_scopes(
        client, principal, granted, action="oauth.token.issue", client_address=client_address
    )
    audience = token_audience(resources)
    issued_at = int(timezone.now().timestamp())
    lifetime_seconds = settings.OAUTH_ACCESS_TOKEN_LIFETIME_SECONDS
    held_until = bounded_by_grants(
        principal, granted, datetime.fromtimestamp(issued_at + lifetime_seconds, tz=UTC)
    )
    lifetime_seconds = int(held_until.timestamp()) - issued_at
    if lifetime_seconds < 1:
        raise ScopeRefused(f"The grants behind these scopes of {principal.chitty_id} expire now")
    jti = secrets.token_urlsafe(JTI_BYTES)
    token, _, _ = sign(
        {
            "iss": issuer(),
            "aud": audience,
            "sub": principal.chitty_id,
            "chitty_id": principal.chitty_id,
            "client_id": client.client_id,
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + lifetime_seconds,
            "jti": jti,
            "scope": " ".join(granted),
        }
    )
    expires_at = datetime.fromtimestamp(issued_at + lifetime_seconds, tz=UTC)
    bearer = Caller(
        actor=principal.chitty_id,
        identity=principal,
        credential_type=AuthSession.CredentialType.JWT,
        credential_id=jti,
        scopes=granted,
        client_address=client_address,
        user_agent=user_agent,
    )
    with transaction.atomic():
        record(
            "oauth.token.issue",
            actor=client_actor(client),
            target=principal.chitty_id,
            client_address=client_address,
            details={
                "jti": jti,
                "client_id": client.client_id,
                "grant_type": grant_type,
                "scopes": list(granted),
                "aud": audience,
                "exp": expires_at.isoformat(),
            },
        )
        open_session(bearer, AuthSession.Channel.JWT, expires_at=expires_at)
    return MintedToken(token, jti, principal, granted, audience, lifetime_seconds, expires_at)


def link_access_token(access_token, minted: MintedToken) -> IssuedAccessToken:
    """Remember which JWT the toolkit's access token row (which stores only its hash) stands for."""
    return IssuedAccessToken.objects.create(
        access_token=access_token, jti=minted.jti, identity=minted.identity, expires_at=minted.expires_at
    )


def access_token_removed(access_token) -> None:
    """The toolkit deleted an access token row, which is how it revokes one: revoke the JWT and end its session."""
    issued = (
        IssuedAccessToken.objects.select_related("identity").filter(access_token_id=access_token.pk).first()
    )
    if issued is None or issued.expires_at <= timezone.now():
        return
    reason = "OAuth access token revoked"
    with transaction.atomic():
        revoke_jti_for_session(issued.jti, issued.identity.chitty_id, actor=SYSTEM_ACTOR, reason=reason)
        end_sessions_of_credential(issued.jti, actor=SYSTEM_ACTOR, reason=reason)


def refresh_identity(refresh_token) -> Identity:
    """The identity a refresh token's family acts for, or `RefreshRefused` when ChittyAuth has revoked its
    current access token (`revoke_jwt`, an ended session), the identity is no longer active, or the staff
    login that consented no longer may (deactivated, or linked elsewhere): a delegation ends with its source."""
    issued = (
        IssuedAccessToken.objects.select_related("identity")
        .filter(access_token_id=refresh_token.access_token_id)
        .first()
    )
    if issued is None:
        raise RefreshRefused("The refresh token has no access token to renew")
    if RevokedToken.objects.filter(jti=issued.jti).exists():
        raise RefreshRefused("The access token this refresh token renews has been revoked")
    if not issued.identity.is_active:
        raise RefreshRefused(f"{issued.identity.chitty_id} is {issued.identity.status}")
    try:
        consenting = consenting_identity(refresh_token.user)
    except PermissionDenied as exc:
        raise RefreshRefused(exc.message) from None
    if consenting != issued.identity:
        raise RefreshRefused(f"The staff login that consented no longer acts as {issued.identity.chitty_id}")
    return issued.identity


def refuse_refresh(refresh_token, refusal: RefreshRefused, *, client_address: str | None) -> None:
    """A refresh that ChittyAuth's revocations forbid: the refresh token is revoked too, and the refusal audited."""
    with transaction.atomic():
        refresh_token.revoke()
        record(
            "oauth.token.refresh",
            outcome=AuditEvent.Outcome.DENIED,
            actor=client_actor(refresh_token.application),
            target=refresh_token.application.client_id,
            client_address=client_address,
            details={"reason": refusal.message, "family": str(refresh_token.token_family)},
        )


def record_refresh_reuse(refresh_token_value: str, *, client_address: str | None) -> None:
    """Audit a refresh token presented after it was rotated or revoked; the toolkit has revoked its family."""
    checksum = hashlib.sha256(refresh_token_value.encode("utf-8")).hexdigest()
    reused = (
        get_refresh_token_model()
        .objects.select_related("application")
        .filter(token_checksum=checksum, revoked__isnull=False)
        .order_by("-revoked")
        .first()
    )
    if reused is None:
        return
    record(
        "oauth.refresh_token.reuse",
        outcome=AuditEvent.Outcome.DENIED,
        actor=client_actor(reused.application),
        target=reused.application.client_id,
        client_address=client_address,
        details={"family": str(reused.token_family), "refresh_token_id": reused.pk, "family_revoked": True},
    )


def record_token_refusal(
    *, error: str, grant_type: str, client_id: str, client_address: str | None, description: str = ""
) -> None:
    """Every refused token request (bad client, code, verifier, refresh token, scope, target) is audited,
    with the reason it was given (which names a refused scope; descriptions never carry a secret)."""
    record(
        "oauth.token.refused",
        outcome=AuditEvent.Outcome.FAILURE,
        target=client_id[:255],
        client_address=client_address,
        details={
            "error": error,
            "description": description[:300],
            "grant_type": grant_type[:100],
            "client_id": client_id[:255],
        },
    )


def introspect(client: Client, token: str, *, client_address: str | None) -> dict:
    """RFC 7662 answer for an authenticated confidential client: its own tokens freely, other clients' tokens
    only if its identity holds `tokens:validate`; anything else, invalid or not, is `{"active": false}`."""
    verification = verify_jwt(token)
    if not verification.valid:
        return {"active": False}
    claims = verification.claims
    if claims.get("client_id") != client.client_id and not caller_may(
        client_caller(client, client_address), "tokens:validate"
    ):
        record(
            "oauth.token.introspect",
            outcome=AuditEvent.Outcome.DENIED,
            actor=client_actor(client),
            target=verification.chitty_id or "",
            client_address=client_address,
            details={"jti": verification.jti, "permission": "tokens:validate"},
        )
        return {"active": False}
    return {"active": True, "token_type": "Bearer"} | {
        name: claims[name] for name in INTROSPECTED_CLAIMS if name in claims
    }


def record_revocation_request(
    client: Client, token_type_hint: str | None, *, client_address: str | None
) -> None:
    record(
        "oauth.token.revoke",
        actor=client_actor(client),
        target=client.client_id,
        client_address=client_address,
        details={"token_type_hint": token_type_hint or ""},
    )
