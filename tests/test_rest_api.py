"""The REST API end to end through Django's test client: authentication, permissions, grants, errors."""

import io
import json
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from grants.models import Grant
from grants.services import grant_permission
from identities.models import Identity
from kernel.callers import Caller
from keys.services import generate_api_key

ADMIN = "CHITTY-PEO-ADMIN1-A"
ALICE = "CHITTY-PEO-ALICE1-A"
BOB = "CHITTY-PEO-BOB1-A"

pytestmark = pytest.mark.django_db


def bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture
def system() -> Caller:
    return Caller.system("tests")


@pytest.fixture
def principals(make_identity, system):
    """An administrator holding `*`, and Alice and Bob holding nothing yet; each with a key scoped `*`."""
    keys = {}
    for chitty_id in (ADMIN, ALICE, BOB):
        make_identity(chitty_id)
    grant_permission(system, grantee_chitty_id=ADMIN, permission="*")
    for chitty_id in (ADMIN, ALICE, BOB):
        keys[chitty_id] = generate_api_key(system, chitty_id=chitty_id, name="test", scopes=["*"]).secret
    return keys


def grant(system: Caller, chitty_id: str, permission: str, **kwargs) -> Grant:
    return grant_permission(system, grantee_chitty_id=chitty_id, permission=permission, **kwargs)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


class TestAuthentication:
    def test_no_credential_is_401_with_www_authenticate(self, principals):
        response = APIClient().get("/api/v1/whoami")
        assert_error(response, 401, "UNAUTHENTICATED")
        assert response["WWW-Authenticate"].startswith('Bearer realm="chittyauth"')

    @pytest.mark.parametrize(
        ("header", "reason"),
        [
            ("Bearer not-a-credential", "MALFORMED"),
            ("Basic dXNlcjpwYXNz", "MALFORMED"),
            ("Bearer chitty_live_" + "A" * 49, "BAD_CHECKSUM"),
        ],
    )
    def test_bad_credentials_are_401_with_their_reason_and_audited(self, principals, header, reason):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=header)
        response = client.get("/api/v1/whoami")
        error = assert_error(response, 401, "INVALID_CREDENTIAL")
        assert error["reason"] == reason
        assert 'error="invalid_token"' in response["WWW-Authenticate"]
        failure = AuditEvent.objects.filter(action="auth.failed").latest("sequence")
        assert failure.details["code"] == reason
        assert "A" * 20 not in json.dumps(failure.details)

    def test_unknown_key_with_a_valid_checksum_is_not_found(self, principals, system):
        issued = generate_api_key(system, chitty_id=BOB, scopes=["*"])
        Identity.objects.filter(chitty_id=BOB).delete()  # the key row goes with it
        assert bearer(issued.secret).get("/api/v1/whoami").json()["error"]["reason"] == "NOT_FOUND"

    def test_whoami_names_the_principal_and_credential(self, principals):
        body = bearer(principals[ALICE]).get("/api/v1/whoami").json()
        assert body["chitty_id"] == ALICE
        assert body["credential_type"] == "api_key"
        assert body["credential_id"].startswith("key_")
        assert body["scopes"] == ["*"]

    def test_a_suspended_identitys_key_stops_at_once(self, principals):
        client = bearer(principals[ALICE])
        assert client.get("/api/v1/whoami").status_code == 200
        response = bearer(principals[ADMIN]).post(f"/api/v1/identities/{ALICE}/suspend", {"reason": "test"})
        assert response.status_code == 200
        assert response.json()["status"] == "suspended"
        assert client.get("/api/v1/whoami").json()["error"]["reason"] == "IDENTITY_SUSPENDED"

    def test_a_jwt_authenticates_too(self, principals, system):
        grant(system, ALICE, "tokens:generate")
        minted = bearer(principals[ALICE]).post("/api/v1/tokens", {"expires_in": "15m"}, format="json")
        assert minted.status_code == 201, minted.content
        body = bearer(minted.json()["token"]).get("/api/v1/whoami").json()
        assert body["chitty_id"] == ALICE
        assert body["credential_type"] == "jwt"


