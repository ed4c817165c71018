"""Hourly verification counts: every credential verified is counted by credential type, outcome and key, written
without a database write per verification, and read back over REST (`GET /api/v1/keys/{key_id}/usage`) and on
the admin dashboard's chart."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db.models import Sum
from django.utils import timezone

from grants.services import grant_permission
from keys.models import ApiKey, VerificationHour
from keys.services import flush_usage, generate_api_key, revoke_api_key
from tests.test_admin_credentials import log_in
from tests.test_rest_api import ALICE, BOB, assert_error, bearer

pytestmark = pytest.mark.django_db

BAD_CHECKSUM_KEY = "chitty_live_" + "A" * 43 + "Zz0000"  # well-formed, but its checksum is wrong


@pytest.fixture
def counted_from_now():
    """Counts other tests left pending in this process are written and forgotten first."""
    flush_usage()
    VerificationHour.objects.all().delete()


@pytest.fixture
def alice(make_identity, system_caller):
    make_identity(ALICE)
    make_identity(BOB)
    for chitty_id in (ALICE, BOB):
        grant_permission(system_caller, grantee_chitty_id=chitty_id, permission="tokens:generate")
    keys = {
        name: generate_api_key(system_caller, chitty_id=ALICE, name=name, scopes=["*"])
        for name in ("main", "revoked")
    }
    keys["bob"] = generate_api_key(system_caller, chitty_id=BOB, name="bob", scopes=["*"])
    revoke_api_key(system_caller, keys["revoked"].api_key.key_id)
    return keys


def usage(secret: str, key_id: str):
    return bearer(secret).get(f"/api/v1/keys/{key_id}/usage")


def outcome_totals(body: dict) -> dict[str, int]:
    """Summed over the hours: a test may run across the turn of an hour."""
    totals: dict[str, int] = {}
    for hour in body["hours"]:
        for outcome, count in hour["outcomes"].items():
            totals[outcome] = totals.get(outcome, 0) + count
    return totals


def test_each_verification_is_counted_by_hour_outcome_and_key(alice, counted_from_now):
    main, revoked = alice["main"], alice["revoked"]
    for _ in range(3):
        assert bearer(main.secret).get("/api/v1/whoami").status_code == 200
    validated = bearer(main.secret).post("/api/v1/keys/validate", {"api_key": revoked.secret}, format="json")
    assert validated.json()["code"] == "REVOKED"
    assert bearer(BAD_CHECKSUM_KEY).get("/api/v1/whoami").status_code == 401
    minted = bearer(main.secret).post("/api/v1/tokens", {}, format="json")
    assert minted.status_code == 201, minted.content
    assert bearer(minted.json()["token"]).get("/api/v1/whoami").status_code == 200
    assert not VerificationHour.objects.exists()  # counted in memory: nothing written per verification

    flush_usage()

    rows = {
        (row["credential_type"], row["outcome"], row["key_id"]): row["total"]
        for row in VerificationHour.objects.values("credential_type", "outcome", "key_id").annotate(
            total=Sum("count")
        )
    }
    assert rows == {
        ("api_key", "VALID", main.api_key.key_id): 5,
        ("api_key", "REVOKED", revoked.api_key.key_id): 1,
        ("api_key", "BAD_CHECKSUM", ""): 1,
        ("jwt", "VALID", ""): 1,
    }
    answer = usage(main.secret, main.api_key.key_id)
    assert answer.status_code == 200
    body = answer.json()
    assert body["key_id"] == main.api_key.key_id
    assert outcome_totals(body) == {"VALID": 5}
    this_hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    assert body["hours"][-1]["hour"] in {this_hour.isoformat(), (this_hour - timedelta(hours=1)).isoformat()}
    assert outcome_totals(usage(main.secret, revoked.api_key.key_id).json()) == {"REVOKED": 1}


def test_counts_written_twice_add_up(alice, counted_from_now):
    main = alice["main"]
    for _ in range(2):
        bearer(main.secret).get("/api/v1/whoami")
        flush_usage()
    assert (
        VerificationHour.objects.filter(key_id=main.api_key.key_id).aggregate(total=Sum("count"))["total"]
        == 2
    )


def test_another_principals_key_usage_needs_api_keys_manage(alice, counted_from_now):
    assert_error(usage(alice["bob"].secret, alice["main"].api_key.key_id), 403, "PERMISSION_DENIED")
    assert_error(usage(alice["main"].secret, "key_nosuchkey"), 404, "KEY_NOT_FOUND")


def test_the_dashboard_charts_valid_and_refused_verifications_per_hour(alice, counted_from_now):
    main = alice["main"]
    for secret in (main.secret, main.secret, BAD_CHECKSUM_KEY):
        bearer(secret).get("/api/v1/whoami")
    flush_usage()
    User.objects.create_superuser("root", "root@example.org", "a-long-admin-password")

    response = log_in("root", "a-long-admin-password").get("/admin/dashboard/")

    panel = response.context["verifications"]
    assert (panel["valid"], panel["failed"]) == (2, 1)
    hours = panel["chart"]["hours"]
    assert sum(hour["first"]["value"] for hour in hours) == 2
    assert sum(hour["second"]["value"] for hour in hours) == 1
    page = response.content.decode()
    assert 'id="verifications-chart"' in page and "UTC: 1 refused" in page
    total = VerificationHour.objects.aggregate(total=Sum("count"))["total"]
    assert total == 3 and ApiKey.objects.get(pk=main.api_key.pk).use_count == 2
