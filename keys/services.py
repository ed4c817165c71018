"""Issuing, validating, rotating, revoking and reading API keys, for every interface. Verification itself is
`keys.verification` (the hot path), use counting `keys.usage`."""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import record
from grants.checks import authorize, authorized_principal, refuse_unheld_scopes
from grants.permissions import WILDCARD, normalize_scope
from identities.chitty_ids import parse_chitty_id
from identities.models import Identity
from kernel.callers import Caller
from kernel.errors import Conflict, NotFound, ValidationFailed
from kernel.invalidation import invalidate, key_topic
from keys.key_format import (
    ENVIRONMENTS,
    InvalidApiKey,
    display_prefix,
    generate_api_key_secret,
    generate_key_id,
    hash_api_key,
    is_key_id,
)
from keys.models import ApiKey
from keys.usage import count_use
from keys.usage import flush_usage as flush_usage
from keys.usage import start_usage_writer as start_usage_writer
from keys.verification import KeyVerification, evaluate_api_key
from keys.verification import verify_api_key as verify_api_key
from keys.verification_history import HISTORY_DAYS, key_outcomes_by_hour
from principals.services import resolve_principal

logger = logging.getLogger(__name__)

DEFAULT_ROTATION_OVERLAP_SECONDS = 300
MAX_ROTATION_OVERLAP_SECONDS = 7 * 24 * 3600
MAX_NAME_LENGTH = 200
MAX_REASON_LENGTH = 255
MAX_SCOPES = 64


@dataclass(frozen=True)
class IssuedApiKey:
    """A new key and its secret. The secret exists only here: show it once, then let it go."""

    api_key: ApiKey
    secret: str = field(repr=False)


# ---------------------------------------------------------------------------------------------------------
# Issuing


def generate_api_key(
    caller: Caller,
    *,
    chitty_id: str,
    name: str = "",
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
    environment: str = "live",
) -> IssuedApiKey:
    """Mint a key for `chitty_id`: your own with `api_keys:generate`, anyone else's with `api_keys:manage`.

    The principal must be active and vouched for by the ChittyID authority. Scopes default to `*`; each
    explicit scope must be covered by the principal's grants, and nobody mints a scope they do not hold.
    """
    parse_chitty_id(chitty_id)
    name = _clean_name(name)
    scopes = _clean_scopes(scopes)
    expires_at = _clean_expiry(expires_at)
    if environment not in ENVIRONMENTS:
        raise ValidationFailed(
            f"environment must be one of {', '.join(ENVIRONMENTS)}", code="INVALID_ENVIRONMENT"
        )
    for_self = caller.chitty_id == chitty_id
    authorize(caller, "api_keys:generate" if for_self else "api_keys:manage", target=chitty_id)
    principal = resolve_principal(chitty_id)
    refuse_unheld_scopes(
        caller, principal, scopes, action="api_key.generate", minting="a key", wildcard_defers_to_grants=True
    )
    with transaction.atomic():
        issued = _create_key(
            principal,
            name=name,
            scopes=scopes,
            expires_at=caller.bounded_expiry(expires_at),
            environment=environment,
            created_by=caller.actor,
        )
        record(
            "api_key.generate",
            actor=caller.actor,
            target=chitty_id,
            client_address=caller.client_address,
            details=_audit_details(issued.api_key),
        )
    return issued


def _create_key(
    principal: Identity,
    *,
    name: str,
    scopes: tuple[str, ...],
    expires_at: datetime | None,
    environment: str,
    created_by: str,
    rotated_from: ApiKey | None = None,
) -> IssuedApiKey:
    secret = generate_api_key_secret(environment)
    api_key = ApiKey.objects.create(
        key_id=generate_key_id(),
        principal=principal,
        name=name,
        environment=environment,
        secret_hash=hash_api_key(secret),
        display_prefix=display_prefix(secret),
        scopes=list(scopes),
        created_by=created_by,
        expires_at=expires_at,
        rotated_from=rotated_from,
    )
    return IssuedApiKey(api_key, secret)


# ---------------------------------------------------------------------------------------------------------
# Validating, revoking, rotating, reading


def validate_api_key(caller: Caller, raw: str) -> KeyVerification:
    """The seed's `validate_api_key`: any key with `api_keys:validate`, otherwise only your own.

    Failed validations are audited with the key's public prefix only; successes are just counted.
    """
    now = timezone.now()
    verification = evaluate_api_key(raw, now)
    owns_key = verification.chitty_id is not None and verification.chitty_id == caller.chitty_id
    if not owns_key:
        authorize(caller, "api_keys:validate", target=verification.chitty_id or "")
    if verification.valid:
        count_use(verification.key_id, now)
        return verification
    try:
        prefix = display_prefix(raw)
    except InvalidApiKey:
        prefix = ""
    record(
        "api_key.validate",
        outcome=AuditEvent.Outcome.FAILURE,
        actor=caller.actor,
        target=verification.chitty_id or "",
        client_address=caller.client_address,
        details={"code": str(verification.code), "display_prefix": prefix, "key_id": verification.key_id},
    )
    return verification


