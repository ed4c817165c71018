"""The one error type every service raises: a stable machine code, a message a person can act on,
and the HTTP status REST renders it with. MCP renders the same code and message as a tool error."""

import logging

from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    code = "ERROR"
    http_status = 400

    def __init__(self, message: str, *, code: str | None = None, http_status: int | None = None, **extra):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if http_status:
            self.http_status = http_status
        self.extra = extra

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message, **self.extra}


class ValidationFailed(ServiceError):
    code = "INVALID_INPUT"
    http_status = 400


class NotFound(ServiceError):
    code = "NOT_FOUND"
    http_status = 404


class Conflict(ServiceError):
    code = "CONFLICT"
    http_status = 409


class PermissionDenied(ServiceError):
    code = "PERMISSION_DENIED"
    http_status = 403


class AuthorityUnavailable(ServiceError):
    """The ChittyID authority could not be asked. We fail closed: nothing proceeds on a guess."""

    code = "AUTHORITY_UNAVAILABLE"
    http_status = 503


class DatabaseUnavailable(ServiceError):
    """The database is down or unreachable: a moment's outage, not a bug, and not worth a traceback."""

    code = "DATABASE_UNAVAILABLE"
    http_status = 503
    retry_after_seconds = 5

    def __init__(self) -> None:
        super().__init__("The service's database is unavailable; try again shortly.")


DATABASE_DOWN = (OperationalError, InterfaceError)  # what a driver raises when it cannot reach the server


def database_unavailable(exc: Exception, where: object) -> DatabaseUnavailable:
    """What an interface answers when the database cannot be reached, logged by its type only (the driver's
    message may name hosts and users)."""
    logger.warning("Database unavailable in %s: %s", where, type(exc).__name__)
    return DatabaseUnavailable()


def error_body(code: str, message: str, **extra) -> dict:
    """The one error shape every REST answer uses: {"error": {"code", "message", ...}}."""
    return {"error": {"code": code, "message": message, **extra}}


_DRF_CODES = {
    "NotAuthenticated": ("UNAUTHENTICATED", "Send Authorization: Bearer <API key or JWT>"),
    "ParseError": ("MALFORMED_REQUEST", None),
    "UnsupportedMediaType": ("UNSUPPORTED_MEDIA_TYPE", None),
    "MethodNotAllowed": ("METHOD_NOT_ALLOWED", None),
    "NotAcceptable": ("NOT_ACCEPTABLE", None),
    "NotFound": ("NOT_FOUND", None),
    "PermissionDenied": ("PERMISSION_DENIED", None),
    "Throttled": ("RATE_LIMITED", None),
}


def rest_exception_handler(exc: Exception, context: dict):
    """Render every failure in the documented shape; an unexpected bug is logged and answered as a 500
    without a traceback."""
    headers = {}
    if isinstance(exc, DATABASE_DOWN):
        exc = database_unavailable(exc, context.get("view"))
        headers["Retry-After"] = str(exc.retry_after_seconds)
    if isinstance(exc, ServiceError):
        body = error_body(exc.code, exc.message, **exc.extra)
        return Response(body, status=exc.http_status, headers=headers)
    if isinstance(exc, Http404):
        return Response(error_body("NOT_FOUND", "Not found"), status=404)
    if isinstance(exc, exceptions.ValidationError):
        return Response(
            error_body("INVALID_INPUT", "The request has invalid fields", fields=exc.detail), status=400
        )
    if isinstance(exc, exceptions.APIException):
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if isinstance(exc, exceptions.AuthenticationFailed):
            if headers:
                headers["WWW-Authenticate"] += ', error="invalid_token"'
            reason = exc.get_codes() if isinstance(exc.get_codes(), str) else "INVALID_CREDENTIAL"
            body = error_body("INVALID_CREDENTIAL", str(exc.detail), reason=reason)
            return Response(body, status=exc.status_code, headers=headers)
        code, message = _DRF_CODES.get(type(exc).__name__, ("ERROR", None))
        return Response(error_body(code, message or str(exc.detail)), status=exc.status_code, headers=headers)
    logger.error("Unhandled error in %s", context.get("view"), exc_info=exc)
    return Response(
        error_body("INTERNAL_ERROR", "Something went wrong on our side; it has been logged."), status=500
    )


def json_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("NOT_FOUND", "No such endpoint"), status=404)


def json_server_error(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        error_body("INTERNAL_ERROR", "Something went wrong on our side; it has been logged."), status=500
    )
