"""The admin console through Django's test client: staff logins and lockout, staff links and the no-escalation
rule for staff, suspending with the cascade shown first, rotating with a chosen overlap, revoking, filters,
and the audit trail's hash links."""

import re
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import record, verify_chain
from grants.models import Grant
from grants.services import grant_permission
from identities.admin import staff_caller
from identities.models import Identity, StaffLink
from identities.staff_links import link_staff_user
from kernel.callers import Caller
from kernel.errors import PermissionDenied
from keys.models import ApiKey
from keys.services import generate_api_key, verify_api_key
from sessions.models import AuthSession
from sessions.services import open_session

pytestmark = pytest.mark.django_db

SYSTEM = Caller.system("tests")
ALICE = "CHITTY-PEO-ALICE-1"
HELPDESK = "CHITTY-PEO-HELPDESK-1"
ROOT_PASSWORD = "root-password-long-enough-1"
STAFF_PASSWORD = "helpdesk-password-long-enough-1"
SECRET_RE = re.compile(r"chitty_live_[0-9A-Za-z]{49}")


@pytest.fixture
def root(db) -> User:
    return User.objects.create_superuser("root", "root@example.org", ROOT_PASSWORD)


@pytest.fixture
def admin(root) -> Client:
    client = Client()
    client.force_login(root)
    return client


@pytest.fixture
def alice(make_identity) -> Identity:
    identity = make_identity(ALICE)
    grant_permission(SYSTEM, grantee_chitty_id=ALICE, permission="documents:*")
    return identity


def staff_user(*codenames: str) -> User:
    user = User.objects.create_user("helpdesk", password=STAFF_PASSWORD, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def linked_staff(make_identity, *grants: str) -> User:
    """A staff login (not a superuser) linked to HELPDESK, which holds `grants`."""
    make_identity(HELPDESK)
    for permission in grants:
        grant_permission(SYSTEM, grantee_chitty_id=HELPDESK, permission=permission)
    user = staff_user()
    link_staff_user(SYSTEM, user, HELPDESK)
    return user


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def post_login(client: Client, username: str, password: str, address: str = "127.0.0.1"):
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": username, "password": password},
        REMOTE_ADDR=address,
    )


def open_rest_session(identity: Identity, key_id: str) -> AuthSession:
    caller = Caller(
        actor=identity.chitty_id, identity=identity, credential_type="api_key", credential_id=key_id
    )
    return open_session(caller, AuthSession.Channel.REST)


# ---------------------------------------------------------------------------------------------------------
# Staff logins


class TestStaffLogins:
    def test_a_login_and_a_logout_are_audited(self, root):
        client = Client()

        assert post_login(client, "root", ROOT_PASSWORD, address="198.51.100.7").status_code == 302
        client.post("/admin/logout/", REMOTE_ADDR="198.51.100.7")

        login, logout = AuditEvent.objects.order_by("sequence")
        assert (login.action, login.actor, login.client_address) == (
            "staff.login",
            "staff:root",
            "198.51.100.7",
        )
        assert login.details["superuser"] is True
        assert (logout.action, logout.actor) == ("staff.logout", "staff:root")
        assert verify_chain().intact

    def test_a_failed_login_is_audited_without_the_password(self, root):
        response = post_login(Client(), "root", "the-wrong-password-9")

        assert response.status_code == 200
        event = AuditEvent.objects.get()
        assert (event.action, event.outcome, event.target, event.actor) == (
            "staff.login_failed",
            "failure",
            "staff:root",
            "",
        )
        assert "the-wrong-password-9" not in str(AuditEvent.objects.values().get())
        assert "the-wrong-password-9" not in str(AccessAttempt.objects.values().get())

    def test_repeated_failures_lock_the_login_with_a_clear_page(self, root, settings):
        client = Client()
        answers = [post_login(client, "root", f"wrong-{n}") for n in range(settings.AXES_FAILURE_LIMIT)]

        assert [answer.status_code for answer in answers[:-1]] == [200] * (settings.AXES_FAILURE_LIMIT - 1)
        assert answers[-1].status_code == 429
        locked = post_login(client, "root", ROOT_PASSWORD)
        assert locked.status_code == 429
        assert "Sign-in locked" in locked.content.decode()
        assert "_auth_user_id" not in client.session
        assert AuditEvent.objects.filter(action="staff.lockout", target="staff:root").exists()
        assert not AuditEvent.objects.filter(action="staff.login").exists()

    def test_the_lock_holds_for_the_account_from_other_addresses_and_for_the_address(self, root, settings):
        User.objects.create_superuser("second", "second@example.org", ROOT_PASSWORD)
        for n in range(settings.AXES_FAILURE_LIMIT):
            post_login(Client(), "root", f"wrong-{n}", address="203.0.113.1")

        assert post_login(Client(), "root", ROOT_PASSWORD, address="203.0.113.99").status_code == 429
        assert post_login(Client(), "second", ROOT_PASSWORD, address="203.0.113.1").status_code == 429
        assert post_login(Client(), "second", ROOT_PASSWORD, address="203.0.113.99").status_code == 302


