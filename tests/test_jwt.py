"""JWT issuing, verification (every RFC 8725 attack we know of gets its own code), revocation and key rotation.

Malicious tokens are crafted by hand (base64url, hmac, cryptography) so the tests do not share the code
under test's idea of what a token looks like.
"""

import base64
import hashlib
import hmac
import io
import json
import secrets
import time
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from grants.services import grant_permission
from kernel.callers import Caller
from kernel.errors import PermissionDenied, ServiceError, ValidationFailed
from kernel.invalidation import invalidate_everything_now
from keys.credentials import authenticate_bearer
from keys.models import RevokedToken, SigningKey
from keys.services import generate_api_key
from keys.signing_keys import (
    active_signing_key,
    jwks_document,
    rotate_signing_key,
    signing_key_for_issuing,
)
from keys.tokens import (
    generate_jwt,
    parse_expires_in,
    revoke_jti_for_session,
    revoke_jwt,
    validate_jwt,
    verify_jwt,
)
from principals.services import suspend_identity

MISSING = object()
SEVEN_DAYS = 7 * 24 * 3600


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: dict) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def craft(header: dict, payload: dict, sign=None) -> str:
    signing_input = f"{segment(header)}.{segment(payload)}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{b64url(signature)}"


def hs256_with(secret: bytes):
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


def es256_with(private_key):
    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(private_key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    return sign


def split(token: str) -> tuple[dict, dict]:
    header, payload, _ = token.split(".")
    pad = lambda part: part + "=" * (-len(part) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(header))),
        json.loads(base64.urlsafe_b64decode(pad(payload))),
    )


def claims_for(identity, **overrides) -> dict:
    now = int(time.time())
    claims = {
        "iss": "chittyauth",
        "aud": "chittyos",
        "sub": identity.chitty_id,
        "chitty_id": identity.chitty_id,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": secrets.token_urlsafe(18),
        "scope": "*",
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not MISSING}


HS_HEADER = {"alg": "HS256", "typ": "at+jwt"}


@pytest.fixture
def secret(settings) -> bytes:
    return settings.JWT_SECRET.encode()


@pytest.fixture
def caller_for(system_caller):
    """A principal's caller through an API key with `scopes`, after granting it `permissions`."""

    def make(identity, *permissions: str, scopes: tuple[str, ...] = ("*",)) -> Caller:
        for permission in permissions:
            grant_permission(system_caller, grantee_chitty_id=identity.chitty_id, permission=permission)
        return Caller(
            actor=f"chittyid:{identity.chitty_id}",
            identity=identity,
            credential_type="api_key",
            credential_id=f"key_{identity.pk}",
            scopes=scopes,
        )

    return make


@pytest.fixture
def alice(make_identity):
    return make_identity("CHITTY-PEO-ALICE-1")


@pytest.fixture
def bob(make_identity):
    return make_identity("CHITTY-PEO-BOB-1")


@pytest.fixture
def asymmetric(settings, db):
    """Sign with the active EdDSA key; returns (kid, private key) of that key."""
    settings.JWT_SIGNING_ALGORITHM = "EdDSA"
    active = signing_key_for_issuing()
    return active.kid, active.private_key


# Round trips


def test_hs256_round_trip_carries_every_claim(alice, caller_for):
    issued = generate_jwt(caller_for(alice, "tokens:generate"), chitty_id=alice.chitty_id)
    header, payload = split(issued.token)
    assert header == {"alg": "HS256", "typ": "at+jwt"}
    assert issued.algorithm == "HS256" and issued.kid is None
    assert payload["iss"] == "chittyauth" and payload["aud"] == "chittyos"
    assert payload["sub"] == payload["chitty_id"] == alice.chitty_id
    assert payload["iat"] == payload["nbf"] and payload["exp"] - payload["iat"] == 3600
    assert payload["jti"] == issued.jti and len(base64.urlsafe_b64decode(issued.jti + "==")) >= 16
    assert payload["scope"] == "tokens:generate"

    verification = verify_jwt(issued.token)
    assert verification.valid and verification.code == "VALID"
    assert verification.chitty_id == alice.chitty_id and verification.jti == issued.jti
    assert verification.scopes == ("tokens:generate",) and verification.identity == alice
    assert verification.expires_at == issued.expires_at
    assert verification.as_dict()["expires_at"] == issued.expires_at.isoformat()


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256"])
def test_asymmetric_round_trip_names_the_active_key(algorithm, settings, alice, caller_for):
    settings.JWT_SIGNING_ALGORITHM = algorithm
    issued = generate_jwt(caller_for(alice, "tokens:generate"), chitty_id=alice.chitty_id)
    header, _ = split(issued.token)
    active = active_signing_key()
    assert active.algorithm == algorithm
    assert header == {"alg": algorithm, "typ": "at+jwt", "kid": active.kid}
    assert (issued.algorithm, issued.kid) == (algorithm, active.kid)
    assert verify_jwt(issued.token).code == "VALID"


