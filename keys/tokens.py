"""Issuing, verifying and revoking JWT access tokens (RFC 9068 shape, RFC 8725 practices).

Tokens are signed with HS256 and `JWT_SECRET` (the seed's scheme) or with the active asymmetric signing key
(`JWT_SIGNING_ALGORITHM` = EdDSA or ES256), whose `kid` is in the header. Verification pins the algorithm to
the key: a `kid` admits only that published key's algorithm, no `kid` admits only HS256.

`verify_jwt` is the hot path of every bearer-token request: after one read of the shared security epoch it
answers from per-process caches of revoked jtis (the whole set, loaded once per epoch) and principal statuses,
which the next revocation or status change anywhere invalidates, so revocation takes effect on the very next
validation.
"""

import base64
import binascii
import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import jwt
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone

from audit.services import record
from grants.checks import authorize, bounded_by_grants, caller_may, held_scopes, refuse_unheld_scopes
from grants.permissions import WILDCARD, normalize_scope
from identities.models import Identity
from identities.services import resolve_principal
from kernel.callers import Caller
from kernel.errors import ValidationFailed
from kernel.memory_only import needs_io
from kernel.security_epoch import bump_epoch, current_epoch
from keys.jwt_decoder import DECODER
from keys.models import RevokedToken
from keys.signing_keys import (
    ASYMMETRIC_ALGORITHMS,
    is_plausible_kid,
    leeway_seconds,
    max_token_lifetime_seconds,
    published_key,
    signing_key_for_issuing,
)
from sessions.models import AuthSession
from sessions.services import end_sessions_of_credential, open_session

HS256 = "HS256"
JWT_TYP = "at+jwt"  # RFC 9068
DEFAULT_ISSUER = "chittyauth"
DEFAULT_AUDIENCE = "chittyos"
DEFAULT_LIFETIME_SECONDS = 3600
MAX_TOKEN_CHARS = 8192
MAX_CLAIMS_BYTES = 4096
MAX_SCOPES = 64
JTI_BYTES = 18  # 144 random bits
JTI_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
EXPIRES_IN_PATTERN = re.compile(r"([0-9]{1,9})([smhd]?)")
UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
REQUIRED_CLAIMS = ("iss", "aud", "sub", "iat", "nbf", "exp", "jti", "scope")
# Registered and reserved names (RFC 7519, 9068, 8693, 7800, OpenID Connect) plus header names: a caller's
# extra claims may not set or shadow any of them, in any letter case.
RESERVED_CLAIMS = frozenset(
    {
        "iss",
        "sub",
        "aud",
        "exp",
        "nbf",
        "iat",
        "jti",
        "scope",
        "scp",
        "scopes",
        "permissions",
        "chitty_id",
        "client_id",
        "cnf",
        "act",
        "may_act",
        "azp",
        "auth_time",
        "acr",
        "amr",
        "nonce",
        "at_hash",
        "c_hash",
        "sid",
        "roles",
        "groups",
        "entitlements",
        "typ",
        "cty",
        "alg",
        "kid",
        "jku",
        "jwk",
        "x5u",
        "x5c",
        "x5t",
        "crit",
    }
)
MAX_CACHED_ENTRIES = 50_000
MAX_PRELOADED_REVOCATIONS = 100_000
MAX_CACHED_TOKENS = 10_000
_ALL_CHECKS = {"require": list(REQUIRED_CLAIMS)}
# Revoking an expired token is fine: only its signature, issuer and audience must hold.
_ALL_BUT_LIFETIME_CHECKS = {**_ALL_CHECKS, "verify_exp": False, "verify_nbf": False, "verify_iat": False}


def _issuer() -> str:
    return getattr(settings, "JWT_ISSUER", DEFAULT_ISSUER)


def _audience() -> str:
    return getattr(settings, "JWT_AUDIENCE", DEFAULT_AUDIENCE)


def _signing_algorithm() -> str:
    algorithm = getattr(settings, "JWT_SIGNING_ALGORITHM", HS256)
    if algorithm != HS256 and algorithm not in ASYMMETRIC_ALGORITHMS:
        raise ImproperlyConfigured(
            f"JWT_SIGNING_ALGORITHM must be HS256 or one of {', '.join(ASYMMETRIC_ALGORITHMS)}, not {algorithm!r}"
        )
    return algorithm


