"""Registering principals and changing their status, through the services, the command and the admin."""

import io
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import verify_chain
from identities.authority import verify_chitty_id
from identities.chitty_ids import InvalidChittyID
from identities.models import Identity
from kernel.callers import Caller
from kernel.errors import AuthorityUnavailable, Conflict, PermissionDenied, ValidationFailed
from kernel.invalidation import current_stamp, is_fresh, principal_topic
from principals.services import (
    change_status,
    reactivate_identity,
    register_identity,
    resolve_principal,
    suspend_identity,
)
from sessions.models import AuthSession

REPO_ROOT = Path(__file__).resolve().parent.parent
# A subprocess gets its own SQLite file and the local authority, whatever the test run is configured with.
ISOLATED_SETTINGS = ("DATABASE_URL", "REDIS_URL", "CHITTYID_ENDPOINT", "ENVIRONMENT", "DEBUG")

pytestmark = pytest.mark.django_db


def nothing_saved() -> bool:
    return not Identity.objects.exists() and not AuditEvent.objects.exists()


# Registration through the service


def test_register_with_the_local_authority(system_caller, settings):
    settings.CHITTYID_ENDPOINT = ""

    identity = register_identity(system_caller, "CHITTY-PLACE-HQ1-A", display_name="Head office")

    stored = Identity.objects.get(chitty_id="CHITTY-PLACE-HQ1-A")
    assert stored.pk == identity.pk
    assert (stored.entity_type, stored.source, stored.status, stored.display_name) == (
        "PLACE",
        "local",
        "active",
        "Head office",
    )
    assert stored.last_validated_at is None
    event = AuditEvent.objects.get()
    assert (event.action, event.actor, event.target) == (
        "identity.register",
        "system:tests",
        "CHITTY-PLACE-HQ1-A",
    )
    assert event.details == {"source": "local", "entity_type": "PLACE"}


def test_register_a_canonical_id(system_caller, settings):
    settings.CHITTYID_ENDPOINT = ""

    identity = register_identity(system_caller, "01-1-USA-1234-E-2501-3-7")

    assert identity.entity_type == "EVNT"


def test_register_with_a_remote_authority_that_vouches(system_caller, chittyid_authority):
    chittyid_authority.behaviours["CHITTY-PEO-REMOTE-1"] = "valid"
    before = timezone.now()

    identity = register_identity(system_caller, "CHITTY-PEO-REMOTE-1")

    stored = Identity.objects.get(pk=identity.pk)
    assert stored.source == "remote"
    assert stored.last_validated_at >= before
    assert len(chittyid_authority.requests_for("CHITTY-PEO-REMOTE-1")) == 1
    assert AuditEvent.objects.get().details["source"] == "remote"


def test_registration_asks_the_authority_afresh_not_its_cache(system_caller, chittyid_authority):
    chittyid_authority.behaviours["CHITTY-PEO-LATE-1"] = "404"
    assert not verify_chitty_id("CHITTY-PEO-LATE-1").is_valid
    chittyid_authority.behaviours["CHITTY-PEO-LATE-1"] = "valid"

    assert register_identity(system_caller, "CHITTY-PEO-LATE-1").source == "remote"


@pytest.mark.parametrize(
    ("behaviour", "reason"), [("invalid", "revoked by authority"), ("404", "does not know")]
)
def test_an_id_the_remote_authority_rejects_is_not_registered(
    system_caller, chittyid_authority, behaviour, reason
):
    chittyid_authority.behaviours["CHITTY-PEO-REJECTED-1"] = behaviour

    with pytest.raises(ValidationFailed) as refused:
        register_identity(system_caller, "CHITTY-PEO-REJECTED-1")

    assert refused.value.code == "CHITTY_ID_REJECTED"
    assert reason in refused.value.message
    assert nothing_saved()


