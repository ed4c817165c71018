"""The development secrets are public (they are in this repository), so anyone could forge a token with them.
A service still using them refuses to start when daphne is told to listen beyond loopback, and answers no
connection that did not both arrive on a loopback address and come from one, nor any request a proxy forwarded
(a reverse proxy on the same host would otherwise make the whole network look like loopback), whatever
`ENVIRONMENT` says. The service is served by daphne only: there is no WSGI entry point to bypass this."""

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from chittyauth_site.configuration import is_loopback
from kernel.errors import error_body

logger = logging.getLogger(__name__)

REFUSED_CODE = "DEVELOPMENT_SECRETS_OFF_LOOPBACK"
FORWARDING_HEADERS = frozenset({b"forwarded", b"x-forwarded-for", b"x-real-ip", b"x-forwarded-host"})


def _refusal_message() -> str:
    names = " and ".join(settings.DEVELOPMENT_SECRETS_IN_USE)
    return f"{names} still hold the published development values; set real ones to serve beyond loopback"


def is_daphne(argv: Sequence[str]) -> bool:
    """Is this process daphne serving the app (not a test, a shell or a worker importing it)?"""
    program = Path(argv[0]) if argv else Path()
    return "daphne" in (program.name, program.parent.name)


def check_daphne_bind(argv: Sequence[str]) -> None:
    """Refuse to start a daphne that would listen beyond loopback with the development secrets."""
    if not settings.DEVELOPMENT_SECRETS_IN_USE or not is_daphne(argv):
        return
    from daphne.cli import CommandLineInterface

    options, _ = CommandLineInterface().parser.parse_known_args(list(argv[1:]))
    where = options.socket_strings or options.unix_socket or options.file_descriptor
    if where or not is_loopback(options.host):
        raise ImproperlyConfigured(
            f"Refusing to listen on {where or options.host}: {_refusal_message()} (or listen on 127.0.0.1)"
        )


def with_loopback_guard(application):
    """Every HTTP request and WebSocket not received on a loopback address is refused while the
    development secrets are in use."""
    if not settings.DEVELOPMENT_SECRETS_IN_USE:
        return application
    warned = False

    async def guarded(scope, receive, send):
        nonlocal warned
        if scope["type"] not in ("http", "websocket") or _is_local(scope):
            return await application(scope, receive, send)
        if not warned:
            warned = True
            logger.error("Refused a connection beyond loopback: %s", _refusal_message())
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
            return None
        body = json.dumps(error_body(REFUSED_CODE, _refusal_message())).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return None

    return guarded


def _is_local(scope) -> bool:
    server, client = scope.get("server") or ("",), scope.get("client") or ("",)
    forwarded = any(name.lower() in FORWARDING_HEADERS for name, _ in scope.get("headers", ()))
    return is_loopback(str(server[0])) and is_loopback(str(client[0])) and not forwarded
