"""Staff logins into the admin, failed logins, lockouts and logouts, written to the audit trail.

Only the username, address and user agent are recorded, never a password: Django hands failed-login
receivers credentials with the password already masked, and these receivers read only the username.
"""

from axes.helpers import get_cool_off
from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.http import HttpRequest

from audit.models import AuditEvent
from audit.services import record
from console import login_throttle

MAX_USERNAME_LENGTH = 150
MAX_USER_AGENT_LENGTH = 400


def connect() -> None:
    user_logged_in.connect(record_login, dispatch_uid="chittyauth.audit.staff_login")
    user_login_failed.connect(record_login_failure, dispatch_uid="chittyauth.audit.staff_login_failed")
    user_logged_out.connect(record_logout, dispatch_uid="chittyauth.audit.staff_logout")
    user_locked_out.connect(record_lockout, dispatch_uid="chittyauth.audit.staff_lockout")


def _client_address(request: HttpRequest | None) -> str | None:
    return request.META.get("REMOTE_ADDR") if request is not None else None


def _user_agent(request: HttpRequest | None) -> str:
    return request.META.get("HTTP_USER_AGENT", "")[:MAX_USER_AGENT_LENGTH] if request is not None else ""


def record_login(sender, request: HttpRequest | None, user, **kwargs) -> None:
    username = user.get_username()
    record(
        "staff.login",
        actor=f"staff:{username}",
        target=f"staff:{username}",
        client_address=_client_address(request),
        details={"user_agent": _user_agent(request), "superuser": bool(user.is_superuser)},
    )


def record_login_failure(sender, credentials: dict, request: HttpRequest | None = None, **kwargs) -> None:
    username = str(credentials.get(get_user_model().USERNAME_FIELD, ""))[:MAX_USERNAME_LENGTH]
    login_throttle.count_failure(_client_address(request) or "", username)
    record(
        "staff.login_failed",
        outcome=AuditEvent.Outcome.FAILURE,
        target=f"staff:{username}",
        client_address=_client_address(request),
        details={"username": username, "user_agent": _user_agent(request)},
    )


def record_logout(sender, request: HttpRequest | None, user, **kwargs) -> None:
    if user is None:  # a logout without a login changes nothing
        return
    username = user.get_username()
    record(
        "staff.logout",
        actor=f"staff:{username}",
        target=f"staff:{username}",
        client_address=_client_address(request),
        details={"user_agent": _user_agent(request)},
    )


def record_lockout(sender, request: HttpRequest | None, username: str, ip_address: str, **kwargs) -> None:
    """django-axes refused a login: too many failures from this address or for this username."""
    username = str(username or "")[:MAX_USERNAME_LENGTH]
    if not login_throttle.first_in_window("lockout", ip_address or _client_address(request) or "", username):
        return
    cool_off = get_cool_off(request)
    record(
        "staff.lockout",
        outcome=AuditEvent.Outcome.DENIED,
        target=f"staff:{username}",
        client_address=ip_address or _client_address(request),
        details={
            "username": username,
            "failure_limit": settings.AXES_FAILURE_LIMIT,
            "lockout_seconds": int(cool_off.total_seconds()) if cool_off else None,
            "user_agent": _user_agent(request),
            "repeats_not_recorded_for_seconds": settings.ADMIN_LOGIN_RATE_WINDOW_SECONDS,
        },
    )


def record_throttled_login(request: HttpRequest, username: str) -> None:
    """A login refused by the rate limit. Recorded only when neither its address nor its username has had a
    refusal recorded this window, so a flood from one address, or for one username, is one event."""
    username = username[:MAX_USERNAME_LENGTH]
    address = _client_address(request) or ""
    new_address = login_throttle.first_in_window("refused-address", address, "")
    new_username = login_throttle.first_in_window("refused-username", "", username)
    if not (new_address and new_username):
        return
    record(
        "staff.login_throttled",
        outcome=AuditEvent.Outcome.DENIED,
        target=f"staff:{username}",
        client_address=address or None,
        details={
            "username": username,
            "limit": settings.ADMIN_LOGIN_RATE_LIMIT,
            "window_seconds": settings.ADMIN_LOGIN_RATE_WINDOW_SECONDS,
            "user_agent": _user_agent(request),
        },
    )
