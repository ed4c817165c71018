"""The REST fast path, through the service's real ASGI application: a warm validation is answered without
Django's request machinery and exactly as Django answers it (status, headers, body); everything else reaches
Django intact, and nothing is counted or audited twice."""

import asyncio
import json
from contextlib import contextmanager

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.core.asgi import get_asgi_application
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection
from django.test.utils import CaptureQueriesContext

from audit import services as audit_services
from audit.models import AuditEvent
from chittyauth_site import asgi
from grants.services import grant_permission
from identities.models import Identity
from kernel.callers import Caller
from kernel.invalidation import invalidate_everything_and_wait
from kernel.request_context import with_request_id
from keys.fast_path import MAX_BODY_BYTES, with_rest_fast_path
from keys.models import ApiKey
from keys.services import flush_usage, generate_api_key, revoke_api_key
from keys.tokens import generate_jwt, revoke_jwt
from principals.services import suspend_identity
from tests.mcp_live import ADMIN, BOB, base_env, daphne_server, rest, service_database

pytestmark = pytest.mark.django_db

SYSTEM = Caller.system("tests")
VALIDATOR = "CHITTY-PEO-FASTVALIDATOR-A"
OWNER = "CHITTY-PEO-FASTOWNER-A"
KEYS, TOKENS, CHECKS = "/api/v1/keys/validate", "/api/v1/tokens/validate", "/api/v1/permissions/check"
FAST = asgi.application
# The same service without the fast path in front (the request id, which both answers carry, outermost).
DJANGO = with_request_id(asgi.django_asgi_app)
REQUEST_ID = "fast-path-test-0001"  # sent with every request, so both paths echo the same id


@pytest.fixture
def cast(make_identity):
    """A validator holding `api_keys:validate` and `tokens:validate`, and an owner with a key and a token."""
    make_identity(VALIDATOR)
    make_identity(OWNER)
    for permission in ("api_keys:validate", "tokens:validate"):
        grant_permission(SYSTEM, grantee_chitty_id=VALIDATOR, permission=permission)
    validator_key = generate_api_key(SYSTEM, chitty_id=VALIDATOR, scopes=["*"])
    assert invalidate_everything_and_wait(timeout=10), "the invalidation feed never caught up"
    return {
        "validator": validator_key.secret,
        "validator_key_id": validator_key.api_key.key_id,
        "key": generate_api_key(SYSTEM, chitty_id=OWNER),
        "token": generate_jwt(SYSTEM, chitty_id=OWNER).token,
    }


@pytest.fixture(autouse=True)
def _keep_the_test_transaction():
    """Django's handler closes the database connection around each request, which would end the test's
    transaction; its own test clients switch that off the same way."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@contextmanager
def django_requests():
    """Counts the requests Django's own handler took (it sends `request_started` for each)."""
    seen = []

    def started(**kwargs) -> None:
        seen.append(kwargs)

    request_started.connect(started)
    try:
        yield seen
    finally:
        request_started.disconnect(started)


def post(app, path: str, body: dict | bytes, *, bearer: str | None = None, **headers: str) -> httpx.Response:
    """One request through `app` over ASGI (Django's sync parts run on this thread, inside the test's
    transaction)."""
    headers = {
        "content-type": "application/json",
        "x-request-id": REQUEST_ID,
        **{k.replace("_", "-"): v for k, v in headers.items()},
    }
    if bearer is not None:
        headers["authorization"] = f"Bearer {bearer}"
    content = body if isinstance(body, bytes) else json.dumps(body).encode()

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            return await client.post(path, content=content, headers=headers)

    return async_to_sync(send)()