# ---------------------------------------------------------------------------------------------------------
# Staff links: non-superuser staff act as one identity, with its grants and no more


class TestStaffLinks:
    def test_a_superuser_links_a_staff_login_through_the_admin(self, admin, make_identity):
        make_identity(HELPDESK)
        helpdesk = staff_user()

        response = admin.post(
            "/admin/identities/stafflink/add/", {"user": helpdesk.pk, "chitty_id": HELPDESK}
        )

        assert response.status_code == 302
        link = StaffLink.objects.get()
        assert (link.user, link.identity.chitty_id, link.linked_by) == (helpdesk, HELPDESK, "staff:root")
        assert HELPDESK in admin.get(f"/admin/identities/stafflink/{link.pk}/change/").content.decode()
        event = AuditEvent.objects.get(action="staff_link.create")
        assert (event.actor, event.target, event.details) == (
            "staff:root",
            "staff:helpdesk",
            {"chitty_id": HELPDESK},
        )

    def test_linking_to_an_inactive_identity_is_a_form_error(self, admin, make_identity):
        make_identity(HELPDESK, status=Identity.Status.SUSPENDED)
        helpdesk = staff_user()

        response = admin.post(
            "/admin/identities/stafflink/add/", {"user": helpdesk.pk, "chitty_id": HELPDESK}
        )

        assert response.status_code == 200
        assert "IDENTITY_SUSPENDED" in response.content.decode()
        assert not StaffLink.objects.exists()

    def test_only_superusers_link_even_with_the_model_permission(self, make_identity):
        make_identity(HELPDESK)
        helpdesk = staff_user("add_stafflink", "view_stafflink", "delete_stafflink")
        client = client_for(helpdesk)

        assert client.get("/admin/identities/stafflink/add/").status_code == 403
        with pytest.raises(PermissionDenied) as refused:
            link_staff_user(Caller.staff(helpdesk), helpdesk, HELPDESK)
        assert refused.value.code == "SUPERUSER_REQUIRED"
        assert AuditEvent.objects.filter(action="staff_link.create", outcome="denied").exists()
        assert not StaffLink.objects.exists()

    def test_unlinking_is_audited_and_takes_the_identity_away(self, admin, make_identity, rf):
        make_identity(HELPDESK)
        helpdesk = staff_user()
        link = link_staff_user(SYSTEM, helpdesk, HELPDESK)
        request = rf.get("/admin/")
        request.user = helpdesk
        assert staff_caller(request).chitty_id == HELPDESK

        admin.post(f"/admin/identities/stafflink/{link.pk}/delete/", {"post": "yes"})

        assert not StaffLink.objects.exists()
        assert staff_caller(request).identity is None
        assert AuditEvent.objects.filter(action="staff_link.delete", actor="staff:root").exists()

    def test_linked_staff_grant_what_their_identity_holds_and_nothing_more(self, alice, make_identity):
        make_identity(HELPDESK)
        grant_permission(SYSTEM, grantee_chitty_id=HELPDESK, permission="authorizations:grant")
        grant_permission(SYSTEM, grantee_chitty_id=HELPDESK, permission="documents:*")
        helpdesk = staff_user()
        link_staff_user(SYSTEM, helpdesk, HELPDESK)
        client = client_for(helpdesk)

        allowed = client.post(
            "/admin/grants/grant/add/", {"chitty_id": ALICE, "permission": "documents:read"}
        )
        refused = client.post("/admin/grants/grant/add/", {"chitty_id": ALICE, "permission": "audit:read"})

        assert allowed.status_code == 302
        grant = Grant.objects.get(principal__chitty_id=ALICE, permission="documents:read")
        assert grant.granted_by == "staff:helpdesk"
        event = AuditEvent.objects.filter(action="authorization.grant", outcome="success").latest("sequence")
        assert event.details["exempt"] is False
        assert "ESCALATION_REFUSED" in refused.content.decode()
        assert not Grant.objects.filter(principal__chitty_id=ALICE, permission="audit:read").exists()

    def test_a_grant_that_could_never_allow_anything_is_refused_on_the_form(self, admin, alice):
        response = admin.post(
            "/admin/grants/grant/add/",
            {"chitty_id": ALICE, "permission": "audit:read", "resource_id": "doc-1"},
        )

        assert response.status_code == 200
        page = response.content.decode()
        assert "RESOURCE_NOT_APPLICABLE" in page
        assert "would never allow anything" in page
        assert not Grant.objects.filter(principal__chitty_id=ALICE, permission="audit:read").exists()

    def test_linked_staff_need_api_keys_manage_to_issue_keys_for_others(self, alice, make_identity):
        make_identity(HELPDESK)
        grant_permission(SYSTEM, grantee_chitty_id=HELPDESK, permission="documents:*")
        grant_permission(SYSTEM, grantee_chitty_id=HELPDESK, permission="api_keys:generate")
        helpdesk = staff_user()
        link_staff_user(SYSTEM, helpdesk, HELPDESK)
        client = client_for(helpdesk)
        form = {"chitty_id": ALICE, "name": "k", "scopes_text": "documents:read", "environment": "live"}

        refused = client.post("/admin/keys/apikey/add/", form)
        grant_permission(SYSTEM, grantee_chitty_id=HELPDESK, permission="api_keys:manage")
        issued = client.post("/admin/keys/apikey/add/", form)

        assert "api_keys:manage" in refused.content.decode()
        assert "only time the key is shown" in issued.content.decode()
        assert ApiKey.objects.get().created_by == "staff:helpdesk"


