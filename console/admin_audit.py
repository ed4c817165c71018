"""Every change staff make in the console lands in the audit trail, whichever app's admin made it.

The console site wraps each ModelAdmin registered with it (ours, Django's users and groups, Celery beat's
schedules, the OAuth toolkit's, axes') so its add, change and delete, and every admin action it runs, append
an event through `audit.services.record`: the same chain, in the same transaction as the change. Events name
the model and primary key, never the object's text (an OAuth token's `str()` is the token).
"""

from functools import wraps

from django.contrib.admin import ModelAdmin
from django.db.models import Model
from django.http import HttpRequest

from audit.models import AuditEvent
from audit.services import record
from kernel.admin_confirmation import expect_refusals, ran_nothing

MAX_RECORDED_PKS = 100


def _target(model: type[Model], pk: object) -> str:
    return f"{model._meta.label_lower}:{pk}"


def _record_admin_change(
    request: HttpRequest, action: str, model: type[Model], pk: object, **details
) -> None:
    record(
        f"admin.{action}",
        actor=f"staff:{request.user.get_username()}",
        target=_target(model, pk),
        client_address=request.META.get("REMOTE_ADDR"),
        details={"model": model._meta.label_lower, **details},
    )


def _audited_action(action, name: str):
    """An admin action that, once it has run (not when it only shows a page asking first, marked with
    `nothing_ran`), is audited with the objects it ran on and, apart, those its service refused
    (`note_refusal`); refused every one, the event is a failure."""

    @wraps(action)
    def run(modeladmin: ModelAdmin, request: HttpRequest, queryset):
        selected = [str(pk) for pk in queryset.values_list("pk", flat=True)]
        refusals = expect_refusals(request)
        response = action(modeladmin, request, queryset)
        if not ran_nothing(response):
            done = [pk for pk in selected if pk not in refusals]
            refused = [{"object": pk, "code": code} for pk, code in refusals.items()]
            record(
                "admin.action",
                outcome=AuditEvent.Outcome.FAILURE if selected and not done else AuditEvent.Outcome.SUCCESS,
                actor=f"staff:{request.user.get_username()}",
                target=modeladmin.model._meta.label_lower,
                client_address=request.META.get("REMOTE_ADDR"),
                details={
                    "model": modeladmin.model._meta.label_lower,
                    "action": name,
                    "objects": done[:MAX_RECORDED_PKS],
                    "more_objects": len(done) > MAX_RECORDED_PKS,
                    "refused": refused[:MAX_RECORDED_PKS],
                    "more_refused": len(refused) > MAX_RECORDED_PKS,
                },
            )
        return response

    return run


class AuditedModelAdmin(ModelAdmin):
    """Mixed in before each registered admin class by `ConsoleAdminSite.register`."""

    def log_addition(self, request: HttpRequest, obj: Model, message):
        _record_admin_change(request, "add", type(obj), obj.pk, changes=message)
        return super().log_addition(request, obj, message)

    def log_change(self, request: HttpRequest, obj: Model, message):
        _record_admin_change(request, "change", type(obj), obj.pk, changes=message)
        return super().log_change(request, obj, message)

    def log_deletions(self, request: HttpRequest, queryset):
        for obj in queryset:
            _record_admin_change(request, "delete", type(obj), obj.pk)
        return super().log_deletions(request, queryset)

    def get_actions(self, request: HttpRequest) -> dict:
        # delete_selected is audited object by object through log_deletions.
        return {
            name: (func if name == "delete_selected" else _audited_action(func, name), name, description)
            for name, (func, name, description) in super().get_actions(request).items()
        }