def revoke_api_key(caller: Caller, key_id: str, *, reason: str = "") -> ApiKey:
    """Revoke at once, everywhere: your own key freely, anyone else's with `api_keys:manage`. Idempotent.

    Revoking a rotated key that is still in its overlap window ends the overlap now.
    """
    if not isinstance(reason, str) or len(reason) > MAX_REASON_LENGTH:
        raise ValidationFailed(
            f"reason must be a string of at most {MAX_REASON_LENGTH} characters", code="INVALID_REASON"
        )
    api_key = _get_key(key_id)
    _authorize_key_access(caller, api_key)
    with transaction.atomic():
        api_key = _lock_key(api_key)
        now = timezone.now()
        if api_key.revoked_at is not None and api_key.revoked_at <= now:
            return api_key
        api_key.revoked_at, api_key.revoked_by, api_key.revoke_reason = now, caller.actor, reason
        api_key.save(update_fields=["revoked_at", "revoked_by", "revoke_reason"])
        record(
            "api_key.revoke",
            actor=caller.actor,
            target=api_key.principal.chitty_id,
            client_address=caller.client_address,
            details={**_audit_details(api_key), "reason": reason},
        )
        invalidate(key_topic(api_key.key_id))
    return api_key


def rotate_api_key(caller: Caller, key_id: str, *, overlap_seconds: int | None = None) -> IssuedApiKey:
    """Reroll a key keeping its principal, name, scopes, expiry and environment.

    The old key stays valid for `overlap_seconds` (setting `API_KEY_ROTATION_OVERLAP_SECONDS`, default 300;
    0 ends it now) so clients can switch without downtime. Same permission rule as revoking; and since
    whoever rotates receives a working secret, nobody rotates a key with scopes they do not hold.
    """
    overlap = _clean_overlap(
        getattr(settings, "API_KEY_ROTATION_OVERLAP_SECONDS", DEFAULT_ROTATION_OVERLAP_SECONDS)
        if overlap_seconds is None
        else overlap_seconds
    )
    api_key = _get_key(key_id)
    _authorize_key_access(caller, api_key)
    _refuse_rotating_lapsed(api_key, timezone.now())
    chitty_id = api_key.principal.chitty_id
    principal = resolve_principal(chitty_id)
    refuse_unheld_scopes(
        caller,
        principal,
        tuple(api_key.scopes),
        action="api_key.rotate",
        minting="a key",
        wildcard_defers_to_grants=True,
    )
    with transaction.atomic():
        old_key = _lock_key(api_key)
        now = timezone.now()
        _refuse_rotating_lapsed(old_key, now)
        issued = _create_key(
            principal,
            name=old_key.name,
            scopes=tuple(old_key.scopes),
            expires_at=caller.bounded_expiry(old_key.expires_at),
            environment=old_key.environment,
            created_by=caller.actor,
            rotated_from=old_key,
        )
        old_key.revoked_at = now + timedelta(seconds=overlap)
        old_key.revoked_by = caller.actor
        old_key.revoke_reason = f"rotated to {issued.api_key.key_id}"
        old_key.save(update_fields=["revoked_at", "revoked_by", "revoke_reason"])
        record(
            "api_key.rotate",
            actor=caller.actor,
            target=chitty_id,
            client_address=caller.client_address,
            details={
                **_audit_details(issued.api_key),
                "rotated_from": old_key.key_id,
                "overlap_seconds": overlap,
                "old_key_valid_until": old_key.revoked_at.isoformat(),
            },
        )
        invalidate(key_topic(old_key.key_id))
    return issued


def list_api_keys(
    caller: Caller, *, chitty_id: str | None = None, include_revoked: bool = False
) -> list[ApiKey]:
    """A principal's keys, newest first: your own freely, anyone else's with `api_keys:manage`.

    Keys still inside a rotation overlap count as not yet revoked.
    """
    if chitty_id is None:
        if caller.identity is None:
            raise ValidationFailed(
                "chitty_id is required for a caller without an identity", code="CHITTY_ID_REQUIRED"
            )
        principal = caller.identity
    else:
        principal = authorized_principal(caller, "api_keys:manage", chitty_id)
    keys = ApiKey.objects.filter(principal=principal).select_related("principal")
    if not include_revoked:
        keys = keys.exclude(revoked_at__lte=timezone.now())
    return list(keys)


