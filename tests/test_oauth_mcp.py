"""The MCP Python SDK's own OAuth client against a live daphne: it meets a 401 at /mcp, discovers the resource
and authorization server metadata, registers itself, runs the authorization code flow with PKCE (this test
plays the browser: a staff login linked to a ChittyID signs in and consents), and calls tools with the token.
"""

import html
import json
import re
import urllib.error
import urllib.request
from urllib.parse import parse_qs, urljoin, urlsplit

import anyio
import httpx
import httpx2
import pytest
import websockets
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)
from pydantic import AnyUrl

from tests.conftest import free_port
from tests.mcp_live import base_env, daphne_server, manage

PERSON = "CHITTY-PEO-OAUTHMCP1-A"
SERVICE = "CHITTY-PEO-OAUTHSVC1-A"
USERNAME, PASSWORD = "consenting-staff", "a-long-staff-password-42"
OTHER_RESOURCE = "https://other.chitty.example/api"
REDIRECT_URI = "http://127.0.0.1:45678/callback"

_SEED = f"""
import json
from django.contrib.auth.models import User
from kernel.callers import Caller
from grants.services import grant_permission
from principals.services import register_identity
from identities.staff_links import link_staff_user
from oauth.clients import create_service_client

system = Caller.system("oauth-mcp-tests")
for chitty_id in ({PERSON!r}, {SERVICE!r}):
    register_identity(system, chitty_id)
    grant_permission(system, grantee_chitty_id=chitty_id, permission="*")
user = User.objects.create_user({USERNAME!r}, password={PASSWORD!r}, is_staff=True)
link_staff_user(system, user, {PERSON!r})
issued = create_service_client(system, chitty_id={SERVICE!r}, name="service")
print(json.dumps({{"client_id": issued.client.client_id, "client_secret": issued.client_secret}}))
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    folder = tmp_path_factory.mktemp("oauth-mcp")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = base_env(
        f"sqlite:///{folder}/chittyauth.sqlite3",
        CHITTYAUTH_BASE_URL=url,
        OAUTH_EXTERNAL_RESOURCES=OTHER_RESOURCE,
    )
    manage(env, "migrate", "--noinput", "-v0")
    service = json.loads(manage(env, "shell", "-v", "0", "-c", _SEED).strip().splitlines()[-1])
    with daphne_server(env, folder, port) as server:
        yield server.url, service


class MemoryStorage:
    """Where the SDK keeps its registration and tokens between requests."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


def hidden_inputs(page: str) -> dict[str, str]:
    return {
        name: html.unescape(value)
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)
    }


