"""Issuing, validating and revoking JWT access tokens. What a token is lives in `keys.token_format`, how one
is verified in `keys.token_verification` (both re-exported here for the code that imports them from here)."""

import json
import secrets
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from audit.services import record
from grants.checks import authorize, bounded_by_grants, caller_may, held_scopes, refuse_unheld_scopes
from grants.permissions import WILDCARD, normalize_scope
from identities.models import Identity
from kernel.callers import Caller
from kernel.errors import ValidationFailed
from kernel.invalidation import REVOKED_TOKENS, invalidate, token_topic
from keys.models import RevokedToken
from keys.signing_keys import (
    leeway_seconds,
    max_token_lifetime_seconds,
)
from keys.token_format import (
    JTI_BYTES,
    JTI_PATTERN,
    MAX_CLAIMS_BYTES,
    MAX_SCOPES,
    RESERVED_CLAIMS,
    IssuedToken,
    TokenVerification,
    audience,
    issuer,
    parse_expires_in,
    sign,
)
from keys.token_verification import (
    Rejected,
    claimed_subject,
    verified_claims,
    verify_jwt,
)
from principals.services import resolve_principal
from sessions.models import AuthSession
from sessions.services import end_sessions_of_credential, open_session


def _clean_claims(claims: dict | None) -> dict:
    if claims is None:
        return {}
    if not isinstance(claims, dict) or not all(isinstance(name, str) and name for name in claims):
        raise ValidationFailed("claims must be a JSON object with non-empty names", code="INVALID_CLAIMS")
    reserved = sorted(name for name in claims if name.lower() in RESERVED_CLAIMS)
    if reserved:
        raise ValidationFailed(
            f"claims may not set registered or reserved claims: {', '.join(reserved)}",
            code="RESERVED_CLAIM",
            claims=reserved,
        )
    try:
        size = len(json.dumps(claims, separators=(",", ":"), allow_nan=False).encode())
    except (TypeError, ValueError, RecursionError):
        raise ValidationFailed("claims must contain only JSON values", code="INVALID_CLAIMS") from None
    if size > MAX_CLAIMS_BYTES:
        raise ValidationFailed(
            f"claims are {size} bytes as JSON; the limit is {MAX_CLAIMS_BYTES}", code="CLAIMS_TOO_LARGE"
        )
    return claims


def _clean_scopes(scopes: object) -> tuple[str, ...] | None:
    if scopes is None:
        return None
    if not isinstance(scopes, list | tuple) or not scopes or len(scopes) > MAX_SCOPES:
        raise ValidationFailed(f"scopes must be a list of 1 to {MAX_SCOPES} scopes", code="INVALID_SCOPE")
    return tuple(dict.fromkeys(normalize_scope(scope) for scope in scopes))


def _default_scopes(caller: Caller, identity: Identity) -> tuple[str, ...]:
    """What both the minting credential and the subject's grants hold (and, for another subject, the
    caller's grants too): never a bare `*` unless a `*` grant backs it."""
    ceiling = (WILDCARD,) if caller.is_exempt else caller.scopes
    if not caller.is_exempt and not caller.is_principal(identity):
        ceiling = held_scopes(caller.identity, ceiling) if caller.identity is not None else ()
    return held_scopes(identity, ceiling)


def generate_jwt(
    caller: Caller,
    *,
    chitty_id: str,
    expires_in: str | int | None = None,
    claims: dict | None = None,
    scopes: list[str] | None = None,
) -> IssuedToken:
    """Mint an access token: for yourself with `tokens:generate`, for another principal with `tokens:manage`.

    Offline verifiers read its `scope` claim as proof, so every scope must be held by the subject's grants
    (and by the caller, see `refuse_unheld_scopes`), and the token expires no later than those grants.
    """
    extra_claims = _clean_claims(claims)
    lifetime = parse_expires_in(expires_in)
    requested = _clean_scopes(scopes)
    for_self = caller.chitty_id is not None and caller.chitty_id == chitty_id
    authorize(caller, "tokens:generate" if for_self else "tokens:manage", target=str(chitty_id)[:128])
    identity = resolve_principal(chitty_id)
    if requested is None:
        requested = _default_scopes(caller, identity)
    refuse_unheld_scopes(caller, identity, requested, action="token.generate", minting="a token")

    issued_at = int(timezone.now().timestamp())
    expires = caller.bounded_expiry(
        bounded_by_grants(identity, requested, datetime.fromtimestamp(issued_at + lifetime, tz=UTC))
    )
    jti = secrets.token_urlsafe(JTI_BYTES)
    payload = {
        **extra_claims,
        "iss": issuer(),
        "aud": audience(),
        "sub": identity.chitty_id,
        "chitty_id": identity.chitty_id,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": int(expires.timestamp()),
        "jti": jti,
        "scope": " ".join(requested),
    }
    token, algorithm, kid = sign(payload)
    expires_at = datetime.fromtimestamp(payload["exp"], tz=UTC)
    with transaction.atomic():
        _record_issue(caller, identity, jti, expires_at, algorithm, kid, requested, extra_claims)
        bearer = Caller(
            actor=identity.chitty_id,
            identity=identity,
            credential_type="jwt",
            credential_id=jti,
            scopes=requested,
            client_address=caller.client_address,
            user_agent=caller.user_agent,
        )
        open_session(bearer, AuthSession.Channel.JWT, expires_at=expires_at)
    return IssuedToken(token, jti, identity.chitty_id, expires_at, algorithm, kid, requested)