def get_api_key(caller: Caller, key_id: str) -> ApiKey:
    """One key's public record: your own freely, anyone else's with `api_keys:manage`."""
    api_key = _get_key(key_id)
    _authorize_key_access(caller, api_key)
    return api_key


def key_usage(caller: Caller, key_id: str) -> list[dict]:
    """A key's verifications per hour and outcome over the last `HISTORY_DAYS` days, oldest first, as far as
    the processes have written them (at most `API_KEY_USAGE_WRITE_SECONDS` behind): your own key freely,
    anyone else's with `api_keys:manage`."""
    api_key = get_api_key(caller, key_id)
    since = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(days=HISTORY_DAYS)
    hours: dict[datetime, dict[str, int]] = {}
    for row in key_outcomes_by_hour(api_key.key_id, since):
        hours.setdefault(row["hour"], {})[row["outcome"]] = row["count"]
    return [{"hour": hour, "outcomes": outcomes} for hour, outcomes in hours.items()]


# ---------------------------------------------------------------------------------------------------------
# Helpers


def _get_key(key_id: object) -> ApiKey:
    api_key = None
    if is_key_id(key_id):
        api_key = ApiKey.objects.select_related("principal").filter(key_id=key_id).first()
    if api_key is None:
        raise NotFound(f"No API key {key_id}", code="KEY_NOT_FOUND")
    return api_key


def _lock_key(api_key: ApiKey) -> ApiKey:
    return ApiKey.objects.select_for_update(of=("self",)).select_related("principal").get(pk=api_key.pk)


def _authorize_key_access(caller: Caller, api_key: ApiKey) -> None:
    """Your own key needs nothing more; anyone else's needs `api_keys:manage`."""
    if caller.identity is None or caller.identity.pk != api_key.principal_id:
        authorize(caller, "api_keys:manage", target=api_key.principal.chitty_id)


def _refuse_rotating_lapsed(api_key: ApiKey, now: datetime) -> None:
    if api_key.revoked_at is not None:
        if api_key.revoked_at <= now:
            raise Conflict(f"{api_key.key_id} is revoked and cannot be rotated", code="KEY_REVOKED")
        raise Conflict(f"{api_key.key_id} has already been rotated", code="KEY_ALREADY_ROTATED")
    if api_key.expires_at is not None and api_key.expires_at <= now:
        raise Conflict(f"{api_key.key_id} has expired and cannot be rotated", code="KEY_EXPIRED")


def _audit_details(api_key: ApiKey) -> dict:
    return {
        "key_id": api_key.key_id,
        "display_prefix": api_key.display_prefix,
        "scopes": list(api_key.scopes),
        "name": api_key.name,
        "environment": api_key.environment,
        "expires_at": api_key.expires_at.isoformat() if api_key.expires_at else None,
    }


def _clean_name(name: object) -> str:
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH:
        raise ValidationFailed(
            f"name must be a string of at most {MAX_NAME_LENGTH} characters", code="INVALID_NAME"
        )
    return name


def _clean_scopes(scopes: object) -> tuple[str, ...]:
    if scopes is None:
        return (WILDCARD,)
    if not isinstance(scopes, list | tuple) or len(scopes) > MAX_SCOPES:
        raise ValidationFailed(
            f"scopes must be a list of at most {MAX_SCOPES} scopes, or omitted for *", code="INVALID_SCOPES"
        )
    return tuple(dict.fromkeys(normalize_scope(scope) for scope in scopes))


def _clean_expiry(expires_at: object) -> datetime | None:
    if expires_at is None:
        return None
    if not isinstance(expires_at, datetime) or timezone.is_naive(expires_at):
        raise ValidationFailed("expires_at must be a datetime with a time zone", code="INVALID_EXPIRY")
    if expires_at <= timezone.now():
        raise ValidationFailed("expires_at must be in the future", code="INVALID_EXPIRY")
    return expires_at


def _clean_overlap(overlap_seconds: object) -> int:
    if (
        not isinstance(overlap_seconds, int)
        or isinstance(overlap_seconds, bool)
        or not 0 <= overlap_seconds <= MAX_ROTATION_OVERLAP_SECONDS
    ):
        raise ValidationFailed(
            f"overlap_seconds must be a whole number from 0 to {MAX_ROTATION_OVERLAP_SECONDS} (7 days)",
            code="INVALID_OVERLAP",
        )
    return overlap_seconds
