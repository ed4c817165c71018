"""One permission layer: a staff login sees and does in the console what its linked identity's grants allow,
and Django's model permissions and groups give nothing."""

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Group, Permission, User
from django.test import Client

from audit.models import AuditDeadLetter
from audit.services import record
from console.staff_permissions import GRANTS_FOR_MODEL_PERMISSIONS
from grants.models import Grant
from grants.permissions import KNOWN_PERMISSIONS
from grants.services import grant_permission, revoke_grant
from identities.models import Identity
from identities.staff_links import link_staff_user
from kernel.callers import Caller
from principals.services import suspend_identity
from sessions.models import AuthSession
from sessions.services import open_session

pytestmark = pytest.mark.django_db

SYSTEM = Caller.system("tests")
AUDITOR = "CHITTY-PEO-AUDITOR-1"
AUDIT_LIST = "/admin/audit/auditevent/"
SESSIONS_LIST = "/admin/auth_sessions/authsession/"
DEAD_LETTERS = "/admin/audit/auditdeadletter/"


@pytest.fixture
def auditor(make_identity) -> User:
    make_identity(AUDITOR)
    user = User.objects.create_user("auditor", password="auditor-password-long-1", is_staff=True)
    link_staff_user(SYSTEM, user, AUDITOR)
    return user


def grant(permission: str) -> Grant:
    return grant_permission(SYSTEM, grantee_chitty_id=AUDITOR, permission=permission)


def console_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def listed_models(client: Client) -> set[str]:
    """The models the console's index offers this login."""
    index = client.get("/admin/")
    assert index.status_code == 200
    return {
        f"{app['app_label']}.{model['object_name'].lower()}"
        for app in index.context["app_list"]
        for model in app["models"]
    }


def model_of(model_permission: str) -> str:
    """`keys.change_apikey` → `keys.apikey`."""
    app_label, _, codename = model_permission.partition(".")
    return f"{app_label}.{codename.partition('_')[2]}"


def test_a_staff_login_holding_audit_read_sees_the_audit_trail_and_nothing_else(auditor):
    grant("audit:read")
    client = console_for(auditor)

    assert listed_models(client) == {"audit.auditevent", "audit.auditdelivery", "audit.auditdeadletter"}
    assert client.get(AUDIT_LIST).status_code == 200
    assert client.get("/admin/keys/apikey/").status_code == 403
    assert client.get("/admin/auth/user/").status_code == 403


def test_sending_audit_export_dead_letters_again_needs_audit_export(auditor):
    event = record("test.refused", actor="tests")
    letter = AuditDeadLetter.objects.create(
        sink="webhook", event=event, reason="HTTP 422", created_at=event.created_at
    )
    grant("audit:read")
    client = console_for(auditor)
    send_again = {"action": "send_again", "_selected_action": [str(letter.pk)]}

    listing = client.get(DEAD_LETTERS)
    assert listing.status_code == 200 and "send_again" not in listing.content.decode()
    client.post(DEAD_LETTERS, send_again)
    letter.refresh_from_db()
    assert letter.redeliver_requested_at is None

    grant("audit:export")
    client.post(DEAD_LETTERS, send_again)
    letter.refresh_from_db()
    assert letter.redeliver_requested_at is not None


def test_audit_export_alone_does_not_show_the_dead_letters(auditor):
    grant("audit:export")
    client = console_for(auditor)
    assert client.get(DEAD_LETTERS).status_code == 403
    assert "audit.auditdeadletter" not in listed_models(client)


def test_django_model_permissions_and_groups_give_a_staff_login_nothing(auditor):
    everything = Permission.objects.all()
    auditor.user_permissions.add(*everything)
    group = Group.objects.create(name="all of it")
    group.permissions.add(*everything)
    auditor.groups.add(group)
    client = console_for(auditor)

    assert listed_models(client) == set()
    assert "permission to view or edit anything" in client.get("/admin/").content.decode()
    assert client.get(AUDIT_LIST).status_code == 403


def test_the_access_goes_with_the_grant_or_the_identity_on_the_next_request(auditor):
    held = grant("audit:read")
    client = console_for(auditor)
    assert client.get(AUDIT_LIST).status_code == 200

    revoke_grant(SYSTEM, held.pk)
    assert client.get(AUDIT_LIST).status_code == 403

    grant("audit:read")
    assert client.get(AUDIT_LIST).status_code == 200
    suspend_identity(SYSTEM, Identity.objects.get(chitty_id=AUDITOR), reason="left the team")
    assert client.get(AUDIT_LIST).status_code == 403


def test_an_unlinked_staff_login_sees_nothing(db):
    user = User.objects.create_user("unlinked", password="unlinked-password-long-1", is_staff=True)
    assert listed_models(console_for(user)) == set()


def test_reading_sessions_lists_them_and_only_sessions_revoke_offers_ending_them(auditor):
    grant("sessions:read")
    session = open_session(
        Caller(AUDITOR, Identity.objects.get(chitty_id=AUDITOR), "api_key", "k1"), AuthSession.Channel.REST
    )
    client = console_for(auditor)

    listing = client.get(SESSIONS_LIST)
    assert listing.status_code == 200
    assert session.session_id in listing.content.decode()
    assert "end_selected" not in listing.content.decode()
    refused = client.post(SESSIONS_LIST, {"action": "end_selected", "_selected_action": [session.pk]})
    assert AuthSession.objects.get(pk=session.pk).ended_at is None
    assert refused.status_code in (200, 302)

    grant("sessions:revoke")
    assert "end_selected" in client.get(SESSIONS_LIST).content.decode()


def test_even_the_wildcard_grant_leaves_the_superuser_only_models_to_superusers(auditor):
    grant("*")
    client = console_for(auditor)

    assert listed_models(client) == {model_of(permission) for permission in GRANTS_FOR_MODEL_PERMISSIONS}
    for superuser_only in ("/admin/auth/user/", "/admin/auth/group/", "/admin/identities/stafflink/"):
        assert client.get(superuser_only).status_code == 403


def test_the_table_names_real_model_permissions_and_known_grants():
    registered = {model._meta.label_lower for model in admin.site._registry}
    for model_permission, grants in GRANTS_FOR_MODEL_PERMISSIONS.items():
        app_label, _, codename = model_permission.partition(".")
        action, _, model_name = codename.partition("_")
        model = apps.get_model(app_label, model_name)
        assert action in model._meta.default_permissions, model_permission
        assert model._meta.label_lower in registered, model_permission
        assert grants and set(grants) <= set(KNOWN_PERMISSIONS), model_permission