@pytest.mark.parametrize("behaviour", ["500", "slow", "garbage"])
def test_nothing_is_registered_while_the_remote_authority_is_unavailable(
    system_caller, chittyid_authority, behaviour
):
    chittyid_authority.behaviours["CHITTY-PEO-DOWN-1"] = behaviour

    with pytest.raises(AuthorityUnavailable) as unavailable:
        register_identity(system_caller, "CHITTY-PEO-DOWN-1")

    assert "ChittyID authority unavailable" in unavailable.value.message
    assert nothing_saved()


def test_nothing_is_registered_when_the_remote_authority_is_unreachable(system_caller, chittyid_authority):
    chittyid_authority.behaviours["CHITTY-PEO-DOWN-1"] = "valid"
    chittyid_authority.stop()

    with pytest.raises(AuthorityUnavailable):
        register_identity(system_caller, "CHITTY-PEO-DOWN-1")

    assert nothing_saved()


def test_registering_twice_is_a_conflict_and_audits_once(system_caller, settings):
    settings.CHITTYID_ENDPOINT = ""
    register_identity(system_caller, "CHITTY-PEO-TWICE-1")

    with pytest.raises(Conflict) as conflict:
        register_identity(system_caller, "CHITTY-PEO-TWICE-1", display_name="again")

    assert conflict.value.code == "IDENTITY_EXISTS"
    assert Identity.objects.get().display_name == ""
    assert AuditEvent.objects.count() == 1
    assert verify_chain().intact


def test_a_malformed_id_is_refused_before_anyone_is_asked(system_caller, chittyid_authority):
    with pytest.raises(InvalidChittyID):
        register_identity(system_caller, "chitty-peo-lower-1")

    assert chittyid_authority.requests == []
    assert nothing_saved()


def test_registering_needs_identities_manage(make_identity, settings):
    settings.CHITTYID_ENDPOINT = ""
    principal = make_identity("CHITTY-PEO-NOGRANTS-1")
    caller = Caller(
        actor=principal.chitty_id,
        identity=principal,
        credential_type="api_key",
        credential_id="key_x",
        scopes=("*",),
    )

    with pytest.raises(PermissionDenied):
        register_identity(caller, "CHITTY-PEO-NEWCOMER-1")

    assert not Identity.objects.filter(chitty_id="CHITTY-PEO-NEWCOMER-1").exists()
    assert AuditEvent.objects.get().action == "authorization.denied"


# Resolving the principal behind a credential


def test_resolve_principal_registers_an_id_the_remote_authority_vouches_for_on_first_use(chittyid_authority):
    chittyid_authority.behaviours["CHITTY-PEO-FIRSTUSE-1"] = "valid"

    identity = resolve_principal("CHITTY-PEO-FIRSTUSE-1")

    assert identity.source == "remote"
    assert AuditEvent.objects.get().actor == "system:chittyid-authority"


def test_resolve_principal_refuses_a_locally_suspended_id_the_authority_still_vouches_for(
    chittyid_authority, make_identity
):
    chittyid_authority.behaviours["CHITTY-PEO-SUSPENDED-1"] = "valid"
    make_identity("CHITTY-PEO-SUSPENDED-1", status=Identity.Status.SUSPENDED)

    with pytest.raises(ValidationFailed) as refused:
        resolve_principal("CHITTY-PEO-SUSPENDED-1")

    assert refused.value.code == "IDENTITY_SUSPENDED"


def test_resolve_principal_fails_closed_when_the_authority_is_down(chittyid_authority):
    chittyid_authority.behaviours["CHITTY-PEO-DOWN-1"] = "500"

    with pytest.raises(AuthorityUnavailable):
        resolve_principal("CHITTY-PEO-DOWN-1")

    assert nothing_saved()


# Status changes


