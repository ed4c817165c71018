"""Asymmetric JWT signing keys: creation, rotation, the published key set, and the per-process key ring.

Exactly one key is active and signs new tokens. Rotation retires the active key but keeps publishing it
until every token it signed has expired, so verification (here and by relying parties reading the JWKS)
accepts tokens from any published key. Private keys are stored encrypted with Fernet under a key from the
environment (`SIGNING_KEY_ENCRYPTION_KEY`; a comma-separated list rotates it: the first encrypts, all
decrypt). Each process holds the published keys in memory until a change to the key set (the `signing-keys`
invalidation topic) drops it; rotation also drops the cached tokens of the retired kid, and only those.
"""

import base64
import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from audit.services import record
from grants.checks import authorize
from kernel.callers import Caller
from kernel.errors import Conflict, ServiceError, ValidationFailed
from kernel.invalidation import SIGNING_KEYS, current_stamp, invalidate, is_fresh, signing_key_topic
from kernel.memory_only import needs_read
from keys.models import SigningKey

logger = logging.getLogger(__name__)

ASYMMETRIC_ALGORITHMS = tuple(SigningKey.Algorithm.values)
DEFAULT_ALGORITHM = SigningKey.Algorithm.EDDSA.value
DEFAULT_MAX_LIFETIME_SECONDS = 7 * 24 * 3600
DEFAULT_LEEWAY_SECONDS = 30
# Our kids are 22 url-safe characters; anything else in a token header is not one of ours.
KID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DEVELOPMENT_KEY_INFO = b"chittyauth signing-key encryption v1"
_TO_JWK = {
    SigningKey.Algorithm.EDDSA.value: jwt.algorithms.OKPAlgorithm.to_jwk,
    SigningKey.Algorithm.ES256.value: jwt.algorithms.ECAlgorithm.to_jwk,
}


def max_token_lifetime_seconds() -> int:
    return int(getattr(settings, "JWT_MAX_LIFETIME_SECONDS", DEFAULT_MAX_LIFETIME_SECONDS))


def leeway_seconds() -> int:
    return int(getattr(settings, "JWT_LEEWAY_SECONDS", DEFAULT_LEEWAY_SECONDS))


def is_plausible_kid(value: object) -> bool:
    """Could `value` be a kid we issued? Checked before a kid from a token header is used for anything."""
    return isinstance(value, str) and KID_PATTERN.fullmatch(value) is not None


@dataclass(frozen=True)
class PublishedKey:
    """A verification key: the active one, or a retired one still inside its publication window."""

    kid: str
    algorithm: str
    public_key: Any
    public_jwk: dict
    is_active: bool
    publish_until: datetime | None

    def is_published(self, now: datetime) -> bool:
        return self.is_active or (self.publish_until is not None and self.publish_until > now)


@dataclass(frozen=True)
class ActiveKey:
    """The decrypted private half of the active key, for signing. Never logged, never serialized."""

    kid: str
    algorithm: str
    private_key: Any = field(repr=False)


class _KeyRing:
    __slots__ = ("active", "keys", "stamp")

    def __init__(self, stamp: int | None, keys: dict[str, PublishedKey]) -> None:
        self.stamp = stamp
        self.keys = keys
        self.active: ActiveKey | None = None


_ring: _KeyRing | None = None


def encryption_keys() -> list[str]:
    """The Fernet keys private keys are stored under, the one that encrypts first."""
    configured = [
        item.strip()
        for item in getattr(settings, "SIGNING_KEY_ENCRYPTION_KEY", "").split(",")
        if item.strip()
    ]
    if configured:
        return configured
    # Development only: production settings refuse to start without SIGNING_KEY_ENCRYPTION_KEY.
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_DEVELOPMENT_KEY_INFO).derive(
        settings.SECRET_KEY.encode()
    )
    return [base64.urlsafe_b64encode(derived).decode()]


