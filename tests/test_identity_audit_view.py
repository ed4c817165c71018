"""An identity's audit view in the console finds every event about it: as actor, as target, and as the
principal of a credential or session (failed uses of its revoked key and suspended token, its session ends),
filtered by actor, target, action, outcome, address and time range."""

import re
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from grants.services import grant_permission
from identities.models import Identity
from kernel.callers import Caller
from keys.services import generate_api_key, revoke_api_key
from keys.tokens import generate_jwt
from principals.services import suspend_identity

pytestmark = pytest.mark.django_db

SYSTEM = Caller.system("tests")
ALICE, BOB = "CHITTY-PEO-ALICE-1", "CHITTY-PEO-BOB-1"
ROW_SEQUENCE = re.compile(
    r'<th class="field-sequence"><a href="/admin/audit/auditevent/\d+/change/[^"]*">(\d+)</a>'
)


def whoami(bearer: str, address: str) -> int:
    return (
        Client()
        .get("/api/v1/whoami", headers={"Authorization": f"Bearer {bearer}"}, REMOTE_ADDR=address)
        .status_code
    )


@pytest.fixture
def trail(make_identity):
    """Alice's key and token used, revoked and suspended, with their sessions ending; Bob alongside."""
    alice, _bob = make_identity(ALICE), make_identity(BOB)
    grant_permission(SYSTEM, grantee_chitty_id=ALICE, permission="tokens:generate")
    key = generate_api_key(SYSTEM, chitty_id=ALICE, scopes=["*"])
    bob_key = generate_api_key(SYSTEM, chitty_id=BOB, scopes=["*"])
    token = generate_jwt(SYSTEM, chitty_id=ALICE).token
    assert whoami(key.secret, "198.51.100.1") == 200
    assert whoami(token, "198.51.100.2") == 200
    assert whoami(bob_key.secret, "198.51.100.3") == 200
    revoke_api_key(SYSTEM, key.api_key.key_id, reason="leaked")
    assert whoami(key.secret, "203.0.113.66") == 401
    suspend_identity(SYSTEM, Identity.objects.get(chitty_id=ALICE), reason="investigation")
    assert whoami(token, "203.0.113.67") == 401
    return {"alice": alice, "key_id": key.api_key.key_id}


@pytest.fixture
def console() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.org", "root-password-long-1"))
    return client


def listed(console: Client, **filters: str) -> set[int]:
    response = console.get(f"/admin/audit/auditevent/?{urlencode(filters)}")
    assert response.status_code == 200
    return {int(sequence) for sequence in ROW_SEQUENCE.findall(response.content.decode())}


def about(chitty_id: str) -> set[int]:
    """Every event naming the identity: as actor, target or principal, or in its details."""
    return {
        event.sequence
        for event in AuditEvent.objects.all()
        if chitty_id in (event.actor, event.target, event.principal) or chitty_id in str(event.details)
    }


def test_the_identity_view_lists_every_event_about_it_and_none_about_others(trail, console):
    failed = AuditEvent.objects.filter(action="auth.failed")
    ends = AuditEvent.objects.filter(action="session.end")

    shown = listed(console, identity=ALICE)

    assert {event.details["code"] for event in failed} == {"REVOKED", "IDENTITY_SUSPENDED"}
    assert all(event.principal == ALICE for event in failed)
    assert ends.count() == 2 and all(event.principal == ALICE for event in ends)
    assert shown == about(ALICE)
    assert {e.sequence for e in failed} | {e.sequence for e in ends} <= shown
    assert not shown & about(BOB) - about(ALICE)


def test_the_identity_page_links_to_its_view(trail, console):
    page = console.get(f"/admin/identities/identity/{trail['alice'].pk}/change/").content.decode()

    assert f"/admin/audit/auditevent/?identity={ALICE}" in page


def test_filters_narrow_the_identity_view(trail, console):
    failures = {e.sequence for e in AuditEvent.objects.filter(action="auth.failed")}
    revoked_use = AuditEvent.objects.get(action="auth.failed", details__code="REVOKED")

    assert listed(console, identity=ALICE, outcome="failure") == failures
    assert listed(console, identity=ALICE, action="auth.failed") == failures
    assert listed(console, identity=ALICE, client_address="203.0.113.66") == {revoked_use.sequence}
    assert listed(console, target=trail["key_id"], action="auth.failed") == {revoked_use.sequence}
    assert listed(console, identity=ALICE, actor="system:tests") == {
        e.sequence for e in AuditEvent.objects.filter(actor="system:tests") if e.sequence in about(ALICE)
    }
    assert (
        listed(console, identity=ALICE, created_at__gte=(timezone.now() + timedelta(minutes=1)).isoformat())
        == set()
    )
    assert listed(
        console, identity=ALICE, created_at__lt=(timezone.now() + timedelta(minutes=1)).isoformat()
    ) == about(ALICE)


def test_the_filter_form_drops_the_fields_left_empty(trail, console):
    response = console.get("/admin/audit/auditevent/?identity=" + ALICE + "&actor=&target=&outcome=failure")

    assert response.status_code == 302
    assert response["Location"] == f"/admin/audit/auditevent/?identity={ALICE}&outcome=failure"


def test_a_malformed_time_filter_is_refused_without_an_error_page(trail, console):
    response = console.get("/admin/audit/auditevent/?created_at__gte=yesterday")

    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")  # Django's "invalid filter" notice
