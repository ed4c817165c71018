"""What the credential hot paths' speedups must not cost: a fresh JWT needs no query while nothing changed,
revocation still holds when there are too many revoked jtis to preload, and a cold API key verification
still hands out a complete identity."""

import pytest
from django.forms.models import model_to_dict

from grants.services import grant_permission
from identities.models import Identity
from kernel.callers import Caller
from keys import token_verification
from keys.services import generate_api_key, verify_api_key
from keys.tokens import generate_jwt, revoke_jwt, verify_jwt

SYSTEM = Caller.system("tests")


@pytest.fixture
def alice(make_identity) -> Identity:
    return make_identity("CHITTY-PEO-HOTPATH-A", display_name="Alice")


def test_fresh_tokens_need_no_query_once_the_revoked_set_is_loaded(alice, django_assert_num_queries):
    revoke_jwt(SYSTEM, jti="revoked-before")
    first, *fresh = (generate_jwt(SYSTEM, chitty_id=alice.chitty_id).token for _ in range(4))
    assert verify_jwt(first).valid
    with django_assert_num_queries(0):
        assert all(verify_jwt(token).valid for token in fresh)


@pytest.mark.parametrize("preload_bound", [token_verification.MAX_PRELOADED_REVOCATIONS, 1])
def test_revocation_holds_whether_or_not_the_revoked_jtis_fit_in_memory(alice, preload_bound, monkeypatch):
    monkeypatch.setattr(token_verification, "MAX_PRELOADED_REVOCATIONS", preload_bound)
    revoked, kept = (generate_jwt(SYSTEM, chitty_id=alice.chitty_id) for _ in range(2))
    revoke_jwt(SYSTEM, jti="unrelated")
    assert verify_jwt(revoked.token).valid and verify_jwt(kept.token).valid

    revoke_jwt(SYSTEM, token=revoked.token)

    assert verify_jwt(revoked.token).code == "REVOKED"
    assert verify_jwt(kept.token).valid


def test_a_cold_key_verification_hands_out_the_complete_identity(alice, django_assert_num_queries):
    grant_permission(SYSTEM, grantee_chitty_id=alice.chitty_id, permission="documents:read")
    issued = generate_api_key(SYSTEM, chitty_id=alice.chitty_id, scopes=["documents:read"])
    stored = Identity.objects.get(pk=alice.pk)
    with django_assert_num_queries(1):
        verification = verify_api_key(issued.secret)
    with django_assert_num_queries(0):
        assert model_to_dict(verification.identity) == model_to_dict(stored)
        assert verification.identity.created_at == stored.created_at
        assert verification.identity.updated_at == stored.updated_at
    assert verification.scopes == ("documents:read",)
    assert verification.identity._state.db == stored._state.db and not verification.identity._state.adding
