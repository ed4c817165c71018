"""The REST fast path: a warm `POST /api/v1/keys/validate` or `/api/v1/tokens/validate` answered on the event
loop, without Django's request machinery (about ten times the cost of the validation itself).

It answers only the plain case, entirely from memory (`answering_from_memory()`): a JSON body the view's
serializer accepts, a bearer credential, and a caller, session, grants and answer that the per-process
caches already hold. Anything else (a cold cache, a refusal to audit, a use count due to be written, an
unusual header, a bad body) goes to Django exactly as it arrived, body replayed, so every error, audit record
and header rule stays Django's and nothing is counted twice. The answer itself comes from the same view's
`answer()`, rendered by DRF's own renderer; tests hold both paths' status, headers and body equal.

`REST_FAST_PATH = False` sends everything through Django.
"""

import io
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cache
from typing import Any

from asgiref.sync import sync_to_async
from asgiref.typing import ASGIReceiveCallable, ASGIReceiveEvent, ASGISendCallable, Scope
from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.utils import build_policy
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.urls import resolve, reverse
from rest_framework.exceptions import ParseError
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer

from kernel.errors import ServiceError
from kernel.memory_only import NeedsIO, NeedsRead, answering_from_memory, answering_without_writes
from kernel.origins import host_allowed
from kernel.parsers import JSONParser
from kernel.rest import AnswerView
from keys.authentication import BearerCredentialAuthentication, rest_caller

logger = logging.getLogger(__name__)

FAST_ROUTE_NAMES = ("key-validate", "token-validate", "permission-check")
MAX_BODY_BYTES = 16 * 1024  # the largest valid body (an 8 KiB token, JSON-escaped) fits
JSON = b"application/json"
# The request headers the answer depends on; a request carrying any of them twice goes to Django.
READ_HEADERS = frozenset(
    {
        *(b"authorization", b"host", b"content-type", b"content-length", b"accept", b"user-agent"),
        *(b"cookie", b"x-forwarded-proto"),
    }
)

Asgi = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Any]


