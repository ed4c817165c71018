"""Sessions: open, touch, list and end them. Ending one is audited, revokes a JWT session's token, and
closes its live connections on every server process through the channel layer."""

import asyncio
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from audit.services import record
from grants.checks import authorize, authorized_principal
from identities.models import Identity
from kernel.bounded_cache import BoundedCache
from kernel.callers import Caller
from kernel.errors import Conflict, NotFound, ValidationFailed
from kernel.invalidation import current_stamp, invalidate, is_fresh, session_topic
from kernel.memory_only import needs_io, needs_read
from sessions.models import AuthSession
from sessions.signals import jwt_session_ended

logger = logging.getLogger(__name__)

LAST_SEEN_WRITE_INTERVAL = timedelta(minutes=1)
CLOSE_MESSAGE_TYPE = "session.ended"
CLOSE_ATTEMPTS = 3


def session_group(session_id: str) -> str:
    """The channel-layer group every live connection of a session joins."""
    return f"session.{session_id}"


def _new_session_id() -> str:
    return "ses_" + secrets.token_urlsafe(18)


def _session_timeout() -> timedelta:
    return timedelta(seconds=settings.SESSION_TIMEOUT)


def open_session(
    caller: Caller, channel: str, *, expires_at: datetime | None = None, credential_id: str | None = None
) -> AuthSession:
    """Open a session for the caller's principal on `channel`, enforcing the per-principal limit."""
    if caller.identity is None:
        raise ValidationFailed("Only a principal can hold a session", code="NO_PRINCIPAL")
    if channel not in AuthSession.Channel.values:
        raise ValidationFailed(f"Unknown session channel {channel!r}", code="INVALID_CHANNEL")
    now = timezone.now()
    with transaction.atomic():
        _enforce_session_limit(caller)
        session = AuthSession.objects.create(
            session_id=_new_session_id(),
            principal=caller.identity,
            credential_type=caller.credential_type,
            credential_id=credential_id or caller.credential_id,
            channel=channel,
            client_address=caller.client_address,
            user_agent=caller.user_agent[:400],
            last_seen_at=now,
            expires_at=expires_at,
        )
        record(
            "session.open",
            actor=caller.actor,
            target=session.session_id,
            client_address=caller.client_address,
            details={"channel": channel, "credential_id": session.credential_id},
        )
    return session


def _enforce_session_limit(caller: Caller) -> None:
    limit = settings.MAX_SESSIONS_PER_PRINCIPAL
    if not limit:
        return
    live = list(
        AuthSession.objects.select_for_update()
        .filter(principal=caller.identity, ended_at__isnull=True)
        .order_by("started_at")
    )
    excess = len(live) - limit + 1
    if excess <= 0:
        return
    if settings.SESSION_LIMIT_POLICY == "refuse_newest":
        record(
            "session.open",
            outcome="denied",
            actor=caller.actor,
            client_address=caller.client_address,
            details={"reason": "session limit reached", "limit": limit},
        )
        raise Conflict(
            f"{caller.actor} already has {len(live)} live sessions (limit {limit})",
            code="SESSION_LIMIT_REACHED",
        )
    _end(live[:excess], actor="system:session-limit", reason=f"session limit of {limit} reached")


@dataclass
class _KnownSession:
    session_id: str
    last_seen_written: datetime
    expires_at: datetime | None
    stamp: int | None


_rest_sessions: BoundedCache[str, _KnownSession] = BoundedCache("rest_sessions")


def touch_credential_session(caller: Caller, channel: str) -> str:
    """The live session for this credential on this channel, extended; a new one after `SESSION_TIMEOUT`
    of silence. Called on every REST request, so the database is written at most once a minute."""
    now = timezone.now()
    key = f"{channel}:{caller.credential_id}"
    known = _rest_sessions.lookup(key, partial(_usable_at, now))
    if known is not None:
        if now - known.last_seen_written >= LAST_SEEN_WRITE_INTERVAL:
            needs_io("session last seen")
            AuthSession.objects.filter(session_id=known.session_id).update(last_seen_at=now)
            known.last_seen_written = now
        return known.session_id
    needs_read("session lookup")
    stamp = current_stamp()
    session = _live_session_for(caller, channel, now)
    if session is None:
        needs_io("session open")
        session = open_session(caller, channel)
    if stamp is not None:
        _rest_sessions.put(
            key, _KnownSession(session.session_id, session.last_seen_at, session.expires_at, stamp)
        )
    return session.session_id