def test_hs256_tokens_stay_valid_when_signing_switches_to_a_key(settings, alice, caller_for):
    issued = generate_jwt(caller_for(alice, "tokens:generate"), chitty_id=alice.chitty_id)
    settings.JWT_SIGNING_ALGORITHM = "EdDSA"
    assert verify_jwt(issued.token).code == "VALID"


def test_custom_claims_ride_along(alice, caller_for):
    issued = generate_jwt(
        caller_for(alice, "tokens:generate"),
        chitty_id=alice.chitty_id,
        claims={"tenant": "acme", "tags": ["a", "b"]},
    )
    claims = verify_jwt(issued.token).claims
    assert claims["tenant"] == "acme" and claims["tags"] == ["a", "b"]


# RFC 8725 attacks and claim checks, each with its own code


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("with_kid", [False, True])
def test_unsigned_tokens_are_refused(alg, with_kid, alice, asymmetric):
    header = {"alg": alg, "typ": "at+jwt"} | ({"kid": asymmetric[0]} if with_kid else {})
    assert verify_jwt(craft(header, claims_for(alice))).code == "ALGORITHM_NOT_ALLOWED"


def test_hs256_signed_with_the_public_key_under_its_kid_is_refused(alice, asymmetric):
    kid, private_key = asymmetric
    public_key = private_key.public_key()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "at+jwt", "kid": kid}
    for key_bytes in (raw, pem):
        token = craft(header, claims_for(alice), hs256_with(key_bytes))
        assert verify_jwt(token).code == "ALGORITHM_NOT_ALLOWED"
        token_without_kid = craft(HS_HEADER, claims_for(alice), hs256_with(key_bytes))
        assert verify_jwt(token_without_kid).code == "BAD_SIGNATURE"


def test_a_key_only_verifies_its_own_algorithm(alice, asymmetric):
    kid, _ = asymmetric
    attacker_key = ec.generate_private_key(ec.SECP256R1())
    token = craft({"alg": "ES256", "typ": "at+jwt", "kid": kid}, claims_for(alice), es256_with(attacker_key))
    assert verify_jwt(token).code == "ALGORITHM_NOT_ALLOWED"


def test_asymmetric_algorithm_without_kid_is_refused(alice, asymmetric):
    attacker_key = ed25519.Ed25519PrivateKey.generate()
    embedded = {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64url(
            attacker_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        ),
    }
    header = {"alg": "EdDSA", "typ": "at+jwt", "jwk": embedded}
    assert verify_jwt(craft(header, claims_for(alice), attacker_key.sign)).code == "ALGORITHM_NOT_ALLOWED"
    # The embedded key is ignored even under our kid: only our published key verifies.
    header_with_kid = {**header, "kid": asymmetric[0]}
    assert verify_jwt(craft(header_with_kid, claims_for(alice), attacker_key.sign)).code == "BAD_SIGNATURE"


def test_unknown_kid_is_refused(alice, asymmetric):
    _, private_key = asymmetric
    header = {"alg": "EdDSA", "typ": "at+jwt", "kid": secrets.token_urlsafe(16)}
    assert verify_jwt(craft(header, claims_for(alice), private_key.sign)).code == "UNKNOWN_KID"


