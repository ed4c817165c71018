"""The admin console for keys, grants, signing keys and sessions, driven through Django's test client."""

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from audit.models import AuditEvent
from grants.models import Grant
from grants.services import grant_permission, revoke_grant
from kernel.callers import Caller
from keys.models import ApiKey, SigningKey
from keys.services import generate_api_key, verify_api_key
from keys.signing_keys import active_signing_key
from sessions.models import AuthSession

ALICE = "CHITTY-PEO-ALICE1-A"
SYSTEM = Caller.system("tests")
SECRET_RE = re.compile(r"chitty_live_[0-9A-Za-z]{49}")

pytestmark = pytest.mark.django_db


def log_in(username: str, password: str) -> Client:
    """Through the admin's login page: django-axes checks every login against a real request."""
    client = Client()
    response = client.post("/admin/login/", {"username": username, "password": password, "next": "/admin/"})
    assert response.status_code == 302, response.content.decode()
    return client


@pytest.fixture
def staff(db) -> Client:
    User.objects.create_superuser("root", "root@example.org", "a-long-admin-password")
    return log_in("root", "a-long-admin-password")


@pytest.fixture
def alice(make_identity):
    identity = make_identity(ALICE)
    grant_permission(SYSTEM, grantee_chitty_id=ALICE, permission="documents:*")
    return identity


def run_action(client: Client, changelist: str, action: str, pks: list) -> object:
    return client.post(
        changelist, {"action": action, "_selected_action": [str(pk) for pk in pks]}, follow=True
    )


def run_confirmed_action(client: Client, changelist: str, action: str, pks: list) -> object:
    """Choose the action, then confirm it on the page it shows first."""
    selection = {"action": action, "_selected_action": [str(pk) for pk in pks]}
    page = client.post(changelist, selection)
    assert page.status_code == 200 and 'name="confirm" value="yes"' in page.content.decode()
    return client.post(changelist, {**selection, "confirm": "yes"}, follow=True)