def _usable_at(now: datetime, known: _KnownSession) -> bool:
    return is_fresh(known.stamp, (session_topic(known.session_id),)) and _still_open(known, now)


def _still_open(known: _KnownSession, now: datetime) -> bool:
    if known.expires_at is not None and known.expires_at <= now:
        return False
    return now - known.last_seen_written < _session_timeout()


def _live_session_for(caller: Caller, channel: str, now: datetime) -> AuthSession | None:
    """A JWT's session (opened when it was minted) serves every channel; other credentials get one per channel."""
    sessions = AuthSession.objects.filter(credential_id=caller.credential_id, ended_at__isnull=True)
    if caller.credential_type != "jwt":
        sessions = sessions.filter(channel=channel, last_seen_at__gt=now - _session_timeout())
    session = sessions.exclude(expires_at__lte=now).order_by("-last_seen_at").first()
    if session is not None and now - session.last_seen_at >= LAST_SEEN_WRITE_INTERVAL:
        needs_io("session last seen")
        session.last_seen_at = now
        session.save(update_fields=["last_seen_at"])
    return session


def touch_session(session_id: str) -> None:
    """Mark a long-lived connection's session as seen (at most one write a minute is the caller's job)."""
    AuthSession.objects.filter(session_id=session_id, ended_at__isnull=True).update(
        last_seen_at=timezone.now()
    )


def is_live(session_id: str) -> bool:
    now = timezone.now()
    return (
        AuthSession.objects.filter(session_id=session_id, ended_at__isnull=True)
        .exclude(expires_at__lte=now)
        .exists()
    )


def count_live_sessions() -> int:
    """Sessions not ended and not past their expiry, across every channel."""
    return AuthSession.objects.filter(ended_at__isnull=True).exclude(expires_at__lte=timezone.now()).count()


def list_sessions(
    caller: Caller, *, chitty_id: str | None = None, channel: str | None = None, active: bool | None = None
) -> QuerySet[AuthSession]:
    """Your own sessions freely; anyone's (or everyone's, with no `chitty_id`) with `sessions:read`."""
    sessions = AuthSession.objects.select_related("principal")
    if chitty_id:
        sessions = sessions.filter(principal=authorized_principal(caller, "sessions:read", chitty_id))
    elif caller.is_exempt or (caller.identity is None):
        authorize(caller, "sessions:read")
    else:
        sessions = sessions.filter(principal=caller.identity)
    if channel:
        if channel not in AuthSession.Channel.values:
            raise ValidationFailed(f"Unknown session channel {channel!r}", code="INVALID_CHANNEL")
        sessions = sessions.filter(channel=channel)
    if active is True:
        sessions = sessions.filter(ended_at__isnull=True).exclude(expires_at__lte=timezone.now())
    elif active is False:
        sessions = sessions.filter(ended_at__isnull=False)
    return sessions


def end_session(caller: Caller, session_id: str, *, reason: str = "") -> AuthSession:
    """End one session: your own freely, anyone's with `sessions:revoke`. Ending an ended one is a no-op."""
    session = AuthSession.objects.select_related("principal").filter(session_id=session_id).first()
    if session is None:
        raise NotFound(f"No session {session_id}", code="SESSION_NOT_FOUND")
    if not caller.is_principal(session.principal):
        authorize(caller, "sessions:revoke", target=session.principal.chitty_id)
    if session.ended_at is None:
        _end(
            [session],
            actor=caller.actor,
            reason=reason or "ended by request",
            client_address=caller.client_address,
        )
    return session


