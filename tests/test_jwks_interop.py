"""Tokens minted here verify with an independent JOSE library (joserfc) that knows nothing but the JWKS
document served at /.well-known/jwks.json."""

import json

import pytest
from django.test import Client
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from grants.services import grant_permission
from keys.signing_keys import rotate_signing_key
from keys.tokens import generate_jwt

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


def served_key_set() -> KeySet:
    response = Client().get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "max-age=" in response["Cache-Control"]
    return KeySet.import_key_set(json.loads(response.content))


def verified_claims(token: str, key_set: KeySet, algorithm: str, chitty_id: str) -> dict:
    decoded = jwt.decode(token, key_set, algorithms=[algorithm])
    assert decoded.header["typ"] == "at+jwt" and decoded.header["alg"] == algorithm
    JWTClaimsRegistry(
        iss={"essential": True, "value": "chittyauth"},
        aud={"essential": True, "value": "chittyos"},
        sub={"essential": True, "value": chitty_id},
        exp={"essential": True},
        jti={"essential": True},
    ).validate(decoded.claims)
    return decoded.claims


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256"])
def test_a_minted_token_verifies_with_joserfc_from_the_served_jwks(
    algorithm, settings, make_identity, system_caller
):
    settings.JWT_SIGNING_ALGORITHM = algorithm
    identity = make_identity()
    grant_permission(system_caller, grantee_chitty_id=identity.chitty_id, permission="audit:read")
    issued = generate_jwt(system_caller, chitty_id=identity.chitty_id, scopes=["audit:read"])

    claims = verified_claims(issued.token, served_key_set(), algorithm, identity.chitty_id)

    assert claims["chitty_id"] == identity.chitty_id and claims["scope"] == "audit:read"
    assert claims["jti"] == issued.jti


def test_after_rotation_the_jwks_verifies_old_and_new_tokens(settings, make_identity, system_caller):
    settings.JWT_SIGNING_ALGORITHM = "EdDSA"
    identity = make_identity()
    before = generate_jwt(system_caller, chitty_id=identity.chitty_id)
    rotate_signing_key(system_caller, algorithm="ES256")
    after = generate_jwt(system_caller, chitty_id=identity.chitty_id)

    key_set = served_key_set()

    assert verified_claims(before.token, key_set, "EdDSA", identity.chitty_id)["jti"] == before.jti
    assert verified_claims(after.token, key_set, "ES256", identity.chitty_id)["jti"] == after.jti


def test_a_tampered_token_fails_joserfc_verification(settings, make_identity, system_caller):
    settings.JWT_SIGNING_ALGORITHM = "ES256"
    identity = make_identity()
    header, _, signature = generate_jwt(system_caller, chitty_id=identity.chitty_id).token.split(".")
    _, payload, _ = generate_jwt(system_caller, chitty_id=identity.chitty_id, expires_in="7d").token.split(
        "."
    )

    with pytest.raises(BadSignatureError):
        jwt.decode(f"{header}.{payload}.{signature}", served_key_set(), algorithms=["ES256"])


def test_the_served_jwks_has_no_private_members(settings, make_identity, system_caller):
    settings.JWT_SIGNING_ALGORITHM = "EdDSA"
    generate_jwt(system_caller, chitty_id=make_identity().chitty_id)
    document = Client().get("/.well-known/jwks.json").json()
    assert len(document["keys"]) == 1
    assert set(document["keys"][0]) == {"kty", "crv", "x", "kid", "alg", "use"}


def test_the_jwks_is_read_only(db):
    assert Client().post("/.well-known/jwks.json").status_code == 405
