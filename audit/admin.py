"""Staff console for the audit trail: search it, follow its hash links, and verify the whole chain."""

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.cache import cache
from django.core.exceptions import PermissionDenied as AdminPermissionDenied
from django.db.models import Q
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from audit.export import request_redelivery
from audit.models import GENESIS_HASH, AuditDeadLetter, AuditDelivery, AuditEvent
from audit.services import ChainVerdict, event_hash, verify_chain

logger = logging.getLogger(__name__)

CHAIN_CHECK_CACHE_KEY = "chittyauth:admin:audit-chain-check"
# A check walks the whole trail, so it runs when staff ask; its result is shown, with its age, for this long.
CHAIN_CHECK_CACHE_SECONDS = 3600


@dataclass(frozen=True)
class ChainCheck:
    verdict: ChainVerdict
    checked_at: datetime
    checked_by: str


def check_chain_now(checked_by: str) -> ChainCheck:
    """Walk the whole chain now and remember the answer for the dashboard."""
    check = ChainCheck(verify_chain(), timezone.now(), checked_by)
    try:
        cache.set(CHAIN_CHECK_CACHE_KEY, check, CHAIN_CHECK_CACHE_SECONDS)
    except Exception:  # the cache only saves a rerun; the answer itself stands  # noqa: BLE001
        logger.warning("Could not cache the audit chain check")
    return check


def last_chain_check() -> ChainCheck | None:
    try:
        return cache.get(CHAIN_CHECK_CACHE_KEY)
    except Exception:  # noqa: BLE001
        logger.warning("Could not read the cached audit chain check")
        return None


def event_url(event: AuditEvent) -> str:
    return reverse("admin:audit_auditevent_change", args=[event.pk])


class IdentityFilter(admin.SimpleListFilter):
    """`?identity=<ChittyID>`: every event naming it as actor, target or principal (a failed use of its
    credentials, its session ends), as linked from the identity's page."""

    title = "identity"
    parameter_name = "identity"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return [(self.value(), self.value())] if self.value() else []

    def queryset(self, request: HttpRequest, queryset):
        value = self.value()
        if not value:
            return queryset
        return queryset.filter(Q(actor=value) | Q(target=value) | Q(principal=value))


