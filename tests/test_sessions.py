"""Sessions through the REST API: tracking, listing, ending, cascades, limits, and Redis being down."""

import time
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from grants.services import grant_permission
from kernel.callers import Caller
from keys.credentials import authenticate_bearer
from keys.services import generate_api_key
from mcp_endpoint.connections import TOUCH_INTERVAL_SECONDS, ConnectionSession
from principals.services import suspend_identity
from sessions.models import AuthSession
from sessions.services import open_session

ADMIN = "CHITTY-PEO-ADMIN1-A"
ALICE = "CHITTY-PEO-ALICE1-A"
BOB = "CHITTY-PEO-BOB1-A"
SYSTEM = Caller.system("tests")

pytestmark = pytest.mark.django_db


def bearer(secret: str, user_agent: str = "pytest-client") -> APIClient:
    client = APIClient(HTTP_USER_AGENT=user_agent)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture
def keys(make_identity):
    for chitty_id in (ADMIN, ALICE, BOB):
        make_identity(chitty_id)
    grant_permission(SYSTEM, grantee_chitty_id=ADMIN, permission="*")
    grant_permission(SYSTEM, grantee_chitty_id=ALICE, permission="tokens:generate")
    return {c: generate_api_key(SYSTEM, chitty_id=c, scopes=["*"]).secret for c in (ADMIN, ALICE, BOB)}


def sessions_of(chitty_id: str, **filters) -> list[AuthSession]:
    return list(AuthSession.objects.filter(principal__chitty_id=chitty_id, **filters).order_by("started_at"))


class TestTracking:
    def test_calls_within_the_timeout_share_one_session(self, keys):
        client = bearer(keys[ALICE])
        first = client.get("/api/v1/whoami").json()["session_id"]
        second = client.get("/api/v1/whoami").json()["session_id"]
        assert first == second
        [session] = sessions_of(ALICE)
        assert session.channel == "rest"
        assert session.credential_type == "api_key"
        assert session.user_agent == "pytest-client"
        assert session.client_address == "127.0.0.1"
        assert AuditEvent.objects.filter(action="session.open", target=first).count() == 1

    def test_a_call_after_the_timeout_opens_a_new_session(self, keys, settings):
        settings.SESSION_TIMEOUT = 1
        client = bearer(keys[ALICE])
        first = client.get("/api/v1/whoami").json()["session_id"]
        time.sleep(1.1)
        second = client.get("/api/v1/whoami").json()["session_id"]
        assert first != second

    def test_last_seen_is_written_at_most_once_a_minute(self, keys, django_assert_num_queries):
        client = bearer(keys[ALICE])
        client.get("/api/v1/whoami")
        [session] = sessions_of(ALICE)
        seen = session.last_seen_at
        client.get("/api/v1/whoami")
        session.refresh_from_db()
        assert session.last_seen_at == seen
        AuthSession.objects.filter(pk=session.pk).update(last_seen_at=seen - timedelta(minutes=2))
        # the process still believes it wrote a minute ago; make it older than the write interval
        from sessions import services

        for known in services._rest_sessions.values():
            known.last_seen_written -= timedelta(minutes=2)
        client.get("/api/v1/whoami")
        session.refresh_from_db()
        assert session.last_seen_at > seen

    def test_a_minted_jwt_opens_a_session_for_its_life_that_its_calls_share(self, keys):
        minted = bearer(keys[ALICE]).post("/api/v1/tokens", {"expires_in": "15m"}).json()
        [jwt_session] = sessions_of(ALICE, channel="jwt")
        assert jwt_session.credential_id == minted["jti"]
        assert jwt_session.expires_at.isoformat() == minted["expires_at"]
        assert bearer(minted["token"]).get("/api/v1/whoami").json()["session_id"] == jwt_session.session_id
        assert not sessions_of(ALICE, credential_id=minted["jti"], channel="rest")

    def test_revoking_a_jwt_ends_its_session(self, keys):
        alice = bearer(keys[ALICE])
        minted = alice.post("/api/v1/tokens", {"expires_in": "15m"}).json()
        assert alice.post("/api/v1/tokens/revoke", {"token": minted["token"]}).status_code == 200
        [jwt_session] = sessions_of(ALICE, channel="jwt")
        assert jwt_session.ended_at is not None


