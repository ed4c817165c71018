"""The security dashboard: what it counts, how it buckets the last day, and who sees which panel."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import record
from console.dashboard import CHART_HEIGHT, HOURS, activity_chart, hourly_activity
from grants.services import grant_permission
from identities.models import Identity
from identities.staff_links import link_staff_user
from jobs.models import JobRun
from kernel.callers import Caller
from keys.models import ApiKey
from keys.services import generate_api_key
from sessions.models import AuthSession
from sessions.services import open_session
from tests.conftest import free_port

pytestmark = pytest.mark.django_db

SYSTEM = Caller.system("tests")
DASHBOARD = "/admin/dashboard/"


@pytest.fixture
def admin(db) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.org", "root-password-long-1"))
    return client


def session_for(
    identity: Identity, credential_id: str, channel: str = AuthSession.Channel.REST
) -> AuthSession:
    caller = Caller(
        actor=identity.chitty_id, identity=identity, credential_type="api_key", credential_id=credential_id
    )
    return open_session(caller, channel)


def test_the_dashboard_needs_a_staff_login():
    response = Client().get(DASHBOARD)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_the_index_and_every_admin_page_link_to_the_dashboard(admin):
    index = admin.get("/admin/").content.decode()

    assert 'id="dashboard-link"' in index
    assert f'<a href="{DASHBOARD}">Dashboard</a>' in admin.get("/admin/keys/apikey/").content.decode()


def test_counts_of_identities_live_keys_and_live_sessions(admin, make_identity):
    alice = make_identity("CHITTY-PEO-ALICE-1")
    make_identity("CHITTY-PEO-BOB-1")
    suspended = make_identity("CHITTY-PEO-GONE-1", status=Identity.Status.SUSPENDED)
    make_identity("CHITTY-PEO-OLD-1", status=Identity.Status.REVOKED)
    now = timezone.now()
    live = generate_api_key(SYSTEM, chitty_id=alice.chitty_id)
    rotating = generate_api_key(SYSTEM, chitty_id=alice.chitty_id)
    revoked = generate_api_key(SYSTEM, chitty_id=alice.chitty_id)
    expired = generate_api_key(SYSTEM, chitty_id=alice.chitty_id)
    ApiKey.objects.filter(pk=rotating.api_key.pk).update(revoked_at=now + timedelta(minutes=5))
    ApiKey.objects.filter(pk=revoked.api_key.pk).update(revoked_at=now - timedelta(seconds=1))
    ApiKey.objects.filter(pk=expired.api_key.pk).update(expires_at=now - timedelta(seconds=1))
    ApiKey.objects.filter(pk=live.api_key.pk).update(use_count=41, last_used_at=now - timedelta(hours=2))
    ApiKey.objects.filter(pk=revoked.api_key.pk).update(use_count=1, last_used_at=now - timedelta(days=2))
    suspended_key = generate_api_key(SYSTEM, chitty_id="CHITTY-PEO-BOB-1")
    ApiKey.objects.filter(pk=suspended_key.api_key.pk).update(principal=suspended)
    session_for(alice, "key_a")
    session_for(alice, "key_b", AuthSession.Channel.MCP_WEBSOCKET)
    ended = session_for(alice, "key_c")
    AuthSession.objects.filter(pk=ended.pk).update(ended_at=now)
    lapsed = session_for(alice, "key_d")
    AuthSession.objects.filter(pk=lapsed.pk).update(expires_at=now - timedelta(seconds=1))

    context = admin.get(DASHBOARD).context

    assert context["identities"] == {"active": 2, "suspended": 1, "revoked": 1}
    assert context["keys"] == {"live": 2, "rotating": 1, "used_recently": 1, "validations_counted": 42}
    assert context["sessions"] == {"live": 2, "by_channel": [("mcp-websocket", 1), ("rest", 1)]}


def test_the_last_day_is_bucketed_by_hour(db, make_identity):
    alice = make_identity("CHITTY-PEO-ALICE-1")
    session_for(alice, "key_a")
    session_for(alice, "key_b")
    record("auth.failed", outcome="failure", details={"code": "REVOKED"})
    record("staff.login_failed", outcome="failure", target="staff:root")
    record("api_key.validate", outcome="failure", details={"code": "EXPIRED"})
    record("api_key.validate", outcome="success")
    record("identity.register", target="CHITTY-PEO-X-1")
    now = AuditEvent.objects.latest("sequence").created_at

    def totals(buckets) -> tuple[int, int]:
        return sum(b.sessions_opened for b in buckets), sum(b.failed_authentications for b in buckets)

    current = hourly_activity(now)
    later = hourly_activity(now + timedelta(hours=5))
    next_day = hourly_activity(now + timedelta(hours=HOURS + 1))

    assert len(current) == HOURS
    assert totals(current) == (2, 3)
    assert current[-1].sessions_opened + current[-1].failed_authentications > 0
    assert current[-1].start == now.replace(minute=0, second=0, microsecond=0)
    assert totals(later) == (2, 3)
    assert later[-6] == current[-1]
    assert totals(later[-5:]) == (0, 0)
    assert totals(next_day) == (0, 0)


def test_the_chart_scales_bars_to_a_round_axis(db):
    buckets = hourly_activity(timezone.now())
    busiest = buckets[-1].__class__(buckets[-1].start, sessions_opened=10, failed_authentications=5)

    chart = activity_chart([*buckets[:-1], busiest])

    top = chart["gridlines"][-1]["value"]
    assert top >= 10
    assert chart["hours"][-1]["first"]["height"] == round(10 / top * CHART_HEIGHT)
    assert chart["hours"][-1]["second"]["height"] == round(5 / top * CHART_HEIGHT)
    assert chart["hours"][0]["first"]["height"] == 0
    assert chart["hours"][-1]["first"]["y"] + chart["hours"][-1]["first"]["height"] == chart["bottom"]


def test_recent_failures_are_listed_newest_first_with_links(admin):
    record("auth.failed", outcome="failure", target="key_abc", details={"code": "REVOKED"})
    record("identity.register", target="CHITTY-PEO-X-1")
    lockout = record("staff.lockout", outcome="denied", target="staff:mallory")

    response = admin.get(DASHBOARD)

    assert [event.action for event in response.context["recent_failures"]] == ["staff.lockout", "auth.failed"]
    page = response.content.decode()
    assert f'href="/admin/audit/auditevent/{lockout.pk}/change/"' in page
    assert "REVOKED" in page
    assert response.context["activity"]["failed_authentications"] == 1


def test_each_job_shows_its_last_run(admin):
    now = timezone.now()
    JobRun.objects.create(
        job=JobRun.Job.CLEANUP, actor="system:beat", started_at=now - timedelta(hours=2), outcome="failure"
    )
    JobRun.objects.create(
        job=JobRun.Job.CLEANUP,
        actor="system:beat",
        started_at=now - timedelta(minutes=5),
        finished_at=now,
        outcome="success",
        message="Cleanup: ended 3 expired sessions",
    )

    response = admin.get(DASHBOARD)

    runs = dict(response.context["jobs"])
    assert runs[JobRun.Job.CLEANUP.label].message == "Cleanup: ended 3 expired sessions"
    assert runs[JobRun.Job.REVALIDATE_IDENTITIES.label] is None
    page = response.content.decode()
    assert "Cleanup: ended 3 expired sessions" in page
    assert "never run" in page


def test_the_local_authority_is_reported_as_local(admin, settings):
    settings.CHITTYID_ENDPOINT = ""

    authority = admin.get(DASHBOARD).context["authority"]

    assert (authority["remote"], authority["reachable"]) == (False, True)


def test_a_remote_authority_is_reported_answering(admin, chittyid_authority):
    authority = admin.get(DASHBOARD).context["authority"]

    assert (authority["remote"], authority["reachable"], authority["endpoint"]) == (
        True,
        True,
        chittyid_authority.url,
    )


def test_an_unreachable_authority_is_reported_unavailable(admin, settings):
    settings.CHITTYID_ENDPOINT = f"http://127.0.0.1:{free_port()}"

    response = admin.get(DASHBOARD)

    assert response.context["authority"]["reachable"] is False
    assert "Unavailable" in response.content.decode()


def test_panels_follow_the_grants_of_the_staff_users_identity(make_identity):
    make_identity("CHITTY-PEO-VIEWER-1")
    grant_permission(
        Caller.system("tests"), grantee_chitty_id="CHITTY-PEO-VIEWER-1", permission="identities:read"
    )
    viewer = User.objects.create_user("viewer", password="viewer-password-long-1", is_staff=True)
    link_staff_user(Caller.system("tests"), viewer, "CHITTY-PEO-VIEWER-1")
    client = Client()
    client.force_login(viewer)
    record("auth.failed", outcome="failure", target="key_secret_looking")

    response = client.get(DASHBOARD)

    assert response.status_code == 200
    assert "identities" in response.context
    for hidden in ("keys", "sessions", "activity", "recent_failures", "jobs"):
        assert hidden not in response.context
    assert "key_secret_looking" not in response.content.decode()
    assert AuditEvent.objects.filter(action="auth.failed").exists()