@dataclass(frozen=True)
class IssuedToken:
    token: str = field(repr=False)
    jti: str
    chitty_id: str
    expires_at: datetime
    algorithm: str
    kid: str | None
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class TokenVerification:
    """The answer about one token. `code` is VALID or names the first check that failed."""

    valid: bool
    code: str
    chitty_id: str | None = None
    jti: str | None = None
    scopes: tuple[str, ...] = ()
    expires_at: datetime | None = None
    claims: dict | None = None
    identity: Identity | None = field(default=None, compare=False, repr=False)
    message: str = ""

    def as_dict(self) -> dict:
        return {
            "valid": self.valid,
            "code": self.code,
            "message": self.message,
            "chitty_id": self.chitty_id,
            "jti": self.jti,
            "scopes": list(self.scopes),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "claims": self.claims,
        }


def parse_expires_in(value: str | int | None) -> int:
    """Seconds from `90s`, `15m`, `24h`, `7d` or plain seconds; None means the default lifetime.

    Above `JWT_MAX_LIFETIME_SECONDS` is refused rather than silently shortened, so nobody is surprised by
    an early expiry.
    """
    if value is None or value == "":
        seconds = int(getattr(settings, "JWT_DEFAULT_LIFETIME_SECONDS", DEFAULT_LIFETIME_SECONDS))
    elif isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and (match := EXPIRES_IN_PATTERN.fullmatch(value.strip().lower())):
        seconds = int(match[1]) * UNIT_SECONDS[match[2]]
    else:
        raise ValidationFailed(
            f"Invalid expires_in {value!r}: use a number of seconds or a number with s, m, h or d (e.g. 15m, 24h, 7d)",
            code="INVALID_EXPIRES_IN",
        )
    maximum = max_token_lifetime_seconds()
    if seconds <= 0:
        raise ValidationFailed("expires_in must be at least one second", code="INVALID_EXPIRES_IN")
    if seconds > maximum:
        raise ValidationFailed(
            f"expires_in is {seconds} seconds; the maximum is {maximum} seconds",
            code="EXPIRES_IN_TOO_LONG",
            max_seconds=maximum,
        )
    return seconds


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
        "iss": _issuer(),
        "aud": _audience(),
        "sub": identity.chitty_id,
        "chitty_id": identity.chitty_id,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": int(expires.timestamp()),
        "jti": jti,
        "scope": " ".join(requested),
    }
    algorithm = _signing_algorithm()
    if algorithm == HS256:
        kid = None
        token = jwt.encode(payload, settings.JWT_SECRET, algorithm=HS256, headers={"typ": JWT_TYP})
    else:
        active = signing_key_for_issuing()
        algorithm, kid = active.algorithm, active.kid
        token = jwt.encode(
            payload, active.private_key, algorithm=algorithm, headers={"typ": JWT_TYP, "kid": kid}
        )
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


