"""ChittyAuth as an OAuth 2.1 authorization server, through Django's test client: discovery, dynamic client
registration, the authorization code flow with PKCE and a staff login's consent, client credentials,
refresh rotation and reuse detection, revocation from either side, and the admin.

Tokens are checked as a relying party would: the REST API and PyJWT with the signing secret.
"""

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
from django.conf import settings
from django.test import Client as Browser
from django.utils import timezone
from oauth2_provider.models import AccessToken, Grant, RefreshToken
from oauthlib.common import Request as OAuthlibRequest
from oauthlib.oauth2.rfc6749.errors import InvalidGrantError
from rest_framework.test import APIClient

from audit.models import AuditEvent
from grants.models import Grant as GrantRecord
from grants.services import grant_permission, revoke_grant
from identities.staff_links import link_staff_user
from kernel.callers import Caller
from kernel.errors import PermissionDenied, ValidationFailed
from keys.services import generate_api_key
from keys.tokens import validate_jwt
from oauth.clients import create_service_client, revoke_client
from oauth.models import Client, IssuedAccessToken
from oauth.validators import ChittyAuthValidator
from principals.services import suspend_identity
from sessions.models import AuthSession

PERSON = "CHITTY-PEO-OAUTH1-A"
OTHER = "CHITTY-PEO-OAUTH2-A"
SERVICE = "CHITTY-PEO-OAUTHSVC1-A"
REDIRECT_URI = "http://127.0.0.1:9999/callback"
MCP_RESOURCE = "http://127.0.0.1:8000/mcp"
OTHER_RESOURCE = "https://other.chitty.example/api"
PASSWORD = "a-long-staff-password-42"

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str


