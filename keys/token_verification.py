"""Verifying JWTs: the hot path of every bearer-token request.

The algorithm is pinned to the key: a `kid` admits only that published key's algorithm, no `kid` admits only
HS256. `verify_jwt` answers from per-process caches (least recently used evicted first) of tokens already found
valid, principals, and the set of revoked jtis. Each entry depends on invalidation topics: a token on its jti,
its principal and its signing key; a principal on itself; the revoked set on every revocation. Revoking a jti
or suspending a principal anywhere therefore drops just what depends on it, and takes effect on the very next
validation.
"""

import base64
import binascii
import hashlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from django.conf import settings
from django.utils import timezone

from identities.models import Identity
from kernel.bounded_cache import BoundedCache
from kernel.invalidation import (
    REVOKED_TOKENS,
    current_stamp,
    is_fresh,
    principal_topic,
    signing_key_topic,
    token_topic,
)
from kernel.memory_only import needs_read
from kernel.metrics import CREDENTIAL_VERIFICATIONS, counted_when_answered
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
    MAX_PRELOADED_REVOCATIONS,
    MAX_TOKEN_CHARS,
    TokenVerification,
    audience,
    issuer,
)
from keys.verification_history import count_verification


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


def _verification_key(header: dict) -> tuple[object, str]:
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
    key = published_key(kid) if is_plausible_kid(kid) else None
    if key is None:
        raise Rejected("UNKNOWN_KID", "The token's kid names no published signing key")
    if algorithm != key.algorithm:
        raise Rejected("ALGORITHM_NOT_ALLOWED", f"Key {kid} signs with {key.algorithm}, not {algorithm}")
    return key.public_key, key.algorithm


def verified_claims(token: object, *, check_lifetime: bool = True) -> dict:
    """The claims of a token we signed, or `Rejected` naming the first failed check."""
    header = _unverified_segment(_unverified_parts(token)[0])
    key, algorithm = _verification_key(header)
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


@dataclass(frozen=True)
class _Cached:
    """A value as of `stamp`, valid while none of `topics` changed since."""

    value: Any
    stamp: int | None
    topics: tuple[str, ...]

    def is_fresh(self) -> bool:
        return is_fresh(self.stamp, self.topics)


_valid_tokens: BoundedCache[bytes, _Cached] = BoundedCache("jwts")  # by SHA-256, never the token itself
_principals: BoundedCache[str, _Cached] = BoundedCache("jwt_principals")
_revoked: BoundedCache[str, _Cached] = BoundedCache(
    "revoked_jtis"
)  # per jti, when the whole set is too big to hold
_revoked_set: list[_Cached] = []  # one entry at most: every live revoked jti, or None when too many


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


def _is_revoked(jti: str) -> bool:
    """From the set of revoked jtis (so a fresh token costs no query), or per jti above its size."""
    loaded = _revoked_set[0] if _revoked_set else None
    if loaded is None or not loaded.is_fresh():
        needs_read("revoked tokens")
        stamp = current_stamp()
        loaded = _Cached(_live_revoked_jtis(), stamp, (REVOKED_TOKENS,))
        _revoked_set[:] = [loaded] if stamp is not None else []
    if loaded.value is not None:
        return jti in loaded.value
    known = _revoked.lookup(jti, _Cached.is_fresh)
    if known is None:
        needs_read("revoked token lookup")
        known = _Cached(RevokedToken.objects.filter(jti=jti).exists(), current_stamp(), (token_topic(jti),))
        if known.stamp is not None:
            _revoked.put(jti, known)
    return known.value


def _principal(chitty_id: str) -> Identity | None:
    known = _principals.lookup(chitty_id, _Cached.is_fresh)
    if known is None:
        needs_read("principal lookup")
        stamp = current_stamp()
        known = _Cached(
            Identity.objects.filter(chitty_id=chitty_id).first(), stamp, (principal_topic(chitty_id),)
        )
        if stamp is not None:
            _principals.put(chitty_id, known)
    return known.value


def _unexpired_and_fresh(hit: _Cached) -> bool:
    return hit.value[0] > time.time() - leeway_seconds() and hit.is_fresh()


def verify_jwt(token: str) -> TokenVerification:
    """Check a bearer token completely. Hot path: no caller, no audit, no query while nothing it depends on
    changed. Counted in the metrics by its code."""
    verification = _verify(token)
    counted_when_answered(CREDENTIAL_VERIFICATIONS, "jwt", verification.code)
    count_verification("jwt", verification.code, None)
    return verification


def _verify(token: str) -> TokenVerification:
    fingerprint = _fingerprint(token)
    hit = _valid_tokens.lookup(fingerprint, _unexpired_and_fresh) if fingerprint else None
    if hit is not None:
        return hit.value[1]
    stamp = current_stamp()
    try:
        claims = verified_claims(token)
    except Rejected as rejection:
        return TokenVerification(False, rejection.code, message=rejection.message)
    chitty_id, jti, expires = claims["sub"], claims["jti"], int(claims["exp"])
    expires_at = datetime.fromtimestamp(expires, tz=UTC)
    # The principal first: suspending it also revokes its JWT sessions' tokens, and this code says more.
    identity = _principal(chitty_id)
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
    if _is_revoked(jti):
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
    if stamp is not None and fingerprint is not None:
        topics = (token_topic(jti), principal_topic(chitty_id), signing_key_topic(_kid(token)))
        _valid_tokens.put(fingerprint, _Cached((expires, verification), stamp, topics))
    return verification


def _kid(token: str) -> str:
    """The kid of a token that has just verified (none for the HS256 development secret)."""
    kid = _unverified_segment(_unverified_parts(token)[0]).get("kid")
    return kid if isinstance(kid, str) else HS256


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
