"""Coverage-guided fuzz targets (atheris) for every parser that takes outside input. Each target turns the
fuzzer's bytes into the parser's input and checks what must hold for any input: the parser answers, or refuses
with the error type it documents (which the interfaces render with a stable code); anything else is a crash.
Where a parser's answer has properties (a pattern covers itself, a parsed key shows its own prefix), those are
checked too. Run by `tests/fuzz_parsers.py`; the suite runs each briefly (tests/test_parser_fuzzing.py)."""

import json
import time
from collections.abc import Callable

import httpx
import jwt
from django.conf import settings

from grants.permissions import covers, intersection, normalize_scope, parse_pattern
from identities.authority import AuthorityAnswer, _interpret
from identities.chitty_ids import InvalidChittyID, parse_chitty_id
from kernel.errors import AuthorityUnavailable, ValidationFailed
from keys.key_format import InvalidApiKey, display_prefix, generate_api_key_secret, parse_api_key
from keys.token_format import audience, issuer, parse_expires_in
from keys.token_verification import Rejected, verified_claims
from mcp_endpoint.consumers import _read_frame_slowly


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def api_key(data: bytes) -> None:
    raw = _text(data)
    try:
        parsed = parse_api_key(raw)
    except InvalidApiKey:
        return
    assert raw.startswith(display_prefix(parsed.raw))


def chitty_id(data: bytes) -> None:
    raw = _text(data)
    try:
        parsed = parse_chitty_id(raw)
    except InvalidChittyID:
        return
    assert parsed.chitty_id == raw and raw.isascii() and raw.upper() == raw


def expires_in(data: bytes) -> None:
    """`#` and up to 8 bytes: a number (as MCP and REST may send); anything else: text."""
    value = int.from_bytes(data[1:9], "big", signed=True) if data[:1] == b"#" else _text(data)
    try:
        seconds = parse_expires_in(value)
    except ValidationFailed:
        return
    assert 0 < seconds <= settings.JWT_MAX_LIFETIME_SECONDS


def permission_patterns(data: bytes) -> None:
    """Two lines: a grantable pattern and a credential scope."""
    first, _, second = _text(data).partition("\n")
    try:
        first, second = parse_pattern(first), normalize_scope(second)
    except ValidationFailed:
        return
    assert covers(first, first) and covers(second, second)
    both = intersection(first, second)
    assert both == intersection(second, first)
    if both is not None:
        assert covers(first, both) and covers(second, both)


def jwt_header_and_claims(data: bytes) -> None:
    """`{` and JSON: claims merged into a token this service signs; anything else: the token as sent. Either
    way verification answers with claims or a Rejected code, and never accepts an unsigned token."""
    text = _text(data)
    if text.startswith("{"):
        try:
            extra = json.loads(text)
        except (ValueError, RecursionError):
            return
        now = int(time.time())
        claims = {"iss": issuer(), "aud": audience(), "sub": "CHITTY-PEO-FUZZ1-A", "jti": "fuzz"}
        claims |= {"iat": now, "nbf": now, "exp": now + 600}
        if isinstance(extra, dict):
            claims.update(extra)
        try:
            text = jwt.encode(claims, settings.JWT_SECRET, algorithm="HS256")
        except (TypeError, ValueError, OverflowError):
            return
    try:
        verified = verified_claims(text)
    except Rejected as refused:
        assert refused.code and refused.message
        return
    assert isinstance(verified, dict)
    assert jwt.get_unverified_header(text).get("alg", "").lower() != "none"


AUTHORITY_STATUSES = (200, 201, 204, 400, 401, 403, 404, 409, 418, 429)


def authority_answer(data: bytes) -> None:
    """The first byte picks the HTTP status; the rest is the body."""
    status = AUTHORITY_STATUSES[data[0] % len(AUTHORITY_STATUSES)] if data else 200
    try:
        answer = _interpret(httpx.Response(status, content=data[1:]))
    except AuthorityUnavailable:
        return
    assert isinstance(answer, AuthorityAnswer)


def mcp_frame(data: bytes) -> None:
    message, error_frame = _read_frame_slowly(_text(data))
    if message is None:
        assert "error" in json.loads(error_frame)
    else:
        assert error_frame == ""


def credential_seeds() -> dict[str, list[bytes]]:
    """Seeds shaped like real credentials, made afresh for each run: committed, they would read as leaked keys
    and tokens to any secret scanner (and the corpus is checked to hold none)."""
    now = int(time.time())
    claims = {"iss": issuer(), "aud": audience(), "sub": "CHITTY-PEO-FUZZ1-A", "jti": "seed", "iat": now}
    signed = jwt.encode({**claims, "nbf": now, "exp": now + 600}, settings.JWT_SECRET, algorithm="HS256")
    unsigned = jwt.encode(claims, None, algorithm="none")
    foreign_kid = jwt.encode(claims, "not-our-key-" * 3, algorithm="HS256", headers={"kid": "k1"})
    return {
        "api_key": [generate_api_key_secret(environment).encode() for environment in ("live", "test")],
        "jwt_header_and_claims": [token.encode() for token in (signed, unsigned, foreign_kid)],
    }


TARGETS: dict[str, Callable[[bytes], None]] = {
    "api_key": api_key,
    "chitty_id": chitty_id,
    "expires_in": expires_in,
    "permission_patterns": permission_patterns,
    "jwt_header_and_claims": jwt_header_and_claims,
    "authority_answer": authority_answer,
    "mcp_frame": mcp_frame,
}
