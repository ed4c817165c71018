"""Over REST, as an outside tester would try it: nobody mints a credential claiming a permission its subject
does not hold, and a caller that may not act on others cannot tell which ChittyIDs are registered."""

from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from grants.models import Grant
from grants.services import grant_permission, revoke_grant
from kernel.callers import Caller
from keys.services import generate_api_key

ALICE = "CHITTY-PEO-ALICE1-A"
BOB = "CHITTY-PEO-BOB1-A"
MANAGER = "CHITTY-PEO-MANAGER1-A"
GHOST = "CHITTY-PEO-GHOST1-A"  # well-formed, never registered
SYSTEM = Caller.system("tests")

pytestmark = pytest.mark.django_db


def bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def grant(chitty_id: str, *permissions: str) -> None:
    for permission in permissions:
        grant_permission(SYSTEM, grantee_chitty_id=chitty_id, permission=permission)


@pytest.fixture
def keys(make_identity) -> dict[str, str]:
    """Alice holds what the issue's tester held; Bob holds nothing; each has a key scoped `*`."""
    for chitty_id in (ALICE, BOB, MANAGER):
        make_identity(chitty_id)
    grant(ALICE, "api_keys:generate", "tokens:generate", "authorizations:grant")
    return {
        chitty_id: generate_api_key(SYSTEM, chitty_id=chitty_id, scopes=["*"]).secret
        for chitty_id in (ALICE, BOB, MANAGER)
    }