@pytest.mark.parametrize(
    "kid", ["../../etc/passwd", "' OR 1=1 --", "x" * 65, "", "kid with spaces", 123, None, ["a"], {"a": 1}]
)
def test_injected_kid_is_unknown_and_never_reaches_a_query(kid, alice, asymmetric):
    _, private_key = asymmetric
    warm = generate_jwt(Caller.system("tests"), chitty_id=alice.chitty_id)
    assert verify_jwt(warm.token).valid
    token = craft({"alg": "EdDSA", "typ": "at+jwt", "kid": kid}, claims_for(alice), private_key.sign)
    with CaptureQueriesContext(connection) as queries:
        assert verify_jwt(token).code == "UNKNOWN_KID"
    assert not [query for query in queries.captured_queries if str(kid) in query["sql"]]


@pytest.mark.parametrize("algorithm", ["HS256", "EdDSA"])
def test_tampered_payload_is_refused(algorithm, settings, alice, bob, caller_for):
    settings.JWT_SIGNING_ALGORITHM = algorithm
    minter = caller_for(alice, "tokens:generate", "*:read")
    issued = generate_jwt(minter, chitty_id=alice.chitty_id, scopes=["read"])
    header, _, signature = issued.token.split(".")
    _, claims = split(issued.token)
    for forged in ({**claims, "scope": "*"}, {**claims, "sub": bob.chitty_id, "chitty_id": bob.chitty_id}):
        assert verify_jwt(f"{header}.{segment(forged)}.{signature}").code == "BAD_SIGNATURE"


def test_another_secret_is_a_bad_signature(alice):
    token = craft(HS_HEADER, claims_for(alice), hs256_with(secrets.token_bytes(32)))
    assert verify_jwt(token).code == "BAD_SIGNATURE"


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"exp": int(time.time()) - 120}, "EXPIRED"),
        ({"nbf": int(time.time()) + 600}, "NOT_YET_VALID"),
        ({"iat": int(time.time()) + 600}, "NOT_YET_VALID"),
        ({"iss": "someone-else"}, "BAD_ISSUER"),
        ({"aud": "another-service"}, "BAD_AUDIENCE"),
        ({"jti": MISSING}, "MISSING_CLAIM"),
        ({"exp": MISSING}, "MISSING_CLAIM"),
        ({"sub": MISSING}, "MISSING_CLAIM"),
        ({"scope": MISSING}, "MISSING_CLAIM"),
    ],
)
def test_claim_checks_each_have_their_code(overrides, code, alice, secret):
    assert verify_jwt(craft(HS_HEADER, claims_for(alice, **overrides), hs256_with(secret))).code == code


def test_small_clock_skew_is_tolerated(alice, secret):
    now = int(time.time())
    for overrides in ({"exp": now - 10}, {"nbf": now + 10, "iat": now + 10}):
        assert verify_jwt(craft(HS_HEADER, claims_for(alice, **overrides), hs256_with(secret))).valid


def test_a_token_found_valid_before_is_still_checked_for_expiry(settings, alice, secret):
    token = craft(HS_HEADER, claims_for(alice, exp=int(time.time()) - 20), hs256_with(secret))
    assert verify_jwt(token).valid
    settings.JWT_LEEWAY_SECONDS = 5
    assert verify_jwt(token).code == "EXPIRED"


@pytest.mark.parametrize(
    "header", [{"alg": "HS256", "typ": "JWT"}, {"alg": "HS256"}, {"alg": "HS256", "typ": 1}]
)
def test_wrong_or_missing_typ_is_refused(header, alice, secret):
    assert verify_jwt(craft(header, claims_for(alice), hs256_with(secret))).code == "BAD_TYPE"


def test_media_type_form_of_typ_is_accepted(alice, secret):
    header = {"alg": "HS256", "typ": "application/AT+JWT"}
    assert verify_jwt(craft(header, claims_for(alice), hs256_with(secret))).valid


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "!!!.???.***",
        None,
        12345,
        "x" * 9000,
        b64url(b"[" * 3000) + ".e30.",
        b64url(b'"a string"') + ".e30.",
        segment({"typ": "at+jwt"}) + ".e30.",
    ],
)
def test_malformed_tokens_are_refused(token, db):
    assert verify_jwt(token).code == "MALFORMED"


def test_other_algorithms_without_kid_are_refused(alice, secret):
    header = {"alg": "HS512", "typ": "at+jwt"}
    token = craft(header, claims_for(alice), lambda data: hmac.new(secret, data, hashlib.sha512).digest())
    assert verify_jwt(token).code == "ALGORITHM_NOT_ALLOWED"


