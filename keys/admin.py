"""Staff console for API keys, signing keys and revoked tokens. Every action goes through the services."""

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from chittyauth_site.errors import ServiceError
from identities.admin import staff_caller
from keys import services, signing_keys
from keys.models import ApiKey, RevokedToken, SigningKey


class ApiKeyCreationForm(forms.ModelForm):
    """Creating a key is `generate_api_key`; its refusals show as form errors, its secret on the next page."""

    chitty_id = forms.CharField(max_length=128, label="Principal ChittyID")
    scopes_text = forms.CharField(
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
        scopes = [s for s in data["scopes_text"].replace(",", " ").split() if s]
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


def key_status(key: ApiKey) -> str:
    now = timezone.now()
    if key.revoked_at and key.revoked_at <= now:
        return "revoked"
    if key.expires_at and key.expires_at <= now:
        return "expired"
    return "rotating out" if key.revoked_at else "live"


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = (
        "key_id",
        "display_prefix",
        "principal",
        "name",
        "scopes",
        "status",
        "last_used_at",
        "use_count",
        "expires_at",
        "created_at",
    )
    list_filter = ("environment", ("revoked_at", admin.EmptyFieldListFilter), "created_at")
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
        return key_status(key)

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

    @admin.action(description="Revoke selected API keys")
    def revoke_selected(self, request: HttpRequest, queryset) -> None:
        done = 0
        for key in queryset:
            try:
                services.revoke_api_key(
                    staff_caller(request), key.key_id, reason="revoked by staff in the admin"
                )
                done += 1
            except ServiceError as exc:
                self.message_user(request, f"{key.key_id}: {exc.message}", messages.ERROR)
        self.message_user(request, f"{done} keys revoked.", messages.SUCCESS)

    @admin.action(description="Rotate selected API keys (old keys keep working for the default overlap)")
    def rotate_selected(self, request: HttpRequest, queryset) -> TemplateResponse | None:
        issued = []
        for key in queryset:
            try:
                issued.append(services.rotate_api_key(staff_caller(request), key.key_id))
            except ServiceError as exc:
                self.message_user(request, f"{key.key_id}: {exc.message}", messages.ERROR)
        if issued:
            return self._shown_once(request, issued, "API keys rotated")
        return None


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

    @admin.action(description="Rotate: make a new active key of the selected key's algorithm")
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
