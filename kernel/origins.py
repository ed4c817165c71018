"""Origin checks for the MCP endpoints.

Browsers send `Origin`; other MCP clients (the SDKs, agents, CLIs) do not. A present Origin must name one of
`ALLOWED_HOSTS`, which stops other sites' pages from driving a visitor's browser against the endpoints (DNS
rebinding, cross-site WebSocket hijacking). An absent one is let through: such clients still need a bearer.
"""

from urllib.parse import ParseResult, urlparse

from channels.security.websocket import OriginValidator
from django.conf import settings
from django.http.request import split_domain_port, validate_host


def allowed_hosts() -> list[str]:
    """`ALLOWED_HOSTS`, with Django's own DEBUG fallback when it is empty."""
    if settings.DEBUG and not settings.ALLOWED_HOSTS:
        return [".localhost", "127.0.0.1", "[::1]"]
    return settings.ALLOWED_HOSTS


def host_allowed(host_header: str | None) -> bool:
    """Django's `ALLOWED_HOSTS` check of a Host header, for ASGI paths that answer before Django does."""
    host, _port = split_domain_port(host_header or "")
    return bool(host) and validate_host(host, allowed_hosts())


class BrowserOriginValidator(OriginValidator):
    """Channels' ALLOWED_HOSTS origin check, except that a missing Origin is not a browser and is allowed."""

    def __init__(self, application) -> None:
        super().__init__(application, allowed_hosts())

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        return parsed_origin is None or self.validate_origin(parsed_origin)


def origin_allowed(origin: str | None) -> bool:
    return BrowserOriginValidator(None).valid_origin(urlparse(origin) if origin else None)
