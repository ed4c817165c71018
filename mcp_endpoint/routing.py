"""WebSocket routes: MCP at `/mcp/ws`, behind the browser-origin check."""

from channels.routing import URLRouter
from django.urls import path

from kernel.origins import BrowserOriginValidator
from mcp_endpoint.consumers import McpWebSocketConsumer

websocket_urlpatterns = [path("mcp/ws", McpWebSocketConsumer.as_asgi())]


def websocket_application() -> BrowserOriginValidator:
    return BrowserOriginValidator(URLRouter(websocket_urlpatterns))