# ---------------------------------------------------------------------------------------------------------
# Identities: the cascade is shown before suspending


class TestSuspension:
    def test_the_cascade_is_shown_and_nothing_changes_until_staff_confirm(self, admin, alice):
        live = generate_api_key(SYSTEM, chitty_id=ALICE, scopes=["documents:read"])
        generate_api_key(SYSTEM, chitty_id=ALICE, scopes=["documents:read"])
        revoked = generate_api_key(SYSTEM, chitty_id=ALICE, scopes=["documents:read"])
        ApiKey.objects.filter(pk=revoked.api_key.pk).update(revoked_at=timezone.now())
        Grant.objects.create(
            principal=alice, permission="old:*", expires_at=timezone.now() - timedelta(days=1), granted_by="t"
        )
        session = open_rest_session(alice, live.api_key.key_id)
        url = f"/admin/identities/identity/{alice.pk}/suspend/"

        page = admin.get(url)

        [cascade] = page.context["cascades"]
        assert (cascade.api_keys, cascade.grants, cascade.sessions) == (2, 1, 1)
        assert '<td class="api-keys">2</td>' in page.content.decode()
        assert Identity.objects.get(pk=alice.pk).status == "active"
        assert verify_api_key(live.secret).valid

        done = admin.post(url, {"reason": "laptop stolen"}, follow=True)

        assert f"{ALICE} is now suspended." in done.content.decode()
        alice.refresh_from_db()
        assert (alice.status, alice.status_reason) == ("suspended", "laptop stolen")
        assert verify_api_key(live.secret).code == "IDENTITY_SUSPENDED"
        session.refresh_from_db()
        assert session.ended_at is not None
        event = AuditEvent.objects.get(action="identity.suspend")
        assert (event.actor, event.details["reason"]) == ("staff:root", "laptop stolen")

    def test_reactivating_from_the_identity_page(self, admin, make_identity):
        suspended = make_identity(ALICE, status=Identity.Status.SUSPENDED)
        change_page = admin.get(f"/admin/identities/identity/{suspended.pk}/change/").content.decode()
        assert "reactivate-link" in change_page
        assert "suspend-link" not in change_page

        admin.post(f"/admin/identities/identity/{suspended.pk}/reactivate/", {"reason": ""})

        suspended.refresh_from_db()
        assert (suspended.status, suspended.status_reason) == ("active", "reactivated by staff in the admin")

    def test_the_suspend_page_needs_identities_manage(self, alice, make_identity):
        viewer = client_for(linked_staff(make_identity, "identities:read"))

        assert viewer.get(f"/admin/identities/identity/{alice.pk}/change/").status_code == 200
        assert viewer.get(f"/admin/identities/identity/{alice.pk}/suspend/").status_code == 403
        assert viewer.post(f"/admin/identities/identity/{alice.pk}/suspend/").status_code == 403
        assert Identity.objects.get(pk=alice.pk).status == "active"

    def test_a_refusal_by_the_service_is_shown(self, make_identity):
        gone = make_identity("CHITTY-PEO-GONE-1", status=Identity.Status.REVOKED)
        client = client_for(linked_staff(make_identity, "identities:read", "identities:manage"))

        response = client.post(
            f"/admin/identities/identity/{gone.pk}/reactivate/", {"reason": "x"}, follow=True
        )

        assert "cannot be reactivated" in response.content.decode()
        assert Identity.objects.get(pk=gone.pk).status == "revoked"