class TestListingAndEnding:
    def test_principals_list_their_own_and_need_sessions_read_for_others(self, keys):
        bearer(keys[BOB]).get("/api/v1/whoami")
        alice = bearer(keys[ALICE])
        own = alice.get("/api/v1/sessions").json()["sessions"]
        assert {s["chitty_id"] for s in own} == {ALICE}
        refused = alice.get(f"/api/v1/sessions?chitty_id={BOB}")
        assert refused.status_code == 403
        assert refused.json()["error"]["permission"] == "sessions:read"
        bobs = bearer(keys[ADMIN]).get(f"/api/v1/sessions?chitty_id={BOB}&channel=rest&active=true").json()
        assert [s["chitty_id"] for s in bobs["sessions"]] == [BOB]
        assert bearer(keys[ADMIN]).get("/api/v1/sessions?channel=carrier-pigeon").status_code == 400

    def test_ending_a_session_is_audited_and_idempotent(self, keys):
        bob_session = bearer(keys[BOB]).get("/api/v1/whoami").json()["session_id"]
        refused = bearer(keys[ALICE]).post(f"/api/v1/sessions/{bob_session}/end")
        assert refused.status_code == 403
        assert refused.json()["error"]["permission"] == "sessions:revoke"
        admin = bearer(keys[ADMIN])
        ended = admin.post(f"/api/v1/sessions/{bob_session}/end", {"reason": "suspicious"})
        assert ended.status_code == 200
        assert ended.json()["live"] is False
        assert ended.json()["ended_by"] == ADMIN
        again = admin.post(f"/api/v1/sessions/{bob_session}/end")
        assert again.status_code == 200
        events = AuditEvent.objects.filter(action="session.end", target=bob_session)
        assert events.count() == 1
        assert events.get().details["reason"] == "suspicious"
        assert events.get().actor == ADMIN
        missing = admin.post("/api/v1/sessions/ses_nope/end")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "SESSION_NOT_FOUND"

    def test_a_rest_call_after_its_session_ended_opens_a_new_one(self, keys):
        alice = bearer(keys[ALICE])
        first = alice.get("/api/v1/whoami").json()["session_id"]
        alice.post(f"/api/v1/sessions/{first}/end")
        assert alice.get("/api/v1/whoami").json()["session_id"] != first

    def test_ending_a_jwt_session_revokes_the_token(self, keys):
        minted = bearer(keys[ALICE]).post("/api/v1/tokens", {"expires_in": "15m"}).json()
        token_client = bearer(minted["token"])
        session_id = token_client.get("/api/v1/whoami").json()["session_id"]
        assert bearer(keys[ADMIN]).post(f"/api/v1/sessions/{session_id}/end").status_code == 200
        rejected = token_client.get("/api/v1/whoami")
        assert rejected.status_code == 401
        assert rejected.json()["error"]["reason"] == "REVOKED"

    def test_end_all_and_end_all_but_current(self, keys):
        other = bearer(keys[ALICE], user_agent="laptop")
        other.post("/api/v1/tokens", {"expires_in": "1h"})
        current_key = generate_api_key(SYSTEM, chitty_id=ALICE, scopes=["*"]).secret
        current = bearer(current_key, user_agent="phone")
        current_session = current.get("/api/v1/whoami").json()["session_id"]
        ended = current.post("/api/v1/sessions/end-all", {"keep_current": True}).json()["ended"]
        assert ended == 2  # the laptop's REST session and the JWT's session
        assert [s.session_id for s in sessions_of(ALICE, ended_at__isnull=True)] == [current_session]
        assert current.post("/api/v1/sessions/end-all", {}).json()["ended"] == 1
        assert not sessions_of(ALICE, ended_at__isnull=True)

    def test_others_sessions_need_sessions_revoke_to_end_all(self, keys):
        bearer(keys[BOB]).get("/api/v1/whoami")
        refused = bearer(keys[ALICE]).post("/api/v1/sessions/end-all", {"chitty_id": BOB})
        assert refused.status_code == 403
        assert bearer(keys[ADMIN]).post("/api/v1/sessions/end-all", {"chitty_id": BOB}).json()["ended"] == 1