class _Rejected(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _unverified_segment(segment: str) -> dict:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        raise _Rejected("MALFORMED", "The token is not a compact JWS") from None
    if not isinstance(decoded, dict):
        raise _Rejected("MALFORMED", "The token's header and payload must be JSON objects")
    return decoded


def _unverified_parts(token: object) -> list[str]:
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS:
        raise _Rejected("MALFORMED", f"The token must be a string of at most {MAX_TOKEN_CHARS} characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise _Rejected("MALFORMED", "The token must have three dot-separated parts")
    return parts


def _verification_key(header: dict, epoch: int) -> tuple[object, str]:
    """The one key and algorithm this header may be verified with: the algorithm is pinned per key."""
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or not algorithm:
        raise _Rejected("MALFORMED", "The token header has no alg")
    if algorithm.lower() == "none":
        raise _Rejected("ALGORITHM_NOT_ALLOWED", "Unsigned tokens are not accepted")
    if "kid" not in header:
        if algorithm != HS256:
            raise _Rejected("ALGORITHM_NOT_ALLOWED", f"A token without kid must be HS256, not {algorithm}")
        return settings.JWT_SECRET, HS256
    kid = header["kid"]
    key = published_key(kid, epoch=epoch) if is_plausible_kid(kid) else None
    if key is None:
        raise _Rejected("UNKNOWN_KID", "The token's kid names no published signing key")
    if algorithm != key.algorithm:
        raise _Rejected("ALGORITHM_NOT_ALLOWED", f"Key {kid} signs with {key.algorithm}, not {algorithm}")
    return key.public_key, key.algorithm


def _verified_claims(token: object, epoch: int, *, check_lifetime: bool = True) -> dict:
    """The claims of a token we signed, or `_Rejected` naming the first failed check."""
    header = _unverified_segment(_unverified_parts(token)[0])
    key, algorithm = _verification_key(header, epoch)
    try:
        claims = DECODER.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=_audience(),
            issuer=_issuer(),
            leeway=leeway_seconds(),
            options=_ALL_CHECKS if check_lifetime else _ALL_BUT_LIFETIME_CHECKS,
        )
    except jwt.InvalidSignatureError:
        raise _Rejected("BAD_SIGNATURE", "The token's signature does not verify") from None
    except jwt.ExpiredSignatureError:
        raise _Rejected("EXPIRED", "The token has expired") from None
    except jwt.ImmatureSignatureError:
        raise _Rejected("NOT_YET_VALID", "The token is not valid yet") from None
    except jwt.InvalidIssuerError:
        raise _Rejected("BAD_ISSUER", f"The token was not issued by {_issuer()}") from None
    except jwt.InvalidAudienceError:
        raise _Rejected("BAD_AUDIENCE", f"The token is not meant for {_audience()}") from None
    except jwt.MissingRequiredClaimError as exc:
        raise _Rejected("MISSING_CLAIM", f"The token has no {exc.claim} claim") from None
    except jwt.InvalidAlgorithmError:
        raise _Rejected("ALGORITHM_NOT_ALLOWED", f"Only {algorithm} is accepted for this token") from None
    except jwt.InvalidTokenError:
        raise _Rejected("MALFORMED", "The token is not a well-formed JWT") from None
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower().removeprefix("application/") != JWT_TYP:
        raise _Rejected("BAD_TYPE", f"The token's typ must be {JWT_TYP}")
    if not isinstance(claims["scope"], str) or claims.get("chitty_id", claims["sub"]) != claims["sub"]:
        raise _Rejected("MALFORMED", "The token's scope or chitty_id claim is malformed")
    return claims


class _VerificationCache:
    """Answers valid while the security epoch they were filled under lasts: the revoked jtis, principals, and
    tokens already found valid (keyed by their SHA-256, never the token itself; expiry is rechecked on
    every hit), so a token presented again costs one epoch read and a lookup.

    Every revocation bumps the epoch, so the set of revoked jtis loaded once per epoch stays complete and a
    fresh token costs no query. Above `MAX_PRELOADED_REVOCATIONS` live entries the set is not held; each
    unseen jti is then asked about once per epoch instead."""

    __slots__ = ("epoch", "principals", "revoked", "revoked_jtis", "revoked_jtis_loaded", "valid_tokens")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.revoked_jtis_loaded = False
        self.revoked_jtis: frozenset[str] | None = None
        self.revoked: dict[str, bool] = {}
        self.principals: dict[str, Identity | None] = {}
        self.valid_tokens: dict[bytes, tuple[int, TokenVerification]] = {}


_verification_cache = _VerificationCache(epoch=-1)


def _cache_for(epoch: int) -> _VerificationCache:
    global _verification_cache
    cached = _verification_cache
    if cached.epoch != epoch:
        cached = _verification_cache = _VerificationCache(epoch)
    return cached


def _live_revoked_jtis() -> frozenset[str] | None:
    """Every jti whose revocation entry has not expired, or None when there are too many to hold.

    An entry is kept until its token fails the expiry check anyway, so leaving out expired entries loses
    nothing: a token that reaches the revocation check has not expired.
    """
    jtis = list(
        RevokedToken.objects.filter(expires_at__gt=timezone.now())
        .order_by()
        .values_list("jti", flat=True)[: MAX_PRELOADED_REVOCATIONS + 1]
    )
    if len(jtis) > MAX_PRELOADED_REVOCATIONS:
        return None
    return frozenset(jtis)


def _is_revoked(cached: _VerificationCache, jti: str) -> bool:
    if not cached.revoked_jtis_loaded:
        needs_io("revoked tokens")
        cached.revoked_jtis = _live_revoked_jtis()
        cached.revoked_jtis_loaded = True
    if cached.revoked_jtis is not None:
        return jti in cached.revoked_jtis
    revoked = cached.revoked.get(jti)
    if revoked is None:
        needs_io("revoked token lookup")
        revoked = RevokedToken.objects.filter(jti=jti).exists()
        if len(cached.revoked) >= MAX_CACHED_ENTRIES:
            cached.revoked.clear()
        cached.revoked[jti] = revoked
    return revoked


_UNKNOWN = object()


def _principal(cached: _VerificationCache, chitty_id: str) -> Identity | None:
    known = cached.principals.get(chitty_id, _UNKNOWN)
    if known is not _UNKNOWN:
        return known
    needs_io("principal lookup")
    identity = Identity.objects.filter(chitty_id=chitty_id).first()
    if len(cached.principals) >= MAX_CACHED_ENTRIES:
        cached.principals.clear()
    cached.principals[chitty_id] = identity
    return identity


def verify_jwt(token: str) -> TokenVerification:
    """Check a bearer token completely. Hot path: no caller, no audit, no query while nothing changed."""
    epoch = current_epoch()
    cached = _cache_for(epoch)
    fingerprint = _fingerprint(token)
    hit = cached.valid_tokens.get(fingerprint) if fingerprint else None
    if hit is not None and hit[0] > time.time() - leeway_seconds():
        return hit[1]
    try:
        claims = _verified_claims(token, epoch)
    except _Rejected as rejection:
        return TokenVerification(False, rejection.code, message=rejection.message)
    chitty_id, jti, expires = claims["sub"], claims["jti"], int(claims["exp"])
    expires_at = datetime.fromtimestamp(expires, tz=UTC)
    # The principal first: suspending it also revokes its JWT sessions' tokens, and this code says more.
    identity = _principal(cached, chitty_id)
    if identity is None or not identity.is_active:
        status = identity.status if identity else "not registered"
        return TokenVerification(
            False,
            "IDENTITY_SUSPENDED",
            chitty_id,
            jti,
            expires_at=expires_at,
            message=f"The token's principal {chitty_id} is {status}",
        )
    if _is_revoked(cached, jti):
        return TokenVerification(
            False, "REVOKED", chitty_id, jti, expires_at=expires_at, message="The token has been revoked"
        )
    verification = TokenVerification(
        True,
        "VALID",
        chitty_id,
        jti,
        tuple(claims["scope"].split()),
        expires_at,
        claims,
        identity,
        "The token is valid",
    )
    if len(cached.valid_tokens) >= MAX_CACHED_TOKENS:
        cached.valid_tokens.clear()
    cached.valid_tokens[fingerprint] = (expires, verification)
    return verification


def _fingerprint(token: object) -> bytes | None:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        return None
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _claimed_subject(token: object) -> str | None:
    """The sub a token claims, unverified: only to let a principal hear why its own token failed."""
    try:
        subject = _unverified_segment(_unverified_parts(token)[1]).get("sub")
    except _Rejected:
        return None
    return subject if isinstance(subject, str) else None


def validate_jwt(caller: Caller, token: str) -> TokenVerification:
    """The seed's validate_jwt: your own token freely, anyone's with `tokens:validate`. Failures are audited."""
    verification = verify_jwt(token)
    if not caller_may(caller, "tokens:validate"):
        subject = verification.chitty_id or _claimed_subject(token)
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
        claims = _verified_claims(token, current_epoch(), check_lifetime=False)
    except _Rejected as rejection:
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
    """Record a revoked jti once, audited, and bump the epoch so every process sees it on its next check."""
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
            bump_epoch()
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