def _encryption() -> MultiFernet:
    try:
        return MultiFernet([Fernet(item) for item in encryption_keys()])
    except ValueError:
        raise ImproperlyConfigured(
            "SIGNING_KEY_ENCRYPTION_KEY must be one or more comma-separated Fernet keys "
            "(32 url-safe base64-encoded bytes each)"
        ) from None


def _new_private_key(algorithm: str) -> Any:
    if algorithm == SigningKey.Algorithm.ES256:
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def _public_jwk(private_key: Any, algorithm: str, kid: str) -> dict:
    jwk = _TO_JWK[algorithm](private_key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "alg": algorithm, "use": "sig"}


def _encrypt_private_key(private_key: Any) -> str:
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return _encryption().encrypt(pem).decode("ascii")


def _undecryptable(kid: str) -> ServiceError:
    logger.error("Signing key %s cannot be decrypted with SIGNING_KEY_ENCRYPTION_KEY", kid)
    return ServiceError(
        f"Signing key {kid} cannot be decrypted: SIGNING_KEY_ENCRYPTION_KEY does not include "
        "the key it was encrypted with",
        code="SIGNING_KEY_UNAVAILABLE",
        http_status=503,
    )


def _decrypt_private_key(signing_key: SigningKey) -> Any:
    try:
        pem = _encryption().decrypt(signing_key.private_key_encrypted.encode("ascii"))
    except InvalidToken:
        raise _undecryptable(signing_key.kid) from None
    return serialization.load_pem_private_key(pem, password=None)


def reencrypt_private_keys(caller: Caller) -> list[str]:
    """Re-encrypt every stored private key under the first SIGNING_KEY_ENCRYPTION_KEY, so the older keys can
    then be dropped from the list. All or nothing; the keys themselves do not change. Returns their kids."""
    authorize(caller, "signing_keys:rotate", target="signing-keys")
    encryption = _encryption()
    with transaction.atomic():
        held = list(SigningKey.objects.select_for_update().exclude(private_key_encrypted="").order_by("pk"))
        for signing_key in held:
            try:
                rotated = encryption.rotate(signing_key.private_key_encrypted.encode("ascii"))
            except InvalidToken:
                raise _undecryptable(signing_key.kid) from None
            signing_key.private_key_encrypted = rotated.decode("ascii")
            signing_key.save(update_fields=["private_key_encrypted"])
        kids = [signing_key.kid for signing_key in held]
        record(
            "signing_key.reencrypt",
            actor=caller.actor,
            target="signing-keys",
            client_address=caller.client_address,
            details={"kids": kids},
        )
    return kids


def _new_signing_key(algorithm: str, *, is_active: bool) -> SigningKey:
    private_key = _new_private_key(algorithm)
    kid = secrets.token_urlsafe(16)
    return SigningKey.objects.create(
        kid=kid,
        algorithm=algorithm,
        public_jwk=_public_jwk(private_key, algorithm, kid),
        private_key_encrypted=_encrypt_private_key(private_key),
        is_active=is_active,
    )


def _check_algorithm(algorithm: object) -> str:
    if algorithm not in ASYMMETRIC_ALGORITHMS:
        raise ValidationFailed(
            f"Unknown signing algorithm {algorithm!r}; expected one of {', '.join(ASYMMETRIC_ALGORITHMS)}",
            code="INVALID_ALGORITHM",
        )
    return str(algorithm)


