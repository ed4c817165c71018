"""Verifying JWTs: the hot path of every bearer-token request.

The algorithm is pinned to the key: a `kid` admits only that published key's algorithm, no `kid` admits only
HS256. After one read of the shared security epoch, `verify_jwt` answers from per-process caches of revoked
jtis (the whole set, loaded once per epoch) and principal statuses, which the next revocation or status change
anywhere invalidates, so revocation takes effect on the very next validation.
"""

import base64
import binascii
import hashlib
import json
import time
from datetime import UTC, datetime

import jwt
from django.conf import settings
from django.utils import timezone

from identities.models import Identity
from kernel.memory_only import needs_io
from kernel.security_epoch import current_epoch
from keys.jwt_decoder import DECODER
from keys.models import RevokedToken
from keys.signing_keys import (
    is_plausible_kid,
    leeway_seconds,
    published_key,
)
from keys.token_format import (
    ALL_BUT_LIFETIME_CHECKS,
    ALL_CHECKS,
    HS256,
    JWT_TYP,
    MAX_CACHED_ENTRIES,
    MAX_CACHED_TOKENS,
    MAX_PRELOADED_REVOCATIONS,
    MAX_TOKEN_CHARS,
    TokenVerification,
    audience,
    issuer,
)


class Rejected(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _unverified_segment(segment: str) -> dict:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        raise Rejected("MALFORMED", "The token is not a compact JWS") from None
    if not isinstance(decoded, dict):
        raise Rejected("MALFORMED", "The token's header and payload must be JSON objects")
    return decoded


def _unverified_parts(token: object) -> list[str]:
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS:
        raise Rejected("MALFORMED", f"The token must be a string of at most {MAX_TOKEN_CHARS} characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise Rejected("MALFORMED", "The token must have three dot-separated parts")
    return parts


def _verification_key(header: dict, epoch: int) -> tuple[object, str]:
    """The one key and algorithm this header may be verified with: the algorithm is pinned per key."""
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or not algorithm:
        raise Rejected("MALFORMED", "The token header has no alg")
    if algorithm.lower() == "none":
        raise Rejected("ALGORITHM_NOT_ALLOWED", "Unsigned tokens are not accepted")
    if "kid" not in header:
        if algorithm != HS256:
            raise Rejected("ALGORITHM_NOT_ALLOWED", f"A token without kid must be HS256, not {algorithm}")
        return settings.JWT_SECRET, HS256
    kid = header["kid"]
    key = published_key(kid, epoch=epoch) if is_plausible_kid(kid) else None
    if key is None:
        raise Rejected("UNKNOWN_KID", "The token's kid names no published signing key")
    if algorithm != key.algorithm:
        raise Rejected("ALGORITHM_NOT_ALLOWED", f"Key {kid} signs with {key.algorithm}, not {algorithm}")
    return key.public_key, key.algorithm


def verified_claims(token: object, epoch: int, *, check_lifetime: bool = True) -> dict:
    """The claims of a token we signed, or `Rejected` naming the first failed check."""
    header = _unverified_segment(_unverified_parts(token)[0])
    key, algorithm = _verification_key(header, epoch)
    try:
        claims = DECODER.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=audience(),
            issuer=issuer(),
            leeway=leeway_seconds(),
            options=ALL_CHECKS if check_lifetime else ALL_BUT_LIFETIME_CHECKS,
        )
    except jwt.InvalidSignatureError:
        raise Rejected("BAD_SIGNATURE", "The token's signature does not verify") from None
    except jwt.ExpiredSignatureError:
        raise Rejected("EXPIRED", "The token has expired") from None
    except jwt.ImmatureSignatureError:
        raise Rejected("NOT_YET_VALID", "The token is not valid yet") from None
    except jwt.InvalidIssuerError:
        raise Rejected("BAD_ISSUER", f"The token was not issued by {issuer()}") from None
    except jwt.InvalidAudienceError:
        raise Rejected("BAD_AUDIENCE", f"The token is not meant for {audience()}") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Rejected("MISSING_CLAIM", f"The token has no {exc.claim} claim") from None
    except jwt.InvalidAlgorithmError:
        raise Rejected("ALGORITHM_NOT_ALLOWED", f"Only {algorithm} is accepted for this token") from None
    except jwt.InvalidTokenError:
        raise Rejected("MALFORMED", "The token is not a well-formed JWT") from None
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower().removeprefix("application/") != JWT_TYP:
        raise Rejected("BAD_TYPE", f"The token's typ must be {JWT_TYP}")
    if not isinstance(claims["scope"], str) or claims.get("chitty_id", claims["sub"]) != claims["sub"]:
        raise Rejected("MALFORMED", "The token's scope or chitty_id claim is malformed")
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
        claims = verified_claims(token, epoch)
    except Rejected as rejection:
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


def claimed_subject(token: object) -> str | None:
    """The sub a token claims, unverified: only to let a principal hear why its own token failed."""
    try:
        subject = _unverified_segment(_unverified_parts(token)[1]).get("sub")
    except Rejected:
        return None
    return subject if isinstance(subject, str) else None
