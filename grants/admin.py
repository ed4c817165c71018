"""Staff console for grants. Granting goes through `grant_permission`, so no-escalation applies to staff too."""

from django import forms
from django.contrib import admin, messages
from django.db.models import Q
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from console import display
from grants import services
from grants.models import Grant
from grants.permissions import KNOWN_PERMISSIONS
from identities.admin import PrincipalFilter, staff_caller
from kernel.admin_confirmation import confirmation_page, confirmed, note_refusal
from kernel.errors import ServiceError


class PermissionPickerWidget(forms.TextInput):
    """A text box offering the known permission names, while still accepting any valid pattern."""

    template_name = "admin/grants/permission_picker.html"

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, {**(attrs or {}), "list": "known-permissions"})
        context["widget"]["known_permissions"] = ("*", *KNOWN_PERMISSIONS)
        return context


class GrantCreationForm(forms.ModelForm):
    chitty_id = forms.CharField(max_length=128, label="Grantee ChittyID")

    class Meta:
        model = Grant
        fields = ("permission", "resource_id", "expires_at")
        widgets = {"permission": PermissionPickerWidget}

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        try:
            self.instance = services.grant_permission(
                self.caller,
                grantee_chitty_id=data["chitty_id"],
                permission=data["permission"],
                resource_id=data.get("resource_id") or "",
                expires_at=data.get("expires_at"),
            )
        except ServiceError as exc:
            raise forms.ValidationError(f"{exc.message} ({exc.code})") from exc
        return data


class GrantStateFilter(admin.SimpleListFilter):
    """Live grants are the ones that allow anything: neither revoked nor past their expiry."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return [("live", "Live"), ("revoked", "Revoked"), ("expired", "Expired")]

    def queryset(self, request: HttpRequest, queryset):
        now = timezone.now()
        conditions = {
            "live": Q(revoked_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now)),
            "revoked": Q(revoked_at__isnull=False),
            "expired": Q(revoked_at__isnull=True, expires_at__lte=now),
        }
        return queryset.filter(conditions[self.value()]) if self.value() in conditions else queryset


@admin.register(Grant)
class GrantAdmin(admin.ModelAdmin):
    list_display = (
        "principal",
        "permission",
        "resource_id",
        "state",
        "granted_by",
        "created_at",
    )
    list_filter = (
        GrantStateFilter,
        PrincipalFilter,
        "permission",
        ("expires_at", admin.EmptyFieldListFilter),
    )
    search_fields = ("principal__chitty_id", "permission", "resource_id", "granted_by")
    list_select_related = ("principal",)
    actions = ("revoke_selected",)
    readonly_fields = (
        "principal",
        "permission",
        "resource_id",
        "expires_at",
        "granted_by",
        "created_at",
        "revoked_at",
        "revoked_by",
    )

    @admin.display(description="state", ordering="revoked_at")
    def state(self, grant: Grant) -> str:
        if grant.revoked_at is not None:
            return f"revoked {display.full_time(grant.revoked_at)}"
        if grant.expires_at is None:
            return "live"
        verb = "expired" if grant.expires_at <= timezone.now() else "live until"
        return f"{verb} {display.full_time(grant.expires_at)}"

    def get_form(self, request: HttpRequest, obj: Grant | None = None, change: bool = False, **kwargs):
        if obj is not None:
            return super().get_form(request, obj, change=change, **kwargs)
        form = super().get_form(request, obj, change=change, form=GrantCreationForm, **kwargs)
        form.caller = staff_caller(request)
        return form

    def get_fields(self, request: HttpRequest, obj: Grant | None = None):
        return (
            ("chitty_id", "permission", "resource_id", "expires_at") if obj is None else self.readonly_fields
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Grant | None = None):
        return self.readonly_fields if obj else ()

    def save_model(self, request: HttpRequest, obj: Grant, form, change: bool) -> None:
        """The service already saved the grant during validation."""

    def has_change_permission(self, request: HttpRequest, obj: Grant | None = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Grant | None = None) -> bool:
        return False

    @admin.action(description="Revoke selected grants", permissions=("change",))
    def revoke_selected(self, request: HttpRequest, queryset) -> TemplateResponse | None:
        if not confirmed(request):
            return confirmation_page(
                self,
                request,
                queryset,
                verb="revoke",
                consequence="Revoking these grants takes their permissions away at the next check. It cannot be undone.",
                items=[
                    f"#{grant.pk} {grant.permission}"
                    + (f" on {grant.resource_id}" if grant.resource_id else "")
                    + f" held by {grant.principal.chitty_id}"
                    for grant in queryset
                ],
            )
        done = 0
        for grant in queryset:
            try:
                services.revoke_grant(staff_caller(request), grant.pk)
                done += 1
            except ServiceError as exc:
                note_refusal(request, grant.pk, exc.code)
                self.message_user(
                    request, f"Could not revoke grant {grant.pk}: {exc.message}", messages.ERROR
                )
        self.message_user(request, f"{done} grants revoked.", messages.SUCCESS)