# Revocation and principal status take effect on the very next validation


def test_revocation_takes_effect_on_the_next_validation_with_a_warm_cache(
    alice, caller_for, django_assert_num_queries
):
    caller = caller_for(alice, "tokens:generate")
    issued = generate_jwt(caller, chitty_id=alice.chitty_id)
    assert verify_jwt(issued.token).valid
    with django_assert_num_queries(0):
        assert verify_jwt(issued.token).valid

    revoked = revoke_jwt(caller, token=issued.token, reason="lost laptop")

    verification = verify_jwt(issued.token)
    assert (verification.valid, verification.code) == (False, "REVOKED")
    assert verification.jti == issued.jti and verification.claims is None
    assert revoked.jti == issued.jti and revoked.chitty_id == alice.chitty_id
    assert revoked.expires_at >= issued.expires_at


def test_revocation_by_jti_takes_effect_at_once(alice, caller_for, system_caller):
    issued = generate_jwt(caller_for(alice, "tokens:generate"), chitty_id=alice.chitty_id)
    assert verify_jwt(issued.token).valid
    revoked = revoke_jwt(system_caller, jti=issued.jti)
    assert verify_jwt(issued.token).code == "REVOKED"
    assert revoked.chitty_id == "" and revoked.expires_at > timezone.now()


def test_suspending_the_principal_stops_its_tokens_at_once(alice, caller_for):
    issued = generate_jwt(caller_for(alice, "tokens:generate"), chitty_id=alice.chitty_id)
    assert verify_jwt(issued.token).valid
    suspend_identity(Caller.system("tests"), alice, reason="compromised")
    verification = verify_jwt(issued.token)
    assert (verification.valid, verification.code) == (False, "IDENTITY_SUSPENDED")
    assert "suspended" in verification.message


def test_revoking_twice_is_idempotent_and_audited_once(alice, caller_for):
    caller = caller_for(alice, "tokens:generate")
    issued = generate_jwt(caller, chitty_id=alice.chitty_id)
    first = revoke_jwt(caller, token=issued.token)
    second = revoke_jwt(caller, token=issued.token, reason="again")
    assert first.pk == second.pk and RevokedToken.objects.count() == 1
    assert AuditEvent.objects.filter(action="token.revoke").count() == 1


def test_an_expired_token_can_still_be_revoked(alice, caller_for, secret):
    caller = caller_for(alice, "tokens:generate")
    claims = claims_for(alice, exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)
    revoked = revoke_jwt(caller, token=craft(HS_HEADER, claims, hs256_with(secret)))
    assert revoked.jti == claims["jti"]


def test_only_tokens_signed_here_can_be_revoked(alice, caller_for):
    forged = craft(HS_HEADER, claims_for(alice), hs256_with(secrets.token_bytes(32)))
    with pytest.raises(ValidationFailed) as refused:
        revoke_jwt(caller_for(alice), token=forged)
    assert refused.value.code == "INVALID_TOKEN" and refused.value.extra["reason"] == "BAD_SIGNATURE"
    assert not RevokedToken.objects.exists()


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        ({}, "INVALID_INPUT"),
        ({"token": "a.b.c", "jti": "abc"}, "INVALID_INPUT"),
        ({"jti": "' OR 1=1 --"}, "INVALID_JTI"),
        ({"jti": "x" * 65}, "INVALID_JTI"),
        ({"jti": "abc", "reason": 5}, "INVALID_INPUT"),
    ],
)
def test_revoke_refuses_bad_input(arguments, code, system_caller, db):
    with pytest.raises(ValidationFailed) as refused:
        revoke_jwt(system_caller, **arguments)
    assert refused.value.code == code


# expires_in


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("24h", 86400),
        ("7d", SEVEN_DAYS),
        (3600, 3600),
        ("3600", 3600),
        (None, 3600),
    ],
)
def test_expires_in_forms(value, seconds):
    assert parse_expires_in(value) == seconds


@pytest.mark.parametrize("value", ["abc", "-5", "1.5h", "15 minutes", "5w", True, 0, "0s", -1, 3.5, ["1h"]])
def test_expires_in_rejects_nonsense(value):
    with pytest.raises(ValidationFailed) as refused:
        parse_expires_in(value)
    assert refused.value.code == "INVALID_EXPIRES_IN"