def with_rest_fast_path(app: Asgi) -> Asgi:
    """Wrap the HTTP application; with `REST_FAST_PATH` off, return it unchanged."""
    if not settings.REST_FAST_PATH:
        return app
    routes = {reverse(name): _FastRoute.to(reverse(name)) for name in FAST_ROUTE_NAMES}

    async def application(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        route = routes.get(scope["path"]) if _plain_post(scope) else None
        if route is None:
            await app(scope, receive, send)
            return
        received, body = await _read_body(receive)
        if received[-1]["type"] == "http.disconnect":
            return  # the client is gone; Django would not answer either
        headers = _read_headers(scope)
        answer = None
        if body is not None and headers is not None and _plain_headers(scope, headers, len(body)):
            answer = _attempt(answering_from_memory, route.view, scope, headers, body)
            if answer is NEEDS_READS:
                answer = await _answer_with_reads(route.view, scope, headers, body)
        if not isinstance(answer, bytes):
            await app(scope, _replaying(received, receive), send)
            return
        response_headers = _response_headers(route, scope, headers, answer)
        await send({"type": "http.response.start", "status": 200, "headers": response_headers})
        await send({"type": "http.response.body", "body": answer})

    return application


@dataclass(frozen=True)
class _FastRoute:
    view: type[AnswerView]
    view_headers: tuple[tuple[bytes, bytes], ...]  # what DRF's APIView adds to every answer (Allow, ...)

    @classmethod
    def to(cls, path: str) -> "_FastRoute":
        view = _answer_view(path)
        headers = view().default_response_headers.items()
        return cls(view, tuple((name.encode(), value.encode()) for name, value in headers))


def _answer_view(path: str) -> type[AnswerView]:
    """The view Django routes `path` to, which must be an `AnswerView` on the project's plain DRF policies
    (bearer authentication, IsAuthenticated, no throttles, JSON in and out): the fast path applies just those."""
    view = resolve(path).func.view_class
    plain = (
        issubclass(view, AnswerView)
        and view.authentication_classes == [BearerCredentialAuthentication]
        and view.permission_classes == [IsAuthenticated]
        and not view.throttle_classes
        and view.parser_classes == [JSONParser]
        and view.renderer_classes == [JSONRenderer]
    )
    if not plain:
        raise TypeError(f"{path} is not a plain AnswerView; take it out of FAST_ROUTE_NAMES")
    return view


def _plain_post(scope: Scope) -> bool:
    return (
        scope["type"] == "http"
        and scope["method"] == "POST"
        and not scope.get("root_path")
        and not scope.get("query_string")
    )


async def _read_body(receive: ASGIReceiveCallable) -> tuple[list[ASGIReceiveEvent], bytes | None]:
    """Every message read (to replay) and the whole body, or None when it is too large or never completed."""
    limit = min(MAX_BODY_BYTES, settings.DATA_UPLOAD_MAX_MEMORY_SIZE or MAX_BODY_BYTES)
    received: list[ASGIReceiveEvent] = []
    size = 0
    while True:
        message = await receive()
        received.append(message)
        if message["type"] != "http.request":
            return received, None
        size += len(message.get("body", b""))
        if size > limit:
            return received, None
        if not message.get("more_body", False):
            return received, b"".join(part.get("body", b"") for part in received)


def _replaying(received: list[ASGIReceiveEvent], receive: ASGIReceiveCallable) -> ASGIReceiveCallable:
    pending = list(received)

    async def replay() -> ASGIReceiveEvent:
        return pending.pop(0) if pending else await receive()

    return replay


NEEDS_READS = object()  # what `_attempt` answers when reads alone would have let it answer


def _attempt(
    mode: Callable[[], AbstractContextManager], view: type[AnswerView], scope: Scope, headers, body: bytes
) -> bytes | object | None:
    """The rendered answer, `NEEDS_READS`, or None to let Django answer (which then does everything, audit
    included). Whatever goes wrong here goes to Django too: effects wait for a clean exit, so nothing has
    changed."""
    try:
        return _answer(mode, view, scope, headers, body)
    except NeedsRead:
        return NEEDS_READS
    except (NeedsIO, ServiceError, ParseError):
        return None
    except Exception as exc:  # a bug here must not become a bare 500 without the security headers  # noqa: BLE001
        logger.warning("REST fast path: %s; answering through Django", type(exc).__name__)
        return None


def _attempt_with_reads(view: type[AnswerView], scope: Scope, headers, body: bytes) -> bytes | None:
    answer = _attempt(answering_without_writes, view, scope, headers, body)
    return answer if isinstance(answer, bytes) else None


# A cold answer's reads run on the thread Django's own views use (so it shares their database connection and,
# under test, their transaction): a read costs a hop to it, not a trip through Django's request machinery.
_answer_with_reads = sync_to_async(_attempt_with_reads, thread_sensitive=True)


def _answer(
    mode: Callable[[], AbstractContextManager], view: type[AnswerView], scope: Scope, headers, body: bytes
) -> bytes | None:
    data = JSONParser().parse(io.BytesIO(body))
    serializer = view.input_serializer_for(data)(data=data)
    if not serializer.is_valid():
        return None
    client = scope.get("client")
    with mode():
        caller = rest_caller(
            headers[b"authorization"],
            client_address=client[0] if client else None,
            user_agent=headers.get(b"user-agent", b"").decode("latin-1"),
        )
        return JSONRenderer().render(view.answer(caller, serializer.validated_data))


def _read_headers(scope: Scope) -> dict[bytes, bytes] | None:
    headers: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        name = name.lower()
        if name in READ_HEADERS:
            if name in headers:
                return None
            headers[name] = value
    return headers


def _plain_headers(scope: Scope, headers: dict[bytes, bytes], body_length: int) -> bool:
    """What Django and DRF would accept without a redirect, an error or a different rendering."""
    return (
        b"authorization" in headers
        and headers.get(b"content-length") == str(body_length).encode()  # DRF reads Content-Length bytes
        and b"cookie" not in headers
        and headers.get(b"content-type", b"").lower() == JSON
        and headers.get(b"accept", JSON).lower() in (JSON, b"*/*")
        and host_allowed(headers.get(b"host", b"").decode("latin-1"))
        and not (settings.SECURE_SSL_REDIRECT and not _is_secure(scope, headers))
        and not settings.USE_X_FORWARDED_HOST
        and not settings.PREPEND_WWW
        and not settings.DISALLOWED_USER_AGENTS
    )


def _is_secure(scope: Scope, headers: dict[bytes, bytes]) -> bool:
    """`HttpRequest.is_secure()`, for the same request."""
    if settings.SECURE_PROXY_SSL_HEADER:
        meta_name, secure_value = settings.SECURE_PROXY_SSL_HEADER
        header = meta_name.removeprefix("HTTP_").replace("_", "-").lower().encode()
        if header in headers:
            return headers[header].decode("latin-1").split(",")[0].strip() == secure_value
    return scope.get("scheme") == "https"


def _response_headers(
    route: _FastRoute, scope: Scope, request_headers: dict[bytes, bytes], body: bytes
) -> list[tuple[bytes, bytes]]:
    """The headers Django's stack (DRF, CommonMiddleware, SecurityMiddleware, XFrameOptionsMiddleware) sets on
    this 200; `tests/test_rest_fast_path.py` compares them with Django's own."""
    headers = [(b"Content-Type", JSON), *route.view_headers]
    headers += [
        (b"X-Frame-Options", settings.X_FRAME_OPTIONS.upper().encode()),
        (b"Content-Length", str(len(body)).encode()),
    ]
    if settings.SECURE_HSTS_SECONDS and _is_secure(scope, request_headers):
        hsts = f"max-age={settings.SECURE_HSTS_SECONDS}"
        if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
            hsts += "; includeSubDomains"
        if settings.SECURE_HSTS_PRELOAD:
            hsts += "; preload"
        headers.append((b"Strict-Transport-Security", hsts.encode()))
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append((b"X-Content-Type-Options", b"nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        headers.append((b"Referrer-Policy", _referrer_policy().encode()))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append((b"Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode()))
    headers += _content_security_policy(scope["path"])
    return headers


@cache
def _content_security_policy(path: str) -> tuple[tuple[bytes, bytes], ...]:
    """What django-csp's middleware sets, built once per route (building it costs more than the answer)."""
    headers = []
    for header, setting, report_only in (
        (HEADER, "CONTENT_SECURITY_POLICY", False),
        (HEADER_REPORT_ONLY, "CONTENT_SECURITY_POLICY_REPORT_ONLY", True),
    ):
        policy = build_policy(report_only=report_only)
        excluded = tuple((getattr(settings, setting, None) or {}).get("EXCLUDE_URL_PREFIXES") or ())
        if policy and not path.startswith(excluded):
            headers.append((header.encode(), policy.encode()))
    return tuple(headers)


@receiver(setting_changed)
def _forget_content_security_policy(*, setting: str, **kwargs) -> None:
    if setting.startswith("CONTENT_SECURITY_POLICY"):
        _content_security_policy.cache_clear()


def _referrer_policy() -> str:
    """As SecurityMiddleware spells it."""
    policy = settings.SECURE_REFERRER_POLICY
    values = policy.split(",") if isinstance(policy, str) else policy
    return ",".join(value.strip() for value in values)