# ---------------------------------------------------------------------------------------------------------
# Keys: rotation with a chosen overlap, revocation with a reason, filters


class TestKeyActions:
    def test_rotating_with_no_overlap_stops_the_old_key_at_once(self, admin, alice):
        old = generate_api_key(SYSTEM, chitty_id=ALICE, scopes=["documents:read"])
        url = f"/admin/keys/apikey/{old.api_key.pk}/rotate/"

        form = admin.get(url)
        assert form.context["form"]["overlap_seconds"].value() == 300
        shown = admin.post(url, {"overlap_seconds": "0"})

        new_key = ApiKey.objects.get(rotated_from=old.api_key)
        page = shown.content.decode()
        assert "only time the key is shown" in page
        assert f"Replaces <code>{old.api_key.key_id}</code>" in page
        assert "no-store" in shown["Cache-Control"]
        [secret] = set(SECRET_RE.findall(page))
        assert verify_api_key(secret).key_id == new_key.key_id
        assert verify_api_key(old.secret).code == "REVOKED"
        assert AuditEvent.objects.get(action="api_key.rotate").details["overlap_seconds"] == 0

    def test_rotating_with_an_hour_of_overlap_keeps_the_old_key_working(self, admin, alice):
        old = generate_api_key(SYSTEM, chitty_id=ALICE, scopes=["documents:read"])

        admin.post(f"/admin/keys/apikey/{old.api_key.pk}/rotate/", {"overlap_seconds": "3600"})

        old.api_key.refresh_from_db()
        assert verify_api_key(old.secret).valid
        assert old.api_key.revoked_at > timezone.now() + timedelta(minutes=59)

    def test_an_overlap_the_service_refuses_is_shown_and_nothing_rotates(self, admin, alice):
        old = generate_api_key(SYSTEM, chitty_id=ALICE, scopes=["documents:read"])

        response = admin.post(f"/admin/keys/apikey/{old.api_key.pk}/rotate/", {"overlap_seconds": "9999999"})

        assert response.status_code == 200
        assert "INVALID_OVERLAP" in response.content.decode()
        assert not SECRET_RE.search(response.content.decode())
        assert ApiKey.objects.count() == 1

    def test_revoking_asks_first_and_records_the_reason(self, admin, alice):
        issued = generate_api_key(SYSTEM, chitty_id=ALICE, scopes=["documents:read"])
        url = f"/admin/keys/apikey/{issued.api_key.pk}/revoke/"

        assert "cannot be undone" in admin.get(url).content.decode()
        assert verify_api_key(issued.secret).valid
        done = admin.post(url, {"reason": "found in a public repo"}, follow=True)

        assert f"Revoked {issued.api_key.key_id}." in done.content.decode()
        issued.api_key.refresh_from_db()
        assert (issued.api_key.revoke_reason, issued.api_key.revoked_by) == (
            "found in a public repo",
            "staff:root",
        )
        assert verify_api_key(issued.secret).code == "REVOKED"
        assert AuditEvent.objects.get(action="api_key.revoke").details["reason"] == "found in a public repo"

    def test_the_key_page_offers_only_the_actions_its_state_allows(self, admin, alice):
        issued = generate_api_key(SYSTEM, chitty_id=ALICE, scopes=["documents:read"])
        change = f"/admin/keys/apikey/{issued.api_key.pk}/change/"
        assert {"rotate-link", "revoke-link"} <= set(admin.get(change).content.decode().split('"'))

        ApiKey.objects.filter(pk=issued.api_key.pk).update(revoked_at=timezone.now())

        page = admin.get(change).content.decode()
        assert "rotate-link" not in page
        assert "revoke-link" not in page

    def test_key_filters_by_status_and_principal(self, admin, alice, make_identity):
        make_identity("CHITTY-PEO-BOB-1")
        live = generate_api_key(SYSTEM, chitty_id=ALICE)
        rotating = generate_api_key(SYSTEM, chitty_id=ALICE)
        revoked = generate_api_key(SYSTEM, chitty_id=ALICE)
        expired = generate_api_key(SYSTEM, chitty_id=ALICE)
        bobs = generate_api_key(SYSTEM, chitty_id="CHITTY-PEO-BOB-1")
        now = timezone.now()
        ApiKey.objects.filter(pk=rotating.api_key.pk).update(revoked_at=now + timedelta(hours=1))
        ApiKey.objects.filter(pk=revoked.api_key.pk).update(revoked_at=now - timedelta(seconds=1))
        ApiKey.objects.filter(pk=expired.api_key.pk).update(expires_at=now - timedelta(seconds=1))

        def listed(**query) -> set[str]:
            response = admin.get("/admin/keys/apikey/", query)
            return {key.key_id for key in response.context["cl"].result_list}

        assert listed(status="live") == {live.api_key.key_id, bobs.api_key.key_id}
        assert listed(status="rotating") == {rotating.api_key.key_id}
        assert listed(status="revoked") == {revoked.api_key.key_id}
        assert listed(status="expired") == {expired.api_key.key_id}
        assert listed(principal="CHITTY-PEO-BOB-1") == {bobs.api_key.key_id}
        assert listed(principal=ALICE, status="live") == {live.api_key.key_id}