@pytest.mark.parametrize("value", ["8d", "169h", SEVEN_DAYS + 1, "999999999d"])
def test_expires_in_above_the_maximum_is_refused_naming_it(value):
    with pytest.raises(ValidationFailed) as refused:
        parse_expires_in(value)
    assert refused.value.code == "EXPIRES_IN_TOO_LONG"
    assert str(SEVEN_DAYS) in refused.value.message and refused.value.extra["max_seconds"] == SEVEN_DAYS


def test_expires_in_maximum_follows_settings(settings):
    settings.JWT_MAX_LIFETIME_SECONDS = 600
    assert parse_expires_in("10m") == 600
    with pytest.raises(ValidationFailed):
        parse_expires_in("11m")


def test_generated_lifetime_follows_expires_in(alice, caller_for):
    issued = generate_jwt(caller_for(alice, "tokens:generate"), chitty_id=alice.chitty_id, expires_in="15m")
    _, payload = split(issued.token)
    assert payload["exp"] - payload["iat"] == 900


@pytest.mark.parametrize("minted_with", ["jwt", "api_key"])
def test_a_token_never_outlives_the_credential_that_minted_it(minted_with, alice, caller_for, system_caller):
    grant_permission(system_caller, grantee_chitty_id=alice.chitty_id, permission="tokens:generate")
    if minted_with == "jwt":
        credential = generate_jwt(system_caller, chitty_id=alice.chitty_id, expires_in="10m").token
    else:
        credential = generate_api_key(
            system_caller, chitty_id=alice.chitty_id, expires_at=timezone.now() + timedelta(minutes=10)
        ).secret
    caller = authenticate_bearer(credential)
    renewed = generate_jwt(caller, chitty_id=alice.chitty_id, expires_in="1h")
    assert renewed.expires_at == caller.expires_at.replace(microsecond=0)
    assert verify_jwt(renewed.token).expires_at == renewed.expires_at
    longer = generate_jwt(caller_for(alice), chitty_id=alice.chitty_id, expires_in="1h")  # no expiry: 1 h
    _, payload = split(longer.token)
    assert payload["exp"] - payload["iat"] == 3600


# Caller claims


@pytest.mark.parametrize(
    "name",
    ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "scope", "chitty_id", "typ", "cnf", "act", "SUB"],
)
def test_reserved_claims_cannot_be_overridden(name, alice, caller_for):
    with pytest.raises(ValidationFailed) as refused:
        generate_jwt(caller_for(alice, "tokens:generate"), chitty_id=alice.chitty_id, claims={name: "x"})
    assert refused.value.code == "RESERVED_CLAIM" and name in refused.value.message


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        (["not", "an", "object"], "INVALID_CLAIMS"),
        ({1: "numeric name"}, "INVALID_CLAIMS"),
        ({"when": object()}, "INVALID_CLAIMS"),
        ({"ratio": float("nan")}, "INVALID_CLAIMS"),
        ({"blob": "x" * 5000}, "CLAIMS_TOO_LARGE"),
    ],
)
def test_claims_must_be_a_small_json_object(claims, code, alice, caller_for):
    with pytest.raises(ValidationFailed) as refused:
        generate_jwt(caller_for(alice, "tokens:generate"), chitty_id=alice.chitty_id, claims=claims)
    assert refused.value.code == code


# Permissions and no escalation


def test_minting_for_yourself_needs_tokens_generate(alice, caller_for):
    with pytest.raises(PermissionDenied) as refused:
        generate_jwt(caller_for(alice), chitty_id=alice.chitty_id)
    assert refused.value.extra["permission"] == "tokens:generate"


def test_minting_for_someone_else_needs_tokens_manage(alice, bob, caller_for):
    with pytest.raises(PermissionDenied) as refused:
        generate_jwt(caller_for(alice, "tokens:generate"), chitty_id=bob.chitty_id)
    assert refused.value.extra["permission"] == "tokens:manage"
    caller_for(bob, "audit:read")
    issued = generate_jwt(
        caller_for(alice, "tokens:manage", "audit:read"), chitty_id=bob.chitty_id, scopes=["audit:read"]
    )
    assert verify_jwt(issued.token).chitty_id == bob.chitty_id


