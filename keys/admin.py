"""Staff console for API keys, signing keys and revoked tokens. Every action goes through the services."""

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied as AdminPermissionDenied
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from console import display
from grants.forms import ScopeListField
from identities.admin import PrincipalFilter, staff_caller
from kernel.admin_confirmation import confirmation_page, confirmed, note_refusal, nothing_ran
from kernel.errors import ServiceError
from keys import services, signing_keys
from keys.models import ApiKey, RevokedToken, SigningKey


class ApiKeyCreationForm(forms.ModelForm):
    """Creating a key is `generate_api_key`; its refusals show as form errors, its secret on the next page."""

    chitty_id = forms.CharField(max_length=128, label="Principal ChittyID")
    scopes_text = ScopeListField(
        initial="*",
        label="Scopes",
        help_text="Space- or comma-separated, e.g. `*` or `read api_keys:generate`",
    )

    class Meta:
        model = ApiKey
        fields = ("name", "environment", "expires_at")

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        scopes = data["scopes_text"]
        try:
            issued = services.generate_api_key(
                self.caller,
                chitty_id=data["chitty_id"],
                name=data.get("name") or "",
                scopes=scopes,
                expires_at=data.get("expires_at"),
                environment=data.get("environment") or ApiKey.Environment.LIVE,
            )
        except ServiceError as exc:
            raise forms.ValidationError(f"{exc.message} ({exc.code})") from exc
        self.instance = issued.api_key
        self.instance.issued = issued  # in memory only, for the shown-once page of this request
        return data


class RotationForm(forms.Form):
    overlap_seconds = forms.IntegerField(
        min_value=0,
        label="Overlap (seconds)",
        help_text="How long the old key keeps working beside the new one, so clients can switch without "
        "downtime: 0 ends it now, 300 is 5 minutes, 3600 an hour, 86400 a day; "
        f"at most {services.MAX_ROTATION_OVERLAP_SECONDS}.",
    )


class RevocationForm(forms.Form):
    reason = forms.CharField(
        max_length=255,
        required=False,
        help_text="Recorded on the key and in the audit trail.",
        widget=forms.TextInput(attrs={"size": 60}),
    )


def key_status(key: ApiKey) -> str:
    now = timezone.now()
    if key.revoked_at and key.revoked_at <= now:
        return "revoked"
    if key.expires_at and key.expires_at <= now:
        return "expired"
    return "rotating out" if key.revoked_at else "live"