class TestListFilters:
    def test_grants_filter_by_state_and_principal(self, admin, alice, make_identity):
        make_identity("CHITTY-PEO-BOB-1")
        bobs = grant_permission(SYSTEM, grantee_chitty_id="CHITTY-PEO-BOB-1", permission="documents:read")
        revoked = Grant.objects.create(
            principal=alice, permission="a:b", revoked_at=timezone.now(), granted_by="t"
        )
        expired = Grant.objects.create(
            principal=alice, permission="c:d", expires_at=timezone.now() - timedelta(days=1), granted_by="t"
        )

        def listed(**query) -> set[int]:
            return {grant.pk for grant in admin.get("/admin/grants/grant/", query).context["cl"].result_list}

        alices_live = Grant.objects.get(principal=alice, permission="documents:*").pk
        assert listed(state="live") == {alices_live, bobs.pk}
        assert listed(state="revoked") == {revoked.pk}
        assert listed(state="expired") == {expired.pk}
        assert listed(principal=ALICE, state="live") == {alices_live}

    def test_sessions_filter_by_state_principal_and_channel(self, admin, alice, make_identity):
        bob = make_identity("CHITTY-PEO-BOB-1")
        alices = open_rest_session(alice, "key_a")
        bobs = open_rest_session(bob, "key_b")
        expired = open_rest_session(bob, "key_c")
        AuthSession.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

        def listed(**query) -> set[str]:
            response = admin.get("/admin/auth_sessions/authsession/", query)
            return {session.session_id for session in response.context["cl"].result_list}

        assert listed(state="live") == {alices.session_id, bobs.session_id}
        assert listed(state="expired") == {expired.session_id}
        assert listed(state="live", principal="CHITTY-PEO-BOB-1") == {bobs.session_id}
        assert listed(channel__exact="mcp-websocket") == set()

    def test_the_identity_page_links_to_its_keys_grants_sessions_and_audit(self, admin, alice):
        page = admin.get(f"/admin/identities/identity/{alice.pk}/change/").content.decode()

        for changelist in ("keys/apikey", "grants/grant", "auth_sessions/authsession"):
            assert f"/admin/{changelist}/?principal={ALICE}" in page
        assert f"/admin/audit/auditevent/?identity={ALICE}" in page


