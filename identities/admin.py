"""Staff console for identities and staff links. Every change goes through the services, which audit it."""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied as AdminPermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import urlencode

from identities import staff_links
from identities.models import Identity, StaffLink
from identities.selectors import suspension_cascade
from kernel.admin_confirmation import note_refusal, nothing_ran
from kernel.callers import Caller
from kernel.errors import ServiceError
from principals import services


def staff_caller(request: HttpRequest) -> Caller:
    """The logged-in staff user as a caller: superusers are exempt, other staff act as their linked identity."""
    return Caller.staff(
        request.user,
        identity=staff_links.linked_identity(request.user),
        client_address=request.META.get("REMOTE_ADDR"),
    )


class PrincipalFilter(admin.SimpleListFilter):
    """`?principal=<ChittyID>` narrows a list to one principal's rows, as linked from its identity page.

    It lists no choices of its own (there may be millions of principals); the search box finds others.
    """

    title = "principal"
    parameter_name = "principal"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return [(self.value(), self.value())] if self.value() else []

    def queryset(self, request: HttpRequest, queryset):
        return queryset.filter(principal__chitty_id=self.value()) if self.value() else queryset


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


class IdentityRenameForm(forms.ModelForm):
    """A rename goes through the service during validation, so a refusal shows as a form error."""

    class Meta:
        model = Identity
        fields = ("display_name",)

    def clean(self) -> dict:
        data = super().clean()
        if self.errors or "display_name" not in self.changed_data:
            return data
        try:
            self.instance = services.rename_identity(self.caller, self.instance, data.get("display_name", ""))
        except ServiceError as exc:
            raise forms.ValidationError(f"{exc.message} ({exc.code})") from exc
        return data


_PAST_TENSE = {"suspend": "suspended", "reactivate": "reactivated"}


