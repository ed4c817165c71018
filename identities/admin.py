from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

from chittyauth_site.errors import ServiceError
from grants.callers import Caller
from identities import services
from identities.models import Identity


def staff_caller(request: HttpRequest) -> Caller:
    return Caller.staff(request.user, client_address=request.META.get("REMOTE_ADDR"))


class IdentityRegistrationForm(forms.ModelForm):
    """Registration goes through the service during validation, so its refusals show as form errors."""

    class Meta:
        model = Identity
        fields = ("chitty_id", "display_name")

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        try:
            self.instance = services.register_identity(
                self.caller, data["chitty_id"], display_name=data.get("display_name", "")
            )
        except ServiceError as exc:
            raise forms.ValidationError(f"{exc.message} ({exc.code})") from exc
        return data

    def validate_unique(self) -> None:
        """The service reports duplicates itself (IDENTITY_EXISTS)."""


@admin.register(Identity)
class IdentityAdmin(admin.ModelAdmin):
    list_display = (
        "chitty_id",
        "display_name",
        "entity_type",
        "status",
        "source",
        "last_validated_at",
        "created_at",
    )
    list_filter = ("status", "entity_type", "source")
    search_fields = ("chitty_id", "display_name")
    actions = ("suspend_selected", "reactivate_selected")
    readonly_fields = ("entity_type", "status", "status_reason", "source", "last_validated_at")

    def get_form(self, request: HttpRequest, obj: Identity | None = None, change: bool = False, **kwargs):
        if obj is not None:
            return super().get_form(request, obj, change=change, **kwargs)
        form = super().get_form(request, obj, change=change, form=IdentityRegistrationForm, **kwargs)
        form.caller = staff_caller(request)
        return form

    def get_fields(self, request: HttpRequest, obj: Identity | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("chitty_id", "display_name")
        return ("chitty_id", "display_name", *self.readonly_fields)

    def get_readonly_fields(self, request: HttpRequest, obj: Identity | None = None) -> tuple[str, ...]:
        return (*self.readonly_fields, "chitty_id") if obj else ()

    def save_model(self, request: HttpRequest, obj: Identity, form, change: bool) -> None:
        if change:
            obj.save(update_fields=["display_name", "updated_at"])

    def has_delete_permission(self, request: HttpRequest, obj: Identity | None = None) -> bool:
        return False

    @admin.action(description="Suspend selected identities (stops their keys, tokens and sessions)")
    def suspend_selected(self, request: HttpRequest, queryset) -> None:
        self._change_status(request, queryset, services.suspend_identity, "suspended")

    @admin.action(description="Reactivate selected identities")
    def reactivate_selected(self, request: HttpRequest, queryset) -> None:
        self._change_status(request, queryset, services.reactivate_identity, "reactivated")

    def _change_status(self, request: HttpRequest, queryset, change, verb: str) -> None:
        done = 0
        for identity in queryset:
            try:
                change(staff_caller(request), identity, reason=f"{verb} by staff in the admin")
                done += 1
            except ServiceError as exc:
                self.message_user(request, f"{identity.chitty_id}: {exc.message}", messages.ERROR)
        self.message_user(request, f"{done} identities {verb}.", messages.SUCCESS)
