"""Staff console for OAuth clients: every registered client is visible and revocable, and service clients are
created here. django-oauth-toolkit registers `ClientAdmin` itself (OAUTH2_PROVIDER["APPLICATION_ADMIN_CLASS"]).
Every action goes through `oauth.clients`."""

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from grants.forms import ScopeListField
from identities.admin import staff_caller
from kernel.admin_confirmation import confirmation_page, confirmed, note_refusal
from kernel.errors import ServiceError
from oauth import clients
from oauth.models import Client

SHOWN_FIELDS = (
    "name",
    "client_id",
    "authorization_grant_type",
    "client_type",
    "identity",
    "allowed_scopes",
    "redirect_uris",
    "registration_source",
    "registered_by",
    "created",
    "updated",
    "revoked_at",
    "revoked_by",
    "revoke_reason",
)


class ServiceClientCreationForm(forms.ModelForm):
    """Creating a service client is `create_service_client`; refusals show as form errors, the secret once."""

    chitty_id = forms.CharField(max_length=128, label="Acts for (ChittyID)")
    scopes_text = ScopeListField(
        initial="*",
        label="Allowed scopes",
        help_text="Space- or comma-separated; its tokens never carry more, e.g. `*` or `read tokens:validate`",
    )

    class Meta:
        model = Client
        fields = ("name",)

    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        try:
            issued = clients.create_service_client(
                self.caller,
                chitty_id=data["chitty_id"],
                name=data.get("name") or "",
                scopes=data["scopes_text"],
            )
        except ServiceError as exc:
            raise forms.ValidationError(f"{exc.message} ({exc.code})") from exc
        self.instance = issued.client
        self.instance.issued = issued  # in memory only, for the shown-once page of this request
        return data

    def _post_clean(self) -> None:
        """A refused client has no instance to validate (the blank one would fail on fields this form does
        not show, a 500); an issued one was validated by `create_service_client`."""
        if not self.errors:
            super()._post_clean()


class ClientStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return [("live", "Live"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset):
        if self.value() == "live":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


class ClientAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "client_id",
        "kind",
        "identity",
        "registration_source",
        "status",
        "created",
    )
    list_filter = (ClientStatusFilter, "registration_source", "authorization_grant_type", "client_type")
    search_fields = ("name", "client_id", "identity__chitty_id")
    list_select_related = ("identity",)
    actions = ("revoke_selected",)

    @admin.display(description="status")
    def status(self, client: Client) -> str:
        return "revoked" if client.revoked_at else "live"

    @admin.display(description="type", ordering="authorization_grant_type")
    def kind(self, client: Client) -> str:
        return f"{client.get_authorization_grant_type_display()}, {client.client_type}"

    def get_form(self, request: HttpRequest, obj: Client | None = None, change: bool = False, **kwargs):
        if obj is not None:
            return super().get_form(request, obj, change=change, **kwargs)
        form = super().get_form(request, obj, change=change, form=ServiceClientCreationForm, **kwargs)
        form.caller = staff_caller(request)
        return form

    def get_fields(self, request: HttpRequest, obj: Client | None = None):
        return SHOWN_FIELDS if obj else ("chitty_id", "name", "scopes_text")

    def get_readonly_fields(self, request: HttpRequest, obj: Client | None = None):
        return SHOWN_FIELDS if obj else ()

    def save_model(self, request: HttpRequest, obj: Client, form, change: bool) -> None:
        """The service already saved a new client; an existing one changes only by revocation."""

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        """A client has no related objects edited here."""

    def has_delete_permission(self, request: HttpRequest, obj: Client | None = None) -> bool:
        return False

    def response_add(self, request: HttpRequest, obj: Client, post_url_continue=None) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "OAuth client created",
            "issued": obj.issued,
            "back_url": reverse("admin:oauth_client_changelist"),
        }
        response = TemplateResponse(request, "admin/oauth/client/shown_once.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected clients (and every token they hold)", permissions=("change",))
    def revoke_selected(self, request: HttpRequest, queryset) -> TemplateResponse | None:
        if not confirmed(request):
            return confirmation_page(
                self,
                request,
                queryset,
                verb="revoke",
                consequence="Revoking these clients refuses their credentials and every token they hold, at once "
                "and for good.",
                items=[f"{client.client_id} ({client.name or 'unnamed'})" for client in queryset],
            )
        done = 0
        for client in queryset:
            try:
                clients.revoke_client(staff_caller(request), client, reason="revoked by staff in the admin")
                done += 1
            except ServiceError as exc:
                note_refusal(request, client.pk, exc.code)
                self.message_user(
                    request, f"Could not revoke {client.client_id}: {exc.message}", messages.ERROR
                )
        self.message_user(request, f"{done} clients revoked.", messages.SUCCESS)
