"""Issuing, verifying, rotating and revoking API keys.

Verification is on the hot path of every request, so each process keeps recently seen keys in memory,
keyed by the key's SHA-256 and tagged with the shared security epoch: any revocation, rotation or identity
status change anywhere bumps the epoch and the very next verification reloads the row. Expiry and the end of
a rotation overlap are judged against the clock on every call. Unknown keys are never cached, so a key is
usable the moment it is created. Usage is counted in memory and written at most once a minute per key.
"""

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial

from django.conf import settings
from django.db import DatabaseError, connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import record
from grants.checks import authorize, authorized_principal, refuse_unheld_scopes
from grants.permissions import WILDCARD, normalize_scope
from identities.chitty_ids import parse_chitty_id
from identities.models import Identity
from identities.services import resolve_principal
from kernel.callers import Caller
from kernel.errors import Conflict, NotFound, ValidationFailed
from kernel.memory_only import needs_io, when_answered
from kernel.security_epoch import bump_epoch, current_epoch
from keys.key_format import (
    ENVIRONMENTS,
    InvalidApiKey,
    display_prefix,
    generate_api_key_secret,
    generate_key_id,
    hash_api_key,
    is_key_id,
    parse_api_key,
)
from keys.models import ApiKey

logger = logging.getLogger(__name__)

MAX_CACHED_KEYS = 10_000
USAGE_FLUSH_INTERVAL_SECONDS = 60
DEFAULT_ROTATION_OVERLAP_SECONDS = 300
MAX_ROTATION_OVERLAP_SECONDS = 7 * 24 * 3600
MAX_NAME_LENGTH = 200
MAX_REASON_LENGTH = 255
MAX_SCOPES = 64


class VerificationCode(StrEnum):
    VALID = "VALID"
    MALFORMED = "MALFORMED"
    BAD_CHECKSUM = "BAD_CHECKSUM"
    NOT_FOUND = "NOT_FOUND"
    EXPIRED = "EXPIRED"
    REVOKED = "REVOKED"
    IDENTITY_SUSPENDED = "IDENTITY_SUSPENDED"


@dataclass(frozen=True)
class IssuedApiKey:
    """A new key and its secret. The secret exists only here: show it once, then let it go."""

    api_key: ApiKey
    secret: str = field(repr=False)


@dataclass(frozen=True)
class KeyVerification:
    """The answer about one presented key, shaped like Unkey's."""

    valid: bool
    code: str
    key_id: str | None = None
    chitty_id: str | None = None
    scopes: tuple[str, ...] = ()
    expires_at: datetime | None = None
    name: str = ""
    environment: str = ""
    # Lets authentication build a Caller without another query; never serialized.
    identity: Identity | None = field(default=None, compare=False, repr=False)

    def as_dict(self) -> dict:
        return {
            "valid": self.valid,
            "code": str(self.code),
            "key_id": self.key_id,
            "chitty_id": self.chitty_id,
            "scopes": list(self.scopes),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "name": self.name,
            "environment": self.environment,
        }


# ---------------------------------------------------------------------------------------------------------
# Verification: the hot path


@dataclass(frozen=True)
class _KeySnapshot:
    """What verification needs from a key row and its identity, as of one security epoch."""

    epoch: int
    revoked_at: datetime | None
    expires_at: datetime | None
    identity_active: bool
    answer_if_live: KeyVerification


_cache: dict[str, _KeySnapshot] = {}
_cache_lock = threading.Lock()

# The cold lookup reads only what a snapshot needs from the key row, plus the whole identity row: the identity
# goes into the Caller, where a deferred field would cost a query later.
_SNAPSHOT_KEY_FIELDS = ("key_id", "scopes", "expires_at", "revoked_at", "name", "environment")
_HASH_PLACEHOLDER = "secret-hash-placeholder"


