"""Who an MCP connection acts as, and the ChittyAuth session it runs in.

Every transport authenticates through `keys.credentials.authenticate_bearer` and runs in a session:

- An API-key connection opens a session of its own (channel `mcp-websocket`, `mcp-http` or `mcp-stdio`) and
  ends it when the connection ends.
- A JWT connection runs in the token's session (opened when it was minted): ending that session revokes the
  token, so a disconnect must not end it.

Long-lived connections (WebSocket, stdio) re-check, whenever their session, their credential or their principal
has been invalidated, that the session is still live and the credential still valid, so a revocation stops
them at their next message even if the close broadcast was lost; changes to anything else leave them alone. All of this is synchronous Django code, run in a worker thread; on the event
loop only inside `answering_from_memory()`, where every wait on I/O raises `NeedsIO` instead.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from django.utils import timezone

from kernel.callers import Caller
from kernel.errors import ServiceError
from kernel.invalidation import credential_topic, current_stamp, is_fresh, principal_topic, session_topic
from kernel.memory_only import needs_io
from keys.credentials import authenticate_bearer
from sessions.models import AuthSession
from sessions.services import (
    LAST_SEEN_WRITE_INTERVAL,
    end_session,
    is_live,
    open_session,
    touch_credential_session,
    touch_session,
)

TOUCH_INTERVAL_SECONDS = LAST_SEEN_WRITE_INTERVAL.total_seconds()


class SessionEnded(ServiceError):
    """The connection's session was ended (by its principal, staff, or the principal's suspension)."""

    code = "SESSION_ENDED"
    http_status = 401


class CallerSource(Protocol):
    """Where a tool call gets its `Caller` from; `caller()` runs in a worker thread and may refuse. `transport`
    is the session channel the calls came in by."""

    transport: str

    def caller(self) -> Caller: ...


@dataclass(frozen=True)
class FixedCaller:
    """A caller already authenticated for this one request (Streamable HTTP authenticates every request)."""

    authenticated: Caller
    transport: str = AuthSession.Channel.MCP_HTTP

    def caller(self) -> Caller:
        return self.authenticated


class ConnectionSession:
    """The ChittyAuth session of one MCP connection: liveness re-checked when what it depends on is
    invalidated, `last_seen` written at most once a minute, and ended with the connection when the connection
    opened it."""

    def __init__(
        self,
        session_id: str,
        *,
        owned: bool,
        credential_expires_at: datetime | None = None,
        depends_on: tuple[str, ...] = (),
    ) -> None:
        self.session_id = session_id
        self.owned = owned
        self.credential_expires_at = credential_expires_at
        self.topics = (session_topic(session_id), *depends_on)
        self._stamp = current_stamp()
        self._touched = time.monotonic()
        self._lock = threading.Lock()

    @classmethod
    def open(cls, caller: Caller, channel: str) -> "ConnectionSession":
        if caller.credential_type == AuthSession.CredentialType.JWT:
            session_id, owned = touch_credential_session(caller, channel), False
        else:
            session_id, owned = open_session(caller, channel).session_id, True
        depends_on = (credential_topic(caller.credential_type, caller.credential_id),)
        if caller.identity is not None:
            depends_on += (principal_topic(caller.identity.chitty_id),)
        return cls(session_id, owned=owned, credential_expires_at=caller.expires_at, depends_on=depends_on)

    def ensure_live(self, recheck: Callable[[], None] = lambda: None, *, active: bool = True) -> None:
        """Raise `SessionEnded` if the session is over. When something it depends on was invalidated or the
        credential's expiry has come, `recheck` runs too (e.g. the credential); the new stamp is remembered only
        once every check passed, so a refusal repeats. Only an `active` check (the client sent something) counts as the
        connection being seen: a background re-check must not keep an idle session from timing out."""
        if not self._lock.acquire(blocking=False):  # a worker is re-checking: never wait for it on the loop
            needs_io("session re-check in progress")
            self._lock.acquire()
        try:
            if not is_fresh(self._stamp, self.topics) or self._credential_expired():
                needs_io("session re-check")
                stamp = current_stamp()
                if not is_live(self.session_id):
                    raise SessionEnded(f"Session {self.session_id} has ended", session_id=self.session_id)
                recheck()
                self._stamp = stamp
            now = time.monotonic()
            if active and now - self._touched >= TOUCH_INTERVAL_SECONDS:
                needs_io("session last seen")
                touch_session(self.session_id)
                self._touched = now
        finally:
            self._lock.release()

    def is_settled(self, *, active: bool = True) -> bool:
        """Nothing to re-check or write: nothing it depends on was invalidated and, for an `active` check,
        `last_seen` is fresh. Cheap enough to ask on the event loop, so most messages need no worker thread."""
        return (
            is_fresh(self._stamp, self.topics)
            and (not active or time.monotonic() - self._touched < TOUCH_INTERVAL_SECONDS)
            and not self._credential_expired()
        )

    def _credential_expired(self) -> bool:
        """Invalidation follows revocations, not expiry: the clock decides that."""
        return self.credential_expires_at is not None and timezone.now() >= self.credential_expires_at

    def end(self, caller: Caller, reason: str) -> None:
        """End the session if this connection opened it; the principal ends its own, so no permission is needed."""
        if self.owned:
            end_session(caller, self.session_id, reason=reason)


class LiveConnection:
    """A long-lived connection (WebSocket, stdio): one credential, one session, re-checked when invalidated."""

    def __init__(
        self,
        credential: str,
        caller: Caller,
        session: ConnectionSession,
        *,
        client_address: str | None,
        user_agent: str,
        transport: str,
    ) -> None:
        self.transport = transport
        self._credential = credential
        self._client_address = client_address
        self._user_agent = user_agent
        self._caller = replace(caller, session_id=session.session_id)
        self.session = session

    @classmethod
    def open(
        cls, credential: str, channel: str, *, client_address: str | None = None, user_agent: str = ""
    ) -> "LiveConnection":
        """Authenticate (refusals are audited by `authenticate_bearer`) and open the connection's session."""
        caller = authenticate_bearer(credential, client_address=client_address, user_agent=user_agent)
        session = ConnectionSession.open(caller, channel)
        return cls(
            credential,
            caller,
            session,
            client_address=client_address,
            user_agent=user_agent,
            transport=channel,
        )

    @property
    def session_id(self) -> str:
        return self.session.session_id

    def is_settled(self, *, active: bool = True) -> bool:
        return self.session.is_settled(active=active)

    def caller(self, *, active: bool = True) -> Caller:
        """The connection's caller, after re-checking session and credential if anything changed anywhere."""
        self.session.ensure_live(self._reauthenticate, active=active)
        return self._caller

    def _reauthenticate(self) -> None:
        caller = authenticate_bearer(
            self._credential, client_address=self._client_address, user_agent=self._user_agent
        )
        self._caller = replace(caller, session_id=self.session_id)
        self.session.credential_expires_at = caller.expires_at

    def close(self, reason: str) -> None:
        self.session.end(self._caller, reason)