class TestGrants:
    def test_granting_needs_authorizations_grant(self, principals):
        response = bearer(principals[ALICE]).post(
            "/api/v1/grants", {"grantee_chitty_id": BOB, "permission": "audit:read"}, format="json"
        )
        error = assert_error(response, 403, "PERMISSION_DENIED")
        assert error["permission"] == "authorizations:grant"
        denied = AuditEvent.objects.filter(action="authorization.denied").latest("sequence")
        assert denied.actor == ALICE
        assert denied.details["permission"] == "authorizations:grant"

    def test_no_escalation(self, principals, system):
        grant(system, ALICE, "authorizations:grant")
        grant(system, ALICE, "api_keys:*")
        client = bearer(principals[ALICE])
        allowed = client.post(
            "/api/v1/grants", {"grantee_chitty_id": BOB, "permission": "api_keys:generate"}, format="json"
        )
        assert allowed.status_code == 201, allowed.content
        assert allowed.json()["granted_by"] == ALICE
        for wider in ("audit:read", "*", "*:generate"):
            refused = client.post(
                "/api/v1/grants", {"grantee_chitty_id": BOB, "permission": wider}, format="json"
            )
            assert_error(refused, 403, "ESCALATION_REFUSED")

    def test_a_resource_scoped_grant_only_grants_that_resource(self, principals, system):
        grant(system, ALICE, "authorizations:grant")
        grant(system, ALICE, "documents:read", resource_id="doc-1")
        client = bearer(principals[ALICE])
        ok = client.post(
            "/api/v1/grants",
            {"grantee_chitty_id": BOB, "permission": "documents:read", "resource": "doc-1"},
            format="json",
        )
        assert ok.status_code == 201
        refused = client.post(
            "/api/v1/grants", {"grantee_chitty_id": BOB, "permission": "documents:read"}, format="json"
        )
        assert_error(refused, 403, "ESCALATION_REFUSED")

    @pytest.mark.parametrize("permission", ["audit:read", "api_keys:*", "sessions:revoke"])
    def test_a_resource_limited_grant_of_a_permission_checked_on_no_resource_is_refused(
        self, principals, permission
    ):
        response = bearer(principals[ADMIN]).post(
            "/api/v1/grants",
            {"grantee_chitty_id": BOB, "permission": permission, "resource": "doc-1"},
            format="json",
        )

        error = assert_error(response, 400, "RESOURCE_NOT_APPLICABLE")
        assert "would never allow anything" in error["message"]
        assert not Grant.objects.filter(principal__chitty_id=BOB, permission=permission).exists()

    @pytest.mark.parametrize("permission", ["*", "*:read", "documents:read"])
    def test_a_resource_limited_grant_that_can_match_is_made(self, principals, permission):
        response = bearer(principals[ADMIN]).post(
            "/api/v1/grants",
            {"grantee_chitty_id": BOB, "permission": permission, "resource": "doc-1"},
            format="json",
        )

        assert response.status_code == 201, response.content

    def test_grantor_must_be_the_caller(self, principals):
        response = bearer(principals[ADMIN]).post(
            "/api/v1/grants",
            {"grantee_chitty_id": BOB, "permission": "audit:read", "grantor_chitty_id": ALICE},
            format="json",
        )
        assert_error(response, 403, "GRANTOR_MISMATCH")
        assert not Grant.objects.filter(principal__chitty_id=BOB).exists()
        same = bearer(principals[ADMIN]).post(
            "/api/v1/grants",
            {"grantee_chitty_id": BOB, "permission": "audit:read", "grantor_chitty_id": ADMIN},
            format="json",
        )
        assert same.status_code == 201

    def test_scopes_narrow_the_owners_grants(self, principals, system):
        read_only = generate_api_key(system, chitty_id=ADMIN, scopes=["read"]).secret
        client = bearer(read_only)
        refused = client.post(
            "/api/v1/grants", {"grantee_chitty_id": BOB, "permission": "audit:read"}, format="json"
        )
        error = assert_error(refused, 403, "PERMISSION_DENIED")
        assert error["permission"] == "authorizations:grant"
        # a read scope still reads: listing another principal's grants needs permissions:check, not *:read
        assert client.get(f"/api/v1/grants?chitty_id={BOB}").status_code == 403
        assert client.get(f"/api/v1/identities/{BOB}").status_code == 200

    def test_revocation_takes_effect_on_the_next_check(self, principals, system):
        granted = grant(system, BOB, "documents:read")
        check = {"chitty_id": BOB, "permission": "documents:read"}
        admin = bearer(principals[ADMIN])
        assert admin.post("/api/v1/permissions/check", check, format="json").json()["allowed"] is True
        assert admin.post(f"/api/v1/grants/{granted.pk}/revoke").status_code == 200
        body = admin.post("/api/v1/permissions/check", check, format="json").json()
        assert body["allowed"] is False
        again = admin.post(f"/api/v1/grants/{granted.pk}/revoke")
        assert again.status_code == 200
        assert AuditEvent.objects.filter(action="authorization.revoke").count() == 1

    def test_an_expired_grant_never_allows_even_before_cleanup(self, principals, system):
        expires_at = timezone.now() + timedelta(seconds=1)
        grant(system, BOB, "documents:read", expires_at=expires_at)
        check = {"chitty_id": BOB, "permission": "documents:read"}
        admin = bearer(principals[ADMIN])
        assert admin.post("/api/v1/permissions/check", check, format="json").json()["allowed"] is True
        time.sleep(max((expires_at - timezone.now()).total_seconds(), 0) + 0.05)
        # nothing changed in the database: the warm cached decision itself must notice the clock
        assert admin.post("/api/v1/permissions/check", check, format="json").json()["allowed"] is False

    def test_checking_another_principal_needs_permissions_check(self, principals, system):
        grant(system, BOB, "documents:read")
        check = {"chitty_id": BOB, "permission": "documents:read"}
        assert_error(
            bearer(principals[ALICE]).post("/api/v1/permissions/check", check, format="json"),
            403,
            "PERMISSION_DENIED",
        )
        own = bearer(principals[BOB]).post("/api/v1/permissions/check", check, format="json").json()
        assert own["allowed"] is True
        assert own["granted_permission"] == "documents:read"

    def test_wildcards(self, principals, system):
        grant(system, BOB, "documents:*")
        admin = bearer(principals[ADMIN])

        def allowed(permission: str) -> bool:
            response = admin.post(
                "/api/v1/permissions/check", {"chitty_id": BOB, "permission": permission}, format="json"
            )
            return response.json()["allowed"]

        assert allowed("documents:read") and allowed("documents:delete")
        assert not allowed("audit:read")
        assert not allowed("*:read")

    def test_listing_grants(self, principals, system):
        grant(system, BOB, "documents:read")
        revoked = grant(system, BOB, "documents:write")
        bearer(principals[ADMIN]).post(f"/api/v1/grants/{revoked.pk}/revoke")
        own = bearer(principals[BOB]).get("/api/v1/grants").json()["grants"]
        assert [g["permission"] for g in own] == ["documents:read"]
        everything = bearer(principals[ADMIN]).get(f"/api/v1/grants?chitty_id={BOB}&include_inactive=true")
        assert {g["permission"]: g["active"] for g in everything.json()["grants"]} == {
            "documents:read": True,
            "documents:write": False,
        }