# ---------------------------------------------------------------------------------------------------------
# Audit: hash links and verifying the chain


class TestAuditConsole:
    def test_an_event_links_to_its_predecessor_and_shows_the_link_holds(self, admin):
        first = record("test.first", actor="tester")
        second = record("test.second", actor="tester")

        page = admin.get(f"/admin/audit/auditevent/{second.pk}/change/").content.decode()

        assert f'href="/admin/audit/auditevent/{first.pk}/change/"' in page
        assert "its hash is this event&#x27;s prev_hash ✓" in page
        assert "hash matches the event&#x27;s contents ✓" in page
        first_page = admin.get(f"/admin/audit/auditevent/{first.pk}/change/").content.decode()
        assert f'href="/admin/audit/auditevent/{second.pk}/change/"' in first_page
        genesis = AuditEvent.objects.get(sequence=1)  # the admin fixture's own login
        genesis_page = admin.get(f"/admin/audit/auditevent/{genesis.pk}/change/").content.decode()
        assert "chained to the genesis hash ✓" in genesis_page

    def test_a_tampered_event_is_flagged_and_verification_names_it(self, admin):
        record("test.first", actor="tester")
        tampered = record("test.second", actor="tester", details={"amount": 1})
        record("test.third", actor="tester")
        AuditEvent.objects.filter(pk=tampered.pk).update(details={"amount": 1000})

        page = admin.get(f"/admin/audit/auditevent/{tampered.pk}/change/").content.decode()
        assert "it was altered ✗" in page
        assert "Not checked recently" in admin.get("/admin/audit/auditevent/verify/").content.decode()

        verdict = admin.post("/admin/audit/auditevent/verify/").content.decode()

        assert f"BROKEN at event #{tampered.sequence}" in verdict
        assert f'href="/admin/audit/auditevent/{tampered.pk}/change/"' in verdict
        assert f"BROKEN at event #{tampered.sequence}" in admin.get("/admin/dashboard/").content.decode()

    def test_verifying_needs_the_view_permission(self):
        client = client_for(staff_user())

        assert client.post("/admin/audit/auditevent/verify/").status_code == 403

    def test_events_stay_read_only_for_superusers(self, admin):
        event = record("test.first", actor="tester")

        admin.post(f"/admin/audit/auditevent/{event.pk}/change/", {"actor": "mallory"})

        assert AuditEvent.objects.get(pk=event.pk).actor == "tester"
        assert admin.get(f"/admin/audit/auditevent/{event.pk}/delete/").status_code == 403