class KeyStatusFilter(admin.SimpleListFilter):
    """The same four states as the status column, judged against the clock now."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return [
            ("live", "Live"),
            ("rotating", "Rotating out"),
            ("revoked", "Revoked"),
            ("expired", "Expired"),
        ]

    def queryset(self, request: HttpRequest, queryset):
        now = timezone.now()
        revoked = Q(revoked_at__lte=now)
        expired = Q(expires_at__lte=now) & ~revoked
        unexpired = Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        conditions = {
            "live": Q(revoked_at__isnull=True) & unexpired,
            "rotating": Q(revoked_at__gt=now) & unexpired,
            "revoked": revoked,
            "expired": expired,
        }
        return queryset.filter(conditions[self.value()]) if self.value() in conditions else queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = (
        "key_id",
        "principal",
        "name",
        "scope_list",
        "status",
        "last_use",
        "created_at",
    )
    list_filter = (KeyStatusFilter, PrincipalFilter, "environment", "created_at")
    search_fields = ("key_id", "display_prefix", "name", "principal__chitty_id")
    list_select_related = ("principal",)
    actions = ("revoke_selected", "rotate_selected")
    readonly_fields = (
        "key_id",
        "principal",
        "display_prefix",
        "scopes",
        "environment",
        "created_by",
        "created_at",
        "expires_at",
        "revoked_at",
        "revoked_by",
        "revoke_reason",
        "rotated_from",
        "last_used_at",
        "use_count",
    )
    exclude = ("secret_hash",)

    @admin.display(description="status")
    def status(self, key: ApiKey) -> str:
        """The state and when it ends or ended (the list has no room for an expiry column)."""
        state = key_status(key)
        until = {"live": key.expires_at, "rotating out": key.revoked_at}.get(state)
        if state in ("revoked", "expired"):
            return f"{state} {display.full_time(key.revoked_at if state == 'revoked' else key.expires_at)}"
        return f"{state} until {display.full_time(until)}" if until else state

    @admin.display(description="scopes")
    def scope_list(self, key: ApiKey) -> str:
        return ", ".join(key.scopes)

    @admin.display(description="last use", ordering="last_used_at")
    def last_use(self, key: ApiKey) -> str:
        return display.last_use(key.last_used_at, key.use_count)

    def get_form(self, request: HttpRequest, obj: ApiKey | None = None, change: bool = False, **kwargs):
        if obj is not None:
            return super().get_form(request, obj, change=change, **kwargs)
        form = super().get_form(request, obj, change=change, form=ApiKeyCreationForm, **kwargs)
        form.caller = staff_caller(request)
        return form

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None):
        if obj is None:
            return ("chitty_id", "name", "scopes_text", "environment", "expires_at")
        return ("name", *self.readonly_fields)

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None):
        return ("name", *self.readonly_fields) if obj else ()

    def save_model(self, request: HttpRequest, obj: ApiKey, form, change: bool) -> None:
        """The service already saved the key during validation."""

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        """An API key has no related objects to save."""

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue=None) -> HttpResponse:
        return self._shown_once(request, [obj.issued], "API key created")

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return False

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/rotate/", view(self.rotate_view), name="keys_apikey_rotate"),
            path("<path:object_id>/revoke/", view(self.revoke_view), name="keys_apikey_revoke"),
            *super().get_urls(),
        ]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        key = self.get_object(request, object_id)
        if key is not None:
            extra_context = {**(extra_context or {}), "key_status": key_status(key)}
        return super().change_view(request, object_id, form_url, extra_context)

    def _shown_once(self, request: HttpRequest, issued: list, heading: str) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "heading": heading,
            "issued_keys": issued,
            "back_url": reverse("admin:keys_apikey_changelist"),
            "title": heading,
        }
        response = TemplateResponse(request, "admin/keys/shown_once.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected API keys", permissions=("change",))
    def revoke_selected(self, request: HttpRequest, queryset) -> TemplateResponse | None:
        if not confirmed(request):
            return confirmation_page(
                self,
                request,
                queryset,
                verb="revoke",
                consequence="Revoking stops these keys at once, on every server, for good. It cannot be undone.",
                items=[
                    f"{key.key_id} ({key.display_prefix}…) of {key.principal.chitty_id}" for key in queryset
                ],
            )
        done = 0
        for key in queryset:
            try:
                services.revoke_api_key(
                    staff_caller(request), key.key_id, reason="revoked by staff in the admin"
                )
                done += 1
            except ServiceError as exc:
                note_refusal(request, key.pk, exc.code)
                self.message_user(request, f"Could not revoke {key.key_id}: {exc.message}", messages.ERROR)
        self.message_user(request, f"{done} keys revoked.", messages.SUCCESS)

    @admin.action(
        description="Rotate selected API keys (choose how long the old keys keep working)",
        permissions=("change",),
    )
    def rotate_selected(self, request: HttpRequest, queryset) -> TemplateResponse:
        """First ask for the overlap; rotate when staff apply it. The new secrets are shown once."""
        return self._rotate(request, list(queryset), "apply" in request.POST, bulk=True)

    def rotate_view(self, request: HttpRequest, object_id: str) -> TemplateResponse:
        key = self._changeable_key(request, object_id)
        return self._rotate(request, [key], request.method == "POST", bulk=False)

    def _rotate(self, request: HttpRequest, keys: list[ApiKey], submitted: bool, *, bulk: bool):
        form = RotationForm(
            request.POST if submitted else None,
            initial={"overlap_seconds": settings.API_KEY_ROTATION_OVERLAP_SECONDS},
        )
        refusals = []
        if form.is_valid():
            issued = []
            for key in keys:
                try:
                    issued.append(
                        services.rotate_api_key(
                            staff_caller(request),
                            key.key_id,
                            overlap_seconds=form.cleaned_data["overlap_seconds"],
                        )
                    )
                except ServiceError as exc:
                    note_refusal(request, key.pk, exc.code)
                    refusals.append(f"Could not rotate {key.key_id}: {exc.message} ({exc.code})")
            if issued:
                for refusal in refusals:
                    self.message_user(request, refusal, messages.ERROR)
                return self._shown_once(request, issued, "API keys rotated" if bulk else "API key rotated")
        context = {
            **self.admin_site.each_context(request),
            "title": f"Rotate {len(keys)} API key{'' if len(keys) == 1 else 's'}",
            "opts": self.opts,
            "keys": keys,
            "form": form,
            "refusals": refusals,
            "bulk": bulk,
            "action": request.POST.get("action", ""),
        }
        return nothing_ran(TemplateResponse(request, "admin/keys/rotate.html", context))

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        key = self._changeable_key(request, object_id)
        form = RevocationForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            try:
                services.revoke_api_key(
                    staff_caller(request),
                    key.key_id,
                    reason=form.cleaned_data["reason"] or "revoked by staff in the admin",
                )
            except ServiceError as exc:
                self.message_user(
                    request, f"Could not revoke {key.key_id}: {exc.message} ({exc.code})", messages.ERROR
                )
            else:
                self.message_user(request, f"Revoked {key.key_id}.", messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:keys_apikey_change", args=[key.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Revoke {key.key_id}?",
            "opts": self.opts,
            "key": key,
            "form": form,
        }
        return TemplateResponse(request, "admin/keys/revoke.html", context)

    def _changeable_key(self, request: HttpRequest, object_id: str) -> ApiKey:
        key = self.get_object(request, object_id)
        if key is None or not self.has_change_permission(request, key):
            raise AdminPermissionDenied
        return key


@admin.register(SigningKey)
class SigningKeyAdmin(admin.ModelAdmin):
    list_display = ("kid", "algorithm", "is_active", "created_at", "retired_at", "publish_until")
    list_filter = ("algorithm", "is_active")
    fields = ("kid", "algorithm", "is_active", "public_jwk", "created_at", "retired_at", "publish_until")
    readonly_fields = fields
    actions = ("rotate",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: SigningKey | None = None) -> bool:
        return False

    @admin.action(
        description="Rotate: make a new active key of the selected key's algorithm", permissions=("change",)
    )
    def rotate(self, request: HttpRequest, queryset) -> None:
        algorithm = queryset.first().algorithm
        try:
            new_key = signing_keys.rotate_signing_key(staff_caller(request), algorithm=algorithm)
        except ServiceError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self.message_user(
            request, f"New active signing key {new_key.kid} ({new_key.algorithm}).", messages.SUCCESS
        )


@admin.register(RevokedToken)
class RevokedTokenAdmin(admin.ModelAdmin):
    list_display = ("jti", "chitty_id", "revoked_at", "revoked_by", "reason", "expires_at")
    search_fields = ("jti", "chitty_id")
    readonly_fields = ("jti", "chitty_id", "revoked_at", "revoked_by", "reason", "expires_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: RevokedToken | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: RevokedToken | None = None) -> bool:
        return False
