"""Where audit export sends: a signed webhook and syslog. Each sink takes a batch of CloudEvents and either
returns (the receiver has it all) or raises `DeliveryFailed`, saying whether trying again can help.

Errors name the failure's kind and the HTTP status, never the URL (it may carry a password) or the secret.
"""

import base64
import contextlib
import hashlib
import hmac
import json
import socket
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlparse

import httpx
from django.conf import settings

WEBHOOK = "webhook"
SYSLOG = "syslog"
# Statuses that say the receiver will never take this content (malformed, too large, of a type it refuses, not
# processable): those items become dead letters. Any other failure is retried, 401, 403 and 404 included: they
# say the URL or the receiver's credentials are wrong, which staff fix, and no event should be set aside for it.
REFUSED_FOR_GOOD = frozenset({400, 413, 415, 422})
# RFC 5424: facility 10, security/authorization messages; informational for a success, warning otherwise.
SYSLOG_FACILITY = 10
SYSLOG_INFO, SYSLOG_WARNING = 6, 4
UTF8_BOM = "\ufeff"


class DeliveryFailed(Exception):
    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class Sink(Protocol):
    name: str

    def send(self, cloudevents: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


def configured_sinks() -> list[Sink]:
    sinks: list[Sink] = []
    if settings.AUDIT_WEBHOOK_URL:
        sinks.append(WebhookSink(settings.AUDIT_WEBHOOK_URL, settings.AUDIT_WEBHOOK_SECRET))
    if settings.AUDIT_SYSLOG_URL:
        sinks.append(SyslogSink(settings.AUDIT_SYSLOG_URL))
    return sinks


def configured_sink_names() -> list[str]:
    return [
        name
        for name, url in ((WEBHOOK, settings.AUDIT_WEBHOOK_URL), (SYSLOG, settings.AUDIT_SYSLOG_URL))
        if url
    ]


class WebhookSink:
    """One HTTPS POST per batch (`application/cloudevents-batch+json`), signed as Standard Webhooks specifies
    (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`), so receivers verify it
    with any Standard Webhooks library. A 2xx answer delivers the batch. Redirects are not followed."""

    name = WEBHOOK

    def __init__(self, url: str, secret: str) -> None:
        self._url = url
        self._key = base64.b64decode(secret.removeprefix("whsec_"))
        # The system's CAs (and SSL_CERT_FILE), as for syslog over TLS; not httpx's own bundle.
        self._client = httpx.Client(
            timeout=settings.AUDIT_EXPORT_TIMEOUT_SECONDS,
            follow_redirects=False,
            verify=ssl.create_default_context(),
        )

    def send(self, cloudevents: list[dict[str, Any]]) -> None:
        body = json.dumps(cloudevents, separators=(",", ":"), ensure_ascii=False).encode()
        # The receiver's idempotency key: the same items in the same order, and only those, have the same id.
        ids = ",".join(cloudevent["id"] for cloudevent in cloudevents)
        message_id = "msg_" + hashlib.sha256(ids.encode()).hexdigest()[:32]
        timestamp = str(int(time.time()))
        signature = hmac.new(self._key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
        headers = {
            "content-type": "application/cloudevents-batch+json",
            "webhook-id": message_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": "v1," + base64.b64encode(signature).decode(),
        }
        try:
            with self._client.stream("POST", self._url, content=body, headers=headers) as response:
                status = response.status_code  # the answer's body is never read: only its status counts
        except httpx.HTTPError as exc:
            raise DeliveryFailed(type(exc).__name__, permanent=False) from None
        if 200 <= status < 300:
            return
        raise DeliveryFailed(f"HTTP {status}", permanent=status in REFUSED_FOR_GOOD)

    def close(self) -> None:
        self._client.close()


class SyslogSink:
    """RFC 5424 messages with octet-counting framing (RFC 6587) over TCP, or TLS (RFC 5425), one connection per
    batch. A batch counts as delivered once the receiver has read it to the end and closed its side: a write
    alone only says the bytes reached our own socket buffer."""

    name = SYSLOG

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        self._host = parsed.hostname or ""
        self._port = parsed.port or (6514 if parsed.scheme == "tls" else 601)
        self._tls = ssl.create_default_context() if parsed.scheme == "tls" else None
        self._hostname = _syslog_field(socket.gethostname(), 255)

    def send(self, cloudevents: list[dict[str, Any]]) -> None:
        frames = b"".join(_octet_counted(self._message(cloudevent)) for cloudevent in cloudevents)
        timeout = settings.AUDIT_EXPORT_TIMEOUT_SECONDS
        try:
            with self._connection(timeout) as connection:
                connection.sendall(frames)
                _close_and_wait_for_the_receiver(connection, time.monotonic() + timeout)
        except ssl.SSLCertVerificationError:
            raise DeliveryFailed("TLS certificate not trusted", permanent=False) from None
        except OSError as exc:
            raise DeliveryFailed(type(exc).__name__, permanent=False) from None

    def close(self) -> None:
        pass

    @contextlib.contextmanager
    def _connection(self, timeout: float) -> Iterator[socket.socket]:
        with socket.create_connection((self._host, self._port), timeout=timeout) as raw:
            if self._tls is None:
                yield raw
                return
            with self._tls.wrap_socket(raw, server_hostname=self._host) as wrapped:
                yield wrapped

    def _message(self, cloudevent: dict[str, Any]) -> bytes:
        data = cloudevent["data"]
        severity = SYSLOG_INFO if data.get("outcome", "success") == "success" else SYSLOG_WARNING
        timestamp = (
            datetime.fromisoformat(cloudevent["time"]).astimezone(UTC).isoformat(timespec="microseconds")
        )
        header = (
            f"<{SYSLOG_FACILITY * 8 + severity}>1 {timestamp.replace('+00:00', 'Z')} {self._hostname} "
            f"chittyauth - {_syslog_field(data.get('action', 'audit.checkpoint'), 32)} -"
        )
        body = json.dumps(cloudevent, separators=(",", ":"), ensure_ascii=False)
        return f"{header} {UTF8_BOM}{body}".encode()


def _syslog_field(value: str, max_length: int) -> str:
    """A header field: printable US-ASCII without spaces, or the nil value."""
    printable = "".join(character for character in value if 33 <= ord(character) <= 126)[:max_length]
    return printable or "-"


def _octet_counted(message: bytes) -> bytes:
    return str(len(message)).encode() + b" " + message


def _close_and_wait_for_the_receiver(connection: socket.socket, deadline: float) -> None:
    """Say we are done, then wait until the receiver closes its side too. Over TLS only its close_notify counts:
    a connection dropped without one (ssl.SSLEOFError, an OSError) says nothing about what it read."""
    if isinstance(connection, ssl.SSLSocket):
        with contextlib.suppress(ssl.SSLZeroReturnError):  # its close_notify came first
            connection.unwrap()
        return
    connection.shutdown(socket.SHUT_WR)
    while connection.recv(4096):
        if time.monotonic() > deadline:
            raise TimeoutError("the collector kept the connection open")