class TestApiKeyAdmin:
    def test_creating_a_key_shows_the_secret_exactly_once(self, staff, alice):
        response = staff.post(
            "/admin/keys/apikey/add/",
            {"chitty_id": ALICE, "name": "ci key", "scopes_text": "documents:read", "environment": "live"},
        )
        assert response.status_code == 200
        page = response.content.decode()
        assert "only time the key is shown" in page
        assert "no-store" in response["Cache-Control"]
        [secret] = set(SECRET_RE.findall(page))
        key = ApiKey.objects.get()
        assert key.scopes == ["documents:read"]
        assert secret not in str(ApiKey.objects.values().get())
        assert verify_api_key(secret).valid
        event = AuditEvent.objects.filter(action="api_key.generate").latest("sequence")
        assert event.actor == "staff:root"
        change_page = staff.get(f"/admin/keys/apikey/{key.pk}/change/").content.decode()
        assert key.display_prefix in change_page
        assert secret not in change_page
        assert not SECRET_RE.search(staff.get("/admin/keys/apikey/").content.decode())

    def test_the_service_refusal_shows_as_a_form_error(self, staff, alice):
        response = staff.post(
            "/admin/keys/apikey/add/",
            {"chitty_id": ALICE, "name": "too wide", "scopes_text": "audit:read", "environment": "live"},
        )
        assert response.status_code == 200
        assert "SCOPE_EXCEEDS_GRANTS" in response.content.decode()
        assert not ApiKey.objects.exists()

    def test_revoke_and_rotate_actions_go_through_the_services(self, staff, alice):
        revoked = generate_api_key(SYSTEM, chitty_id=ALICE, scopes=["documents:read"])
        rotated = generate_api_key(SYSTEM, chitty_id=ALICE, scopes=["documents:read"])
        run_confirmed_action(staff, "/admin/keys/apikey/", "revoke_selected", [revoked.api_key.pk])
        assert verify_api_key(revoked.secret).code == "REVOKED"
        overlap_form = run_action(staff, "/admin/keys/apikey/", "rotate_selected", [rotated.api_key.pk])
        assert 'name="overlap_seconds"' in overlap_form.content.decode()
        assert not SECRET_RE.search(overlap_form.content.decode())
        response = staff.post(
            "/admin/keys/apikey/",
            {
                "action": "rotate_selected",
                "_selected_action": [str(rotated.api_key.pk)],
                "apply": "yes",
                "overlap_seconds": "300",
            },
        )
        [new_secret] = set(SECRET_RE.findall(response.content.decode()))
        assert verify_api_key(new_secret).valid
        assert verify_api_key(rotated.secret).valid  # still inside the default overlap
        actions = list(AuditEvent.objects.filter(actor="staff:root").values_list("action", flat=True))
        assert "api_key.revoke" in actions
        assert "api_key.rotate" in actions

    def test_a_key_whose_scope_is_no_longer_held_is_not_rerolled(self, staff, alice):
        issued = generate_api_key(SYSTEM, chitty_id=ALICE, scopes=["documents:read"])
        revoke_grant(SYSTEM, Grant.objects.get(principal__chitty_id=ALICE).pk)
        response = staff.post(f"/admin/keys/apikey/{issued.api_key.pk}/rotate/", {"overlap_seconds": "300"})
        page = response.content.decode()
        assert "SCOPE_EXCEEDS_GRANTS" in page and "documents:read" in page
        assert not SECRET_RE.search(page)
        assert ApiKey.objects.count() == 1 and verify_api_key(issued.secret).valid
        event = AuditEvent.objects.get(action="api_key.rotate", outcome="denied")
        assert (event.actor, event.details["scope"]) == ("staff:root", "documents:read")

    def test_keys_cannot_be_deleted_or_edited(self, staff, alice):
        issued = generate_api_key(SYSTEM, chitty_id=ALICE, scopes=["documents:read"])
        assert staff.get(f"/admin/keys/apikey/{issued.api_key.pk}/delete/").status_code == 403
        staff.post(f"/admin/keys/apikey/{issued.api_key.pk}/change/", {"name": "renamed", "scopes": '["*"]'})
        assert ApiKey.objects.get().scopes == ["documents:read"]


class TestGrantAdmin:
    def test_granting_and_revoking(self, staff, alice):
        page = staff.get("/admin/grants/grant/add/").content.decode()
        assert '<option value="api_keys:generate">' in page
        staff.post(
            "/admin/grants/grant/add/", {"chitty_id": ALICE, "permission": "audit:read", "resource_id": ""}
        )
        grant = Grant.objects.get(permission="audit:read")
        assert grant.granted_by == "staff:root"
        event = AuditEvent.objects.filter(action="authorization.grant").latest("sequence")
        assert event.details["exempt"] is True
        run_confirmed_action(staff, "/admin/grants/grant/", "revoke_selected", [grant.pk])
        grant.refresh_from_db()
        assert grant.revoked_by == "staff:root"

    def test_a_bad_permission_is_a_form_error(self, staff, alice):
        response = staff.post("/admin/grants/grant/add/", {"chitty_id": ALICE, "permission": "Not Valid"})
        assert "INVALID_PERMISSION" in response.content.decode()

    def test_staff_without_a_superuser_flag_or_identity_cannot_grant(self, alice):
        """Django's own model permissions give nothing: grants are the one layer."""
        from django.contrib.auth.models import Permission

        user = User.objects.create_user("helpdesk", password="another-long-password", is_staff=True)
        user.user_permissions.add(*Permission.objects.filter(codename__in=["add_grant", "view_grant"]))
        client = log_in("helpdesk", "another-long-password")
        response = client.post("/admin/grants/grant/add/", {"chitty_id": ALICE, "permission": "audit:read"})
        assert response.status_code == 403
        assert client.get("/admin/grants/grant/").status_code == 403
        assert not Grant.objects.filter(permission="audit:read").exists()


