"""Every change staff can make in the console is in the audit trail: the test walks every model registered in
the admin and adds, changes and deletes through the admin's own pages whatever the admin allows."""

import uuid
from datetime import timedelta

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from oauth2_provider.models import AccessToken, Grant, IDToken, RefreshToken

from audit.models import AuditDeadLetter, AuditEvent
from audit.services import record
from console.admin_audit import AuditedModelAdmin
from identities.models import Identity
from kernel.callers import Caller
from keys.signing_keys import active_signing_key
from oauth.clients import create_service_client
from sessions.models import AuthSession
from sessions.services import open_session
from tests.admin_forms import form_fields

pytestmark = pytest.mark.django_db

SYSTEM = Caller.system("tests")
ALICE = "CHITTY-PEO-ALICE-1"
REGISTERED = sorted(model._meta.label_lower for model in admin.site._registry)
MODELS = {model._meta.label_lower: model for model in admin.site._registry}


def alice() -> Identity:
    return Identity.objects.get_or_create(chitty_id=ALICE, defaults={"entity_type": "PEO"})[0]


def oauth_client():
    alice()
    return create_service_client(SYSTEM, chitty_id=ALICE, name="walk", scopes=["*"]).client


def staff_user() -> User:
    return User.objects.create_user("walker", password="walker-password-long-1", is_staff=True)


# What to type into each add form (on top of the form's own initial values).
ADD_FORMS = {
    "auth.group": lambda: {"name": "auditors"},
    "auth.user": lambda: {
        "username": "newstaff",
        "usable_password": "true",
        "password1": "a-long-enough-password-1",
        "password2": "a-long-enough-password-1",
    },
    "django_celery_beat.periodictask": lambda: {
        "name": "walk task",
        "task": "jobs.tasks.cleanup",
        "interval": str(IntervalSchedule.objects.create(every=10, period="minutes").pk),
    },
    "django_celery_beat.clockedschedule": lambda: {
        "clocked_time_0": "2030-01-01",
        "clocked_time_1": "00:00:00",
    },
    "django_celery_beat.crontabschedule": lambda: {"minute": "5"},
    "django_celery_beat.solarschedule": lambda: {"event": "sunrise", "latitude": "51.5", "longitude": "0.1"},
    "django_celery_beat.intervalschedule": lambda: {"every": "7", "period": "days"},
    "identities.identity": lambda: {"chitty_id": "CHITTY-PEO-WALK-1", "display_name": "Walk"},
    "identities.stafflink": lambda: {"user": str(staff_user().pk), "chitty_id": alice().chitty_id},
    "keys.apikey": lambda: {"chitty_id": alice().chitty_id, "name": "walk key", "scopes_text": "*"},
    "grants.grant": lambda: {"chitty_id": alice().chitty_id, "permission": "documents:read"},
    "oauth.client": lambda: {"chitty_id": alice().chitty_id, "name": "walk client", "scopes_text": "*"},
}


def _later():
    return timezone.now() + timedelta(hours=1)


# Rows of the models staff may change or delete but not add, made the way the service makes them.
EXISTING = {
    "axes.accessattempt": lambda: AccessAttempt.objects.create(
        username="mallory", ip_address="192.0.2.1", failures_since_start=1, get_data="", post_data=""
    ),
    "axes.accesslog": lambda: AccessLog.objects.create(username="mallory", ip_address="192.0.2.1"),
    "axes.accessfailurelog": lambda: AccessFailureLog.objects.create(
        username="mallory", ip_address="192.0.2.1"
    ),
    "keys.signingkey": active_signing_key,
    "audit.auditdeadletter": lambda: AuditDeadLetter.objects.create(
        sink="webhook", event=record("test.refused"), reason="HTTP 422", created_at=timezone.now()
    ),
    "auth_sessions.authsession": lambda: open_session(
        Caller(actor=ALICE, identity=alice(), credential_type="api_key", credential_id="k1"),
        AuthSession.Channel.REST,
    ),
    "oauth2_provider.accesstoken": lambda: AccessToken.objects.create(
        token=uuid.uuid4().hex, application=oauth_client(), expires=_later(), scope="*"
    ),
    "oauth2_provider.refreshtoken": lambda: RefreshToken.objects.create(
        token=uuid.uuid4().hex,
        application=(client := oauth_client()),
        access_token=AccessToken.objects.create(token=uuid.uuid4().hex, application=client, expires=_later()),
        user=User.objects.create_user("tokenholder"),
    ),
    "oauth2_provider.grant": lambda: Grant.objects.create(
        code=uuid.uuid4().hex,
        application=oauth_client(),
        expires=_later(),
        redirect_uri="http://127.0.0.1:9/cb",
        user=User.objects.create_user("grantholder"),
    ),
    "oauth2_provider.idtoken": lambda: IDToken.objects.create(
        application=oauth_client(), expires=_later(), user=User.objects.create_user("idholder")
    ),
}