def test_status_changes_are_audited_and_invalidate_the_principal(system_caller, make_identity):
    identity = make_identity("CHITTY-PEO-STATUS-1")
    topics = (principal_topic(identity.chitty_id),)
    changes = (
        lambda: suspend_identity(system_caller, identity, reason="lost laptop"),
        lambda: reactivate_identity(system_caller, identity, reason="laptop found"),
        lambda: change_status(system_caller, identity, Identity.Status.REVOKED, reason="left the company"),
    )
    for change in changes:
        stamp = current_stamp()
        assert is_fresh(stamp, topics)
        change()
        assert not is_fresh(stamp, topics)
        assert is_fresh(stamp, (principal_topic("CHITTY-PEO-UNRELATED-1"),))

    events = list(AuditEvent.objects.order_by("sequence").values_list("action", "target", "details"))
    assert events == [
        (
            "identity.suspend",
            "CHITTY-PEO-STATUS-1",
            {"from": "active", "to": "suspended", "reason": "lost laptop"},
        ),
        (
            "identity.reactivate",
            "CHITTY-PEO-STATUS-1",
            {"from": "suspended", "to": "active", "reason": "laptop found"},
        ),
        (
            "identity.revoke",
            "CHITTY-PEO-STATUS-1",
            {"from": "active", "to": "revoked", "reason": "left the company"},
        ),
    ]
    stored = Identity.objects.get(pk=identity.pk)
    assert (stored.status, stored.status_reason) == ("revoked", "left the company")
    assert verify_chain().intact


def test_suspending_ends_the_identitys_live_sessions(system_caller, make_identity):
    identity = make_identity("CHITTY-PEO-SESSIONS-1")
    session = AuthSession.objects.create(
        session_id="ses_" + secrets.token_urlsafe(12),
        principal=identity,
        credential_type=AuthSession.CredentialType.API_KEY,
        credential_id="key_abc",
        channel=AuthSession.Channel.REST,
        last_seen_at=timezone.now(),
    )

    suspend_identity(system_caller, identity, reason="compromised")

    session.refresh_from_db()
    assert session.ended_at is not None
    assert session.end_reason == "compromised"


def test_a_revoked_identity_cannot_be_reactivated(system_caller, make_identity):
    identity = make_identity("CHITTY-PEO-REVOKED-1", status=Identity.Status.REVOKED)

    for status in (Identity.Status.ACTIVE, Identity.Status.SUSPENDED):
        with pytest.raises(Conflict) as conflict:
            change_status(system_caller, identity, status)
        assert conflict.value.code == "IDENTITY_REVOKED"

    assert Identity.objects.get(pk=identity.pk).status == "revoked"
    assert not AuditEvent.objects.exists()


def test_a_stale_copy_cannot_reactivate_an_identity_revoked_meanwhile(system_caller, make_identity):
    identity = make_identity("CHITTY-PEO-RACE-1")
    stale_copy = Identity.objects.get(pk=identity.pk)
    change_status(system_caller, identity, Identity.Status.REVOKED, reason="revoked by one admin")

    with pytest.raises(Conflict):
        reactivate_identity(system_caller, stale_copy, reason="reactivated by another admin's old page")

    assert Identity.objects.get(pk=identity.pk).status == "revoked"


def test_an_unknown_status_is_refused(system_caller, make_identity):
    identity = make_identity("CHITTY-PEO-STATUS-1")

    with pytest.raises(ValidationFailed) as refused:
        change_status(system_caller, identity, "deleted")

    assert refused.value.code == "INVALID_STATUS"
    assert Identity.objects.get(pk=identity.pk).status == "active"


# The management command


def test_register_identity_command_registers_and_audits(settings):
    settings.CHITTYID_ENDPOINT = ""
    out = io.StringIO()

    call_command("register_identity", "CHITTY-PEO-CLI-1", "--name", "From the CLI", stdout=out)

    assert "Registered CHITTY-PEO-CLI-1 (PEO, local)" in out.getvalue()
    assert Identity.objects.get().display_name == "From the CLI"
    assert AuditEvent.objects.get().action == "identity.register"


def test_register_identity_command_refuses_a_bad_id_with_its_code(settings):
    settings.CHITTYID_ENDPOINT = ""

    with pytest.raises(CommandError) as failure:
        call_command("register_identity", "CHITTY-NOPE-X-1", stdout=io.StringIO())

    assert str(failure.value).startswith("INVALID_CHITTY_ID: unknown ChittyID type 'NOPE'")
    assert nothing_saved()


