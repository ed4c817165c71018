"""Real loopback receivers for audit export, for tests: a webhook endpoint and a syslog collector.

The webhook receiver answers from a script: `fail_first` answers with `failure_status` first, then 2xx; a
batch holding a CloudEvent id in `refuse_ids` gets 422, and every batch 400 with `refuse_everything`. Every
request is recorded with its headers and raw body, and each accepted batch's CloudEvents in `accepted`; HTTPS
when given a TLS context. The syslog collector reads RFC 6587 octet-counted frames until the sender closes, then
closes its side, as a collector does (over TLS when given a context), or drops each connection part way
through with `drop_after`.
"""

import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class WebhookRequest:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def cloudevents(self) -> list[dict]:
        return json.loads(self.body)


class WebhookReceiver:
    def __init__(
        self,
        port: int = 0,
        *,
        fail_first: int = 0,
        failure_status: int = 503,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.fail_first = fail_first
        self.failure_status = failure_status
        self.refuse_ids: set[str] = set()
        self.refuse_everything = False
        self.requests: list[WebhookRequest] = []
        self.accepted: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver._answer(body)
                receiver.requests.append(
                    WebhookRequest(
                        {name.lower(): value for name, value in self.headers.items()}, body, status
                    )
                )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/audit-hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _answer(self, body: bytes) -> int:
        if self.fail_first > 0:
            self.fail_first -= 1
            return self.failure_status
        cloudevents = json.loads(body)
        if self.refuse_everything:
            return 400
        if any(cloudevent["id"] in self.refuse_ids for cloudevent in cloudevents):
            return 422
        self.accepted.extend(cloudevents)
        return 202

    def __enter__(self) -> "WebhookReceiver":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class SyslogCollector:
    tls: ssl.SSLContext | None = None
    # Set: read this many bytes of each connection, then drop it (as a collector that crashes does).
    drop_after: int | None = None
    frames: list[bytes] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(connection,), daemon=True).start()

    def _read(self, connection: socket.socket) -> None:
        self.connections += 1
        try:
            if self.tls is not None:
                connection = self.tls.wrap_socket(connection, server_side=True)
            if self.drop_after is not None:
                connection.recv(self.drop_after)
                return
            stream = connection.makefile("rb")
            while length := _frame_length(stream):
                self.frames.append(stream.read(length))
            if isinstance(connection, ssl.SSLSocket):
                connection = connection.unwrap()
        except (OSError, ValueError):
            pass
        finally:
            connection.close()

    def __enter__(self) -> "SyslogCollector":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._listener.close()


def _frame_length(stream) -> int:
    digits = b""
    while (character := stream.read(1)) not in (b" ", b""):
        digits += character
    return int(digits) if digits else 0