class TestCascadesAndLimits:
    def test_suspending_an_identity_ends_its_sessions_and_stops_its_credentials(self, keys):
        alice = bearer(keys[ALICE])
        minted = alice.post("/api/v1/tokens", {"expires_in": "1h"}).json()
        alice.get("/api/v1/whoami")
        assert len(sessions_of(ALICE, ended_at__isnull=True)) == 2
        from identities.models import Identity

        suspend_identity(SYSTEM, Identity.objects.get(chitty_id=ALICE), reason="compromised")
        assert not sessions_of(ALICE, ended_at__isnull=True)
        assert {s.end_reason for s in sessions_of(ALICE)} == {"compromised"}
        for credential in (keys[ALICE], minted["token"]):
            response = bearer(credential).get("/api/v1/whoami")
            assert response.status_code == 401
            assert response.json()["error"]["reason"] == "IDENTITY_SUSPENDED"

    @override_settings(MAX_SESSIONS_PER_PRINCIPAL=2, SESSION_LIMIT_POLICY="end_oldest")
    def test_the_oldest_session_ends_when_the_limit_is_reached(self, keys):
        ids = []
        for _ in range(3):
            secret = generate_api_key(SYSTEM, chitty_id=BOB, scopes=["*"]).secret
            ids.append(bearer(secret).get("/api/v1/whoami").json()["session_id"])
        live = [s.session_id for s in sessions_of(BOB, ended_at__isnull=True)]
        assert live == ids[1:]
        assert AuthSession.objects.get(session_id=ids[0]).end_reason == "session limit of 2 reached"

    @override_settings(MAX_SESSIONS_PER_PRINCIPAL=1, SESSION_LIMIT_POLICY="refuse_newest")
    def test_the_newest_session_is_refused_when_so_configured(self, keys):
        assert bearer(keys[BOB]).get("/api/v1/whoami").status_code == 200
        second = generate_api_key(SYSTEM, chitty_id=BOB, scopes=["*"]).secret
        refused = bearer(second).get("/api/v1/whoami")
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "SESSION_LIMIT_REACHED"


class TestRedisDown:
    @override_settings(
        CACHES={
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": "redis://127.0.0.1:1/0",
            }
        },
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
            }
        },
    )
    def test_rest_and_validation_keep_working_and_a_failed_live_close_is_reported(
        self, keys, caplog, django_capture_on_commit_callbacks
    ):
        admin = bearer(keys[ADMIN])
        assert admin.get("/api/v1/whoami").status_code == 200
        bob_session = bearer(keys[BOB]).get("/api/v1/whoami").json()["session_id"]
        validated = admin.post("/api/v1/keys/validate", {"api_key": keys[ALICE]}).json()
        assert validated["valid"] is True
        with caplog.at_level("WARNING"), django_capture_on_commit_callbacks(execute=True):
            ended = admin.post(f"/api/v1/sessions/{bob_session}/end", {"reason": "redis is down"})
        assert ended.status_code == 200
        assert AuthSession.objects.get(session_id=bob_session).ended_at is not None
        assert any("Could not broadcast the end of session" in r.getMessage() for r in caplog.records)
        # revocation still takes effect at once: every call reads the database while the invalidation feed is unknown
        key_id = validated["key_id"]
        assert admin.post(f"/api/v1/keys/{key_id}/revoke").status_code == 200
        assert admin.post("/api/v1/keys/validate", {"api_key": keys[ALICE]}).json()["code"] == "REVOKED"


def test_expired_sessions_are_not_live(keys):
    client = bearer(keys[ALICE])
    session_id = client.get("/api/v1/whoami").json()["session_id"]
    AuthSession.objects.filter(session_id=session_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    listed = client.get("/api/v1/sessions?active=true").json()["sessions"]
    assert session_id not in {s["session_id"] for s in listed}


def test_a_connection_records_use_only_when_active_so_a_background_recheck_keeps_no_session_alive(
    make_identity,
):
    """Long-lived MCP connections write `last_seen_at` at most once a minute, when the client sends something.
    Their background re-checks (after a channel-layer outage, or re-joining the session group) must not: an
    idle socket's session would then never time out."""
    owner = make_identity("CHITTY-PEO-IDLECONN-A")
    caller = authenticate_bearer(generate_api_key(SYSTEM, chitty_id=owner.chitty_id).secret)
    session_id = open_session(caller, AuthSession.Channel.MCP_WEBSOCKET).session_id
    connection = ConnectionSession(session_id, owned=True)
    an_hour_ago = timezone.now() - timedelta(hours=1)
    AuthSession.objects.filter(session_id=session_id).update(last_seen_at=an_hour_ago)
    connection._touched -= TOUCH_INTERVAL_SECONDS  # the last write was a minute ago: one is due

    assert connection.is_settled(active=False)
    assert not connection.is_settled()
    connection.ensure_live(active=False)
    assert AuthSession.objects.get(session_id=session_id).last_seen_at == an_hour_ago
    connection.ensure_live()
    assert AuthSession.objects.get(session_id=session_id).last_seen_at > an_hour_ago
