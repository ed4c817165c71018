"""The rules every OAuth flow shares: the permissions and refusals of this app, clients as callers, scopes in
the permission grammar (and the one no-escalation rule applied to them), and resources as audiences.

See `oauth.consent` (authorization requests), `oauth.access_tokens` (minting, refresh, introspection) and
`oauth.clients` (service clients and registration): django-oauth-toolkit speaks the protocol, these decide.
"""

from collections.abc import Iterable

from django.conf import settings
from oauth2_provider.oauth2_validators import validate_resource_as_url_prefix

from grants.checks import held_scopes, refuse_unheld_scopes
from grants.permissions import KNOWN_PERMISSIONS, WILDCARD, covers, normalize_scope
from identities.models import Identity
from kernel.callers import Caller
from kernel.errors import PermissionDenied, ValidationFailed
from keys.token_format import MAX_SCOPES, audience
from oauth.models import Client

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


def supported_scopes() -> list[str]:
    """Advertised as `scopes_supported`: the permissions ChittyAuth itself checks. Any permission pattern or
    bare action (`read` is `*:read`) may be requested too."""
    return list(dict.fromkeys((*KNOWN_PERMISSIONS, *OAUTH_PERMISSIONS)))


def default_scopes(client: Client | None) -> list[str]:
    """Scopes for a request that names none: what a service client's identity holds within its allowed
    scopes; for an interactive client, the advertised ones (narrowed to what the consenting identity holds,
    see `authorization_scopes`)."""
    if client is not None and client.identity is not None:
        return list(held_scopes(client.identity, normalized_scopes(client.allowed_scopes or [WILDCARD])))
    if client is not None and client.allowed_scopes:
        return list(client.allowed_scopes)
    return supported_scopes()


def normalized_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(normalize_scope(scope) for scope in scopes))


def scopes_within(requested: Iterable[str], granted: Iterable[str]) -> bool:
    """Narrowing only: is every requested scope covered by one already granted (`read` by `*:read`, by `*`)?"""
    try:
        requested, granted = normalized_scopes(requested), normalized_scopes(granted)
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


def acting_client(client: Client, identity: Identity, client_address: str | None = None) -> Caller:
    """A client acting for `identity` within its allowed scopes (none set: any), as the minting caller."""
    return Caller(
        actor=client_actor(client),
        identity=identity,
        credential_type="oauth_client",
        credential_id=client.client_id,
        scopes=normalized_scopes(client.allowed_scopes or [WILDCARD]),
        client_address=client_address,
    )


def refuse_unheld_token_scopes(
    client: Client, identity: Identity, scopes: tuple[str, ...], *, action: str, client_address: str | None
) -> None:
    """`refuse_unheld_scopes` for a token a client gets for `identity`, answered as `invalid_scope`."""
    try:
        refuse_unheld_scopes(
            acting_client(client, identity, client_address),
            identity,
            scopes,
            action=action,
            minting="a token",
        )
    except (PermissionDenied, ValidationFailed) as refusal:
        raise ScopeRefused(refusal.message, scope=refusal.extra.get("scope")) from None


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
