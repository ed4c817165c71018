from django.contrib import admin, messages
from django.http import HttpRequest

from chittyauth_site.errors import ServiceError
from identities import services
from identities.models import Identity


def staff_actor(request: HttpRequest) -> str:
    return f"staff:{request.user.get_username()}"


def client_address(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR")


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
    fields = (
        "chitty_id",
        "display_name",
        "entity_type",
        "status",
        "status_reason",
        "source",
        "last_validated_at",
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Identity | None = None) -> tuple[str, ...]:
        readonly = ("entity_type", "status", "status_reason", "source", "last_validated_at")
        return (*readonly, "chitty_id") if obj else readonly

    def save_model(self, request: HttpRequest, obj: Identity, form, change: bool) -> None:
        if change:
            obj.save(update_fields=["display_name", "updated_at"])
            return
        registered = services.register_identity(
            obj.chitty_id,
            display_name=obj.display_name,
            actor=staff_actor(request),
            client_address=client_address(request),
        )
        obj.pk, obj.entity_type, obj.source = registered.pk, registered.entity_type, registered.source

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
                change(
                    identity,
                    actor=staff_actor(request),
                    reason=f"{verb} by staff in the admin",
                    client_address=client_address(request),
                )
                done += 1
            except ServiceError as exc:
                self.message_user(request, f"{identity.chitty_id}: {exc.message}", messages.ERROR)
        self.message_user(request, f"{done} identities {verb}.", messages.SUCCESS)