def rotate_signing_key(caller: Caller, algorithm: str = DEFAULT_ALGORITHM) -> SigningKey:
    """Make a new active key; the old one keeps verifying (and stays in the JWKS) until its tokens expire."""
    algorithm = _check_algorithm(algorithm)
    authorize(caller, "signing_keys:rotate", target="signing-keys")
    now = timezone.now()
    publish_until = now + timedelta(seconds=max_token_lifetime_seconds() + leeway_seconds())
    try:
        with transaction.atomic():
            retired = list(SigningKey.objects.select_for_update().filter(is_active=True))
            for old in retired:
                # A retired key never signs again, so its private half is destroyed; the public half stays.
                old.is_active, old.retired_at, old.publish_until = False, now, publish_until
                old.private_key_encrypted = ""
                old.save(update_fields=["is_active", "retired_at", "publish_until", "private_key_encrypted"])
            signing_key = _new_signing_key(algorithm, is_active=True)
            record(
                "signing_key.rotate",
                actor=caller.actor,
                target=signing_key.kid,
                client_address=caller.client_address,
                details={
                    "kid": signing_key.kid,
                    "algorithm": algorithm,
                    "retired_kids": [old.kid for old in retired],
                    "retired_published_until": publish_until.isoformat() if retired else None,
                },
            )
            invalidate(SIGNING_KEYS, *(signing_key_topic(old.kid) for old in retired))
    except IntegrityError:
        raise Conflict(
            "Another signing key was activated at the same moment; try again", code="SIGNING_KEY_CONFLICT"
        ) from None
    return signing_key


def _first_algorithm() -> str:
    configured = getattr(settings, "JWT_SIGNING_ALGORITHM", "HS256")
    return configured if configured in ASYMMETRIC_ALGORITHMS else DEFAULT_ALGORITHM


def active_signing_key() -> SigningKey:
    """The key that signs new tokens; the first call creates one (with `JWT_SIGNING_ALGORITHM`)."""
    active = SigningKey.objects.filter(is_active=True).first()
    if active is not None:
        return active
    algorithm = _first_algorithm()
    try:
        with transaction.atomic():
            active = _new_signing_key(algorithm, is_active=True)
            record(
                "signing_key.create",
                actor="system:signing-keys",
                target=active.kid,
                details={"kid": active.kid, "algorithm": algorithm, "reason": "first use"},
            )
            invalidate(SIGNING_KEYS)
    except IntegrityError:
        # Another process created the first key at the same moment: use that one.
        return SigningKey.objects.get(is_active=True)
    return active


def _load_ring(stamp: int | None) -> _KeyRing:
    rows = SigningKey.objects.filter(Q(is_active=True) | Q(publish_until__gt=timezone.now()))
    keys = {}
    for row in rows.only("kid", "algorithm", "public_jwk", "is_active", "publish_until"):
        public_key = jwt.PyJWK(row.public_jwk, algorithm=row.algorithm).key
        keys[row.kid] = PublishedKey(
            row.kid, row.algorithm, public_key, row.public_jwk, row.is_active, row.publish_until
        )
    return _KeyRing(stamp, keys)


def _key_ring() -> _KeyRing:
    global _ring
    ring = _ring
    if ring is None or not is_fresh(ring.stamp, (SIGNING_KEYS,)):
        needs_read("signing keys")
        ring = _ring = _load_ring(current_stamp())
    return ring


def published_key(kid: str) -> PublishedKey | None:
    """The published key named `kid`, or None."""
    published = _key_ring().keys.get(kid)
    if published is None or not published.is_published(timezone.now()):
        return None
    return published


def signing_key_for_issuing() -> ActiveKey:
    """The active key with its private half decrypted, cached per process until the key set changes."""
    ring = _key_ring()
    if ring.active is not None:
        return ring.active
    signing_key = active_signing_key()
    active = ActiveKey(signing_key.kid, signing_key.algorithm, _decrypt_private_key(signing_key))
    if ring is _ring and is_fresh(ring.stamp, (SIGNING_KEYS,)):
        ring.active = active
    return active


def jwks_document() -> dict:
    """The public JWK Set: the active key first, then retired keys still inside their publication window."""
    now = timezone.now()
    published = [key for key in _key_ring().keys.values() if key.is_published(now)]
    published.sort(key=lambda key: (not key.is_active, key.kid))
    return {"keys": [dict(key.public_jwk) for key in published]}
