"""What a ChittyAuth JWT is: its header and claim rules, issuer, audience, lifetimes, the signing of it, and
the shapes answers about tokens take (RFC 9068 shape, RFC 8725 practices)."""

import re
from dataclasses import dataclass, field
from datetime import datetime

import jwt
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from identities.models import Identity
from kernel.errors import ValidationFailed
from keys.signing_keys import (
    ASYMMETRIC_ALGORITHMS,
    max_token_lifetime_seconds,
    signing_key_for_issuing,
)

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
MAX_PRELOADED_REVOCATIONS = 100_000
ALL_CHECKS = {"require": list(REQUIRED_CLAIMS)}
# Revoking an expired token is fine: only its signature, issuer and audience must hold.
ALL_BUT_LIFETIME_CHECKS = {**ALL_CHECKS, "verify_exp": False, "verify_nbf": False, "verify_iat": False}


def issuer() -> str:
    return getattr(settings, "JWT_ISSUER", DEFAULT_ISSUER)


def audience() -> str:
    return getattr(settings, "JWT_AUDIENCE", DEFAULT_AUDIENCE)


def signing_algorithm() -> str:
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


def sign(payload: dict) -> tuple[str, str, str | None]:
    """The signed token, its algorithm and kid: HS256 with JWT_SECRET (no kid), or the active asymmetric
    signing key named by its kid. Every token ChittyAuth issues, OAuth's included, is signed here."""
    algorithm = signing_algorithm()
    if algorithm == HS256:
        return (
            jwt.encode(payload, settings.JWT_SECRET, algorithm=HS256, headers={"typ": JWT_TYP}),
            HS256,
            None,
        )
    active = signing_key_for_issuing()
    token = jwt.encode(
        payload, active.private_key, algorithm=active.algorithm, headers={"typ": JWT_TYP, "kid": active.kid}
    )
    return token, active.algorithm, active.kid