def end_principal_sessions(
    caller: Caller, chitty_id: str, *, reason: str = "", keep_current: bool = False
) -> int:
    """End all of a principal's sessions (all but the caller's current one with `keep_current`): your own
    freely, anyone's with `sessions:revoke`."""
    principal = authorized_principal(caller, "sessions:revoke", chitty_id)
    return end_sessions_of_principal(
        principal,
        actor=caller.actor,
        reason=reason or "ended by request",
        client_address=caller.client_address,
        except_session_id=caller.session_id if keep_current else None,
    )


def end_sessions_of_principal(
    principal: Identity,
    *,
    actor: str,
    reason: str,
    client_address: str | None = None,
    except_session_id: str | None = None,
) -> int:
    """End every live session of `principal`, e.g. when it is suspended; returns how many were ended."""
    with transaction.atomic():
        live = AuthSession.objects.select_for_update().select_related("principal")
        live = live.filter(principal=principal, ended_at__isnull=True)
        if except_session_id:
            live = live.exclude(session_id=except_session_id)
        sessions = list(live)
        _end(sessions, actor=actor, reason=reason, client_address=client_address)
    return len(sessions)


def end_sessions_of_credential(credential_id: str, *, actor: str, reason: str) -> int:
    """End the live sessions a credential holds, e.g. when its token is revoked."""
    with transaction.atomic():
        sessions = list(
            AuthSession.objects.select_for_update()
            .select_related("principal")
            .filter(credential_id=credential_id, ended_at__isnull=True)
        )
        _end(sessions, actor=actor, reason=reason)
    return len(sessions)


def _end(sessions: list[AuthSession], *, actor: str, reason: str, client_address: str | None = None) -> None:
    """End sessions in the caller's transaction (announcing each JWT session, whose token `keys` revokes);
    close live connections after commit."""
    if not sessions:
        return
    now = timezone.now()
    with transaction.atomic():
        for session in sessions:
            session.ended_at, session.end_reason, session.ended_by = now, reason[:255], actor
            if session.credential_type == AuthSession.CredentialType.JWT:
                jwt_session_ended.send(
                    AuthSession,
                    jti=session.credential_id,
                    chitty_id=session.principal.chitty_id,
                    actor=actor,
                    reason=reason,
                )
            record(
                "session.end",
                actor=actor,
                target=session.session_id,
                client_address=client_address,
                details={
                    "principal": session.principal.chitty_id,
                    "channel": session.channel,
                    "reason": reason,
                },
            )
        AuthSession.objects.bulk_update(sessions, ["ended_at", "end_reason", "ended_by"])
        session_ids = [session.session_id for session in sessions]
        invalidate(*map(session_topic, session_ids))
        transaction.on_commit(lambda: close_live_connections(session_ids, reason))


def close_live_connections(session_ids: list[str], reason: str) -> list[str]:
    """Tell every server process to close these sessions' connections; returns the ids it could not reach.

    All messages go out in one event loop. When the channel layer (Redis) stays down through the retries,
    the rest are not attempted: they are reported, never dropped silently, and the database already says
    "ended", which connections re-check on their next message."""
    if not session_ids:
        return []
    return async_to_sync(_broadcast_ends)(list(session_ids), reason)


async def _broadcast_ends(session_ids: list[str], reason: str) -> list[str]:
    layer = get_channel_layer()
    for position, session_id in enumerate(session_ids):
        message = {"type": CLOSE_MESSAGE_TYPE, "session_id": session_id, "reason": reason}
        for attempt in range(CLOSE_ATTEMPTS):
            try:
                await layer.group_send(session_group(session_id), message)
                break
            except Exception:  # noqa: BLE001
                if attempt + 1 < CLOSE_ATTEMPTS:
                    await asyncio.sleep(0.05 * 2**attempt)
        else:
            unreached = session_ids[position:]
            logger.warning(
                "Could not broadcast the end of session %s (channel layer unavailable); %d sessions' connections "
                "will close on their next message instead",
                session_id,
                len(unreached),
            )
            return unreached
    return []