class Browser:
    """The person at the keyboard: signs in to the admin when sent there, then consents."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.consent_pages: list[str] = []
        self.result: AuthorizationCodeResult | None = None

    async def authorize(self, authorization_url: str) -> None:
        async with httpx.AsyncClient(timeout=30) as browser:
            login = await browser.get(authorization_url)
            assert login.status_code == 302 and "/admin/login/" in login.headers["location"], login.text
            login_url = urljoin(self.server_url, login.headers["location"])
            form = hidden_inputs((await browser.get(login_url)).text)
            signed_in = await browser.post(
                login_url, data={**form, "username": USERNAME, "password": PASSWORD}
            )
            assert signed_in.status_code == 302, signed_in.text
            consent = await browser.get(urljoin(self.server_url, signed_in.headers["location"]))
            assert consent.status_code == 200, consent.text
            self.consent_pages.append(consent.text)
            answer = await browser.post(
                authorization_url, data={**hidden_inputs(consent.text), "allow": "Authorize"}
            )
            assert answer.status_code == 302, answer.text
        redirect = urlsplit(answer.headers["location"])
        assert f"{redirect.scheme}://{redirect.netloc}{redirect.path}" == REDIRECT_URI
        query = {name: values[0] for name, values in parse_qs(redirect.query).items()}
        self.result = AuthorizationCodeResult(
            code=query["code"], state=query.get("state"), iss=query.get("iss")
        )

    async def callback(self) -> AuthorizationCodeResult:
        return self.result


def oauth_provider(server_url: str, storage: MemoryStorage, browser: Browser) -> OAuthClientProvider:
    return OAuthClientProvider(
        server_url=f"{server_url}/mcp",
        client_metadata=OAuthClientMetadata(
            client_name="pytest MCP client",
            redirect_uris=[AnyUrl(REDIRECT_URI)],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=browser.authorize,
        callback_handler=browser.callback,
    )


def http_json(
    method: str, url: str, *, token: str | None = None, data: bytes | None = None
) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, method=method, data=data, headers=headers)  # noqa: S310 - loopback URL
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, {"www_authenticate": error.headers.get("WWW-Authenticate", "")}


def test_the_sdk_discovers_registers_authorizes_and_calls_tools(live):
    server_url, _service = live
    storage, browser = MemoryStorage(), Browser(server_url)

    async def scenario():
        async with (
            httpx2.AsyncClient(auth=oauth_provider(server_url, storage, browser), timeout=30) as http,
            Client(streamable_http_client(f"{server_url}/mcp", http_client=http)) as client,
        ):
            me = (await client.call_tool("whoami", {})).structured_content
            validated = await client.call_tool("validate_jwt", {"token": storage.tokens.access_token})
            return me, validated.content[0].text

    me, validated = anyio.run(scenario)
    assert me["chitty_id"] == PERSON
    assert me["credential_type"] == "jwt"
    assert validated.startswith("✅ Valid JWT")
    assert storage.client_info.client_id and storage.client_info.client_secret is None
    assert len(browser.consent_pages) == 1 and PERSON in browser.consent_pages[0]
    assert browser.result.iss == f"{server_url}/"
    assert storage.tokens.refresh_token

    status, body = http_json("GET", f"{server_url}/api/v1/whoami", token=storage.tokens.access_token)
    assert (status, body["chitty_id"]) == (200, PERSON)


def test_the_websocket_transport_accepts_the_same_token(live):
    server_url, _service = live
    storage, browser = MemoryStorage(), Browser(server_url)

    async def scenario():
        async with (
            httpx2.AsyncClient(auth=oauth_provider(server_url, storage, browser), timeout=30) as http,
            Client(streamable_http_client(f"{server_url}/mcp", http_client=http)) as client,
        ):
            await client.call_tool("whoami", {})
        async with websockets.connect(
            server_url.replace("http://", "ws://") + "/mcp/ws",
            subprotocols=["mcp"],
            additional_headers={"Authorization": f"Bearer {storage.tokens.access_token}"},
            open_timeout=30,
        ) as ws:
            initialize = {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "oauth-websocket-test", "version": "1"},
            }
            await ws.send(
                json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": initialize})
            )
            await ws.recv()
            await ws.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            call = {"name": "whoami", "arguments": {}}
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call}))
            return json.loads(await ws.recv())

    answer = anyio.run(scenario)
    assert answer["result"]["structuredContent"]["chitty_id"] == PERSON


def test_discovery_documents_agree_and_the_401_points_at_them(live):
    server_url, _service = live
    status, challenge = http_json("POST", f"{server_url}/mcp", data=b"{}")
    assert status == 401
    metadata_url = f"{server_url}/.well-known/oauth-protected-resource/mcp"
    assert f'resource_metadata="{metadata_url}"' in challenge["www_authenticate"]

    _, resource = http_json("GET", metadata_url)
    _, server = http_json("GET", f"{server_url}/.well-known/oauth-authorization-server")
    assert resource["resource"] == f"{server_url}/mcp"
    assert resource["authorization_servers"] == [server["issuer"]] == [f"{server_url}/"]
    assert sorted(resource["scopes_supported"]) == sorted(server["scopes_supported"])
    assert server["code_challenge_methods_supported"] == ["S256"]
    assert server["registration_endpoint"] == f"{server_url}/o/register/"
    assert server["authorization_response_iss_parameter_supported"] is True


def client_credentials_token(server_url: str, service: dict, resource: str) -> str:
    response = httpx.post(
        f"{server_url}/o/token/",
        data={"grant_type": "client_credentials", "resource": resource},
        auth=(service["client_id"], service["client_secret"]),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def test_a_token_for_another_resource_is_refused_at_mcp_and_rest(live):
    server_url, service = live
    foreign = client_credentials_token(server_url, service, OTHER_RESOURCE)
    status, challenge = http_json("POST", f"{server_url}/mcp", token=foreign, data=b"{}")
    assert status == 401
    assert 'error="invalid_token"' in challenge["www_authenticate"]
    assert http_json("GET", f"{server_url}/api/v1/whoami", token=foreign)[0] == 401

    own = client_credentials_token(server_url, service, f"{server_url}/mcp")
    status, body = http_json("GET", f"{server_url}/api/v1/whoami", token=own)
    assert (status, body["chitty_id"]) == (200, SERVICE)
