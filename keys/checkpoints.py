"""Signed checkpoints of the audit chain.

The hash chain shows tampering only to someone who trusts the database it reads. A checkpoint is the chain head
(sequence, hash, time) signed with the active signing key as a compact JWS (`typ: audit-checkpoint+jwt`, so it
can never pass as an access token) and listed at `GET /api/v1/audit/checkpoints`. Whoever keeps one, with the
JWKS of the time, can later show the chain was not rewritten before it, even by someone able to recompute every
hash and to write signing-key rows: `manage.py verify_audit --checkpoint TOKEN --jwks FILE` trusts only the keys
in that file. Beat signs one every hour, and only once the chain still runs unbroken from the previous
checkpoint (named in the `prev` claim): a rewritten chain is refused, loudly, never signed.
"""

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NoReturn

import jwt
from django.db import transaction
from django.utils import timezone

from audit.models import AuditChainHead, AuditCheckpoint, AuditEvent
from audit.services import ChainVerdict, chain_head, record, verify_chain
from kernel.callers import Caller
from kernel.errors import Conflict, ValidationFailed
from keys.models import SigningKey
from keys.signing_keys import is_plausible_kid, signing_key_for_issuing
from keys.token_format import issuer

logger = logging.getLogger(__name__)

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
    own `audit.checkpoint` event follows the head it signs. `CHAIN_REWRITTEN` (recorded, logged as an error)
    when the chain no longer runs unbroken from the previous checkpoint."""
    with transaction.atomic():
        # Hold the chain still until this checkpoint and its event commit: two signers at once then commit in
        # turn, so checkpoints are numbered in the order of the heads they sign (audit export relies on it),
        # and each one's event lands right after the head it signs.
        AuditChainHead.objects.select_for_update().filter(pk=1).first()
        if chain_head()[0] == 0:
            return None
        active = signing_key_for_issuing()  # the first one is created now, and its event is covered too
        previous = AuditCheckpoint.objects.order_by("-sequence").first()
        verdict = verify_chain(anchor=(previous.sequence, previous.hash)) if previous else None
        if verdict is None or verdict.intact:
            return _signed(caller, active, previous)
    _refuse_to_sign(caller, previous, verdict)


def _signed(caller: Caller, active, previous: AuditCheckpoint | None) -> AuditCheckpoint:
    sequence, head_hash = chain_head()
    now = timezone.now()
    claims = {"iss": issuer(), "seq": sequence, "hash": head_hash, "iat": int(now.timestamp())}
    if previous is not None:
        claims["prev"] = {"seq": previous.sequence, "hash": previous.hash}
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


def _refuse_to_sign(caller: Caller, previous: AuditCheckpoint, verdict: ChainVerdict) -> NoReturn:
    logger.error(
        "Refusing to sign an audit checkpoint: the chain is broken since checkpoint #%d, at #%s: %s",
        previous.sequence,
        verdict.first_broken_sequence,
        verdict.reason,
    )
    record(
        "audit.checkpoint",
        outcome="failure",
        actor=caller.actor,
        target=f"audit:{previous.sequence}",
        details={
            "since": previous.sequence,
            "broken_at": verdict.first_broken_sequence,
            "reason": verdict.reason,
        },
    )
    raise Conflict(
        f"The audit chain is broken at #{verdict.first_broken_sequence} since checkpoint #{previous.sequence}: "
        f"{verdict.reason}; not signing it",
        code="CHAIN_REWRITTEN",
    )


def trusted_keys_from_jwks(jwks: object) -> dict[str, jwt.PyJWK]:
    """The keys of a JWKS document kept outside the service, by kid; `INVALID_CHECKPOINT` for one that is not."""
    try:
        return {key.key_id: key for key in jwt.PyJWKSet.from_dict(jwks).keys if key.key_id}
    except (jwt.PyJWTError, AttributeError, TypeError, KeyError) as exc:
        raise _invalid("the JWKS given to verify it with is not a JWK Set") from exc


def read_checkpoint(token: str, trusted_keys: dict[str, jwt.PyJWK] | None = None) -> CheckpointClaims:
    """The claims of a checkpoint this service signed, or `INVALID_CHECKPOINT` saying why not. With
    `trusted_keys` (a JWKS kept outside), only those keys count; otherwise the signing keys in the database."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise _invalid("it is not a signed checkpoint") from exc
    if header.get("typ") != CHECKPOINT_TYP:
        raise _invalid(f"its typ is not {CHECKPOINT_TYP}")
    kid = header.get("kid")
    key = _verification_key(kid, trusted_keys) if is_plausible_kid(kid) else None
    if key is None:
        raise _invalid("it was not signed by one of the trusted signing keys")
    try:
        claims = jwt.decode(
            token,
            key.key,
            algorithms=[key.algorithm_name],
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
    return CheckpointClaims(sequence, head_hash, datetime.fromtimestamp(claims["iat"], UTC), kid)


def _verification_key(kid: str, trusted_keys: dict[str, jwt.PyJWK] | None) -> jwt.PyJWK | None:
    if trusted_keys is not None:
        return trusted_keys.get(kid)
    signing_key = SigningKey.objects.filter(kid=kid).first()
    return jwt.PyJWK(signing_key.public_jwk, algorithm=signing_key.algorithm) if signing_key else None


def verify_against_checkpoint(token: str, trusted_keys: dict[str, jwt.PyJWK] | None = None) -> ChainVerdict:
    """`verify_chain`, and the event the checkpoint names still has the hash it had when it was signed."""
    claims = read_checkpoint(token, trusted_keys)
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
