"""A credential never outlives the credential that minted it: a short-lived token holding api_keys:generate
or tokens:generate cannot turn itself into a longer-lived key or token."""

from datetime import timedelta

import pytest
from django.utils import timezone

from grants.services import grant_permission
from kernel.callers import Caller
from kernel.errors import ValidationFailed
from keys.credentials import authenticate_bearer
from keys.models import ApiKey
from keys.services import generate_api_key, rotate_api_key, validate_api_key
from keys.tokens import generate_jwt

SYSTEM = Caller.system("tests")
# A token minted for alice carries only what she holds, so the keys it mints name scopes within that.
SCOPES = ["api_keys:validate"]


@pytest.fixture
def alice(make_identity):
    identity = make_identity("CHITTY-PEO-LIFETIME-A")
    for permission in ("api_keys:generate", "tokens:generate", "api_keys:validate"):
        grant_permission(SYSTEM, grantee_chitty_id=identity.chitty_id, permission=permission)
    return identity


def short_lived_caller(alice) -> Caller:
    token = generate_jwt(SYSTEM, chitty_id=alice.chitty_id, expires_in="10m").token
    return authenticate_bearer(token)


def test_a_key_minted_with_a_short_lived_token_expires_with_it(alice):
    caller = short_lived_caller(alice)
    forever = generate_api_key(caller, chitty_id=alice.chitty_id, scopes=SCOPES)
    later = generate_api_key(
        caller, chitty_id=alice.chitty_id, scopes=SCOPES, expires_at=timezone.now() + timedelta(days=9)
    )
    sooner_at = timezone.now() + timedelta(minutes=1)
    sooner = generate_api_key(caller, chitty_id=alice.chitty_id, scopes=SCOPES, expires_at=sooner_at)
    assert forever.api_key.expires_at == caller.expires_at
    assert later.api_key.expires_at == caller.expires_at
    assert sooner.api_key.expires_at == sooner_at
    assert authenticate_bearer(forever.secret).expires_at == caller.expires_at


def test_rotating_with_a_short_lived_token_does_not_make_a_key_that_outlives_it(alice):
    forever = generate_api_key(SYSTEM, chitty_id=alice.chitty_id, scopes=SCOPES)
    caller = short_lived_caller(alice)
    rotated = rotate_api_key(caller, forever.api_key.key_id)
    assert rotated.api_key.expires_at == caller.expires_at


def test_a_key_in_its_rotation_overlap_mints_nothing_that_outlives_the_overlap(alice):
    old = generate_api_key(SYSTEM, chitty_id=alice.chitty_id)
    rotate_api_key(SYSTEM, old.api_key.key_id, overlap_seconds=120)
    overlap_ends = ApiKey.objects.get(key_id=old.api_key.key_id).revoked_at
    caller = authenticate_bearer(old.secret)
    assert caller.expires_at == overlap_ends
    assert validate_api_key(caller, old.secret).expires_at == overlap_ends
    token = generate_jwt(caller, chitty_id=alice.chitty_id, expires_in="1h")
    assert token.expires_at == overlap_ends.replace(microsecond=0)


def test_a_credential_about_to_expire_mints_nothing(alice):
    key = generate_api_key(
        SYSTEM, chitty_id=alice.chitty_id, expires_at=timezone.now() + timedelta(seconds=1)
    )
    caller = authenticate_bearer(key.secret)
    for mint in (
        lambda: generate_jwt(caller, chitty_id=alice.chitty_id),
        lambda: generate_api_key(caller, chitty_id=alice.chitty_id),
    ):
        with pytest.raises(ValidationFailed) as refused:
            mint()
        assert refused.value.code == "CREDENTIAL_EXPIRING"
