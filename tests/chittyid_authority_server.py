"""A real HTTP server on loopback that speaks the ChittyID authority's API, for tests.

Each registered ChittyID maps to a behaviour: `valid`, `invalid` (valid: false), `404`, `500`, `slow`
(answers after `slow_seconds`), `garbage` (not JSON), `no_verdict` (JSON whose `valid` is not a boolean).
Unknown IDs answer 404. Requests are recorded.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

AUTHORITY_API_KEY = "test-authority-key"


class ChittyIDAuthorityServer:
    def __init__(self, api_key: str = AUTHORITY_API_KEY, slow_seconds: float = 2.0) -> None:
        self.api_key = api_key
        self.slow_seconds = slow_seconds
        self.behaviours: dict[str, str] = {}
        self.requests: list[dict] = []
        self.down = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/health":
                    self._send(503 if server.down else 200, b'{"status":"ok"}')
                else:
                    self._send(404, b"{}")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                try:
                    chitty_id = json.loads(raw).get("chitty_id")
                except ValueError:
                    chitty_id = None
                server.requests.append(
                    {
                        "path": self.path,
                        "chitty_id": chitty_id,
                        "authorization": self.headers.get("Authorization"),
                        "traceparent": self.headers.get("traceparent"),
                    }
                )
                if self.path != "/v1/verify":
                    return self._send(404, b"{}")
                if self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    return self._send(401, b'{"error":"unauthorized"}')
                if server.down:
                    return self._send(503, b'{"error":"down"}')
                behaviour = server.behaviours.get(chitty_id, "404")
                if behaviour == "valid":
                    return self._send(200, json.dumps({"valid": True, "chitty_id": chitty_id}).encode())
                if behaviour == "invalid":
                    return self._send(
                        200, json.dumps({"valid": False, "reason": "revoked by authority"}).encode()
                    )
                if behaviour == "500":
                    return self._send(500, b'{"error":"boom"}')
                if behaviour == "slow":
                    time.sleep(server.slow_seconds)
                    return self._send(200, json.dumps({"valid": True}).encode())
                if behaviour == "garbage":
                    return self._send(200, b"<html>not json</html>", "text/html")
                if behaviour == "no_verdict":
                    return self._send(200, json.dumps({"valid": "yes", "chitty_id": chitty_id}).encode())
                return self._send(404, b'{"error":"not found"}')

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> "ChittyIDAuthorityServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def requests_for(self, chitty_id: str) -> list[dict]:
        return [r for r in self.requests if r["chitty_id"] == chitty_id]
