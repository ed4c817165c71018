"""Staff console for sessions: see live and ended ones, end one or all of a principal's."""

from django.contrib import admin, messages
from django.db.models import Count
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from console import display
from identities.admin import PrincipalFilter, staff_caller
from kernel.admin_confirmation import confirmation_page, confirmed, note_refusal
from kernel.errors import ServiceError
from sessions import services
from sessions.models import AuthSession


class LiveFilter(admin.SimpleListFilter):
    """Live means usable now: not ended and not past its expiry (cleanup ends expired ones later)."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("live", "Live"), ("expired", "Expired, not yet ended"), ("ended", "Ended"))

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "live":
            return queryset.filter(ended_at__isnull=True).exclude(expires_at__lte=now)
        if self.value() == "expired":
            return queryset.filter(ended_at__isnull=True, expires_at__lte=now)
        if self.value() == "ended":
            return queryset.filter(ended_at__isnull=False)
        return queryset


@admin.register(AuthSession)
class AuthSessionAdmin(admin.ModelAdmin):
    list_display = (
        "session_id",
        "principal",
        "channel",
        "client_address",
        "started_at",
        "last_seen_at",
        "ends",
    )
    list_filter = (LiveFilter, PrincipalFilter, "channel", "credential_type", "started_at")
    search_fields = ("session_id", "principal__chitty_id", "credential_id", "=client_address")
    list_select_related = ("principal",)
    actions = ("end_selected", "end_all_of_principals")
    readonly_fields = [f.name for f in AuthSession._meta.fields]

    @admin.display(description="ends", ordering="ended_at")
    def ends(self, session: AuthSession) -> str:
        return display.ending(
            ended_at=session.ended_at, reason=session.end_reason, expires_at=session.expires_at
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuthSession | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuthSession | None = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    @admin.action(description="End selected sessions", permissions=("change",))
    def end_selected(self, request: HttpRequest, queryset) -> TemplateResponse | None:
        if not confirmed(request):
            return confirmation_page(
                self,
                request,
                queryset,
                verb="end",
                consequence="Ending these sessions closes their live connections at once.",
                items=[
                    f"{session.session_id} of {session.principal.chitty_id} ({session.channel})"
                    for session in queryset
                ],
            )
        ended = 0
        for session in queryset:
            try:
                services.end_session(
                    staff_caller(request), session.session_id, reason="ended by staff in the admin"
                )
                ended += 1
            except ServiceError as exc:
                note_refusal(request, session.pk, exc.code)
                self.message_user(
                    request, f"Could not end {session.session_id}: {exc.message}", messages.ERROR
                )
        self.message_user(request, f"{ended} sessions ended.", messages.SUCCESS)

    @admin.action(
        description="End ALL sessions of the selected sessions' principals", permissions=("change",)
    )
    def end_all_of_principals(self, request: HttpRequest, queryset) -> TemplateResponse | None:
        if not confirmed(request):
            principals = sorted(set(queryset.values_list("principal__chitty_id", flat=True)))
            live = AuthSession.objects.filter(principal__chitty_id__in=principals, ended_at__isnull=True)
            counts = dict(
                live.values("principal__chitty_id")
                .annotate(n=Count("pk"))
                .values_list("principal__chitty_id", "n")
            )
            return confirmation_page(
                self,
                request,
                queryset,
                verb="end every session",
                consequence="This ends every live session of these principals, not only the selected ones, and "
                "closes their connections at once.",
                items=[f"{chitty_id}: {counts.get(chitty_id, 0)} live sessions" for chitty_id in principals],
            )
        ended = 0
        for chitty_id in set(queryset.values_list("principal__chitty_id", flat=True)):
            try:
                ended += services.end_principal_sessions(
                    staff_caller(request), chitty_id, reason="all sessions ended by staff in the admin"
                )
            except ServiceError as exc:
                for pk in queryset.filter(principal__chitty_id=chitty_id).values_list("pk", flat=True):
                    note_refusal(request, pk, exc.code)
                self.message_user(request, f"{chitty_id}: {exc.message}", messages.ERROR)
        self.message_user(request, f"{ended} sessions ended.", messages.SUCCESS)
