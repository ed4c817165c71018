"""`POST /api/v1/permissions/check` with `{"checks": [...]}`: many checks in one request, each answered by the
single check's rules and on its own."""

import pytest
from rest_framework.test import APIClient

from grants.services import MAX_BULK_CHECKS, grant_permission, revoke_grant
from kernel.callers import Caller
from keys.services import generate_api_key

ADMIN, ALICE, BOB = "CHITTY-PEO-ADMIN1-A", "CHITTY-PEO-ALICE1-A", "CHITTY-PEO-BOB1-A"
GHOST = "CHITTY-PEO-GHOST1-A"  # well-formed, never registered
SYSTEM = Caller.system("tests")

pytestmark = pytest.mark.django_db


@pytest.fixture
def keys(make_identity) -> dict[str, str]:
    """ADMIN holds `*`; ALICE holds `documents:read`; BOB holds `documents:*` on one document only."""
    for chitty_id in (ADMIN, ALICE, BOB):
        make_identity(chitty_id)
    grant_permission(SYSTEM, grantee_chitty_id=ADMIN, permission="*")
    grant_permission(SYSTEM, grantee_chitty_id=ALICE, permission="documents:read")
    grant_permission(SYSTEM, grantee_chitty_id=BOB, permission="documents:*", resource_id="doc-1")
    return {
        chitty_id: generate_api_key(SYSTEM, chitty_id=chitty_id, scopes=["*"]).secret
        for chitty_id in (ADMIN, ALICE, BOB)
    }


def check(secret: str, body) -> tuple[int, dict]:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    response = client.post("/api/v1/permissions/check", body, format="json")
    return response.status_code, response.json()


def test_each_check_is_answered_as_the_single_check_would(keys):
    checks = [
        {"chitty_id": ALICE, "permission": "documents:read"},
        {"chitty_id": ALICE, "permission": "documents:write"},
        {"chitty_id": BOB, "permission": "documents:delete", "resource": "doc-1"},
        {"chitty_id": BOB, "permission": "documents:delete", "resource": "doc-2"},
    ]
    status, body = check(keys[ADMIN], {"checks": checks})
    assert status == 200, body
    assert [result["allowed"] for result in body["results"]] == [True, False, True, False]
    assert body["all_allowed"] is False
    for one, result in zip(checks, body["results"], strict=True):
        single_status, single = check(keys[ADMIN], one)
        assert single_status == 200
        assert result == {**single, "error": None}


def test_all_allowed_only_when_every_check_allows(keys):
    checks = [
        {"chitty_id": ALICE, "permission": "documents:read"},
        {"chitty_id": ADMIN, "permission": "audit:read"},
    ]
    status, body = check(keys[ADMIN], {"checks": checks})
    assert status == 200 and body["all_allowed"] is True


def test_a_refused_or_malformed_check_never_allows_and_hides_no_other_answer(keys):
    """Alice may check herself but nobody else: the checks aimed at others are refused alike whether or not the
    target is registered, a malformed permission is refused with its own code, and her own is answered."""
    checks = [
        {"chitty_id": BOB, "permission": "documents:read"},
        {"chitty_id": GHOST, "permission": "documents:read"},
        {"chitty_id": ALICE, "permission": "nonsense"},
        {"chitty_id": ALICE, "permission": "documents:read"},
    ]
    status, body = check(keys[ALICE], {"checks": checks})
    assert status == 200, body
    bob, ghost, malformed, own = body["results"]
    for refused in (bob, ghost):
        assert refused["allowed"] is False
        assert refused["error"]["code"] == "PERMISSION_DENIED"
    assert bob["error"] == ghost["error"]
    assert malformed["allowed"] is False and malformed["error"]["code"] == "INVALID_PERMISSION"
    assert own["allowed"] is True and own["error"] is None
    assert body["all_allowed"] is False


def test_a_revoked_grant_is_seen_by_the_next_bulk_check(keys):
    grant = grant_permission(SYSTEM, grantee_chitty_id=ALICE, permission="audit:read")
    checks = [
        {"chitty_id": ALICE, "permission": "audit:read"},
        {"chitty_id": ALICE, "permission": "documents:read"},
    ]
    assert check(keys[ADMIN], {"checks": checks})[1]["all_allowed"] is True
    revoke_grant(SYSTEM, grant.pk)
    _, body = check(keys[ADMIN], {"checks": checks})
    assert [result["allowed"] for result in body["results"]] == [False, True]


@pytest.mark.parametrize(
    "body",
    [
        {"checks": []},
        {"checks": [{"chitty_id": ALICE, "permission": "documents:read"}] * (MAX_BULK_CHECKS + 1)},
        {"checks": "documents:read"},
        {"checks": [{"chitty_id": ALICE}]},
        {"checks": [["not", "an", "object"]]},
    ],
    ids=["empty", "too-many", "not-a-list", "missing-permission", "not-an-object"],
)
def test_a_malformed_request_is_refused_whole_with_a_stable_code(keys, body):
    status, answer = check(keys[ADMIN], body)
    assert status == 400, answer
    assert answer["error"]["code"] == "INVALID_INPUT"
    assert set(answer["error"]["fields"]) == {"checks"}


def test_the_schema_documents_both_shapes(keys):
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()
    components = schema["components"]["schemas"]
    assert "PermissionCheckRequest" in components and "BulkPermissionCheck" in components
    assert set(components["PermissionDecisions"]["properties"]) == {"all_allowed", "results"}
