"""The one error type every service raises: a stable machine code, a message a person can act on,
and the HTTP status REST renders it with. MCP renders the same code and message as a tool error."""


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