# Exact-match and time-range parameters the filter form above the list sends.
FILTER_LOOKUPS = ("actor", "target", "principal", "client_address", "created_at__gte", "created_at__lt")
FORM_FILTERS = ("identity", "action", "outcome", *FILTER_LOOKUPS)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only for everyone, superusers included: the trail is only ever appended by services."""

    list_display = ("sequence", "created_at", "actor", "action", "target", "outcome", "client_address")
    # Actors are searched, not filtered: a filter would list every distinct actor of the whole trail.
    list_filter = (IdentityFilter, "outcome", "action", "created_at")
    search_fields = ("actor", "action", "target", "principal", "=client_address")
    date_hierarchy = "created_at"
    fields = (
        "sequence",
        "created_at",
        "actor",
        "action",
        "target",
        "principal",
        "outcome",
        "client_address",
        "details_json",
        "previous_event",
        "prev_hash",
        "hash",
        "integrity",
        "next_event",
    )
    readonly_fields = fields
    list_per_page = 50
    # The trail only grows; counting all of it on every page view gets slower with every event.
    show_full_result_count = False

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        return lookup in FILTER_LOOKUPS or super().lookup_allowed(lookup, value, request)

    def changelist_view(self, request: HttpRequest, extra_context=None):
        # The filter form sends every field; an empty one means "any", not "equal to the empty string".
        if any(value == "" for name, value in request.GET.items() if name in FORM_FILTERS):
            kept = {
                name: value for name, value in request.GET.items() if value != "" or name not in FORM_FILTERS
            }
            return HttpResponseRedirect(f"{request.path}?{urlencode(kept)}")
        filters = {name: request.GET.get(name, "") for name in FORM_FILTERS}
        context = {**(extra_context or {}), "audit_filters": filters, "outcomes": AuditEvent.Outcome.values}
        return super().changelist_view(request, context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    @admin.display(description="details")
    def details_json(self, event: AuditEvent) -> str:
        return format_html(
            '<pre class="audit-details">{}</pre>',
            json.dumps(event.details, indent=2, sort_keys=True, ensure_ascii=False),
        )

    @admin.display(description="previous event")
    def previous_event(self, event: AuditEvent) -> str:
        """The link this event's prev_hash points at, and whether that event's hash really is prev_hash."""
        if event.sequence == 1:
            matches = event.prev_hash == GENESIS_HASH
            return format_html(
                '<span class="chain-link {}">none: the first event, chained to the genesis hash {}</span>',
                "chain-ok" if matches else "chain-broken",
                "✓" if matches else "✗ (its prev_hash is not the genesis hash)",
            )
        previous = AuditEvent.objects.filter(sequence=event.sequence - 1).first()
        if previous is None:
            return format_html(
                '<strong class="chain-link chain-broken">#{} is missing from the trail ✗</strong>',
                event.sequence - 1,
            )
        matches = previous.hash == event.prev_hash
        return format_html(
            '<a class="previous-event" href="{}">#{} {}</a> <span class="chain-link {}">{}</span>',
            event_url(previous),
            previous.sequence,
            previous.action,
            "chain-ok" if matches else "chain-broken",
            "its hash is this event's prev_hash ✓" if matches else "its hash is NOT this event's prev_hash ✗",
        )

    @admin.display(description="integrity")
    def integrity(self, event: AuditEvent) -> str:
        matches = event_hash(event) == event.hash
        return format_html(
            '<span class="chain-link {}">{}</span>',
            "chain-ok" if matches else "chain-broken",
            "hash matches the event's contents ✓"
            if matches
            else "hash does NOT match the event's contents: it was altered ✗",
        )

    @admin.display(description="next event")
    def next_event(self, event: AuditEvent) -> str:
        following = AuditEvent.objects.filter(sequence=event.sequence + 1).first()
        if following is None:
            return "none yet"
        return format_html(
            '<a class="next-event" href="{}">#{} {}</a>',
            event_url(following),
            following.sequence,
            following.action,
        )

    def get_urls(self):
        return [
            path("verify/", self.admin_site.admin_view(self.verify_view), name="audit_auditevent_verify"),
            *super().get_urls(),
        ]

    def verify_view(self, request: HttpRequest) -> TemplateResponse:
        """GET shows the last check; POST walks the whole chain now."""
        if not self.has_view_permission(request):
            raise AdminPermissionDenied
        if request.method == "POST":
            check = check_chain_now(f"staff:{request.user.get_username()}")
        else:
            check = last_chain_check()
        broken_event = None
        if check is not None and check.verdict.first_broken_sequence is not None:
            broken_event = AuditEvent.objects.filter(sequence=check.verdict.first_broken_sequence).first()
        context = {
            **self.admin_site.each_context(request),
            "title": "Verify the audit chain",
            "opts": self.opts,
            "check": check,
            "broken_event_url": event_url(broken_event) if broken_event else "",
        }
        return TemplateResponse(request, "admin/audit/verify.html", context)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Kept by the export runs alone."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(AuditDelivery)
class AuditDeliveryAdmin(ReadOnlyAdmin):
    """How far each export sink has got, and why it is waiting if it is."""

    list_display = (
        "sink",
        "delivered_sequence",
        "delivered_checkpoint_id",
        "last_delivered_at",
        "failures_in_a_row",
        "next_attempt_at",
        "last_error",
    )
    readonly_fields = (*list_display, "leased_until")
    fields = readonly_fields

    def has_change_permission(self, request: HttpRequest, obj: AuditDelivery | None = None) -> bool:
        return False


@admin.register(AuditDeadLetter)
class AuditDeadLetterAdmin(ReadOnlyAdmin):
    """Events and checkpoints a sink refused for good. Sending one again queues it for the next export run."""

    list_display = ("__str__", "sink", "reason", "created_at", "redeliver_requested_at", "audit_event")
    list_filter = ("sink",)
    readonly_fields = ("sink", "audit_event", "checkpoint", "reason", "created_at", "redeliver_requested_at")
    fields = readonly_fields
    actions = ("send_again",)

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).select_related("event")

    @admin.display(description="audit event")
    def audit_event(self, letter: AuditDeadLetter) -> str:
        if letter.event is None:
            return "-"
        return format_html('<a href="{}">#{}</a>', event_url(letter.event), letter.event.sequence)

    def has_view_permission(self, request: HttpRequest, obj: AuditDeadLetter | None = None) -> bool:
        # `audit:read` alone: Django would also show them to whoever may change them (`audit:export`).
        return request.user.has_perm("audit.view_auditdeadletter")

    def has_change_permission(self, request: HttpRequest, obj: AuditDeadLetter | None = None) -> bool:
        # Changing a dead letter means only queueing it again, for staff who see them; its fields stay as the
        # export run left them.
        return (
            obj is None and super().has_change_permission(request, obj) and self.has_view_permission(request)
        )

    @admin.action(description="Send again on the next export run", permissions=("change",))
    def send_again(self, request: HttpRequest, queryset) -> None:
        queued = request_redelivery(queryset)
        self.message_user(request, f"{queued} queued for the next export run.", messages.SUCCESS)
