"""ChittyAuth's OAuth 2.1 rules. django-oauth-toolkit speaks the protocol; these functions decide.

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
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model
from oauth2_provider.oauth2_validators import validate_resource_as_url_prefix

from audit.models import AuditEvent
from audit.services import record
from grants.checks import authorize, bounded_by_grants, caller_may, held_scopes, refuse_unheld_scopes
from grants.permissions import KNOWN_PERMISSIONS, WILDCARD, covers, normalize_scope
from identities.models import Identity
from identities.services import resolve_principal
from identities.staff_links import linked_identity
from kernel.callers import Caller
from kernel.errors import PermissionDenied, ValidationFailed
from keys.credentials import authenticate_authorization_header
from keys.models import RevokedToken
from keys.token_format import JTI_BYTES, MAX_SCOPES, audience, issuer, sign
from keys.token_verification import verify_jwt
from keys.tokens import revoke_jti_for_session
from oauth.models import Client, IssuedAccessToken
from sessions.models import AuthSession
from sessions.services import end_sessions_of_credential, open_session

# Permissions this app checks; part of the public contract like grants.permissions.KNOWN_PERMISSIONS.
OAUTH_PERMISSIONS = ("oauth_clients:register", "oauth_clients:manage")
SYSTEM_ACTOR = "system:oauth"
PKCE_METHOD = "S256"
# What an introspection answer repeats from an active token's claims (RFC 7662 §2.2).
INTROSPECTED_CLAIMS = ("scope", "client_id", "sub", "chitty_id", "aud", "iss", "exp", "iat", "nbf", "jti")


class OAuthRuleBroken(ValidationFailed):
    """A request breaks one of these rules; `oauth_error` is the RFC error code the protocol answers with."""

    oauth_error = "invalid_request"


class InvalidTarget(OAuthRuleBroken):
    code = "INVALID_TARGET"
    oauth_error = "invalid_target"


class ScopeRefused(OAuthRuleBroken):
    code = "SCOPE_REFUSED"
    oauth_error = "invalid_scope"


class RefreshRefused(OAuthRuleBroken):
    code = "REFRESH_REFUSED"
    oauth_error = "invalid_grant"


def client_actor(client: Client) -> str:
    return f"oauth-client:{client.client_id}"


def client_caller(client: Client, client_address: str | None = None) -> Caller:
    """An authenticated client as a caller: a service client holds its identity's grants narrowed by its
    allowed scopes, like an API key; an interactive client holds nothing of its own."""
    return Caller(
        actor=client_actor(client),
        identity=client.identity,
        credential_type="oauth_client",
        credential_id=client.client_id,
        scopes=tuple(client.allowed_scopes),
        client_address=client_address,
    )


# ---------------------------------------------------------------------------------------------------------
# Scopes


def supported_scopes() -> list[str]:
    """Advertised as `scopes_supported`: the permissions ChittyAuth itself checks. Any permission pattern or
    bare action (`read` is `*:read`) may be requested too."""
    return list(dict.fromkeys((*KNOWN_PERMISSIONS, *OAUTH_PERMISSIONS)))


def default_scopes(client: Client | None) -> list[str]:
    """Scopes for a request that names none: what a service client's identity holds within its allowed
    scopes; for an interactive client, the advertised ones (narrowed to what the consenting identity holds,
    see `authorization_scopes`)."""
    if client is not None and client.identity is not None:
        return list(held_scopes(client.identity, _normalized(client.allowed_scopes or [WILDCARD])))
    if client is not None and client.allowed_scopes:
        return list(client.allowed_scopes)
    return supported_scopes()


def _normalized(scopes: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(normalize_scope(scope) for scope in scopes))


def scopes_within(requested: Iterable[str], granted: Iterable[str]) -> bool:
    """Narrowing only: is every requested scope covered by one already granted (`read` by `*:read`, by `*`)?"""
    try:
        requested, granted = _normalized(requested), _normalized(granted)
    except ValidationFailed:
        return False
    return all(any(covers(held, scope) for held in granted) for scope in requested)


def scopes_allowed(client: Client | None, scopes: Iterable[str]) -> bool:
    """Every scope must be well-formed and, for a client with allowed scopes, within them."""
    scopes = list(scopes)
    if not 0 < len(scopes) <= MAX_SCOPES:
        return False
    if client is not None and client.allowed_scopes:
        return scopes_within(scopes, client.allowed_scopes)
    return scopes_within(scopes, [WILDCARD])


def describe_scope(scope: str) -> str:
    """What a scope lets a client do, in words for the consent page."""
    try:
        normalized = normalize_scope(scope)
    except ValidationFailed:
        return f"{scope} (not a valid scope)"
    if normalized == WILDCARD:
        return "everything your grants allow"
    resource, _, action = normalized.partition(":")
    what = "any action" if action == WILDCARD else action
    where = "any resource" if resource == WILDCARD else resource
    return f"{what} on {where}"


@dataclass(frozen=True)
class ConsentScope:
    scope: str
    description: str


def consent_scopes(scopes: Iterable[str]) -> list[ConsentScope]:
    """The requested scopes as the consenting person sees them."""
    return [ConsentScope(scope, describe_scope(scope)) for scope in scopes]


def _acting_client(client: Client, identity: Identity, client_address: str | None = None) -> Caller:
    """A client acting for `identity` within its allowed scopes (none set: any), as the minting caller."""
    return Caller(
        actor=client_actor(client),
        identity=identity,
        credential_type="oauth_client",
        credential_id=client.client_id,
        scopes=_normalized(client.allowed_scopes or [WILDCARD]),
        client_address=client_address,
    )


def refuse_unheld_token_scopes(
    client: Client, identity: Identity, scopes: tuple[str, ...], *, action: str, client_address: str | None
) -> None:
    """`refuse_unheld_scopes` for a token a client gets for `identity`, answered as `invalid_scope`."""
    try:
        refuse_unheld_scopes(
            _acting_client(client, identity, client_address),
            identity,
            scopes,
            action=action,
            minting="a token",
        )
    except (PermissionDenied, ValidationFailed) as refusal:
        raise ScopeRefused(refusal.message, scope=refusal.extra.get("scope")) from None


# ---------------------------------------------------------------------------------------------------------
# Authorization requests


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
    requested = _normalized(scopes)
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


# ---------------------------------------------------------------------------------------------------------
# Resources and audiences (RFC 8707)


def token_audience(resources: Iterable[str]) -> str | list[str]:
    """The `aud` of a token for `resources` (JWT_AUDIENCE when none are named), or `InvalidTarget`."""
    own = [settings.CHITTYAUTH_BASE_URL, settings.MCP_RESOURCE_URL]
    audiences = []
    for resource in resources:
        if validate_resource_as_url_prefix(resource, own):
            audiences.append(audience())
        elif resource in settings.OAUTH_EXTERNAL_RESOURCES:
            audiences.append(resource)
        else:
            raise InvalidTarget(f"{resource} is not a resource this authorization server issues tokens for")
    unique = list(dict.fromkeys(audiences)) or [audience()]
    return unique[0] if len(unique) == 1 else unique


# ---------------------------------------------------------------------------------------------------------
# Issuing access tokens


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
    granted = _normalized(scopes)
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


# ---------------------------------------------------------------------------------------------------------
# Refresh tokens


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


# ---------------------------------------------------------------------------------------------------------
# Introspection and revocation (RFC 7662, RFC 7009)


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


# ---------------------------------------------------------------------------------------------------------
# Clients


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
    allowed = _normalized(scopes or [WILDCARD])
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