def refusal(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code, error
    return error


def claimed_scope(token: str) -> str:
    return jwt.decode(token, settings.JWT_SECRET, algorithms=["HS256"], audience=settings.JWT_AUDIENCE)[
        "scope"
    ]


class TestMintingTokens:
    def test_a_token_with_a_scope_the_principal_does_not_hold_is_refused(self, keys):
        alice = bearer(keys[ALICE])
        for scope in ("audit:read", "tokens:manage", "*", "tokens:*"):
            error = refusal(
                alice.post("/api/v1/tokens", {"scopes": [scope]}, format="json"), 400, "SCOPE_EXCEEDS_GRANTS"
            )
            assert error["scope"] == scope and ALICE in error["message"]
        denied = AuditEvent.objects.filter(action="token.generate", outcome="denied").order_by("sequence")
        assert [event.details["scope"] for event in denied] == [
            "audit:read",
            "tokens:manage",
            "*",
            "tokens:*",
        ]
        assert all(event.actor == ALICE and event.target == ALICE for event in denied)
        assert not AuditEvent.objects.filter(action="token.generate", outcome="success").exists()

    def test_the_same_request_for_a_key_gets_the_same_answer(self, keys):
        response = bearer(keys[ALICE]).post(
            "/api/v1/keys", {"chitty_id": ALICE, "scopes": ["audit:read"]}, format="json"
        )
        assert refusal(response, 400, "SCOPE_EXCEEDS_GRANTS")["scope"] == "audit:read"
        assert AuditEvent.objects.filter(action="api_key.generate", outcome="denied").count() == 1

    def test_a_token_names_exactly_what_its_principal_holds_by_default(self, keys):
        minted = bearer(keys[ALICE]).post("/api/v1/tokens", {}, format="json")
        assert minted.status_code == 201, minted.content
        held = "api_keys:generate authorizations:grant tokens:generate"
        assert claimed_scope(minted.json()["token"]) == held
        assert minted.json()["scopes"] == held.split()

    def test_a_token_minted_with_a_token_is_refused_a_scope_neither_holds(self, keys):
        first = bearer(keys[ALICE]).post("/api/v1/tokens", {}, format="json").json()["token"]
        with_token = bearer(first)
        for scope in ("audit:read", "tokens:manage"):
            response = with_token.post("/api/v1/tokens", {"scopes": [scope]}, format="json")
            assert refusal(response, 403, "ESCALATION_REFUSED")["scope"] == scope
        narrower = with_token.post("/api/v1/tokens", {"scopes": ["tokens:generate"]}, format="json")
        assert narrower.status_code == 201, narrower.content
        assert claimed_scope(narrower.json()["token"]) == "tokens:generate"

    def test_a_manager_mints_for_another_only_what_both_hold(self, keys):
        grant(MANAGER, "tokens:manage", "audit:read", "sessions:read")
        grant(BOB, "audit:read")
        manager = bearer(keys[MANAGER])
        beyond_bob = manager.post(
            "/api/v1/tokens", {"chitty_id": BOB, "scopes": ["sessions:read"]}, format="json"
        )
        assert refusal(beyond_bob, 400, "SCOPE_EXCEEDS_GRANTS")["scope"] == "sessions:read"
        beyond_manager = manager.post("/api/v1/tokens", {"chitty_id": BOB, "scopes": ["*"]}, format="json")
        assert refusal(beyond_manager, 403, "ESCALATION_REFUSED")["scope"] == "*"
        default = manager.post("/api/v1/tokens", {"chitty_id": BOB}, format="json")
        assert default.status_code == 201, default.content
        assert claimed_scope(default.json()["token"]) == "audit:read"

    def test_a_token_expires_with_the_grant_behind_its_scope(self, keys):
        soon = timezone.now() + timedelta(minutes=5)
        grant_permission(SYSTEM, grantee_chitty_id=ALICE, permission="audit:read", expires_at=soon)
        minted = bearer(keys[ALICE]).post(
            "/api/v1/tokens", {"scopes": ["audit:read"], "expires_in": "1h"}, format="json"
        )
        assert minted.status_code == 201, minted.content
        exp = jwt.decode(minted.json()["token"], options={"verify_signature": False})["exp"]
        assert exp == int(soon.timestamp())


class TestRotatingKeys:
    def test_a_key_whose_scope_is_no_longer_held_cannot_be_rerolled(self, keys):
        grant(ALICE, "audit:read")
        issued = generate_api_key(SYSTEM, chitty_id=ALICE, scopes=["audit:read"])
        revoke_grant(SYSTEM, Grant.objects.get(principal__chitty_id=ALICE, permission="audit:read").pk)
        response = bearer(keys[ALICE]).post(f"/api/v1/keys/{issued.api_key.key_id}/rotate", {}, format="json")
        assert refusal(response, 400, "SCOPE_EXCEEDS_GRANTS")["scope"] == "audit:read"
        assert AuditEvent.objects.filter(action="api_key.rotate", outcome="denied").count() == 1
        assert bearer(keys[ALICE]).get(f"/api/v1/keys/{issued.api_key.key_id}").json()["revoked_at"] is None


# Every request an unprivileged caller could aim at another principal, with the permission it needs: first
# those that look a registered principal up, then those that mint for one (which registers an ID the
# authority vouches for on first use).
LOOKING_UP = [
    ("get", "/api/v1/identities/{id}", None, "identities:read"),
    ("post", "/api/v1/identities/{id}/suspend", {"reason": "probe"}, "identities:manage"),
    ("post", "/api/v1/identities/{id}/reactivate", {"reason": "probe"}, "identities:manage"),
    (
        "post",
        "/api/v1/grants",
        {"grantee_chitty_id": "{id}", "permission": "audit:read"},
        "authorizations:grant",
    ),
    ("get", "/api/v1/grants?chitty_id={id}", None, "permissions:check"),
    (
        "post",
        "/api/v1/permissions/check",
        {"chitty_id": "{id}", "permission": "audit:read"},
        "permissions:check",
    ),
    ("get", "/api/v1/sessions?chitty_id={id}", None, "sessions:read"),
    ("post", "/api/v1/sessions/end-all", {"chitty_id": "{id}"}, "sessions:revoke"),
    ("get", "/api/v1/keys?chitty_id={id}", None, "api_keys:manage"),
]
AIMED_AT = [
    *LOOKING_UP,
    ("post", "/api/v1/keys", {"chitty_id": "{id}"}, "api_keys:manage"),
    ("post", "/api/v1/tokens", {"chitty_id": "{id}"}, "tokens:manage"),
]


def aimed(client: APIClient, method: str, path: str, body: dict | None, chitty_id: str):
    filled = {name: value.replace("{id}", chitty_id) for name, value in (body or {}).items()}
    return getattr(client, method)(path.replace("{id}", chitty_id), filled or None, format="json")


class TestNoExistenceOracle:
    @pytest.mark.parametrize(("method", "path", "body", "permission"), AIMED_AT)
    def test_registered_and_unregistered_targets_get_the_same_refusal(
        self, keys, method, path, body, permission
    ):
        bob = bearer(keys[BOB])
        registered = aimed(bob, method, path, body, ALICE)
        unregistered = aimed(bob, method, path, body, GHOST)
        assert refusal(registered, 403, "PERMISSION_DENIED")["permission"] == permission
        assert unregistered.status_code == registered.status_code
        assert unregistered.json() == registered.json()

    @pytest.mark.parametrize(("method", "path", "body", "permission"), LOOKING_UP)
    def test_a_caller_holding_the_permission_is_told_the_target_is_not_registered(
        self, keys, method, path, body, permission
    ):
        grant(MANAGER, permission)
        response = aimed(bearer(keys[MANAGER]), method, path, body, GHOST)
        assert refusal(response, 404, "IDENTITY_NOT_FOUND")

    def test_revoking_a_grant_that_exists_or_not_gets_the_same_refusal(self, keys):
        existing = Grant.objects.filter(principal__chitty_id=ALICE).first().pk
        bob = bearer(keys[BOB])
        first = bob.post(f"/api/v1/grants/{existing}/revoke", {}, format="json")
        second = bob.post(f"/api/v1/grants/{existing + 1000}/revoke", {}, format="json")
        assert refusal(first, 403, "PERMISSION_DENIED")["permission"] == "authorizations:revoke"
        assert second.json() == first.json()