def test_a_token_is_never_wider_than_the_credential_that_minted_it(alice, caller_for):
    caller = caller_for(alice, "tokens:generate", "*:read", scopes=("tokens:generate", "*:read"))
    issued = generate_jwt(caller, chitty_id=alice.chitty_id)
    assert issued.scopes == ("*:read", "tokens:generate")
    assert generate_jwt(caller, chitty_id=alice.chitty_id, scopes=["audit:read"]).scopes == ("audit:read",)
    with pytest.raises(PermissionDenied) as refused:
        generate_jwt(caller, chitty_id=alice.chitty_id, scopes=["audit:write"])
    assert refused.value.code == "ESCALATION_REFUSED"
    assert AuditEvent.objects.filter(action="token.generate", outcome="denied").exists()


def test_minting_for_another_needs_every_scope_in_your_grants(alice, bob, caller_for):
    caller = caller_for(alice, "tokens:manage", "audit:read")
    caller_for(bob, "audit:read", "sessions:revoke")
    assert generate_jwt(caller, chitty_id=bob.chitty_id, scopes=["audit:read"]).scopes == ("audit:read",)
    with pytest.raises(PermissionDenied) as refused:
        generate_jwt(caller, chitty_id=bob.chitty_id, scopes=["sessions:revoke"])
    assert refused.value.code == "ESCALATION_REFUSED"
    # The default is what the credential, alice's grants and bob's grants all hold: not bob's sessions:revoke.
    assert generate_jwt(caller, chitty_id=bob.chitty_id).scopes == ("audit:read",)


def test_exempt_callers_mint_what_the_subject_holds_by_default(alice, system_caller, caller_for):
    assert generate_jwt(system_caller, chitty_id=alice.chitty_id).scopes == ()
    caller_for(alice, "audit:read", "docs:*")
    assert generate_jwt(system_caller, chitty_id=alice.chitty_id).scopes == ("audit:read", "docs:*")
    caller_for(alice, "*")
    assert generate_jwt(system_caller, chitty_id=alice.chitty_id).scopes == ("*",)


@pytest.mark.parametrize(("scopes", "code"), [([], "INVALID_SCOPE"), (["Not A Scope"], "INVALID_SCOPE")])
def test_explicit_scopes_are_validated(scopes, code, alice, system_caller):
    with pytest.raises(ValidationFailed) as refused:
        generate_jwt(system_caller, chitty_id=alice.chitty_id, scopes=scopes)
    assert refused.value.code == code


def test_no_token_for_a_suspended_or_unknown_principal(alice, system_caller):
    suspend_identity(system_caller, alice)
    with pytest.raises(ServiceError) as refused:
        generate_jwt(system_caller, chitty_id=alice.chitty_id)
    assert refused.value.code == "IDENTITY_SUSPENDED"
    with pytest.raises(ServiceError) as refused:
        generate_jwt(system_caller, chitty_id="CHITTY-PEO-NOBODY-1")
    assert refused.value.code == "CHITTY_ID_NOT_FOUND"


def test_validating_your_own_token_needs_no_permission(alice, caller_for, secret):
    caller = caller_for(alice, "tokens:generate")
    issued = generate_jwt(caller, chitty_id=alice.chitty_id)
    assert validate_jwt(caller_for(alice), issued.token).valid
    # Your own token that fails still gets its reason, and the failure is audited.
    forged = craft(HS_HEADER, claims_for(alice), hs256_with(secrets.token_bytes(32)))
    assert validate_jwt(caller_for(alice), forged).code == "BAD_SIGNATURE"
    failure = AuditEvent.objects.get(action="token.validate", outcome="failure")
    assert failure.details["code"] == "BAD_SIGNATURE"


def test_validating_someone_elses_token_needs_tokens_validate(alice, bob, caller_for, system_caller):
    issued = generate_jwt(system_caller, chitty_id=bob.chitty_id)
    with pytest.raises(PermissionDenied) as refused:
        validate_jwt(caller_for(alice), issued.token)
    assert refused.value.extra["permission"] == "tokens:validate"
    with pytest.raises(PermissionDenied):
        validate_jwt(caller_for(alice), "garbage")
    verifier = caller_for(alice, "tokens:validate")
    assert validate_jwt(verifier, issued.token).chitty_id == bob.chitty_id
    assert validate_jwt(verifier, "garbage").code == "MALFORMED"


