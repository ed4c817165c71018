"""ASGI entry point for daphne: HTTP through Django (MCP's Streamable HTTP at `/mcp`; warm validations by the
REST fast path), WebSocket through Channels (MCP at `/mcp/ws`)."""

import os
import sys

from channels.routing import ProtocolTypeRouter
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chittyauth_site.settings")

django_asgi_app = get_asgi_application()

from chittyauth_site.listen_guard import check_daphne_bind, is_daphne, with_loopback_guard  # noqa: E402
from kernel.graceful_shutdown import with_request_draining  # noqa: E402
from kernel.metrics import forget_this_process_at_exit  # noqa: E402
from kernel.request_context import with_request_id  # noqa: E402
from kernel.tracing import start_tracing, traced_http  # noqa: E402
from keys.fast_path import with_rest_fast_path  # noqa: E402 - needs the apps loaded first
from keys.services import start_usage_writer  # noqa: E402
from mcp_endpoint.http import with_mcp_http  # noqa: E402
from mcp_endpoint.routing import websocket_application  # noqa: E402

check_daphne_bind(sys.argv)
if is_daphne(sys.argv):
    start_usage_writer()
    forget_this_process_at_exit()
    start_tracing()
application = with_request_id(
    with_loopback_guard(
        ProtocolTypeRouter(
            {
                "http": traced_http(
                    with_rest_fast_path(with_mcp_http(with_request_draining(django_asgi_app)))
                ),
                "websocket": websocket_application(),
            }
        )
    )
)