def answered(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    return response.status_code, sorted(response.headers.multi_items()), response.content


@pytest.mark.parametrize(
    ("path", "body"),
    [(KEYS, lambda cast: {"api_key": cast["key"].secret}), (TOKENS, lambda cast: {"token": cast["token"]})],
    ids=["api key", "jwt"],
)
def test_a_warm_validation_skips_django_and_answers_exactly_as_django_does(cast, path, body):
    request = body(cast)
    with django_requests() as seen:
        from_django = post(DJANGO, path, request, bearer=cast["validator"])  # warms every cache
        assert len(seen) == 1
        from_fast_path = post(FAST, path, request, bearer=cast["validator"])
        assert len(seen) == 1  # Django never saw it
    assert from_django.status_code == 200
    assert from_django.json()["valid"] is True
    assert answered(from_fast_path) == answered(from_django)


def test_a_cold_request_goes_to_django_and_warms_the_next(cast):
    request = {"api_key": cast["key"].secret}
    with django_requests() as seen:
        first = post(FAST, KEYS, request, bearer=cast["validator"])
        second = post(FAST, KEYS, request, bearer=cast["validator"])
    assert len(seen) == 1
    assert answered(first) == answered(second)
    assert first.json()["chitty_id"] == OWNER


def test_a_cold_validation_is_answered_with_one_read_and_exactly_as_django_answers(cast):
    """The caller is warm; the key, the token and the principal's grants are not: each is answered without
    Django, each with its one query, and as Django answers it."""
    grant_permission(SYSTEM, grantee_chitty_id=VALIDATOR, permission="permissions:check")
    assert post(FAST, KEYS, {"api_key": cast["key"].secret}, bearer=cast["validator"]).status_code == 200
    assert post(FAST, TOKENS, {"token": cast["token"]}, bearer=cast["validator"]).status_code == 200
    cold_key = generate_api_key(SYSTEM, chitty_id=OWNER)
    cold_token = generate_jwt(SYSTEM, chitty_id=VALIDATOR).token  # a principal no token validation has read
    grant_permission(SYSTEM, grantee_chitty_id=OWNER, permission="documents:read")  # drops OWNER's grants
    requests = [
        (KEYS, {"api_key": cold_key.secret}),
        (TOKENS, {"token": cold_token}),
        (CHECKS, {"chitty_id": OWNER, "permission": "documents:read"}),
    ]
    answers = []
    with django_requests() as seen, CaptureQueriesContext(connection) as queries:
        for path, request in requests:
            before = len(queries)
            answers.append(post(FAST, path, request, bearer=cast["validator"]))
            assert len(queries) - before == 1, (path, queries.captured_queries[before:])
    assert len(seen) == 0
    for (path, request), from_fast_path in zip(requests, answers, strict=True):
        assert answered(from_fast_path) == answered(post(DJANGO, path, request, bearer=cast["validator"]))
    assert answers[0].json()["valid"] is True and answers[1].json()["valid"] is True
    assert answers[2].json()["allowed"] is True


def test_permission_checks_one_or_many_are_answered_without_django_as_django_answers(cast):
    grant_permission(SYSTEM, grantee_chitty_id=OWNER, permission="documents:read")
    grant_permission(SYSTEM, grantee_chitty_id=VALIDATOR, permission="permissions:check")
    single = {"chitty_id": OWNER, "permission": "documents:read"}
    bulk = {"checks": [single, {"chitty_id": OWNER, "permission": "documents:write", "resource": "d1"}]}
    for request in (single, bulk):
        from_django = post(DJANGO, CHECKS, request, bearer=cast["validator"])
        assert from_django.status_code == 200, from_django.content
        with django_requests() as seen:
            from_fast_path = post(FAST, CHECKS, request, bearer=cast["validator"])
        assert len(seen) == 0
        assert answered(from_fast_path) == answered(from_django)
    assert from_fast_path.json()["results"][0]["allowed"] is True


def test_a_refused_permission_check_is_left_to_django_and_audited_once(cast):
    """Checking another principal without `permissions:check` is refused and audited: Django answers it."""
    refusals = AuditEvent.objects.filter(action="authorization.denied")
    with django_requests() as seen:
        refused = post(
            FAST, CHECKS, {"chitty_id": OWNER, "permission": "audit:read"}, bearer=cast["validator"]
        )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "PERMISSION_DENIED"
    assert len(seen) == 1
    assert refusals.count() == 1


def test_a_revocation_is_seen_on_the_very_next_request_and_audited_once(cast):
    request = {"api_key": cast["key"].secret}
    assert post(FAST, KEYS, request, bearer=cast["validator"]).json()["valid"] is True
    revoke_api_key(SYSTEM, cast["key"].api_key.key_id)
    refusals = AuditEvent.objects.filter(action="api_key.validate", outcome="failure")
    with django_requests() as seen:
        for expected_refusals in (1, 2):
            answer = post(FAST, KEYS, request, bearer=cast["validator"]).json()
            assert (answer["valid"], answer["code"]) == (False, "REVOKED")
            assert refusals.count() == expected_refusals
    assert len(seen) == 2  # a refusal is audited, so Django answers it every time


def test_a_revoked_token_and_a_suspended_caller_are_seen_at_once(cast):
    token_request = {"token": cast["token"]}
    assert post(FAST, TOKENS, token_request, bearer=cast["validator"]).json()["valid"] is True
    revoke_jwt(SYSTEM, token=cast["token"])
    assert post(FAST, TOKENS, token_request, bearer=cast["validator"]).json()["code"] == "REVOKED"

    key_request = {"api_key": cast["key"].secret}
    assert post(FAST, KEYS, key_request, bearer=cast["validator"]).status_code == 200
    suspend_identity(SYSTEM, Identity.objects.get(chitty_id=VALIDATOR))
    refused = post(FAST, KEYS, key_request, bearer=cast["validator"])
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith('Bearer realm="chittyauth"')
    assert refused.json()["error"]["code"] == "INVALID_CREDENTIAL"


def test_uses_are_counted_once_whichever_path_answers(cast):
    """One answer by Django (the caller's first, which opens its session), three from memory, and one where the
    caller was authenticated from memory but the key to validate was not cached, so it was answered again with
    its read in a worker: five uses of the caller's key, no more, and one of each validated key per answer."""
    other = generate_api_key(SYSTEM, chitty_id=OWNER)
    request = {"api_key": cast["key"].secret}
    with django_requests() as seen:
        for _ in range(4):
            assert post(FAST, KEYS, request, bearer=cast["validator"]).json()["valid"] is True
        assert post(FAST, KEYS, {"api_key": other.secret}, bearer=cast["validator"]).json()["valid"] is True
    assert len(seen) == 1
    flush_usage()
    assert ApiKey.objects.get(key_id=cast["key"].api_key.key_id).use_count == 4
    assert ApiKey.objects.get(key_id=other.api_key.key_id).use_count == 1
    assert ApiKey.objects.get(key_id=cast["validator_key_id"]).use_count == 5


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b'{"api_key": ', {}, 400, "MALFORMED_REQUEST"),
        (b'{"api_key": NaN}', {}, 400, "MALFORMED_REQUEST"),
        (b"[" * 5000 + b"]" * 5000, {}, 400, "MALFORMED_REQUEST"),
        (b"[]", {}, 400, "INVALID_INPUT"),
        (b'{"api_key": "' + b"x" * 600 + b'"}', {}, 400, "INVALID_INPUT"),
        (b'{"api_key": "x"}', {"content_type": "text/plain"}, 415, "UNSUPPORTED_MEDIA_TYPE"),
        (b'{"api_key": "x"}', {"accept": "text/html"}, 406, "NOT_ACCEPTABLE"),
        (b'{"api_key": "' + b"x" * MAX_BODY_BYTES + b'"}', {}, 400, "INVALID_INPUT"),
    ],
    ids=[
        "truncated",
        "nan",
        "nested too deeply",
        "not an object",
        "too long",
        "not json",
        "html wanted",
        "oversized body",
    ],
)
def test_bad_requests_reach_django_whole_and_get_its_error(cast, body, headers, status, code):
    with django_requests() as seen:
        refused = post(FAST, KEYS, body, bearer=cast["validator"], **headers)
    assert len(seen) == 1
    assert refused.status_code == status, refused.content
    assert refused.json()["error"]["code"] == code