def _record_issue(
    caller: Caller,
    identity: Identity,
    jti: str,
    expires_at: datetime,
    algorithm: str,
    kid: str | None,
    requested: tuple[str, ...],
    extra_claims: dict,
) -> None:
    record(
        "token.generate",
        actor=caller.actor,
        target=identity.chitty_id,
        client_address=caller.client_address,
        details={
            "jti": jti,
            "sub": identity.chitty_id,
            "exp": expires_at.isoformat(),
            "algorithm": algorithm,
            "kid": kid,
            "scopes": list(requested),
            "claim_names": sorted(extra_claims),
            "credential_id": caller.credential_id,
        },
    )


def validate_jwt(caller: Caller, token: str) -> TokenVerification:
    """The seed's validate_jwt: your own token freely, anyone's with `tokens:validate`. Failures are audited."""
    verification = verify_jwt(token)
    if not caller_may(caller, "tokens:validate"):
        subject = verification.chitty_id or claimed_subject(token)
        if caller.chitty_id is None or subject != caller.chitty_id:
            authorize(caller, "tokens:validate", target=verification.chitty_id or "")
    if not verification.valid:
        record(
            "token.validate",
            outcome="failure",
            actor=caller.actor,
            target=verification.chitty_id or "",
            client_address=caller.client_address,
            details={
                "code": verification.code,
                "jti": verification.jti,
                "credential_id": caller.credential_id,
            },
        )
    return verification


def _revocation_target(caller: Caller, token: str | None, jti: str | None) -> tuple[str, str, datetime]:
    """(jti, chitty_id, keep-until) of what the caller may revoke; refuses what it may not."""
    if (token is None) == (jti is None):
        raise ValidationFailed("Give exactly one of token or jti", code="INVALID_INPUT")
    now = timezone.now()
    if jti is not None:
        if not isinstance(jti, str) or not JTI_PATTERN.fullmatch(jti):
            raise ValidationFailed("jti must be 1 to 64 URL-safe characters", code="INVALID_JTI")
        authorize(caller, "tokens:manage", target=jti)
        # Whoever holds this jti got it at most the maximum lifetime ago.
        return jti, "", now + timedelta(seconds=max_token_lifetime_seconds() + leeway_seconds())
    try:
        claims = verified_claims(token, check_lifetime=False)
    except Rejected as rejection:
        raise ValidationFailed(
            f"Only a token signed here can be revoked: {rejection.message}",
            code="INVALID_TOKEN",
            reason=rejection.code,
        ) from None
    if caller.chitty_id is None or claims["sub"] != caller.chitty_id:
        authorize(caller, "tokens:manage", target=claims["sub"])
    # Kept until the token could no longer pass verification, leeway included.
    keep_until = datetime.fromtimestamp(int(claims["exp"]) + leeway_seconds(), tz=UTC)
    return claims["jti"], claims["sub"], keep_until


def _store_revocation(
    jti: str,
    chitty_id: str,
    keep_until: datetime,
    *,
    actor: str,
    reason: str,
    how: str,
    client_address: str | None = None,
) -> RevokedToken:
    """Record a revoked jti once, audited, and invalidate it so every process sees it on its next check."""
    with transaction.atomic():
        revoked, created = RevokedToken.objects.get_or_create(
            jti=jti,
            defaults={
                "chitty_id": chitty_id,
                "expires_at": keep_until,
                "revoked_by": actor,
                "reason": reason[:255],
            },
        )
        if created:
            record(
                "token.revoke",
                actor=actor,
                target=chitty_id or jti,
                client_address=client_address,
                details={
                    "jti": jti,
                    "sub": chitty_id,
                    "by": how,
                    "expires_at": keep_until.isoformat(),
                    "reason": reason[:255],
                },
            )
            invalidate(token_topic(jti), REVOKED_TOKENS)
    return revoked


def revoke_jwt(
    caller: Caller, *, token: str | None = None, jti: str | None = None, reason: str = ""
) -> RevokedToken:
    """Revoke one token, effective on its very next validation everywhere. Idempotent."""
    if not isinstance(reason, str):
        raise ValidationFailed("reason must be a string", code="INVALID_INPUT")
    revoked_jti, chitty_id, keep_until = _revocation_target(caller, token, jti)
    with transaction.atomic():
        revoked = _store_revocation(
            revoked_jti,
            chitty_id,
            keep_until,
            actor=caller.actor,
            reason=reason,
            how="jti" if jti is not None else "token",
            client_address=caller.client_address,
        )
        end_sessions_of_credential(revoked_jti, actor=caller.actor, reason=reason or "token revoked")
    return revoked


def revoke_jti_for_session(jti: str, chitty_id: str, *, actor: str, reason: str = "") -> RevokedToken:
    """Revoke the token behind a JWT session being ended; the sessions service has already authorized it."""
    keep_until = timezone.now() + timedelta(seconds=max_token_lifetime_seconds() + leeway_seconds())
    return _store_revocation(jti, chitty_id, keep_until, actor=actor, reason=reason, how="session")