def pkce() -> Pkce:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return Pkce(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


def grant(chitty_id: str, permission: str) -> None:
    grant_permission(Caller.system("tests"), grantee_chitty_id=chitty_id, permission=permission)


def bearer(token: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api


def claims_of(token: str, audience: str = "chittyos") -> dict:
    return jwt.decode(
        token, settings.JWT_SECRET, algorithms=["HS256"], audience=audience, issuer=settings.JWT_ISSUER
    )


def register(client, headers: dict | None = None, **metadata):
    body = {
        "client_name": "test client",
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
        **metadata,
    }
    return client.post("/o/register/", json.dumps(body), content_type="application/json", headers=headers)


@pytest.fixture
def person(make_identity):
    identity = make_identity(PERSON)
    grant(PERSON, "*")
    return identity


@pytest.fixture
def staff(person, django_user_model):
    user = django_user_model.objects.create_user("alice-staff", password=PASSWORD, is_staff=True)
    link_staff_user(Caller.system("tests"), user, PERSON)
    return user


@pytest.fixture
def public_client(client) -> str:
    response = register(client)
    assert response.status_code == 201, response.content
    return response.json()["client_id"]


@pytest.fixture
def browser(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def narrow_browser(client, django_user_model, make_identity):
    """Signed in as a staff login linked to OTHER, who holds only api_keys:generate."""
    make_identity(OTHER)
    grant(OTHER, "api_keys:generate")
    user = django_user_model.objects.create_user("bob-staff", password=PASSWORD, is_staff=True)
    link_staff_user(Caller.system("tests"), user, OTHER)
    client.force_login(user)
    return client


def authorization(client_id: str, challenge: Pkce, **params) -> dict:
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "state": "st4te",
        "code_challenge": challenge.challenge,
        "code_challenge_method": "S256",
        "scope": "*",
        "resource": MCP_RESOURCE,
        **params,
    }
    return {name: value for name, value in query.items() if value is not None}


def consent(browser, query: dict, *, allow: bool = True):
    page = browser.get("/o/authorize/", query)
    assert page.status_code == 200, page.content
    form = {field.name: field.value() or "" for field in page.context["form"] if field.is_hidden}
    if allow:
        form["allow"] = "Authorize"
    return browser.post(f"/o/authorize/?{urlencode(query)}", form)


def redirect_query(response) -> dict[str, str]:
    assert response.status_code == 302, response.content
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    return {name: values[0] for name, values in parse_qs(location.query).items()}


def exchange(client, client_id: str, code: str, verifier: str, **extra):
    return client.post(
        "/o/token/",
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "client_id": client_id,
            "code_verifier": verifier,
            **extra,
        },
    )


def authorized_tokens(browser, client_id: str, **params) -> dict:
    challenge = pkce()
    code = redirect_query(consent(browser, authorization(client_id, challenge, **params)))["code"]
    response = exchange(browser, client_id, code, challenge.verifier)
    assert response.status_code == 200, response.content
    return response.json()


def refresh(client, client_id: str, refresh_token: str):
    return client.post(
        "/o/token/", {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
    )


def actions() -> list[str]:
    return list(AuditEvent.objects.order_by("sequence").values_list("action", flat=True))


class TestDiscovery:
    def test_authorization_server_metadata(self, client):
        response = client.get("/.well-known/oauth-authorization-server")
        assert response.status_code == 200
        assert response["Access-Control-Allow-Origin"] == "*"
        document = response.json()
        assert document["issuer"] == "http://127.0.0.1:8000/"
        assert document["authorization_endpoint"] == "http://127.0.0.1:8000/o/authorize/"
        assert document["token_endpoint"] == "http://127.0.0.1:8000/o/token/"
        assert document["revocation_endpoint"] == "http://127.0.0.1:8000/o/revoke/"
        assert document["introspection_endpoint"] == "http://127.0.0.1:8000/o/introspect/"
        assert document["registration_endpoint"] == "http://127.0.0.1:8000/o/register/"
        assert document["response_types_supported"] == ["code"]
        assert set(document["grant_types_supported"]) == {
            "authorization_code",
            "client_credentials",
            "refresh_token",
        }
        assert document["code_challenge_methods_supported"] == ["S256"]
        assert document["introspection_endpoint_auth_methods_supported"] == [
            "client_secret_basic",
            "client_secret_post",
        ]
        assert "none" in document["token_endpoint_auth_methods_supported"]
        assert {"api_keys:generate", "tokens:validate", "oauth_clients:register"} <= set(
            document["scopes_supported"]
        )
        assert document["authorization_response_iss_parameter_supported"] is True

    def test_jwks_is_advertised_when_tokens_are_signed_with_published_keys(self, client, settings):
        settings.JWT_SIGNING_ALGORITHM = "EdDSA"
        document = client.get("/.well-known/oauth-authorization-server").json()
        assert document["jwks_uri"] == "http://127.0.0.1:8000/.well-known/jwks.json"


class TestRegistration:
    def test_open_registration_creates_a_public_client_and_audits_it(self, client):
        response = register(client)
        assert response.status_code == 201
        body = response.json()
        assert "client_secret" not in body
        registered = Client.objects.get(client_id=body["client_id"])
        assert (registered.client_type, registered.authorization_grant_type) == (
            "public",
            "authorization-code",
        )
        assert (registered.registration_source, registered.registered_by) == ("dcr", "anonymous")
        event = AuditEvent.objects.get(action="oauth.client.register")
        assert (event.target, event.details["source"]) == (body["client_id"], "dcr")

    def test_scopes_a_client_registers_with_widen_nothing(self, narrow_browser):
        client = narrow_browser
        response = register(client, scope="* tokens:manage")
        assert response.status_code == 201, response.content
        client_id = response.json()["client_id"]
        assert Client.objects.get(client_id=client_id).allowed_scopes == []
        refused = redirect_query(
            client.get("/o/authorize/", authorization(client_id, pkce(), scope="tokens:manage"))
        )
        assert refused["error"] == "invalid_scope"
        assert authorized_tokens(client, client_id, scope=None)["scope"] == "api_keys:generate"

    def test_a_confidential_client_gets_its_secret_once_and_only_its_hash_is_kept(self, client):
        response = register(client, token_endpoint_auth_method="client_secret_basic")
        secret = response.json()["client_secret"]
        stored = Client.objects.get(client_id=response.json()["client_id"]).client_secret
        assert stored.startswith("chittyauth_client_sha256$") and secret not in stored

    @pytest.mark.parametrize(
        ("metadata", "problem"),
        [
            ({"redirect_uris": ["http://evil.example/callback"]}, "loopback"),
            ({"grant_types": ["client_credentials"], "redirect_uris": []}, "identity"),
            ({"grant_types": ["implicit"]}, "authorization code"),
        ],
    )
    def test_unsafe_registrations_are_refused(self, client, metadata, problem):
        response = register(client, **metadata)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_client_metadata"
        assert problem in response.json()["error_description"]
        assert not Client.objects.exists()

    def test_metadata_nested_too_deeply_is_refused_not_a_crash(self, client):
        response = client.post("/o/register/", "[" * 5000 + "]" * 5000, content_type="application/json")
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_client_metadata"
        assert not Client.objects.exists()

    def test_a_client_manages_its_own_registration_and_deleting_it_revokes_its_tokens(self, client, browser):
        registration = register(client).json()
        management = {"Authorization": f"Bearer {registration['registration_access_token']}"}
        uri = registration["registration_client_uri"]
        assert uri == f"http://testserver/o/register/{registration['client_id']}/"
        assert client.get(uri, headers=management).json()["client_id"] == registration["client_id"]
        updated = client.put(
            uri,
            json.dumps(
                {"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none", "client_name": "v2"}
            ),
            content_type="application/json",
            headers=management,
        )
        assert updated.status_code == 200, updated.content
        assert Client.objects.get(client_id=registration["client_id"]).name == "v2"
        management = {"Authorization": f"Bearer {updated.json()['registration_access_token']}"}

        tokens = authorized_tokens(browser, registration["client_id"])
        assert client.delete(uri, headers=management).status_code == 204
        assert not Client.objects.filter(client_id=registration["client_id"]).exists()
        assert bearer(tokens["access_token"]).get("/api/v1/whoami").status_code == 401
        assert {"oauth.client.update", "oauth.client.delete"} <= set(actions())

    def test_an_initial_access_token_can_be_required(self, client, make_identity, settings):
        settings.OAUTH_DCR_REQUIRE_INITIAL_ACCESS_TOKEN = True
        system = Caller.system("tests")
        make_identity(PERSON)
        key = generate_api_key(system, chitty_id=PERSON, name="registrar", scopes=["*"]).secret

        missing = register(client)
        assert missing.status_code == 401
        assert missing.json()["error"] == "invalid_token"
        lacking = register(client, headers={"Authorization": f"Bearer {key}"})
        assert lacking.status_code == 403
        assert lacking.json()["error"] == "insufficient_scope"

        grant(PERSON, "oauth_clients:register")
        allowed = register(client, headers={"Authorization": f"Bearer {key}"})
        assert allowed.status_code == 201, allowed.content
        assert Client.objects.get(client_id=allowed.json()["client_id"]).registered_by == PERSON
        assert Client.objects.count() == 1


class TestAuthorizationCode:
    def test_a_staff_login_consents_and_the_token_acts_for_its_identity(self, browser, public_client):
        challenge = pkce()
        query = authorization(public_client, challenge, scope="read api_keys:generate")
        page = browser.get("/o/authorize/", query)
        assert page.status_code == 200
        assert PERSON in page.content.decode()
        assert [row.scope for row in page.context["consent_scopes"]] == ["read", "api_keys:generate"]

        answer = redirect_query(consent(browser, query))
        assert (answer["state"], answer["iss"]) == ("st4te", "http://127.0.0.1:8000/")
        response = exchange(browser, public_client, answer["code"], challenge.verifier)
        assert response.status_code == 200, response.content
        tokens = response.json()
        assert tokens["token_type"] == "Bearer" and tokens["refresh_token"]
        assert tokens["scope"] == "*:read api_keys:generate"
        assert tokens["expires_in"] == settings.OAUTH_ACCESS_TOKEN_LIFETIME_SECONDS

        claims = claims_of(tokens["access_token"])
        assert (claims["sub"], claims["chitty_id"], claims["client_id"]) == (PERSON, PERSON, public_client)
        assert claims["scope"] == "*:read api_keys:generate"
        session = AuthSession.objects.get(credential_id=claims["jti"])
        assert (session.channel, session.principal.chitty_id, session.ended_at) == ("jwt", PERSON, None)

        whoami = bearer(tokens["access_token"]).get("/api/v1/whoami")
        assert whoami.status_code == 200
        assert (whoami.json()["chitty_id"], whoami.json()["credential_id"]) == (PERSON, claims["jti"])
        verification = validate_jwt(Caller.system("tests"), tokens["access_token"])
        assert (verification.valid, verification.claims["client_id"]) == (True, public_client)
        assert {"oauth.authorize", "oauth.token.issue", "session.open"} <= set(actions())

    def test_effective_permissions_are_grants_intersected_with_scopes(
        self, browser, public_client, make_identity
    ):
        reader = authorized_tokens(browser, public_client, scope="read")["access_token"]
        assert bearer(reader).get("/api/v1/identities").status_code == 200
        narrow = authorized_tokens(browser, public_client, scope="api_keys:generate")["access_token"]
        assert bearer(narrow).get("/api/v1/identities").status_code == 403

    def test_scopes_beyond_the_grants_are_refused_and_the_default_is_what_is_held(self, narrow_browser):
        client = narrow_browser
        client_id = register(client).json()["client_id"]
        for scope in ("* identities:read", "audit:read", "api_keys:*"):
            refused = redirect_query(
                client.get("/o/authorize/", authorization(client_id, pkce(), scope=scope))
            )
            assert refused["error"] == "invalid_scope", scope
            assert "holds no grant covering the scope" in refused["error_description"]
        assert AuditEvent.objects.filter(action="oauth.authorize", outcome="denied").count() == 3

        page = client.get("/o/authorize/", authorization(client_id, pkce(), scope=None))
        assert [row.scope for row in page.context["consent_scopes"]] == ["api_keys:generate"]
        tokens = authorized_tokens(client, client_id, scope=None)
        assert claims_of(tokens["access_token"])["scope"] == tokens["scope"] == "api_keys:generate"

    def test_a_consent_form_tampered_to_ask_for_more_is_refused(self, narrow_browser):
        client = narrow_browser
        client_id = register(client).json()["client_id"]
        query = authorization(client_id, pkce(), scope="api_keys:generate")
        page = client.get("/o/authorize/", query)
        form = {field.name: field.value() or "" for field in page.context["form"] if field.is_hidden}
        answer = redirect_query(
            client.post(f"/o/authorize/?{urlencode(query)}", {**form, "scope": "*", "allow": "Authorize"})
        )
        assert answer["error"] == "invalid_scope" and "code" not in answer
        assert not Grant.objects.exists()

    def test_anonymous_people_are_sent_to_the_admin_login(self, client, public_client):
        response = client.get("/o/authorize/", authorization(public_client, pkce()))
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/?next=/o/authorize/")

    def test_a_staff_login_without_a_linked_identity_cannot_consent(
        self, client, public_client, django_user_model
    ):
        user = django_user_model.objects.create_user("unlinked", password=PASSWORD, is_staff=True)
        client.force_login(user)
        response = client.get("/o/authorize/", authorization(public_client, pkce()))
        assert response.status_code == 403
        assert response.context["refusal"].code == "STAFF_LOGIN_NOT_LINKED"
        assert not Grant.objects.exists()

    def test_a_suspended_identity_cannot_consent(self, browser, public_client, person):
        suspend_identity(Caller.system("tests"), person, reason="test")
        response = browser.get("/o/authorize/", authorization(public_client, pkce()))
        assert response.status_code == 403
        assert response.context["refusal"].code == "IDENTITY_SUSPENDED"

    @pytest.mark.parametrize(
        "params",
        [{"code_challenge_method": "plain"}, {"code_challenge_method": None}, {"code_challenge": None}],
    )
    def test_pkce_with_s256_is_required(self, browser, public_client, params):
        challenge = pkce()
        if params.get("code_challenge_method", "S256") == "plain":
            params = {**params, "code_challenge": challenge.verifier}
        response = browser.get("/o/authorize/", authorization(public_client, challenge, **params))
        assert redirect_query(response)["error"] == "invalid_request"
        assert not Grant.objects.exists()

    def test_a_wrong_code_verifier_is_invalid_grant(self, browser, public_client):
        challenge = pkce()
        code = redirect_query(consent(browser, authorization(public_client, challenge)))["code"]
        response = exchange(browser, public_client, code, pkce().verifier)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"
        event = AuditEvent.objects.filter(action="oauth.token.refused").get()
        assert (event.outcome, event.details["error"], event.target) == (
            "failure",
            "invalid_grant",
            public_client,
        )

    def test_an_authorization_code_works_once(self, browser, public_client):
        challenge = pkce()
        code = redirect_query(consent(browser, authorization(public_client, challenge)))["code"]
        assert exchange(browser, public_client, code, challenge.verifier).status_code == 200
        again = exchange(browser, public_client, code, challenge.verifier)
        assert again.status_code == 400
        assert again.json()["error"] == "invalid_grant"

    def test_an_unregistered_redirect_uri_is_never_redirected_to(self, browser, public_client):
        query = authorization(public_client, pkce(), redirect_uri="http://127.0.0.1:9999/elsewhere")
        response = browser.get("/o/authorize/", query)
        assert response.status_code == 400
        assert "Location" not in response
        assert response.context["error"].error == "invalid_request"

    def test_refusing_consent_tells_the_client_and_is_audited(self, browser, public_client):
        answer = redirect_query(consent(browser, authorization(public_client, pkce()), allow=False))
        assert (answer["error"], answer["state"]) == ("access_denied", "st4te")
        event = AuditEvent.objects.get(action="oauth.authorize")
        assert (event.outcome, event.actor, event.target) == ("denied", "staff:alice-staff", public_client)
        assert (event.details["chitty_id"], event.details["error"]) == (PERSON, "access_denied")
        assert not Grant.objects.exists()

    def test_a_resource_not_served_here_is_invalid_target(self, browser, public_client):
        query = authorization(public_client, pkce(), resource="https://unknown.example/api")
        assert redirect_query(browser.get("/o/authorize/", query))["error"] == "invalid_target"


@pytest.fixture
def service(make_identity) -> tuple[str, str]:
    make_identity(SERVICE)
    grant(SERVICE, "*")
    issued = create_service_client(
        Caller.system("tests"), chitty_id=SERVICE, name="svc", scopes=["read", "tokens:validate"]
    )
    return issued.client.client_id, issued.client_secret


def client_credentials(client, service, **extra):
    client_id, secret = service
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return client.post(
        "/o/token/", {"grant_type": "client_credentials", **extra}, HTTP_AUTHORIZATION=f"Basic {basic}"
    )


class TestClientCredentials:
    def test_a_service_client_acts_for_its_identity_within_its_allowed_scopes(self, client, service):
        response = client_credentials(client, service)
        assert response.status_code == 200, response.content
        body = response.json()
        assert "refresh_token" not in body
        assert body["scope"] == "*:read tokens:validate"
        claims = claims_of(body["access_token"])
        assert (claims["sub"], claims["client_id"]) == (SERVICE, service[0])
        assert bearer(body["access_token"]).get("/api/v1/whoami").json()["chitty_id"] == SERVICE

    def test_tokens_are_signed_with_the_published_key_when_one_is_configured(self, client, service, settings):
        settings.JWT_SIGNING_ALGORITHM = "EdDSA"
        token = client_credentials(client, service).json()["access_token"]
        published = jwt.PyJWKSet.from_dict(client.get("/.well-known/jwks.json").json())
        key = published[jwt.get_unverified_header(token)["kid"]]
        claims = jwt.decode(
            token, key.key, algorithms=["EdDSA"], audience="chittyos", issuer=settings.JWT_ISSUER
        )
        assert (claims["sub"], claims["client_id"]) == (SERVICE, service[0])
        assert bearer(token).get("/api/v1/whoami").status_code == 200

    def test_scopes_beyond_the_allowed_ones_are_invalid_scope(self, client, service):
        response = client_credentials(client, service, scope="api_keys:generate")
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_scope"

    def test_a_client_gets_only_what_its_identity_holds(self, client, make_identity):
        make_identity(OTHER)
        grant(OTHER, "tokens:validate")
        grant(OTHER, "audit:read")
        issued = create_service_client(Caller.system("tests"), chitty_id=OTHER, name="wide", scopes=["*"])
        service = (issued.client.client_id, issued.client_secret)
        default = client_credentials(client, service)
        assert default.status_code == 200, default.content
        assert default.json()["scope"] == "audit:read tokens:validate"
        assert claims_of(default.json()["access_token"])["scope"] == "audit:read tokens:validate"
        for scope in ("*", "tokens:manage", "audit:*"):
            refused = client_credentials(client, service, scope=scope)
            assert (refused.status_code, refused.json()["error"]) == (400, "invalid_scope"), scope
        refusals = AuditEvent.objects.filter(action="oauth.token.refused").order_by("sequence")
        assert [event.details["error"] for event in refusals] == ["invalid_scope"] * 3
        assert [event.details["description"].rsplit(" ", 1)[-1] for event in refusals] == [
            "*",
            "tokens:manage",
            "audit:*",
        ]

    def test_a_token_expires_with_the_grants_behind_its_scopes(self, client, make_identity):
        make_identity(OTHER)
        soon = timezone.now() + timedelta(minutes=5)
        grant_permission(
            Caller.system("tests"), grantee_chitty_id=OTHER, permission="audit:read", expires_at=soon
        )
        issued = create_service_client(Caller.system("tests"), chitty_id=OTHER, scopes=["audit:read"])
        body = client_credentials(client, (issued.client.client_id, issued.client_secret)).json()
        assert claims_of(body["access_token"])["exp"] == int(soon.timestamp())
        assert body["expires_in"] <= 300

    def test_no_client_is_given_a_scope_its_identity_does_not_hold(self, make_identity):
        make_identity(OTHER)
        grant(OTHER, "tokens:validate")
        with pytest.raises(ValidationFailed) as refused:
            create_service_client(
                Caller.system("tests"), chitty_id=OTHER, scopes=["tokens:validate", "audit:read"]
            )
        assert (refused.value.code, refused.value.extra["scope"]) == ("SCOPE_EXCEEDS_GRANTS", "audit:read")
        assert (
            AuditEvent.objects.get(action="oauth.client.register", outcome="denied").details["scope"]
            == "audit:read"
        )
        assert not Client.objects.exists()

    def test_a_wrong_secret_is_invalid_client_and_audited(self, client, service):
        response = client_credentials(client, (service[0], "not-the-secret"))
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"
        assert AuditEvent.objects.get(action="oauth.token.refused").details["error"] == "invalid_client"

    def test_tokens_for_another_chittyos_service_carry_it_as_audience_and_are_refused_here(
        self, client, service, settings
    ):
        settings.OAUTH_EXTERNAL_RESOURCES = [OTHER_RESOURCE]
        token = client_credentials(client, service, resource=OTHER_RESOURCE).json()["access_token"]
        assert claims_of(token, audience=OTHER_RESOURCE)["aud"] == OTHER_RESOURCE
        refused = bearer(token).get("/api/v1/whoami")
        assert (refused.status_code, refused.json()["error"]["reason"]) == (401, "BAD_AUDIENCE")
        unknown = client_credentials(client, service, resource="https://unknown.example/api")
        assert (unknown.status_code, unknown.json()["error"]) == (400, "invalid_target")

    def test_a_suspended_identitys_client_cannot_authenticate(self, client, service):
        suspend_identity(Caller.system("tests"), Client.objects.get(client_id=service[0]).identity)
        assert client_credentials(client, service).json()["error"] == "invalid_client"

    def test_nobody_hands_a_client_a_scope_they_do_not_hold(self, make_identity, person):
        manager = make_identity(OTHER)
        grant(OTHER, "oauth_clients:manage")
        grant(OTHER, "tokens:validate")
        caller = Caller(
            actor=OTHER, identity=manager, credential_type="api_key", credential_id="key_x", scopes=("*",)
        )
        with pytest.raises(PermissionDenied) as refused:
            create_service_client(caller, chitty_id=PERSON, scopes=["*"])
        assert refused.value.code == "ESCALATION_REFUSED"
        issued = create_service_client(caller, chitty_id=PERSON, scopes=["tokens:validate"])
        assert (issued.client.identity, issued.client.allowed_scopes) == (person, ["tokens:validate"])
        outsider = Caller(
            actor=PERSON, identity=None, credential_type="api_key", credential_id="key_y", scopes=("*",)
        )
        with pytest.raises(PermissionDenied):
            create_service_client(outsider, chitty_id=PERSON)


class TestRefresh:
    def test_each_refresh_rotates_the_pair_and_retires_the_old_access_token(self, browser, public_client):
        first = authorized_tokens(browser, public_client)
        response = refresh(browser, public_client, first["refresh_token"])
        assert response.status_code == 200, response.content
        second = response.json()
        assert second["refresh_token"] != first["refresh_token"]
        assert claims_of(second["access_token"])["sub"] == PERSON
        old = bearer(first["access_token"]).get("/api/v1/whoami")
        assert (old.status_code, old.json()["error"]["reason"]) == (401, "REVOKED")
        old_session = AuthSession.objects.get(credential_id=claims_of(first["access_token"])["jti"])
        assert old_session.ended_at is not None
        assert bearer(second["access_token"]).get("/api/v1/whoami").status_code == 200
        assert "oauth.token.issue" in actions()

    def test_a_refresh_may_narrow_the_scopes_but_never_widen_them(self, browser, public_client):
        tokens = authorized_tokens(browser, public_client, scope="read api_keys:generate")
        wider = browser.post(
            "/o/token/",
            {
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": public_client,
                "scope": "read identities:manage",
            },
        )
        assert (wider.status_code, wider.json()["error"]) == (400, "invalid_scope")
        narrower = browser.post(
            "/o/token/",
            {
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": public_client,
                "scope": "read",
            },
        )
        assert narrower.status_code == 200, narrower.content
        assert claims_of(narrower.json()["access_token"])["scope"] == "*:read"

    def test_a_refresh_after_a_grant_is_revoked_cannot_keep_the_scope(self, narrow_browser):
        client = narrow_browser
        grant(OTHER, "audit:read")
        client_id = register(client).json()["client_id"]
        tokens = authorized_tokens(client, client_id, scope="audit:read api_keys:generate")
        audit_grant = GrantRecord.objects.get(principal__chitty_id=OTHER, permission="audit:read")
        revoke_grant(Caller.system("tests"), audit_grant.pk)
        refused = refresh(client, client_id, tokens["refresh_token"])
        assert (refused.status_code, refused.json()["error"]) == (400, "invalid_scope")
        assert "audit:read" in refused.json()["error_description"]
        narrowed = client.post(
            "/o/token/",
            {
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": client_id,
                "scope": "api_keys:generate",
            },
        )
        assert narrowed.status_code == 200, narrowed.content
        assert claims_of(narrowed.json()["access_token"])["scope"] == "api_keys:generate"

    def test_a_reused_refresh_token_revokes_the_whole_family(self, browser, public_client):
        first = authorized_tokens(browser, public_client)
        second = refresh(browser, public_client, first["refresh_token"]).json()
        reuse = refresh(browser, public_client, first["refresh_token"])
        assert (reuse.status_code, reuse.json()["error"]) == (400, "invalid_grant")
        assert bearer(second["access_token"]).get("/api/v1/whoami").status_code == 401
        assert refresh(browser, public_client, second["refresh_token"]).json()["error"] == "invalid_grant"
        first_reuse = AuditEvent.objects.filter(action="oauth.refresh_token.reuse").earliest("sequence")
        assert (first_reuse.outcome, first_reuse.target) == ("denied", public_client)
        assert first_reuse.details["family_revoked"] is True
        assert not RefreshToken.objects.filter(revoked__isnull=True).exists()

    def test_the_loser_of_a_refresh_race_is_refused_not_handed_an_empty_token(self, browser, public_client):
        first = authorized_tokens(browser, public_client)
        assert refresh(browser, public_client, first["refresh_token"]).status_code == 200
        checksum = hashlib.sha256(first["refresh_token"].encode()).hexdigest()
        used = RefreshToken.objects.get(token_checksum=checksum)
        # The second request passed validation before the first rotated the token; now it saves.
        racing = OAuthlibRequest("http://testserver/o/token/", http_method="POST")
        racing.grant_type, racing.client, racing.user = "refresh_token", used.application, used.user
        racing.refresh_token_instance, racing.scopes = used, ["*"]
        token = {
            "access_token": "x",
            "refresh_token": "y",
            "token_type": "Bearer",
            "expires_in": 60,
            "scope": "*",
        }
        with pytest.raises(InvalidGrantError):
            ChittyAuthValidator().save_bearer_token(token, racing)

    def test_a_token_revoked_through_chittyauth_stops_its_family_refreshing(self, browser, public_client):
        tokens = authorized_tokens(browser, public_client)
        revoked = bearer(tokens["access_token"]).post(
            "/api/v1/tokens/revoke", {"token": tokens["access_token"]}, format="json"
        )
        assert revoked.status_code == 200, revoked.content
        response = refresh(browser, public_client, tokens["refresh_token"])
        assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
        assert AuditEvent.objects.get(action="oauth.token.refresh").outcome == "denied"

    def test_a_deactivated_or_relinked_staff_login_ends_the_delegation(
        self, browser, public_client, staff, make_identity
    ):
        kept = authorized_tokens(browser, public_client)
        moved = authorized_tokens(browser, public_client)
        staff.staff_link.delete()
        make_identity(OTHER)
        link_staff_user(Caller.system("tests"), staff, OTHER)
        assert refresh(browser, public_client, moved["refresh_token"]).json()["error"] == "invalid_grant"
        staff.staff_link.delete()
        link_staff_user(Caller.system("tests"), staff, PERSON)
        staff.is_active = False
        staff.save(update_fields=["is_active"])
        assert refresh(browser, public_client, kept["refresh_token"]).json()["error"] == "invalid_grant"
        refusals = AuditEvent.objects.filter(action="oauth.token.refresh").order_by("sequence")
        reasons = [event.details["reason"] for event in refusals]
        assert reasons == [
            f"The staff login that consented no longer acts as {PERSON}",
            "Sign in with a staff login to authorize a client",
        ]

    def test_a_suspended_identity_can_neither_use_nor_refresh_its_tokens(
        self, browser, public_client, person
    ):
        tokens = authorized_tokens(browser, public_client)
        suspend_identity(Caller.system("tests"), person, reason="left")
        assert bearer(tokens["access_token"]).get("/api/v1/whoami").status_code == 401
        assert refresh(browser, public_client, tokens["refresh_token"]).json()["error"] == "invalid_grant"


class TestRevocationAndIntrospection:
    def test_rfc7009_revocation_revokes_the_jwt_ends_its_session_and_its_refresh_token(
        self, browser, public_client
    ):
        tokens = authorized_tokens(browser, public_client)
        jti = claims_of(tokens["access_token"])["jti"]
        response = browser.post(
            "/o/revoke/",
            {"token": tokens["access_token"], "token_type_hint": "access_token", "client_id": public_client},
        )
        assert response.status_code == 200
        refused = bearer(tokens["access_token"]).get("/api/v1/whoami")
        assert (refused.status_code, refused.json()["error"]["reason"]) == (401, "REVOKED")
        assert AuthSession.objects.get(credential_id=jti).ended_at is not None
        assert refresh(browser, public_client, tokens["refresh_token"]).json()["error"] == "invalid_grant"
        assert {"oauth.token.revoke", "token.revoke", "session.end"} <= set(actions())

    def test_a_client_cannot_revoke_another_clients_token(self, browser, public_client, client):
        tokens = authorized_tokens(browser, public_client)
        stranger = register(client).json()["client_id"]
        assert (
            browser.post("/o/revoke/", {"token": tokens["access_token"], "client_id": stranger}).status_code
            == 200
        )
        assert bearer(tokens["access_token"]).get("/api/v1/whoami").status_code == 200

    def test_introspection_answers_confidential_clients_about_their_own_tokens(self, client, service):
        token = client_credentials(client, service).json()["access_token"]
        client_id, secret = service
        answer = client.post(
            "/o/introspect/", {"token": token, "client_id": client_id, "client_secret": secret}
        )
        assert answer.status_code == 200
        body = answer.json()
        assert (body["active"], body["sub"], body["client_id"], body["aud"]) == (
            True,
            SERVICE,
            client_id,
            "chittyos",
        )
        assert body["scope"] == "*:read tokens:validate"
        assert client.post(
            "/o/introspect/", {"token": "not-a-token", "client_id": client_id, "client_secret": secret}
        ).json() == {"active": False}

    def test_introspecting_another_clients_token_needs_tokens_validate(
        self, browser, public_client, client, service
    ):
        token = authorized_tokens(browser, public_client)["access_token"]
        client_id, secret = service
        allowed = client.post(
            "/o/introspect/", {"token": token, "client_id": client_id, "client_secret": secret}
        )
        assert (allowed.json()["active"], allowed.json()["sub"]) == (True, PERSON)
        narrow = create_service_client(Caller.system("tests"), chitty_id=SERVICE, scopes=["read"])
        refused = client.post(
            "/o/introspect/",
            {"token": token, "client_id": narrow.client.client_id, "client_secret": narrow.client_secret},
        )
        assert refused.json() == {"active": False}
        event = AuditEvent.objects.get(action="oauth.token.introspect")
        assert (event.outcome, event.details["permission"]) == ("denied", "tokens:validate")

    def test_introspection_needs_a_confidential_client(self, browser, public_client, client):
        token = authorized_tokens(browser, public_client)["access_token"]
        public = client.post("/o/introspect/", {"token": token, "client_id": public_client})
        assert (public.status_code, public.json()["error"]) == (401, "invalid_client")
        assert client.get("/o/introspect/", {"token": token}).status_code == 405


class TestAdminAndStorage:
    @pytest.fixture
    def superuser_browser(self, django_user_model):
        browser = Browser()
        browser.force_login(django_user_model.objects.create_superuser("root", password=PASSWORD))
        return browser

    def test_registered_clients_are_listed_and_revocable(
        self, superuser_browser, service, browser, public_client
    ):
        tokens = authorized_tokens(browser, public_client)
        listing = superuser_browser.get("/admin/oauth/client/")
        assert listing.status_code == 200
        assert public_client in listing.content.decode() and service[0] in listing.content.decode()
        assert superuser_browser.get("/admin/oauth2_provider/accesstoken/").status_code == 200
        registered = Client.objects.get(client_id=public_client)
        detail = superuser_browser.get(f"/admin/oauth/client/{registered.pk}/change/")
        assert detail.status_code == 200
        assert REDIRECT_URI in detail.content.decode()
        assert registered.client_secret not in detail.content.decode()
        revoked = superuser_browser.post(
            "/admin/oauth/client/",
            {
                "action": "revoke_selected",
                "_selected_action": [Client.objects.get(client_id=public_client).pk],
                "confirm": "yes",
            },
        )
        assert revoked.status_code == 302
        client = Client.objects.get(client_id=public_client)
        assert (client.revoked_by, client.revoked_at is not None) == ("staff:root", True)
        assert bearer(tokens["access_token"]).get("/api/v1/whoami").status_code == 401
        assert refresh(browser, public_client, tokens["refresh_token"]).json()["error"] == "invalid_client"
        assert browser.get("/o/authorize/", authorization(public_client, pkce())).status_code == 400
        assert AuditEvent.objects.get(action="oauth.client.revoke").actor == "staff:root"

    def test_a_service_client_is_created_in_the_admin_and_its_secret_shown_once(
        self, superuser_browser, make_identity, client
    ):
        make_identity(SERVICE)
        grant(SERVICE, "*")
        page = superuser_browser.post(
            "/admin/oauth/client/add/", {"chitty_id": SERVICE, "name": "billing", "scopes_text": "read"}
        )
        assert page.status_code == 200, page.content
        assert "no-store" in page["Cache-Control"]
        issued = page.context["issued"]
        assert issued.client_secret in page.content.decode()
        assert (issued.client.identity.chitty_id, issued.client.allowed_scopes) == (SERVICE, ["*:read"])
        stored = Client.objects.get(pk=issued.client.pk)
        assert stored.client_secret.startswith("chittyauth_client_sha256$")
        assert client_credentials(client, (stored.client_id, issued.client_secret)).status_code == 200

    def test_the_admin_gives_no_client_a_scope_its_identity_does_not_hold(
        self, superuser_browser, make_identity
    ):
        make_identity(SERVICE)
        grant(SERVICE, "tokens:validate")
        page = superuser_browser.post(
            "/admin/oauth/client/add/", {"chitty_id": SERVICE, "name": "wide", "scopes_text": "audit:read"}
        )
        assert page.status_code == 200
        assert "SCOPE_EXCEEDS_GRANTS" in page.content.decode()
        assert not Client.objects.exists()

    def test_revoking_your_own_service_client_needs_no_permission(self, service):
        owner = Client.objects.get(client_id=service[0])
        caller = Caller(
            actor=SERVICE, identity=owner.identity, credential_type="jwt", credential_id="j", scopes=("read",)
        )
        assert revoke_client(caller, owner, reason="rotating").revoke_reason == "rotating"

    def test_no_token_or_secret_is_stored_or_audited_in_plain_text(
        self, browser, public_client, client, service
    ):
        tokens = authorized_tokens(browser, public_client)
        service_token = client_credentials(client, service).json()["access_token"]
        assert set(AccessToken.objects.values_list("token", flat=True)) == {""}
        assert set(RefreshToken.objects.values_list("token", flat=True)) == {""}
        assert IssuedAccessToken.objects.count() == 2
        trail = json.dumps(list(AuditEvent.objects.values("actor", "target", "details")))
        for secret in (tokens["access_token"], tokens["refresh_token"], service_token, service[1]):
            assert secret not in trail
