"""Failed staff logins are rate-limited per address and per username in front of django-axes, so a flood of
them costs no database write and cannot flood the audit trail."""

import pytest
from axes.models import AccessAttempt, AccessFailureLog
from django.contrib.auth.models import User
from django.test import Client

from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

ROOT_PASSWORD = "root-password-long-enough-1"
LIMIT = 10


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.ADMIN_LOGIN_RATE_LIMIT = LIMIT
    settings.ADMIN_LOGIN_RATE_WINDOW_SECONDS = 86400  # one window for the whole test


@pytest.fixture
def root(db) -> User:
    return User.objects.create_superuser("root", "root@example.org", ROOT_PASSWORD)


def post_login(username: str, password: str, address: str):
    return Client().post(
        "/admin/login/?next=/admin/", {"username": username, "password": password}, REMOTE_ADDR=address
    )


def test_a_flood_from_one_address_is_refused_without_a_database_write_and_audited_once(root):
    answers = [post_login(f"nobody-{n}", "guess", "198.51.100.9") for n in range(LIMIT)]
    events, attempts, failures = (
        AuditEvent.objects.count(),
        AccessAttempt.objects.count(),
        AccessFailureLog.objects.count(),
    )

    flood = [post_login(f"nobody-{n}", "guess", "198.51.100.9") for n in range(LIMIT, 200)]

    assert all(answer.status_code in (200, 429) for answer in answers)  # axes locks the address at its limit
    assert {answer.status_code for answer in flood} == {429}
    assert all(0 < int(answer["Retry-After"]) <= 86400 for answer in flood)
    assert "Too many sign-in attempts" in flood[0].content.decode()
    assert (AccessAttempt.objects.count(), AccessFailureLog.objects.count()) == (attempts, failures)
    throttled = AuditEvent.objects.filter(action="staff.login_throttled")
    assert AuditEvent.objects.count() - events == throttled.count() == 1
    assert (
        post_login("root", ROOT_PASSWORD, "198.51.100.200").status_code == 302
    )  # other addresses unaffected


def test_the_same_username_and_address_is_audited_once_however_often_it_tries(root):
    for _ in range(LIMIT):
        post_login("root", "guess", "198.51.100.9")
    before = AuditEvent.objects.count()

    for _ in range(100):
        assert post_login("root", "guess", "198.51.100.9").status_code == 429

    (event,) = AuditEvent.objects.filter(sequence__gt=before)
    assert (event.action, event.outcome, event.target) == ("staff.login_throttled", "denied", "staff:root")
    assert event.details["limit"] == LIMIT
    assert "guess" not in str(event.details)


def test_failures_for_one_username_from_many_addresses_are_limited_for_that_username(root, settings):
    settings.AXES_FAILURE_LIMIT = 1000  # so only the rate limit can refuse
    for n in range(LIMIT):
        assert post_login("root", "guess", f"203.0.113.{n}").status_code == 200

    before = AuditEvent.objects.count()
    refused = post_login("root", ROOT_PASSWORD, "203.0.113.250")
    for n in range(50):
        assert post_login("root", "guess", f"203.0.114.{n}").status_code == 429

    assert refused.status_code == 429
    assert AuditEvent.objects.filter(sequence__gt=before).count() == 1
    assert "_auth_user_id" not in refused.wsgi_request.session
    User.objects.create_superuser("second", "second@example.org", ROOT_PASSWORD)
    assert post_login("second", ROOT_PASSWORD, "203.0.113.251").status_code == 302


@pytest.mark.parametrize(
    "spelling", [" root", "root ", "ROOT", "\uff52\uff4f\uff4f\uff54", " " * 200 + "root"]
)
def test_another_spelling_of_a_throttled_username_is_throttled_too(root, settings, spelling):
    """The login form strips and NFKC-normalises the username, so every spelling it accepts counts as one."""
    settings.AXES_FAILURE_LIMIT = 1000
    for n in range(LIMIT):
        post_login("root", "guess", f"203.0.113.{n}")
    failures = AccessFailureLog.objects.count()

    assert post_login(spelling, ROOT_PASSWORD, "203.0.115.1").status_code == 429
    assert AccessFailureLog.objects.count() == failures


def test_repeated_lockouts_are_audited_once_per_window(root, settings):
    for n in range(settings.AXES_FAILURE_LIMIT + 3):
        post_login("root", f"wrong-{n}", "192.0.2.33")

    assert AuditEvent.objects.filter(action="staff.lockout").count() == 1