class TestSigningKeyAndSessionAdmin:
    def test_rotating_the_signing_key(self, staff):
        first = active_signing_key()
        run_action(staff, "/admin/keys/signingkey/", "rotate", [first.pk])
        first.refresh_from_db()
        assert not first.is_active
        assert SigningKey.objects.filter(is_active=True).exclude(pk=first.pk).exists()
        assert (
            "private_key_encrypted"
            not in staff.get(f"/admin/keys/signingkey/{first.pk}/change/").content.decode()
        )
        assert AuditEvent.objects.filter(action="signing_key.rotate", actor="staff:root").exists()

    def test_ending_a_session(self, staff, alice):
        from rest_framework.test import APIClient

        issued = generate_api_key(SYSTEM, chitty_id=ALICE, scopes=["*"])
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
        session_id = client.get("/api/v1/whoami").json()["session_id"]
        session = AuthSession.objects.get(session_id=session_id)
        assert session_id in staff.get("/admin/auth_sessions/authsession/?state=live").content.decode()
        run_confirmed_action(staff, "/admin/auth_sessions/authsession/", "end_selected", [session.pk])
        session.refresh_from_db()
        assert session.ended_by == "staff:root"
        assert session_id not in staff.get("/admin/auth_sessions/authsession/?state=live").content.decode()


class TestConfirmations:
    """Bulk actions that cannot be undone show what they will do first and do nothing until confirmed."""

    def live_session(self, chitty_id: str) -> AuthSession:
        from rest_framework.test import APIClient

        client = APIClient()
        client.credentials(
            HTTP_AUTHORIZATION=f"Bearer {generate_api_key(SYSTEM, chitty_id=chitty_id).secret}"
        )
        return AuthSession.objects.get(session_id=client.get("/api/v1/whoami").json()["session_id"])

    def test_bulk_revoke_of_keys_waits_for_confirmation(self, staff, alice):
        issued = generate_api_key(SYSTEM, chitty_id=ALICE, scopes=["*"])

        page = staff.post(
            "/admin/keys/apikey/", {"action": "revoke_selected", "_selected_action": [issued.api_key.pk]}
        )

        assert page.status_code == 200
        assert issued.api_key.key_id in page.content.decode()
        assert "It cannot be undone" in page.content.decode()
        assert verify_api_key(issued.secret).valid
        assert not AuditEvent.objects.filter(action__in=("api_key.revoke", "admin.action")).exists()

    def test_bulk_revoke_of_grants_waits_for_confirmation(self, staff, alice):
        grant = grant_permission(SYSTEM, grantee_chitty_id=ALICE, permission="documents:read")

        page = staff.post(
            "/admin/grants/grant/", {"action": "revoke_selected", "_selected_action": [grant.pk]}
        )

        assert f"#{grant.pk} documents:read held by {ALICE}" in page.content.decode()
        grant.refresh_from_db()
        assert grant.revoked_at is None

    def test_ending_every_session_of_a_principal_says_how_many_and_waits(self, staff, alice):
        sessions = [self.live_session(ALICE) for _ in range(3)]
        selection = {"action": "end_all_of_principals", "_selected_action": [sessions[0].pk]}

        page = staff.post("/admin/auth_sessions/authsession/", selection)

        assert f"{ALICE}: 3 live sessions" in page.content.decode()
        assert AuthSession.objects.filter(principal__chitty_id=ALICE, ended_at__isnull=True).count() == 3

        done = staff.post("/admin/auth_sessions/authsession/", {**selection, "confirm": "yes"})

        assert done.status_code == 302
        assert not AuthSession.objects.filter(principal__chitty_id=ALICE, ended_at__isnull=True).exists()
        assert AuditEvent.objects.filter(
            action="admin.action", details__action="end_all_of_principals"
        ).exists()
