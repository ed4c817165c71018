"""The security console's dashboard at /admin/dashboard/.

The dashboard only reads: counts of live identities, keys and sessions, the last day's activity and failed
authentications from the audit trail, the last audit-chain check, each job's last run and whether the
ChittyID authority answers. Each panel shows only if the staff user may view the model it comes from.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.admin import AdminSite
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncHour
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone

from audit.admin import last_chain_check
from audit.models import AuditEvent
from identities import authority
from identities.models import Identity
from jobs.models import JobRun
from keys.models import ApiKey
from keys.verification_history import hourly_verifications
from sessions.models import AuthSession

HOURS = 24
# Opened sessions are audited: every credential opens one on first use and again after SESSION_TIMEOUT of
# silence, which makes them an honest hourly measure of activity (verifications have a chart of their own).
ACTIVITY_ACTION = "session.open"
# Rejected bearer credentials, failed admin logins, and keys or tokens a relying service asked about in vain.
FAILED_AUTHENTICATION = Q(action__in=("auth.failed", "staff.login_failed")) | Q(
    action__in=("api_key.validate", "token.validate"), outcome=AuditEvent.Outcome.FAILURE
)
RECENT_FAILURES = FAILED_AUTHENTICATION | Q(action="staff.lockout")
RECENT_FAILURES_SHOWN = 10

CHART_HEIGHT = 140
CHART_SLOT_WIDTH = 26
CHART_BAR_WIDTH = 10
CHART_LEFT = 40
CHART_TOP = 10


@dataclass(frozen=True)
class HourBucket:
    start: datetime
    sessions_opened: int
    failed_authentications: int


def hourly_activity(now: datetime) -> list[HourBucket]:
    """The last 24 hours, oldest first, the current (partial) hour last."""
    first_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)
    rows = (
        AuditEvent.objects.filter(created_at__gte=first_hour)
        .filter(Q(action=ACTIVITY_ACTION) | FAILED_AUTHENTICATION)
        .annotate(hour=TruncHour("created_at"))
        .values("hour")
        .annotate(
            opened=Count("id", filter=Q(action=ACTIVITY_ACTION)),
            failed=Count("id", filter=FAILED_AUTHENTICATION),
        )
        .order_by()
    )
    opened, failed = [0] * HOURS, [0] * HOURS
    for row in rows:
        index = int((row["hour"] - first_hour).total_seconds() // 3600)
        if 0 <= index < HOURS:
            opened[index], failed[index] = row["opened"], row["failed"]
    return [
        HourBucket(first_hour + timedelta(hours=index), opened[index], failed[index])
        for index in range(HOURS)
    ]


def _axis_top(largest: int) -> int:
    """A round number at or above the largest count, so the gridline labels read easily."""
    for step in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000):
        if largest <= step * 4:
            return max(step * 4, 4)
    return largest


def bar_chart(starts: list[datetime], first: list[int], second: list[int]) -> dict:
    """Geometry for an inline SVG bar chart (`admin/bar_chart.html`): two bars per hour on a shared scale."""
    top = _axis_top(max(first + second))
    bottom = CHART_TOP + CHART_HEIGHT

    def bar(value: int, x: int) -> dict:
        height = round(value / top * CHART_HEIGHT)
        return {"x": x, "y": bottom - height, "height": height, "value": value}

    hours = []
    for index, start in enumerate(starts):
        left = CHART_LEFT + index * CHART_SLOT_WIDTH + 2
        hours.append(
            {
                "start": start,
                "first": bar(first[index], left),
                "second": bar(second[index], left + CHART_BAR_WIDTH + 1),
                "label_x": left + CHART_BAR_WIDTH,
                "labelled": index % 6 == 0 or index == len(starts) - 1,
            }
        )
    gridlines = [
        {"y": bottom - round(fraction * CHART_HEIGHT), "value": round(fraction * top)}
        for fraction in (0, 0.25, 0.5, 0.75, 1)
    ]
    return {
        "hours": hours,
        "gridlines": gridlines,
        "width": CHART_LEFT + len(starts) * CHART_SLOT_WIDTH + 4,
        "height": bottom + 22,
        "left": CHART_LEFT,
        "bottom": bottom,
        "bar_width": CHART_BAR_WIDTH,
    }


def activity_chart(buckets: list[HourBucket]) -> dict:
    return bar_chart(
        [bucket.start for bucket in buckets],
        [bucket.sessions_opened for bucket in buckets],
        [bucket.failed_authentications for bucket in buckets],
    )


def verifications_panel(now: datetime) -> dict:
    """Credential verifications per hour, the figures of `chittyauth_credential_verifications_total`, as the
    processes have written them (`keys.verification_history`)."""
    first_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)
    hours = hourly_verifications(first_hour, HOURS)
    return {
        "chart": bar_chart(
            [hour.start for hour in hours], [hour.valid for hour in hours], [hour.failed for hour in hours]
        ),
        "valid": sum(hour.valid for hour in hours),
        "failed": sum(hour.failed for hour in hours),
        "write_seconds": settings.API_KEY_USAGE_WRITE_SECONDS,
    }


def identity_counts() -> dict[str, int]:
    counts = dict(Identity.objects.values_list("status").annotate(total=Count("id")).order_by())
    return {status: counts.get(status, 0) for status in Identity.Status.values}


def key_counts(now: datetime) -> dict[str, int]:
    """Live keys are the ones that validate now: unrevoked (or in a rotation overlap), unexpired, and held by
    an active identity."""
    live = (
        ApiKey.objects.filter(Q(revoked_at__isnull=True) | Q(revoked_at__gt=now))
        .exclude(expires_at__lte=now)
        .filter(principal__status=Identity.Status.ACTIVE)
    )
    totals = live.aggregate(
        live=Count("id"),
        rotating=Count("id", filter=Q(revoked_at__isnull=False)),
        used_recently=Count("id", filter=Q(last_used_at__gte=now - timedelta(hours=HOURS))),
    )
    totals["validations_counted"] = ApiKey.objects.aggregate(total=Sum("use_count"))["total"] or 0
    return totals


def session_counts(now: datetime) -> dict:
    live = AuthSession.objects.filter(ended_at__isnull=True).exclude(expires_at__lte=now)
    by_channel = dict(live.values_list("channel").annotate(total=Count("id")).order_by())
    return {"live": sum(by_channel.values()), "by_channel": sorted(by_channel.items())}


def last_job_runs() -> list[tuple[str, JobRun | None]]:
    return [
        (label, JobRun.objects.filter(job=job).order_by("-started_at").first())
        for job, label in JobRun.Job.choices
    ]


def authority_status() -> dict:
    reachable, detail = authority.check_reachable()
    return {
        "remote": authority.is_remote(),
        "endpoint": settings.CHITTYID_ENDPOINT,
        "reachable": reachable,
        "detail": detail,
    }


def dashboard_panels(user, now: datetime) -> dict:
    panels: dict = {"authority": authority_status()}
    if user.has_perm("identities.view_identity"):
        panels["identities"] = identity_counts()
    if user.has_perm("keys.view_apikey"):
        panels["keys"] = key_counts(now)
        panels["verifications"] = verifications_panel(now)
    if user.has_perm("auth_sessions.view_authsession"):
        panels["sessions"] = session_counts(now)
    if user.has_perm("audit.view_auditevent"):
        buckets = hourly_activity(now)
        since = now - timedelta(hours=HOURS)
        panels["activity"] = {
            "chart": activity_chart(buckets),
            "sessions_opened": sum(bucket.sessions_opened for bucket in buckets),
            "failed_authentications": sum(bucket.failed_authentications for bucket in buckets),
            "denials": AuditEvent.objects.filter(
                action="authorization.denied", created_at__gte=since
            ).count(),
        }
        panels["recent_failures"] = list(
            AuditEvent.objects.filter(RECENT_FAILURES).order_by("-sequence")[:RECENT_FAILURES_SHOWN]
        )
        panels["chain_check"] = last_chain_check()
    if user.has_perm("jobs.view_jobrun"):
        panels["jobs"] = last_job_runs()
    return panels


def dashboard_view(site: AdminSite, request: HttpRequest) -> TemplateResponse:
    context = {
        **site.each_context(request),
        "title": "Security dashboard",
        "hours": HOURS,
        "session_timeout_minutes": settings.SESSION_TIMEOUT // 60,
        **dashboard_panels(request.user, timezone.now()),
    }
    return TemplateResponse(request, "admin/dashboard.html", context)