@dataclass(frozen=True)
class _CompiledLookup:
    """The lookup of a key and its identity by secret hash, as SQL compiled once per database: building and
    compiling the ORM query costs more than running it. The columns go through the same converters the ORM
    would apply (datetimes and JSON on SQLite, JSON on PostgreSQL)."""

    sql: str
    params: tuple
    converters: tuple[tuple[int, tuple[Callable, ...], object], ...]
    identity_fields: tuple[str, ...]

    def fetch(self, connection: BaseDatabaseWrapper, secret_hash: str) -> list | None:
        params = [secret_hash if param == _HASH_PLACEHOLDER else param for param in self.params]
        with connection.cursor() as cursor:
            cursor.execute(self.sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        row = list(row)
        for position, converters, expression in self.converters:
            value = row[position]
            for converter in converters:
                value = converter(value, expression, connection)
            row[position] = value
        return row


_compiled_lookups: dict[str, _CompiledLookup] = {}


def _compiled_lookup(connection: BaseDatabaseWrapper) -> _CompiledLookup:
    compiled = _compiled_lookups.get(connection.alias)
    if compiled is None:
        identity_fields = tuple(field.attname for field in Identity._meta.concrete_fields)
        queryset = (
            ApiKey.objects.filter(secret_hash=_HASH_PLACEHOLDER)
            .order_by()
            .values_list(*_SNAPSHOT_KEY_FIELDS, *(f"principal__{name}" for name in identity_fields))
        )
        compiler = queryset.query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        columns = [expression for expression, _, _ in compiler.select]
        converters = tuple(
            (position, tuple(functions), expression)
            for position, (functions, expression) in compiler.get_converters(columns).items()
        )
        compiled = _compiled_lookups[connection.alias] = _CompiledLookup(
            sql, tuple(params), converters, identity_fields
        )
    return compiled


def _snapshot(secret_hash: str, epoch: int) -> _KeySnapshot | None:
    """One indexed read by secret hash (the unique index), through the once-compiled query."""
    connection = connections[router.db_for_read(ApiKey)]
    lookup = _compiled_lookup(connection)
    row = lookup.fetch(connection, secret_hash)
    if row is None:
        return None
    key_id, scopes, expires_at, revoked_at, name, environment = row[: len(_SNAPSHOT_KEY_FIELDS)]
    identity = Identity.from_db(connection.alias, lookup.identity_fields, row[len(_SNAPSHOT_KEY_FIELDS) :])
    answer = KeyVerification(
        valid=True,
        code=VerificationCode.VALID,
        key_id=key_id,
        chitty_id=identity.chitty_id,
        scopes=tuple(scopes),
        expires_at=_valid_until(expires_at, revoked_at),
        name=name,
        environment=environment,
        identity=identity,
    )
    return _KeySnapshot(epoch, revoked_at, expires_at, identity.is_active, answer)


def _valid_until(expires_at: datetime | None, revoked_at: datetime | None) -> datetime | None:
    """A live key with a revocation already set (rotated, in its overlap) stops working then."""
    if revoked_at is None:
        return expires_at
    return revoked_at if expires_at is None else min(expires_at, revoked_at)


def _cached_snapshot(secret_hash: str) -> _KeySnapshot | None:
    epoch = current_epoch()
    snapshot = _cache.get(secret_hash)
    if snapshot is not None and snapshot.epoch == epoch:
        return snapshot
    needs_io("API key lookup")
    snapshot = _snapshot(secret_hash, epoch)
    if snapshot is not None:
        with _cache_lock:
            if len(_cache) >= MAX_CACHED_KEYS:
                _cache.clear()
            _cache[secret_hash] = snapshot
    return snapshot


def _judge(snapshot: _KeySnapshot, now: datetime) -> KeyVerification:
    if snapshot.revoked_at is not None and snapshot.revoked_at <= now:
        code = VerificationCode.REVOKED
    elif snapshot.expires_at is not None and snapshot.expires_at <= now:
        code = VerificationCode.EXPIRED
    elif not snapshot.identity_active:
        code = VerificationCode.IDENTITY_SUSPENDED
    else:
        return snapshot.answer_if_live
    return replace(
        snapshot.answer_if_live, valid=False, code=code, expires_at=snapshot.expires_at, identity=None
    )


def _evaluate(raw: object, now: datetime) -> KeyVerification:
    try:
        parsed = parse_api_key(raw)
    except InvalidApiKey as exc:
        return KeyVerification(valid=False, code=VerificationCode(exc.code))
    snapshot = _cached_snapshot(hash_api_key(parsed.raw))
    if snapshot is None:
        return KeyVerification(valid=False, code=VerificationCode.NOT_FOUND)
    return _judge(snapshot, now)


def verify_api_key(raw: str) -> KeyVerification:
    """Is this a live key? For authenticating requests: no caller, no audit; a valid use is counted."""
    now = timezone.now()
    verification = _evaluate(raw, now)
    if verification.valid:
        _count_use(verification.key_id, now)
    return verification


# ---------------------------------------------------------------------------------------------------------
# Usage counting: in memory, written with F() increments at most once a minute per key


@dataclass
class _PendingUse:
    count: int
    last_used_at: datetime


_usage_lock = threading.Lock()
_pending_uses: dict[str, _PendingUse] = {}
_write_deadlines: deque[tuple[float, str]] = deque()


def _add_pending(key_id: str, count: int, last_used_at: datetime, now: float) -> None:
    pending = _pending_uses.get(key_id)
    if pending is None:
        _pending_uses[key_id] = _PendingUse(count, last_used_at)
        _write_deadlines.append((now + USAGE_FLUSH_INTERVAL_SECONDS, key_id))
    else:
        pending.count += count
        pending.last_used_at = max(pending.last_used_at, last_used_at)


def _write_due(key_id: str, now: float) -> bool:
    """Would counting a use now also write counts out?"""
    if _write_deadlines and _write_deadlines[0][0] <= now:
        return True
    return key_id not in _pending_uses and USAGE_FLUSH_INTERVAL_SECONDS <= 0


def _count_use(key_id: str, used_at: datetime) -> None:
    now = time.monotonic()
    with _usage_lock:
        write_due = _write_due(key_id, now)
    if not write_due:
        when_answered(partial(_count_pending_use, key_id, used_at, now))
        return
    needs_io("API key use counts")
    with _usage_lock:
        _add_pending(key_id, 1, used_at, now)
        due = {}
        while _write_deadlines and _write_deadlines[0][0] <= now:
            due_key_id = _write_deadlines.popleft()[1]
            due[due_key_id] = _pending_uses.pop(due_key_id)
    if due:
        _write_uses(due)


def _count_pending_use(key_id: str, used_at: datetime, now: float) -> None:
    """Counted in memory only; a write that fell due meanwhile is done by the next use."""
    with _usage_lock:
        _add_pending(key_id, 1, used_at, now)


def _write_uses(uses: dict[str, _PendingUse]) -> bool:
    """One transaction, rows in key order so concurrent writers cannot deadlock. Failures are retried later."""
    try:
        with transaction.atomic():
            for key_id in sorted(uses):
                use = uses[key_id]
                stamp = Value(use.last_used_at)
                ApiKey.objects.filter(key_id=key_id).update(
                    use_count=F("use_count") + use.count,
                    last_used_at=Greatest(Coalesce(F("last_used_at"), stamp), stamp),
                )
    except DatabaseError:
        logger.warning("Could not record the use of %d API keys; keeping the counts to retry", len(uses))
        now = time.monotonic()
        with _usage_lock:
            for key_id, use in uses.items():
                _add_pending(key_id, use.count, use.last_used_at, now)
        return False
    return True


def flush_usage() -> int:
    """Write every pending use count now (for shutdown and tests); returns how many keys were written."""
    with _usage_lock:
        uses = dict(_pending_uses)
        _pending_uses.clear()
        _write_deadlines.clear()
    if not uses or not _write_uses(uses):
        return 0
    return len(uses)


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
    verification = _evaluate(raw, now)
    owns_key = verification.chitty_id is not None and verification.chitty_id == caller.chitty_id
    if not owns_key:
        authorize(caller, "api_keys:validate", target=verification.chitty_id or "")
    if verification.valid:
        _count_use(verification.key_id, now)
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
        bump_epoch()
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
        bump_epoch()
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