def test_a_bad_credential_gets_djangos_401_and_one_audit_record(cast):
    refusals = AuditEvent.objects.filter(action="auth.failed")
    for attempt in (1, 2):
        refused = post(FAST, KEYS, {"api_key": cast["key"].secret}, bearer="chitty_live_not_a_key")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "INVALID_CREDENTIAL"
        assert refusals.count() == attempt


@pytest.mark.parametrize("app", [FAST, DJANGO], ids=["fast path", "django"])
def test_a_request_leaves_nothing_of_itself_behind_for_work_done_after_it(cast, app):
    """asgiref copies a coroutine's context back to its caller: an unreset request id would be stamped on
    every event recorded after the request, outside it."""
    post(app, KEYS, {"api_key": cast["key"].secret}, bearer=cast["validator"])
    afterwards = audit_services.record("test.after_request", actor="tests")
    assert "request_id" not in afterwards.details


def test_validating_anothers_key_without_the_permission_is_refused_every_time(cast, make_identity):
    make_identity("CHITTY-PEO-FASTNOBODY-A")
    nobody = generate_api_key(SYSTEM, chitty_id="CHITTY-PEO-FASTNOBODY-A").secret
    refusals = AuditEvent.objects.filter(action="authorization.denied")
    before = refusals.count()
    for attempt in (1, 2):
        refused = post(FAST, KEYS, {"api_key": cast["key"].secret}, bearer=nobody)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "PERMISSION_DENIED"
        assert refusals.count() == before + attempt


@pytest.mark.parametrize(
    "headers",
    [{"cookie": "sessionid=abc"}, {"host": "evil.example"}, {"accept": "application/json; indent=4"}],
    ids=["cookie", "unknown host", "indented json"],
)
def test_unusual_headers_are_left_to_django(cast, headers):
    request = {"api_key": cast["key"].secret}
    post(FAST, KEYS, request, bearer=cast["validator"])  # warm
    with django_requests() as seen:
        fast = post(FAST, KEYS, request, bearer=cast["validator"], **headers)
        plain = post(DJANGO, KEYS, request, bearer=cast["validator"], **headers)
    assert len(seen) == 2
    assert answered(fast) == answered(plain)