# Change forms that cannot be saved as they are: the toolkit's admin requires `revoked` on a refresh token.
CHANGE_FORMS = {"oauth2_provider.refreshtoken": {"revoked_0": "2030-01-01", "revoked_1": "00:00:00"}}


@pytest.fixture
def console() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.org", "root-password-long-1"))
    return client


def admin_url(label: str, suffix: str) -> str:
    app_label, model_name = MODELS[label]._meta.app_label, MODELS[label]._meta.model_name
    return f"/admin/{app_label}/{model_name}/{suffix}"


def events_since(sequence: int, action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(sequence__gt=sequence, action=action).order_by("sequence"))


def last_sequence() -> int:
    return AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first() or 0


def post_form_back(console: Client, url: str, form_id: str, typed: dict[str, str]):
    page = console.get(url)
    assert page.status_code == 200, url
    fields = form_fields(page.content.decode(), form_id)
    fields.update({name: [value] for name, value in typed.items()})
    return console.post(url, {**fields, "_save": "Save"})


@pytest.mark.parametrize("label", REGISTERED)
def test_every_change_staff_make_through_a_registered_admin_is_audited(console, label):
    model = MODELS[label]
    model_admin = admin.site._registry[model]
    request = console.get("/admin/").wsgi_request
    form_id = f"{model._meta.model_name}_form"

    assert isinstance(model_admin, AuditedModelAdmin)
    can_add, can_change, can_delete = (
        model_admin.has_add_permission(request),
        model_admin.has_change_permission(request),
        model_admin.has_delete_permission(request),
    )
    if not (can_add or can_change or can_delete):
        return  # read-only for everyone (the audit trail itself, job runs, revoked tokens)

    before = last_sequence()
    if can_add:
        assert label in ADD_FORMS, f"no add case for {label}: add one so its admin stays audited"
        response = post_form_back(console, admin_url(label, "add/"), form_id, ADD_FORMS[label]())
        assert response.status_code < 400
        added = events_since(before, "admin.add")
        assert len(added) == 1, response.content.decode()[:3000]
        assert added[0].actor == "staff:root"
        assert added[0].target.startswith(f"{label}:")
        pk = added[0].target.split(":", 1)[1]
    else:
        assert label in EXISTING, f"no existing row for {label}: add one so its admin stays audited"
        pk = str(EXISTING[label]().pk)

    if model_admin.has_change_permission(request, model.objects.get(pk=pk)):
        before = last_sequence()
        response = post_form_back(
            console, admin_url(label, f"{pk}/change/"), form_id, CHANGE_FORMS.get(label, {})
        )
        assert response.status_code < 400
        changed = events_since(before, "admin.change")
        assert [event.target for event in changed] == [f"{label}:{pk}"], response.content.decode()
        assert changed[0].actor == "staff:root"

    if model_admin.has_delete_permission(request, model.objects.get(pk=pk)):
        before = last_sequence()
        response = console.post(
            admin_url(label, ""), {"action": "delete_selected", "_selected_action": [pk], "post": "yes"}
        )
        assert response.status_code == 302
        assert not model.objects.filter(pk=pk).exists()
        deleted = events_since(before, "admin.delete")
        assert [event.target for event in deleted] == [f"{label}:{pk}"]