def test_revoking_someone_elses_token_needs_tokens_manage(alice, bob, caller_for, system_caller):
    issued = generate_jwt(system_caller, chitty_id=bob.chitty_id)
    with pytest.raises(PermissionDenied):
        revoke_jwt(caller_for(alice), token=issued.token)
    with pytest.raises(PermissionDenied):
        revoke_jwt(caller_for(alice, "tokens:generate"), jti=issued.jti)
    assert verify_jwt(issued.token).valid
    revoke_jwt(caller_for(alice, "tokens:manage"), token=issued.token)
    assert verify_jwt(issued.token).code == "REVOKED"


def test_the_token_never_reaches_the_audit_trail(alice, bob, caller_for, system_caller):
    caller = caller_for(alice, "tokens:generate")
    issued = generate_jwt(caller, chitty_id=alice.chitty_id, claims={"note": "hi"})
    other = generate_jwt(system_caller, chitty_id=bob.chitty_id)
    validate_jwt(caller, issued.token)
    with pytest.raises(PermissionDenied):
        validate_jwt(caller, other.token)
    revoke_jwt(caller, token=issued.token)
    validate_jwt(caller, issued.token)
    events = list(AuditEvent.objects.values("actor", "action", "target", "details"))
    assert {"token.generate", "token.revoke", "token.validate", "authorization.denied"} <= {
        event["action"] for event in events
    }
    dumped = json.dumps(events, default=str)
    for token in (issued.token, other.token):
        assert token.split(".")[2] not in dumped and token.split(".")[1] not in dumped


# Signing keys


def test_rotation_keeps_old_tokens_valid_and_publishes_both_keys(settings, alice, system_caller):
    settings.JWT_SIGNING_ALGORITHM = "EdDSA"
    before = generate_jwt(system_caller, chitty_id=alice.chitty_id)
    old_kid = before.kid

    new_key = rotate_signing_key(system_caller, algorithm="ES256")
    after = generate_jwt(system_caller, chitty_id=alice.chitty_id)

    assert (after.kid, after.algorithm) == (new_key.kid, "ES256") and after.kid != old_kid
    assert verify_jwt(before.token).valid and verify_jwt(after.token).valid
    assert [key["kid"] for key in jwks_document()["keys"]] == [new_key.kid, old_kid]
    old = SigningKey.objects.get(kid=old_kid)
    assert not old.is_active and old.private_key_encrypted == ""
    assert old.publish_until >= timezone.now() + timedelta(seconds=SEVEN_DAYS)
    rotation = AuditEvent.objects.get(action="signing_key.rotate")
    assert rotation.details["kid"] == new_key.kid and rotation.details["retired_kids"] == [old_kid]
    assert SigningKey.objects.filter(is_active=True).count() == 1


def test_a_retired_key_past_its_publication_window_verifies_nothing(settings, alice, system_caller):
    settings.JWT_SIGNING_ALGORITHM = "EdDSA"
    before = generate_jwt(system_caller, chitty_id=alice.chitty_id)
    assert verify_jwt(before.token).valid
    rotate_signing_key(system_caller)
    # As if every token the old key signed had expired by now.
    SigningKey.objects.filter(kid=before.kid).update(publish_until=timezone.now())
    assert verify_jwt(before.token).code == "UNKNOWN_KID"
    assert before.kid not in [key["kid"] for key in jwks_document()["keys"]]


def test_rotation_needs_permission_and_a_known_algorithm(alice, caller_for, system_caller):
    with pytest.raises(PermissionDenied):
        rotate_signing_key(caller_for(alice))
    with pytest.raises(ValidationFailed) as refused:
        rotate_signing_key(system_caller, algorithm="HS256")
    assert refused.value.code == "INVALID_ALGORITHM"
    assert not SigningKey.objects.exists()


def test_jwks_holds_only_public_material(settings, alice, system_caller):
    settings.JWT_SIGNING_ALGORITHM = "ES256"
    generate_jwt(system_caller, chitty_id=alice.chitty_id)
    rotate_signing_key(system_caller, algorithm="EdDSA")
    for jwk in jwks_document()["keys"]:
        assert "d" not in jwk and jwk["use"] == "sig" and jwk["alg"] in ("EdDSA", "ES256")