def test_behind_a_tls_proxy_the_answer_carries_djangos_hsts_and_plain_http_is_redirected(cast, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    django_app = get_asgi_application()  # Django's middleware reads these settings when it is built
    fast_app = with_rest_fast_path(django_app)
    request = {"api_key": cast["key"].secret}
    with django_requests() as seen:
        from_django = post(django_app, KEYS, request, bearer=cast["validator"], x_forwarded_proto="https")
        from_fast_path = post(fast_app, KEYS, request, bearer=cast["validator"], x_forwarded_proto="https")
        redirected = post(fast_app, KEYS, request, bearer=cast["validator"])
    assert len(seen) == 2
    assert from_django.headers["strict-transport-security"] == "max-age=3600; includeSubDomains; preload"
    assert answered(from_fast_path) == answered(from_django)
    assert redirected.status_code == 301


def test_the_fast_path_can_be_switched_off(cast, settings):
    settings.REST_FAST_PATH = False
    assert with_rest_fast_path(DJANGO) is DJANGO


def asgi_post(app, body: bytes, headers: list[tuple[bytes, bytes]]) -> list[dict]:
    """A POST to keys/validate whose body arrives in two pieces; the messages `app` sent back."""
    messages = [
        {"type": "http.request", "body": body[:10], "more_body": True},
        {"type": "http.request", "body": body[10:], "more_body": False},
    ]
    sent = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(60)  # the client stays connected until the answer is sent
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": KEYS,
        "raw_path": KEYS.encode(),
        "root_path": "",
        "query_string": b"",
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"x-request-id", REQUEST_ID.encode()),
            *headers,
        ],
    }
    async_to_sync(app)(scope, receive, send)
    return sent


def test_a_body_sent_in_pieces_is_put_together(cast):
    body = json.dumps({"api_key": cast["key"].secret}).encode()
    bearer = (b"authorization", f"Bearer {cast['validator']}".encode())
    post(FAST, KEYS, body, bearer=cast["validator"])  # warm
    with django_requests() as seen:
        sent = asgi_post(FAST, body, [bearer, (b"content-length", str(len(body)).encode())])
    assert len(seen) == 0
    assert sent[0]["status"] == 200
    assert json.loads(sent[1]["body"])["valid"] is True


def test_a_body_without_a_content_length_is_refused_as_django_refuses_it(cast):
    """DRF reads no body from a request without Content-Length (a chunked upload), so neither path may."""
    body = json.dumps({"api_key": cast["key"].secret}).encode()
    bearer = (b"authorization", f"Bearer {cast['validator']}".encode())
    post(FAST, KEYS, body, bearer=cast["validator"])  # warm
    from_fast_path, from_django = (asgi_post(app, body, [bearer]) for app in (FAST, DJANGO))
    assert from_fast_path == from_django
    assert from_fast_path[0]["status"] == 400
    assert json.loads(from_fast_path[1]["body"])["error"]["code"] == "INVALID_INPUT"


def test_a_client_gone_before_its_body_arrived_gets_nothing(cast):
    messages = [{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}]
    sent = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "scheme": "http",
        "path": KEYS,
        "root_path": "",
        "query_string": b"",
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
    }
    with django_requests() as seen:
        async_to_sync(FAST)(scope, receive, send)
    assert (seen, sent) == ([], [])


def test_a_live_daphne_answers_warm_validations_and_sees_a_revocation_at_once(tmp_path):
    """The deployed ASGI application over a real socket: the same answers warm as cold, the same security
    headers, and a revocation made through the API refuses the very next validation."""
    with (
        service_database(tmp_path) as (database_url, keys),
        daphne_server(base_env(database_url), tmp_path) as server,
    ):
        validate = {"api_key": keys[BOB]["key"]}
        headers = {"Authorization": f"Bearer {keys[ADMIN]['key']}"}
        answers = [
            httpx.post(f"{server.url}{KEYS}", json=validate, headers=headers, timeout=30) for _ in range(3)
        ]
        assert {answer.status_code for answer in answers} == {200}
        assert len({answer.content for answer in answers}) == 1
        assert answers[0].json()["valid"] is True
        for answer in answers:
            assert answer.headers["x-frame-options"] == "DENY"
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["content-type"] == "application/json"
        status, _ = rest(
            server,
            "POST",
            f"/api/v1/keys/{keys[BOB]['key_id']}/revoke",
            keys[ADMIN]["key"],
            {},
        )
        assert status == 200
        refused = httpx.post(f"{server.url}{KEYS}", json=validate, headers=headers, timeout=30).json()
        assert (refused["valid"], refused["code"]) == (False, "REVOKED")