class StatusChangeForm(forms.Form):
    reason = forms.CharField(
        max_length=255,
        required=False,
        help_text="Recorded on the identity and in the audit trail.",
        widget=forms.TextInput(attrs={"size": 60}),
    )


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
        creation = obj is None
        form_class = IdentityRegistrationForm if creation else IdentityRenameForm
        form = super().get_form(request, obj, change=change, form=form_class, **kwargs)
        form.caller = staff_caller(request)
        return form

    def get_fields(self, request: HttpRequest, obj: Identity | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("chitty_id", "display_name")
        return ("chitty_id", "display_name", *self.readonly_fields)

    def get_readonly_fields(self, request: HttpRequest, obj: Identity | None = None) -> tuple[str, ...]:
        return (*self.readonly_fields, "chitty_id") if obj else ()

    def save_model(self, request: HttpRequest, obj: Identity, form, change: bool) -> None:
        """The service already saved the registration or the rename during validation."""

    def has_delete_permission(self, request: HttpRequest, obj: Identity | None = None) -> bool:
        return False

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/suspend/", view(self.suspend_view), name="identities_identity_suspend"),
            path(
                "<path:object_id>/reactivate/",
                view(self.reactivate_view),
                name="identities_identity_reactivate",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        identity = self.get_object(request, object_id)
        if identity is not None:
            extra_context = {**(extra_context or {}), "related_links": self._related_links(identity)}
        return super().change_view(request, object_id, form_url, extra_context)

    @staticmethod
    def _related_links(identity: Identity) -> list[tuple[str, str]]:
        principal = urlencode({"principal": identity.chitty_id})
        return [
            ("API keys", f"{reverse('admin:keys_apikey_changelist')}?{principal}"),
            ("Grants", f"{reverse('admin:grants_grant_changelist')}?{principal}"),
            ("Sessions", f"{reverse('admin:auth_sessions_authsession_changelist')}?{principal}"),
            (
                "Audit trail",
                f"{reverse('admin:audit_auditevent_changelist')}?{urlencode({'identity': identity.chitty_id})}",
            ),
        ]

    @admin.action(
        description="Suspend selected identities (stops their keys, tokens and sessions)",
        permissions=("change",),
    )
    def suspend_selected(self, request: HttpRequest, queryset) -> TemplateResponse | None:
        """First show what suspending stops; suspend only when staff confirm on that page."""
        form = StatusChangeForm(request.POST if "confirm" in request.POST else None)
        if not form.is_valid():
            return self._status_change_page(request, list(queryset), "suspend", form, bulk=True)
        reason = form.cleaned_data["reason"] or "suspended by staff in the admin"
        done = self._change_status(request, queryset, services.suspend_identity, reason)
        self.message_user(request, f"{done} identities suspended.", messages.SUCCESS)
        return None

    @admin.action(description="Reactivate selected identities", permissions=("change",))
    def reactivate_selected(self, request: HttpRequest, queryset) -> None:
        done = self._change_status(
            request, queryset, services.reactivate_identity, "reactivated by staff in the admin"
        )
        self.message_user(request, f"{done} identities reactivated.", messages.SUCCESS)

    def suspend_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._single_status_change(request, object_id, "suspend", services.suspend_identity)

    def reactivate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._single_status_change(request, object_id, "reactivate", services.reactivate_identity)

    def _single_status_change(self, request: HttpRequest, object_id: str, verb: str, change) -> HttpResponse:
        identity = self.get_object(request, object_id)
        if identity is None or not self.has_change_permission(request, identity):
            raise AdminPermissionDenied
        form = StatusChangeForm(request.POST if request.method == "POST" else None)
        if not form.is_valid():
            return self._status_change_page(request, [identity], verb, form, bulk=False)
        reason = form.cleaned_data["reason"] or f"{_PAST_TENSE[verb]} by staff in the admin"
        if self._change_status(request, [identity], change, reason):
            self.message_user(request, f"{identity.chitty_id} is now {identity.status}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:identities_identity_change", args=[identity.pk]))

    def _status_change_page(
        self,
        request: HttpRequest,
        identities: list[Identity],
        verb: str,
        form: StatusChangeForm,
        *,
        bulk: bool,
    ) -> TemplateResponse:
        cascades = [suspension_cascade(identity) for identity in identities] if verb == "suspend" else []
        context = {
            **self.admin_site.each_context(request),
            "title": f"{verb.capitalize()} {len(identities)} identit{'y' if len(identities) == 1 else 'ies'}?",
            "opts": self.opts,
            "verb": verb,
            "identities": identities,
            "cascades": cascades,
            "totals": {
                name: sum(getattr(cascade, name) for cascade in cascades)
                for name in ("api_keys", "grants", "sessions", "token_sessions", "staff_logins")
            },
            "form": form,
            "bulk": bulk,
            "action": request.POST.get("action", ""),
        }
        return nothing_ran(TemplateResponse(request, "admin/identities/identity/status_change.html", context))

    def _change_status(self, request: HttpRequest, identities, change, reason: str) -> int:
        done = 0
        for identity in identities:
            try:
                changed = change(staff_caller(request), identity, reason=reason)
            except ServiceError as exc:
                note_refusal(request, identity.pk, exc.code)
                self.message_user(request, f"{identity.chitty_id}: {exc.message}", messages.ERROR)
                continue
            identity.status = changed.status
            done += 1
        return done


class StaffLinkForm(forms.ModelForm):
    """Linking goes through `link_staff_user` during validation, so its refusals show as form errors."""

    chitty_id = forms.CharField(max_length=128, label="Acts as ChittyID")

    class Meta:
        model = StaffLink
        fields = ("user",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["user"].queryset = get_user_model().objects.filter(is_staff=True, staff_link__isnull=True)
        self.fields["user"].help_text = "A staff login that is not linked yet."

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        try:
            self.instance = staff_links.link_staff_user(self.caller, data["user"], data["chitty_id"])
        except ServiceError as exc:
            raise forms.ValidationError(f"{exc.message} ({exc.code})") from exc
        return data

    def validate_unique(self) -> None:
        """The service reports a second link itself (STAFF_LINK_EXISTS)."""


@admin.register(StaffLink)
class StaffLinkAdmin(admin.ModelAdmin):
    """Which identity each staff login acts as. Only superusers link and unlink: a link hands over grants."""

    list_display = ("user", "identity", "linked_by", "created_at")
    search_fields = ("user__username", "identity__chitty_id")
    list_select_related = ("user", "identity")
    readonly_fields = ("user", "identity", "linked_by", "created_at")

    def get_form(self, request: HttpRequest, obj: StaffLink | None = None, change: bool = False, **kwargs):
        if obj is not None:
            return super().get_form(request, obj, change=change, **kwargs)
        form = super().get_form(request, obj, change=change, form=StaffLinkForm, **kwargs)
        form.caller = staff_caller(request)
        return form

    def get_fields(self, request: HttpRequest, obj: StaffLink | None = None):
        return ("user", "chitty_id") if obj is None else self.readonly_fields

    def get_readonly_fields(self, request: HttpRequest, obj: StaffLink | None = None):
        return self.readonly_fields if obj else ()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: StaffLink | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: StaffLink | None = None) -> bool:
        return request.user.is_superuser

    def save_model(self, request: HttpRequest, obj: StaffLink, form, change: bool) -> None:
        """The service already saved the link during validation."""

    def delete_model(self, request: HttpRequest, obj: StaffLink) -> None:
        staff_links.unlink_staff_user(staff_caller(request), obj)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for link in queryset.select_related("user", "identity"):
            staff_links.unlink_staff_user(staff_caller(request), link)
