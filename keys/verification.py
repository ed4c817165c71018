"""Verifying API keys: the hot path of every request.

Each process keeps recently seen keys in memory (least recently used evicted first), keyed by the key's SHA-256
and depending on two invalidation topics, the key and its principal: revoking or rotating the key, or a status
change of its identity, anywhere, makes the very next verification reload that row and no other. Expiry and the end of a rotation overlap are judged against the clock on every
call. Unknown keys are never cached, so a key is usable the moment it is created.
"""

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from identities.models import Identity
from kernel.bounded_cache import BoundedCache
from kernel.invalidation import current_stamp, is_fresh, key_topic, principal_topic
from kernel.memory_only import needs_read
from kernel.metrics import CREDENTIAL_VERIFICATIONS, counted_when_answered
from keys.key_format import (
    InvalidApiKey,
    hash_api_key,
    parse_api_key,
)
from keys.models import ApiKey
from keys.usage import count_use
from keys.verification_history import count_verification


class VerificationCode(StrEnum):
    VALID = "VALID"
    MALFORMED = "MALFORMED"
    BAD_CHECKSUM = "BAD_CHECKSUM"
    NOT_FOUND = "NOT_FOUND"
    EXPIRED = "EXPIRED"
    REVOKED = "REVOKED"
    IDENTITY_SUSPENDED = "IDENTITY_SUSPENDED"


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


@dataclass(frozen=True)
class _KeySnapshot:
    """What verification needs from a key row and its identity, as of one invalidation stamp."""

    stamp: int | None
    topics: tuple[str, str]
    revoked_at: datetime | None
    expires_at: datetime | None
    identity_active: bool
    answer_if_live: KeyVerification


_cache: BoundedCache[str, _KeySnapshot] = BoundedCache("api_keys")

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


def _snapshot(secret_hash: str, stamp: int | None) -> _KeySnapshot | None:
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
    topics = (key_topic(key_id), principal_topic(identity.chitty_id))
    return _KeySnapshot(stamp, topics, revoked_at, expires_at, identity.is_active, answer)


def _valid_until(expires_at: datetime | None, revoked_at: datetime | None) -> datetime | None:
    """A live key with a revocation already set (rotated, in its overlap) stops working then."""
    if revoked_at is None:
        return expires_at
    return revoked_at if expires_at is None else min(expires_at, revoked_at)


def _is_current(snapshot: _KeySnapshot) -> bool:
    return is_fresh(snapshot.stamp, snapshot.topics)


def _cached_snapshot(secret_hash: str) -> _KeySnapshot | None:
    snapshot = _cache.lookup(secret_hash, _is_current)
    if snapshot is not None:
        return snapshot
    needs_read("API key lookup")
    snapshot = _snapshot(secret_hash, current_stamp())
    if snapshot is not None and snapshot.stamp is not None:
        _cache.put(secret_hash, snapshot)
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


def evaluate_api_key(raw: object, now: datetime) -> KeyVerification:
    """The answer about `raw` at `now`, counted in the metrics by its code."""
    verification = _evaluate(raw, now)
    counted_when_answered(CREDENTIAL_VERIFICATIONS, "api_key", verification.code)
    count_verification("api_key", verification.code, verification.key_id)
    return verification


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
    verification = evaluate_api_key(raw, now)
    if verification.valid:
        count_use(verification.key_id, now)
    return verification