class TestBadInput:
    @pytest.mark.parametrize(
        "permission", ["Documents:Read", "documents", "a:b:c", "", "docs:*x", "docs: read"]
    )
    def test_invalid_permission_grammar(self, principals, permission):
        response = bearer(principals[ADMIN]).post(
            "/api/v1/grants", {"grantee_chitty_id": BOB, "permission": permission}, format="json"
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] in ("INVALID_PERMISSION", "INVALID_INPUT")

    def test_missing_fields_list_them(self, principals):
        error = assert_error(
            bearer(principals[ADMIN]).post("/api/v1/grants", {}, format="json"), 400, "INVALID_INPUT"
        )
        assert set(error["fields"]) == {"grantee_chitty_id", "permission"}

    def test_malformed_json(self, principals):
        response = bearer(principals[ADMIN]).post(
            "/api/v1/grants", "{not json", content_type="application/json"
        )
        assert_error(response, 400, "MALFORMED_REQUEST")

    def test_unknown_principal_and_bad_chitty_id(self, principals):
        admin = bearer(principals[ADMIN])
        unknown = admin.post(
            "/api/v1/grants", {"grantee_chitty_id": "CHITTY-PEO-NOBODY-X", "permission": "a:b"}, format="json"
        )
        assert_error(unknown, 404, "IDENTITY_NOT_FOUND")
        malformed = admin.post(
            "/api/v1/grants", {"grantee_chitty_id": "chitty-peo-x-y", "permission": "a:b"}, format="json"
        )
        assert_error(malformed, 400, "INVALID_CHITTY_ID")

    def test_unknown_endpoint_and_method(self, principals):
        admin = bearer(principals[ADMIN])
        assert_error(admin.get("/api/v1/nothing-here"), 404, "NOT_FOUND")
        assert_error(admin.delete("/api/v1/whoami"), 405, "METHOD_NOT_ALLOWED")
        assert_error(admin.post("/api/v1/grants/999999/revoke"), 404, "GRANT_NOT_FOUND")

    def test_a_database_that_cannot_be_reached_is_503_not_500(self, principals):
        """The database refuses every statement, as a stopped or unreachable server would at the driver."""
        client = bearer(principals[ADMIN])

        def unreachable(execute, sql, params, many, context):
            raise OperationalError("could not connect to server: Connection refused")

        with connection.execute_wrapper(unreachable):
            response = client.get("/api/v1/grants")
        assert_error(response, 503, "DATABASE_UNAVAILABLE")
        assert response["Retry-After"] == "5"
        assert "Connection refused" not in response.content.decode()
        assert client.get("/api/v1/grants").status_code == 200  # and it recovers with the database