def test_making_a_staff_user_superuser_is_audited_naming_the_fields_changed(console):
    user = staff_user()
    before = last_sequence()

    fields = form_fields(console.get(f"/admin/auth/user/{user.pk}/change/").content.decode(), "user_form")
    fields["is_superuser"] = ["on"]
    response = console.post(f"/admin/auth/user/{user.pk}/change/", {**fields, "_save": "Save"})

    assert response.status_code == 302
    (event,) = events_since(before, "admin.change")
    assert event.target == f"auth.user:{user.pk}"
    assert "is_superuser" in str(event.details["changes"]) or "Superuser status" in str(
        event.details["changes"]
    )


def test_disabling_a_schedule_with_an_admin_action_is_audited(console):
    interval = IntervalSchedule.objects.create(every=1, period="hours")
    task = PeriodicTask.objects.create(name="revalidate", task="jobs.tasks.revalidate", interval=interval)
    before = last_sequence()

    response = console.post(
        "/admin/django_celery_beat/periodictask/", {"action": "disable_tasks", "_selected_action": [task.pk]}
    )

    assert response.status_code == 302
    task.refresh_from_db()
    assert task.enabled is False
    (event,) = events_since(before, "admin.action")
    assert event.actor == "staff:root"
    assert event.details == {
        "model": "django_celery_beat.periodictask",
        "action": "disable_tasks",
        "objects": [str(task.pk)],
        "more_objects": False,
        "refused": [],
        "more_refused": False,
    }


def test_an_action_that_only_shows_its_confirmation_page_is_not_recorded_as_run(console):
    task = PeriodicTask.objects.create(
        name="cleanup",
        task="jobs.tasks.cleanup",
        interval=IntervalSchedule.objects.create(every=2, period="hours"),
    )
    before = last_sequence()

    page = console.post(
        "/admin/django_celery_beat/periodictask/",
        {"action": "delete_selected", "_selected_action": [task.pk]},
    )

    assert page.status_code == 200  # "Are you sure?"
    assert events_since(before, "admin.action") == events_since(before, "admin.delete") == []


def test_a_bulk_rotation_is_audited_once_it_ran_and_not_when_it_only_asked_for_the_overlap(console):
    from keys.models import ApiKey
    from keys.services import generate_api_key

    key = generate_api_key(SYSTEM, chitty_id=alice().chitty_id).api_key
    selection = {"action": "rotate_selected", "_selected_action": [key.pk]}
    before = last_sequence()

    asked = console.post("/admin/keys/apikey/", selection)
    assert asked.status_code == 200
    assert events_since(before, "admin.action") == []

    rotated = console.post("/admin/keys/apikey/", {**selection, "apply": "1", "overlap_seconds": "0"})
    assert "only time the key is shown" in rotated.content.decode()
    assert ApiKey.objects.filter(rotated_from=key).exists()
    (event,) = events_since(before, "admin.action")
    assert (event.details["action"], event.details["objects"]) == ("rotate_selected", [str(key.pk)])


def test_an_action_lists_what_its_service_refused_apart_from_what_it_did(console, make_identity):
    """A revoked identity cannot be reactivated: the event must not claim it, and refused every one it is a
    failure."""
    suspended = make_identity("CHITTY-PEO-SUSPEND-1", status=Identity.Status.SUSPENDED)
    revoked = make_identity("CHITTY-PEO-REVOKED-1", status=Identity.Status.REVOKED)

    def reactivate(*identities: Identity) -> AuditEvent:
        before = last_sequence()
        selection = {"action": "reactivate_selected", "_selected_action": [i.pk for i in identities]}
        assert console.post("/admin/identities/identity/", selection).status_code == 302
        (event,) = events_since(before, "admin.action")
        return event

    event = reactivate(suspended, revoked)
    assert event.outcome == AuditEvent.Outcome.SUCCESS
    assert event.details["objects"] == [str(suspended.pk)]
    assert event.details["refused"] == [{"object": str(revoked.pk), "code": "IDENTITY_REVOKED"}]
    suspended.refresh_from_db()
    assert suspended.status == Identity.Status.ACTIVE

    event = reactivate(revoked)
    assert event.outcome == AuditEvent.Outcome.FAILURE
    assert (event.details["objects"], event.details["refused"]) == (
        [],
        [{"object": str(revoked.pk), "code": "IDENTITY_REVOKED"}],
    )
