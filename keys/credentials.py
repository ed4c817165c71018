"""Turning a bearer credential (an API key or a JWT issued here) into a `Caller`. Every interface — REST,
both MCP transports, stdio — authenticates through `authenticate_bearer`, so the rules are the same."""

from typing import NoReturn

from audit.services import record
from kernel import request_context
from kernel.callers import Caller
from kernel.errors import ServiceError
from keys.tokens import verify_jwt
from keys.verification import verify_api_key

API_KEY_PREFIX = "chitty_"
MAX_CREDENTIAL_LENGTH = 8192


class CredentialRejected(ServiceError):
    """The credential is missing, malformed, unknown, expired, revoked or its principal is not active."""

    code = "INVALID_CREDENTIAL"
    http_status = 401


def authenticate_bearer(raw: str, *, client_address: str | None = None, user_agent: str = "") -> Caller:
    """The caller behind `raw`, or `CredentialRejected` (audited) saying why — never which key "almost" matched."""
    if not isinstance(raw, str) or not raw or len(raw) > MAX_CREDENTIAL_LENGTH:
        _reject("MALFORMED", "missing or oversized credential", client_address)
    if raw.startswith(API_KEY_PREFIX):
        verification = verify_api_key(raw)
        credential_type, credential_id = "api_key", verification.key_id
    else:
        verification = verify_jwt(raw)
        credential_type, credential_id = "jwt", verification.jti
    if not verification.valid:
        _reject(
            verification.code,
            f"{credential_type} rejected",
            client_address,
            credential_id=credential_id,
            principal=verification.chitty_id or "",
        )
    request_context.identify(verification.chitty_id, credential_id)
    return Caller(
        actor=verification.chitty_id,
        identity=verification.identity,
        credential_type=credential_type,
        credential_id=credential_id,
        scopes=tuple(verification.scopes),
        client_address=client_address,
        user_agent=user_agent[:400],
        expires_at=verification.expires_at,
    )


def authenticate_authorization_header(
    header: bytes | str, *, client_address: str | None = None, user_agent: str = ""
) -> Caller:
    """Parse `Bearer <credential>` and authenticate it; a wrong scheme or encoding is rejected and audited."""
    if isinstance(header, bytes):
        try:
            header = header.decode("ascii")
        except UnicodeDecodeError:
            _reject("MALFORMED", "Authorization header is not ASCII", client_address)
    scheme, _, credential = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        _reject("MALFORMED", "Authorization is not 'Bearer <credential>'", client_address)
    return authenticate_bearer(credential.strip(), client_address=client_address, user_agent=user_agent)


_MESSAGES = {
    "MALFORMED": "Send Authorization: Bearer <API key or JWT>; this credential is not well-formed",
    "BAD_CHECKSUM": "The API key's checksum does not match: it was mistyped or truncated",
    "NOT_FOUND": "The credential is not known",
    "EXPIRED": "The credential has expired",
    "REVOKED": "The credential has been revoked",
    "IDENTITY_SUSPENDED": "The credential's principal is not active",
}


def _reject(
    code: str,
    detail: str,
    client_address: str | None,
    *,
    credential_id: str | None = None,
    principal: str = "",
) -> NoReturn:
    record(
        "auth.failed",
        outcome="failure",
        target=credential_id or "",
        principal=principal,
        client_address=client_address,
        details={"code": code, "detail": detail},
    )
    raise CredentialRejected(_MESSAGES.get(code, "The credential was rejected"), reason=code)
