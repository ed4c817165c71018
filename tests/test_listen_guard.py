"""With the published development secrets in use (as in this suite), the ASGI application answers only
connections received on a loopback address: a token forged with those secrets is useless from the network."""

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from chittyauth_site import asgi


def http_get(
    path: str,
    server: tuple[str, int],
    client: tuple[str, int] = ("127.0.0.1", 40000),
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> tuple[int, bytes]:
    sent, incoming = [], [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        if incoming:
            return incoming.pop()
        await asyncio.sleep(60)  # the client stays connected until the answer is sent
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "client": client,
        "server": server,
        "headers": [(b"host", b"localhost"), *headers],
    }
    async_to_sync(asgi.application)(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.parametrize("server", [("192.0.2.10", 8000), ("10.1.2.3", 80), ("2001:db8::1", 8000)])
def test_a_request_received_beyond_loopback_is_refused(server):
    status, body = http_get("/api/v1/whoami", server)

    assert status == 503
    assert json.loads(body)["error"]["code"] == "DEVELOPMENT_SECRETS_OFF_LOOPBACK"
    assert "JWT_SECRET" in json.loads(body)["error"]["message"]


@pytest.mark.parametrize(
    ("client", "headers"),
    [
        (("198.51.100.7", 40000), ()),  # a port forwarded to loopback
        (("127.0.0.1", 40000), ((b"X-Forwarded-For", b"198.51.100.7"),)),  # a reverse proxy on this host
        (("127.0.0.1", 40000), ((b"forwarded", b"for=198.51.100.7"),)),
        (("::1", 40000), ((b"x-real-ip", b"198.51.100.7"),)),
    ],
    ids=["remote client", "x-forwarded-for", "forwarded", "x-real-ip"],
)
def test_a_request_from_beyond_loopback_is_refused_even_when_it_arrives_on_loopback(client, headers):
    status, body = http_get("/api/v1/whoami", ("127.0.0.1", 8000), client, headers)

    assert status == 503
    assert json.loads(body)["error"]["code"] == "DEVELOPMENT_SECRETS_OFF_LOOPBACK"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("server", [("127.0.0.1", 8000), ("::1", 8000), ("127.0.0.53", 80)])
def test_a_request_received_on_loopback_is_served(server):
    status, body = http_get("/healthz", server)

    assert status == 200
    assert json.loads(body) == {"status": "ok"}


@pytest.mark.django_db(transaction=True)
def test_a_websocket_received_beyond_loopback_is_closed_unanswered():
    async def connect() -> tuple[bool, int | None]:
        communicator = WebsocketCommunicator(asgi.application, "/mcp/ws")
        communicator.scope["server"] = ("192.0.2.10", 8000)
        connected, code = await communicator.connect()
        await communicator.disconnect()
        return connected, code

    connected, code = async_to_sync(connect)()

    assert connected is False
    assert code == 1008
