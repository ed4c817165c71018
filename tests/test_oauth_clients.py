"""authlib's OAuth 2 client — code nobody here wrote — against a live server: client credentials, the
authorization code flow with PKCE and refresh rotation, reuse detection, RFC 7662 introspection and RFC 7009
revocation. The tokens it gets are then used where a resource server would: the REST API.
"""

import time

import httpx
import pytest
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import OAuth2Client
from django.test import Client as Browser

from grants.services import grant_permission
from identities.staff_links import link_staff_user
from kernel.callers import Caller
from oauth.clients import create_service_client

PERSON = "CHITTY-PEO-AUTHLIB1-A"
SERVICE = "CHITTY-PEO-AUTHLIBSVC1-A"
RESOURCE_SERVER = "CHITTY-PEO-AUTHLIBRS1-A"
REDIRECT_URI = "http://127.0.0.1:9999/callback"


@pytest.fixture
def server(live_server, settings) -> str:
    """The live server as this service's public address, so discovery and audiences name it."""
    settings.CHITTYAUTH_BASE_URL = live_server.url
    settings.MCP_RESOURCE_URL = f"{live_server.url}/mcp"
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_ISS_ENDPOINT": f"{live_server.url}/"}
    return live_server.url


@pytest.fixture
def metadata(server) -> dict:
    return httpx.get(f"{server}/.well-known/oauth-authorization-server", timeout=30).json()


def service_client(chitty_id: str, scopes: list[str]) -> OAuth2Client:
    system = Caller.system("tests")
    grant_permission(system, grantee_chitty_id=chitty_id, permission="*")
    issued = create_service_client(system, chitty_id=chitty_id, scopes=scopes)
    return OAuth2Client(
        client_id=issued.client.client_id,
        client_secret=issued.client_secret,
        token_endpoint_auth_method="client_secret_basic",
        timeout=30,
    )


def whoami(server: str, token: str) -> httpx.Response:
    return httpx.get(f"{server}/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.fixture
def service(make_identity) -> OAuth2Client:
    make_identity(SERVICE)
    with service_client(SERVICE, ["read", "tokens:validate"]) as client:
        yield client


def test_client_credentials_introspection_and_revocation(server, metadata, service):
    token = service.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
    assert token["token_type"] == "Bearer" and token["scope"] == "*:read tokens:validate"
    assert whoami(server, token["access_token"]).json()["chitty_id"] == SERVICE

    answer = service.introspect_token(metadata["introspection_endpoint"], token=token["access_token"]).json()
    assert (answer["active"], answer["sub"], answer["client_id"]) == (True, SERVICE, service.client_id)

    revoked = service.revoke_token(
        metadata["revocation_endpoint"], token=token["access_token"], token_type_hint="access_token"
    )
    assert revoked.status_code == 200
    refused = whoami(server, token["access_token"])
    assert (refused.status_code, refused.json()["error"]["reason"]) == (401, "REVOKED")
    after = service.introspect_token(metadata["introspection_endpoint"], token=token["access_token"]).json()
    assert after == {"active": False}


def test_a_wrong_client_secret_is_invalid_client(server, metadata, service):
    with (
        OAuth2Client(client_id=service.client_id, client_secret="wrong", timeout=30) as impostor,
        pytest.raises(OAuthError) as refused,
    ):
        impostor.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
    assert refused.value.error == "invalid_client"


def test_a_resource_server_introspects_tokens_of_other_clients_with_tokens_validate(
    server, metadata, service, make_identity
):
    make_identity(RESOURCE_SERVER)
    with service_client(RESOURCE_SERVER, ["tokens:validate"]) as resource_server:
        token = service.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
        answer = resource_server.introspect_token(
            metadata["introspection_endpoint"], token=token["access_token"]
        ).json()
    assert (answer["active"], answer["sub"], answer["aud"]) == (True, SERVICE, "chittyos")


def test_an_expired_token_is_refused_and_inactive(server, metadata, service, settings):
    settings.OAUTH_ACCESS_TOKEN_LIFETIME_SECONDS = 1
    settings.JWT_LEEWAY_SECONDS = 0
    token = service.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
    assert token["expires_in"] == 1
    time.sleep(2.1)  # `exp` is whole seconds: two seconds later the token is past it whatever the rounding
    refused = whoami(server, token["access_token"])
    assert (refused.status_code, refused.json()["error"]["reason"]) == (401, "EXPIRED")
    answer = service.introspect_token(metadata["introspection_endpoint"], token=token["access_token"]).json()
    assert answer == {"active": False}


@pytest.fixture
def person_browser(make_identity, django_user_model) -> Browser:
    make_identity(PERSON)
    grant_permission(Caller.system("tests"), grantee_chitty_id=PERSON, permission="*")
    user = django_user_model.objects.create_user(
        "authlib-staff", password="a-long-password-42", is_staff=True
    )
    link_staff_user(Caller.system("tests"), user, PERSON)
    browser = Browser()
    browser.force_login(user)
    return browser


def consent(browser: Browser, authorization_url: str) -> str:
    """Play the person: open the authorization URL, allow, and hand back where the server redirects."""
    path = authorization_url.split("://", 1)[1].split("/", 1)[1]
    page = browser.get(f"/{path}")
    assert page.status_code == 200, page.content
    form = {field.name: field.value() or "" for field in page.context["form"] if field.is_hidden}
    answer = browser.post(f"/{path}", {**form, "allow": "Authorize"})
    assert answer.status_code == 302, answer.content
    return answer["Location"]


def test_authorization_code_with_pkce_refresh_rotation_and_reuse_detection(server, metadata, person_browser):
    registration = httpx.post(
        metadata["registration_endpoint"],
        json={
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "none",
            "client_name": "authlib",
        },
        timeout=30,
    ).json()
    with OAuth2Client(
        client_id=registration["client_id"],
        token_endpoint_auth_method="none",
        redirect_uri=REDIRECT_URI,
        scope="read",
        code_challenge_method="S256",
        timeout=30,
    ) as client:
        verifier = "v" * 20 + "-pkce-verifier-made-long-enough-for-rfc-7636"
        url, _state = client.create_authorization_url(
            metadata["authorization_endpoint"], code_verifier=verifier, resource=f"{server}/mcp"
        )
        redirect = consent(person_browser, url)
        first = client.fetch_token(
            metadata["token_endpoint"], authorization_response=redirect, code_verifier=verifier
        )
        assert whoami(server, first["access_token"]).json()["chitty_id"] == PERSON

        second = client.refresh_token(metadata["token_endpoint"], refresh_token=first["refresh_token"])
        assert second["refresh_token"] != first["refresh_token"]
        assert whoami(server, second["access_token"]).status_code == 200
        assert whoami(server, first["access_token"]).status_code == 401

        with pytest.raises(OAuthError) as reused:
            client.refresh_token(metadata["token_endpoint"], refresh_token=first["refresh_token"])
        assert reused.value.error == "invalid_grant"
        assert whoami(server, second["access_token"]).status_code == 401
        with pytest.raises(OAuthError) as family_revoked:
            client.refresh_token(metadata["token_endpoint"], refresh_token=second["refresh_token"])
        assert family_revoked.value.error == "invalid_grant"
