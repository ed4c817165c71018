"""DRF authentication: `Authorization: Bearer <API key | JWT>`, adapted onto `keys.credentials`."""

from dataclasses import replace

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from kernel.callers import Caller
from keys.credentials import CredentialRejected, authenticate_authorization_header
from sessions.models import AuthSession
from sessions.services import touch_credential_session


class PrincipalUser:
    """What DRF sees as `request.user`; the real answer to "who" is `request.auth`, a `Caller`."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, caller: Caller) -> None:
        self.caller = caller

    def __str__(self) -> str:
        return self.caller.actor


def rest_caller(header: bytes, *, client_address: str | None, user_agent: str) -> Caller:
    """The caller of one REST request, in its credential's `rest` session (the REST fast path's rule too)."""
    caller = authenticate_authorization_header(header, client_address=client_address, user_agent=user_agent)
    return replace(caller, session_id=touch_credential_session(caller, AuthSession.Channel.REST))


class BearerCredentialAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[PrincipalUser, Caller] | None:
        header = get_authorization_header(request)
        if not header:
            return None
        try:
            caller = rest_caller(
                header,
                client_address=request.META.get("REMOTE_ADDR") or None,
                user_agent=request.META.get("HTTP_USER_AGENT", ""),
            )
        except CredentialRejected as exc:
            raise AuthenticationFailed(exc.message, code=exc.extra["reason"]) from None
        return PrincipalUser(caller), caller

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="chittyauth"'


class BearerCredentialScheme(OpenApiAuthenticationExtension):
    """Documents the bearer scheme in the OpenAPI schema."""

    target_class = BearerCredentialAuthentication
    name = "bearer"

    def get_security_definition(self, auto_schema) -> dict:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (chitty_live_…) or a JWT issued here",
        }