class TestIdentitiesAndDocs:
    def test_register_list_and_show(self, principals, system):
        admin = bearer(principals[ADMIN])
        created = admin.post("/api/v1/identities", {"chitty_id": "CHITTY-ORG-X-Y"}, format="json")
        assert_error(created, 400, "INVALID_CHITTY_ID")
        created = admin.post(
            "/api/v1/identities", {"chitty_id": "CHITTY-PLACE-HQ1-A", "display_name": "HQ"}, format="json"
        )
        assert created.status_code == 201
        assert created.json()["entity_type"] == "PLACE"
        assert_error(
            admin.post("/api/v1/identities", {"chitty_id": "CHITTY-PLACE-HQ1-A"}, format="json"),
            409,
            "IDENTITY_EXISTS",
        )
        listed = admin.get("/api/v1/identities?status=active").json()["identities"]
        assert "CHITTY-PLACE-HQ1-A" in {i["chitty_id"] for i in listed}
        assert_error(bearer(principals[ALICE]).get("/api/v1/identities"), 403, "PERMISSION_DENIED")
        assert bearer(principals[ALICE]).get(f"/api/v1/identities/{ALICE}").status_code == 200

    def test_openapi_schema_and_docs_are_public(self, principals):
        schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
        assert schema.status_code == 200
        paths = schema.json()["paths"]
        for path in (
            "/api/v1/keys",
            "/api/v1/keys/validate",
            "/api/v1/tokens",
            "/api/v1/grants",
            "/api/v1/permissions/check",
        ):
            assert path in paths
        assert APIClient().get("/api/docs/").status_code == 200


class TestBootstrap:
    def test_prints_a_working_key_once_and_refuses_to_run_twice(self):
        out = io.StringIO()
        call_command("bootstrap", "CHITTY-PEO-ROOT1-A", stdout=out)
        secret = next(
            line.split(": ", 1)[1] for line in out.getvalue().splitlines() if line.startswith("API Key")
        )
        body = bearer(secret).get("/api/v1/whoami").json()
        assert body["chitty_id"] == "CHITTY-PEO-ROOT1-A"
        assert secret not in json.dumps(list(AuditEvent.objects.values()), default=str)
        with pytest.raises(CommandError, match="bootstrap runs once"):
            call_command("bootstrap", "CHITTY-PEO-ROOT2-A", stdout=io.StringIO())


class TestAuditTrail:
    def test_reading_the_trail_needs_audit_read(self, principals, system):
        grant(system, BOB, "documents:read")
        assert_error(bearer(principals[ALICE]).get("/api/v1/audit/events"), 403, "PERMISSION_DENIED")
        events = (
            bearer(principals[ADMIN]).get("/api/v1/audit/events?action=authorization.grant&limit=5").json()
        )
        assert events["events"][0]["target"] == BOB
        assert events["events"][0]["details"]["permission"] == "documents:read"
        assert all(event["action"] == "authorization.grant" for event in events["events"])
        assert len(events["events"]) <= 5
        assert_error(
            bearer(principals[ADMIN]).get("/api/v1/audit/events?outcome=maybe"), 400, "INVALID_INPUT"
        )
