"""Signed checkpoints of the audit chain.

The hash chain shows tampering only to someone who trusts the database it reads. A checkpoint is the chain head
(sequence, hash, time) signed with the active signing key as a compact JWS (`typ: audit-checkpoint+jwt`, so it
can never pass as an access token) and listed at `GET /api/v1/audit/checkpoints`. Whoever keeps one (with the
JWKS of the time) can later show the chain was not rewritten before it, even by someone able to recompute every
hash: `verify_against_checkpoint`, and `manage.py verify_audit --checkpoint`. Beat signs one every hour.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt
from django.db import transaction
from django.utils import timezone

from audit.models import AuditCheckpoint, AuditEvent
from audit.services import ChainVerdict, chain_head, record, verify_chain
from kernel.callers import Caller
from kernel.errors import ValidationFailed
from keys.models import SigningKey
from keys.signing_keys import is_plausible_kid, signing_key_for_issuing
from keys.token_format import issuer

CHECKPOINT_TYP = "audit-checkpoint+jwt"
_HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class CheckpointClaims:
    sequence: int
    hash: str
    signed_at: datetime
    kid: str


def sign_checkpoint(caller: Caller) -> AuditCheckpoint | None:
    """Sign the chain head as it is now; None while the chain is empty (there is nothing to vouch for). Its
    own `audit.checkpoint` event follows the head it signs."""
    with transaction.atomic():
        if chain_head()[0] == 0:
            return None
        active = signing_key_for_issuing()  # the first one is created now, and its event is covered too
        sequence, head_hash = chain_head()
        now = timezone.now()
        claims = {"iss": issuer(), "seq": sequence, "hash": head_hash, "iat": int(now.timestamp())}
        token = jwt.encode(
            claims,
            active.private_key,
            algorithm=active.algorithm,
            headers={"typ": CHECKPOINT_TYP, "kid": active.kid},
        )
        checkpoint = AuditCheckpoint.objects.create(
            sequence=sequence, hash=head_hash, created_at=now, kid=active.kid, token=token
        )
        record(
            "audit.checkpoint",
            actor=caller.actor,
            target=f"audit:{sequence}",
            client_address=caller.client_address,
            details={"sequence": sequence, "hash": head_hash, "kid": active.kid},
        )
    return checkpoint


def read_checkpoint(token: str) -> CheckpointClaims:
    """The claims of a checkpoint this service signed, or `INVALID_CHECKPOINT` saying why not."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise _invalid("it is not a signed checkpoint") from exc
    if header.get("typ") != CHECKPOINT_TYP:
        raise _invalid(f"its typ is not {CHECKPOINT_TYP}")
    kid = header.get("kid")
    signing_key = SigningKey.objects.filter(kid=kid).first() if is_plausible_kid(kid) else None
    if signing_key is None:
        raise _invalid("it was not signed by one of this service's signing keys")
    try:
        claims = jwt.decode(
            token,
            jwt.PyJWK(signing_key.public_jwk, algorithm=signing_key.algorithm).key,
            algorithms=[signing_key.algorithm],
            issuer=issuer(),
            options={"require": ["iss", "seq", "hash", "iat"]},
        )
    except jwt.PyJWTError as exc:
        raise _invalid(f"its signature or claims do not verify ({type(exc).__name__})") from exc
    sequence, head_hash = claims["seq"], claims["hash"]
    if not (
        isinstance(sequence, int)
        and sequence > 0
        and isinstance(head_hash, str)
        and _HASH.fullmatch(head_hash)
    ):
        raise _invalid("its seq or hash is malformed")
    return CheckpointClaims(sequence, head_hash, datetime.fromtimestamp(claims["iat"], UTC), signing_key.kid)


def verify_against_checkpoint(token: str) -> ChainVerdict:
    """`verify_chain`, and the event the checkpoint names still has the hash it had when it was signed."""
    claims = read_checkpoint(token)
    verdict = verify_chain()
    if not verdict.intact:
        return verdict
    held = AuditEvent.objects.filter(sequence=claims.sequence).values_list("hash", flat=True).first()
    signed = f"the checkpoint signed at {claims.signed_at:%Y-%m-%d %H:%M:%S} UTC"
    if held is None:
        return ChainVerdict(
            False, verdict.events_checked, claims.sequence, f"event #{claims.sequence} of {signed} is gone"
        )
    if held != claims.hash:
        return ChainVerdict(
            False,
            verdict.events_checked,
            claims.sequence,
            f"the chain up to #{claims.sequence} was rewritten: that event's hash differs from {signed}",
        )
    return verdict


def _invalid(why: str) -> ValidationFailed:
    return ValidationFailed(f"The checkpoint was refused: {why}", code="INVALID_CHECKPOINT")