def test_register_identity_command_exits_non_zero_on_a_bad_id(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if k not in ISOLATED_SETTINGS},
        "CHITTYAUTH_VAR_DIR": str(tmp_path),
    }

    result = subprocess.run(
        [sys.executable, "manage.py", "register_identity", "chitty-peo-lower-1"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode != 0
    assert "INVALID_CHITTY_ID: ChittyID must be upper case" in result.stderr


# The admin


@pytest.fixture
def admin_client():
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-" + secrets.token_hex(8))
    client = Client()
    client.force_login(user)
    return client


CHANGELIST = "/admin/identities/identity/"


def identity_events():
    """What the identity services recorded; the console's own admin.* events are asserted apart."""
    return AuditEvent.objects.filter(action__startswith="identity.")


def console_events(action: str) -> list[tuple[str, str, dict]]:
    events = AuditEvent.objects.filter(action=action).order_by("sequence")
    return [(event.actor, event.target, event.details) for event in events]


def test_admin_changelist_search_and_filters_answer(admin_client, make_identity):
    make_identity("CHITTY-PEO-ALICE-1", display_name="Alice")
    make_identity("CHITTY-PLACE-HQ-1", display_name="Head office", entity_type="PLACE")
    make_identity("CHITTY-PEO-BOB-1", display_name="Bob", status=Identity.Status.SUSPENDED)

    def listed(**query) -> list[str]:
        response = admin_client.get(CHANGELIST, query)
        assert response.status_code == 200
        return sorted(identity.chitty_id for identity in response.context["cl"].result_list)

    assert listed() == ["CHITTY-PEO-ALICE-1", "CHITTY-PEO-BOB-1", "CHITTY-PLACE-HQ-1"]
    assert listed(q="alice") == ["CHITTY-PEO-ALICE-1"]
    assert listed(q="Head") == ["CHITTY-PLACE-HQ-1"]
    assert listed(status__exact="suspended") == ["CHITTY-PEO-BOB-1"]
    assert listed(entity_type__exact="PLACE") == ["CHITTY-PLACE-HQ-1"]
    assert listed(source__exact="remote") == []
    identity = Identity.objects.get(chitty_id="CHITTY-PEO-ALICE-1")
    assert admin_client.get(f"{CHANGELIST}{identity.pk}/change/").status_code == 200
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 200


def test_admin_suspend_and_reactivate_actions_change_status_and_audit(admin_client, make_identity):
    alice = make_identity("CHITTY-PEO-ALICE-1")
    bob = make_identity("CHITTY-PEO-BOB-1")

    selection = {"action": "suspend_selected", "_selected_action": [alice.pk, bob.pk]}
    confirmation = admin_client.post(CHANGELIST, selection)

    assert confirmation.status_code == 200
    assert "Yes, suspend" in confirmation.content.decode()
    assert set(Identity.objects.values_list("status", flat=True)) == {"active"}

    suspended = admin_client.post(CHANGELIST, {**selection, "confirm": "yes"}, follow=True)

    assert suspended.status_code == 200
    assert set(Identity.objects.values_list("status", flat=True)) == {"suspended"}
    assert "2 identities suspended." in suspended.content.decode()

    admin_client.post(CHANGELIST, {"action": "reactivate_selected", "_selected_action": [alice.pk]})

    assert Identity.objects.get(pk=alice.pk).status == "active"
    assert Identity.objects.get(pk=bob.pk).status == "suspended"
    events = list(identity_events().order_by("sequence").values_list("action", "actor", "target"))
    assert [details["action"] for _actor, _target, details in console_events("admin.action")] == [
        "suspend_selected",
        "reactivate_selected",
    ]
    assert events == [
        ("identity.suspend", "staff:root", "CHITTY-PEO-ALICE-1"),
        ("identity.suspend", "staff:root", "CHITTY-PEO-BOB-1"),
        ("identity.reactivate", "staff:root", "CHITTY-PEO-ALICE-1"),
    ]
    assert verify_chain().intact


def test_admin_reactivating_a_revoked_identity_reports_the_refusal(admin_client, make_identity):
    revoked = make_identity("CHITTY-PEO-GONE-1", status=Identity.Status.REVOKED)

    response = admin_client.post(
        CHANGELIST, {"action": "reactivate_selected", "_selected_action": [revoked.pk]}, follow=True
    )

    assert "cannot be reactivated" in response.content.decode()
    assert Identity.objects.get(pk=revoked.pk).status == "revoked"
    assert not identity_events().exists()
    # The console still records that staff ran the action, with the identity as refused, not done.
    ((actor, _target, details),) = console_events("admin.action")
    assert (actor, details["objects"]) == ("staff:root", [])
    assert details["refused"] == [{"object": str(revoked.pk), "code": "IDENTITY_REVOKED"}]


def test_admin_add_registers_through_the_service(admin_client, settings):
    settings.CHITTYID_ENDPOINT = ""

    response = admin_client.post(
        f"{CHANGELIST}add/", {"chitty_id": "CHITTY-PEO-NEW-1", "display_name": "New"}
    )

    assert response.status_code == 302
    identity = Identity.objects.get(chitty_id="CHITTY-PEO-NEW-1")
    assert (identity.entity_type, identity.source, identity.display_name) == ("PEO", "local", "New")
    assert identity_events().get().actor == "staff:root"
    assert [target for _actor, target, _details in console_events("admin.add")] == [
        f"identities.identity:{identity.pk}"
    ]


@pytest.mark.parametrize("chitty_id", ["not-an-id", "CHITTY-PEO-NEW-1"])
def test_admin_add_shows_a_refusal_as_a_form_error(admin_client, settings, make_identity, chitty_id):
    settings.CHITTYID_ENDPOINT = ""
    make_identity("CHITTY-PEO-NEW-1")

    response = admin_client.post(f"{CHANGELIST}add/", {"chitty_id": chitty_id, "display_name": "x"})

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert Identity.objects.count() == 1
    assert not AuditEvent.objects.exclude(action="staff.login").exists()


def test_admin_cannot_delete_identities(admin_client, make_identity):
    identity = make_identity("CHITTY-PEO-KEEP-1")

    assert admin_client.get(f"{CHANGELIST}{identity.pk}/delete/").status_code == 403
    assert Identity.objects.filter(pk=identity.pk).exists()


def test_admin_rename_goes_through_the_service_and_is_audited_with_both_names(admin_client, make_identity):
    identity = make_identity("CHITTY-PEO-RENAME-1", display_name="Old name")

    response = admin_client.post(f"{CHANGELIST}{identity.pk}/change/", {"display_name": "New name"})

    assert response.status_code == 302
    assert Identity.objects.get(pk=identity.pk).display_name == "New name"
    event = identity_events().get()
    assert (event.action, event.actor, event.target) == ("identity.rename", "staff:root", identity.chitty_id)
    assert event.details == {"from": "Old name", "to": "New name"}


def test_a_staff_login_without_identities_manage_cannot_rename(make_identity):
    from django.contrib.auth.models import User
    from django.test import Client

    from grants.services import grant_permission
    from identities.staff_links import link_staff_user
    from kernel.callers import Caller

    identity = make_identity("CHITTY-PEO-RENAME-2", display_name="Kept")
    make_identity("CHITTY-PEO-READER-1")
    grant_permission(
        Caller.system("tests"), grantee_chitty_id="CHITTY-PEO-READER-1", permission="identities:read"
    )
    reader = User.objects.create_user("reader", password="reader-password-long-1", is_staff=True)
    link_staff_user(Caller.system("tests"), reader, "CHITTY-PEO-READER-1")
    client = Client()
    client.force_login(reader)

    response = client.post(f"{CHANGELIST}{identity.pk}/change/", {"display_name": "Changed"})

    assert response.status_code == 403
    assert Identity.objects.get(pk=identity.pk).display_name == "Kept"
    assert not identity_events().exists()