def test_private_keys_are_encrypted_at_rest_and_the_encryption_key_rotates(settings, db):
    first, second = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.SIGNING_KEY_ENCRYPTION_KEY = first
    stored = active_signing_key()
    assert "PRIVATE KEY" not in stored.private_key_encrypted
    assert b"PRIVATE KEY" in Fernet(first).decrypt(stored.private_key_encrypted.encode())

    settings.SIGNING_KEY_ENCRYPTION_KEY = f"{second},{first}"
    assert signing_key_for_issuing().kid == stored.kid

    rotate_signing_key(Caller.system("tests"))
    assert b"PRIVATE KEY" in Fernet(second).decrypt(active_signing_key().private_key_encrypted.encode())


def test_reencrypting_lets_the_old_encryption_key_be_dropped(settings, db, alice, system_caller):
    settings.JWT_SIGNING_ALGORITHM = "EdDSA"
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.SIGNING_KEY_ENCRYPTION_KEY = old
    kid = active_signing_key().kid
    settings.SIGNING_KEY_ENCRYPTION_KEY = f"{new},{old}"
    output = io.StringIO()
    call_command("reencrypt_signing_keys", stdout=output)
    assert kid in output.getvalue()

    settings.SIGNING_KEY_ENCRYPTION_KEY = new
    invalidate_everything_now()  # a fresh process: nothing decrypted is cached
    issued = generate_jwt(system_caller, chitty_id=alice.chitty_id)
    assert issued.kid == kid and verify_jwt(issued.token).valid
    event = AuditEvent.objects.filter(action="signing_key.reencrypt").get()
    assert event.details == {"kids": [kid]}


def test_reencrypting_with_the_old_encryption_key_already_dropped_changes_nothing(settings, db):
    settings.SIGNING_KEY_ENCRYPTION_KEY = Fernet.generate_key().decode()
    stored = active_signing_key().private_key_encrypted
    settings.SIGNING_KEY_ENCRYPTION_KEY = Fernet.generate_key().decode()
    with pytest.raises(CommandError, match="SIGNING_KEY_UNAVAILABLE"):
        call_command("reencrypt_signing_keys", stdout=io.StringIO())
    assert active_signing_key().private_key_encrypted == stored
    assert not AuditEvent.objects.filter(action="signing_key.reencrypt").exists()


def test_a_key_encrypted_under_a_dropped_encryption_key_is_unavailable(settings, db):
    settings.SIGNING_KEY_ENCRYPTION_KEY = Fernet.generate_key().decode()
    active_signing_key()
    settings.SIGNING_KEY_ENCRYPTION_KEY = Fernet.generate_key().decode()
    with pytest.raises(ServiceError) as refused:
        signing_key_for_issuing()
    assert refused.value.code == "SIGNING_KEY_UNAVAILABLE" and refused.value.http_status == 503


def test_a_malformed_encryption_key_is_a_configuration_error(settings, db):
    settings.SIGNING_KEY_ENCRYPTION_KEY = "not-a-fernet-key"
    with pytest.raises(ImproperlyConfigured):
        active_signing_key()


def test_an_unknown_signing_algorithm_setting_is_a_configuration_error(settings, alice, system_caller):
    settings.JWT_SIGNING_ALGORITHM = "RS256"
    with pytest.raises(ImproperlyConfigured):
        generate_jwt(system_caller, chitty_id=alice.chitty_id)


def test_rotate_signing_key_command_prints_the_new_kid(db):
    out = io.StringIO()
    call_command("rotate_signing_key", "--algorithm", "ES256", stdout=out)
    active = SigningKey.objects.get(is_active=True)
    assert out.getvalue().strip() == active.kid and active.algorithm == "ES256"
    assert AuditEvent.objects.get(action="signing_key.rotate").actor == "system:cli"


def test_ending_a_jwt_session_revokes_its_token(alice, system_caller):
    issued = generate_jwt(system_caller, chitty_id=alice.chitty_id)
    assert verify_jwt(issued.token).valid
    revoke_jti_for_session(issued.jti, alice.chitty_id, actor="system:tests", reason="session ended")
    assert verify_jwt(issued.token).code == "REVOKED"
    assert AuditEvent.objects.get(action="token.revoke").details["by"] == "session"
