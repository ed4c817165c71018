"""The OAuth endpoints: django-oauth-toolkit's views, with ChittyAuth's decisions (`oauth.rules`,
`oauth.consent`, `oauth.access_tokens`, `oauth.clients`) plugged in where a person consents, a token request is refused, a resource server introspects, or a client registers."""

import base64
import binascii
import json
from collections.abc import Callable
from urllib.parse import unquote_plus, urljoin

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse, reverse_lazy
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider import views as toolkit
from oauth2_provider.exceptions import OAuthToolkitError
from oauth2_provider.oauth2_backends import get_oauthlib_core
from oauth2_provider.settings import oauth2_settings
from oauthlib.common import Request as OAuthlibRequest
from oauthlib.common import urlencode
from oauthlib.oauth2.rfc6749 import errors

from kernel.errors import PermissionDenied, ServiceError
from keys.credentials import CredentialRejected
from oauth import access_tokens, clients, consent, rules

CONFIDENTIAL_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
ERROR_HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store", "Pragma": "no-cache"}


def _client_address(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def _error_fields(body: str) -> tuple[str, str]:
    """The `error` and `error_description` of an RFC 6749 §5.2 answer, for the audit record."""
    try:
        answer = json.loads(body)
        return str(answer.get("error", "")), str(answer.get("error_description", ""))
    except (ValueError, AttributeError):
        return "", ""


def _presented_client_id(request: HttpRequest) -> str:
    """The client a token request claims to be, from HTTP Basic or the body; only for the audit record."""
    scheme, _, credentials = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            return unquote_plus(base64.b64decode(credentials).decode().partition(":")[0])
        except (binascii.Error, UnicodeDecodeError):
            return ""
    return request.POST.get("client_id", "")


class ServerMetadataView(toolkit.OAuthServerMetadataView):
    """RFC 8414 metadata as the toolkit writes it, plus where our JWTs' keys are published, and introspection
    advertised as it is: for confidential clients only."""

    def get(self, request: HttpRequest, *args, **kwargs) -> JsonResponse:
        document = json.loads(super().get(request, *args, **kwargs).content)
        document["introspection_endpoint_auth_methods_supported"] = CONFIDENTIAL_AUTH_METHODS
        document["service_documentation"] = urljoin(oauth2_settings.OIDC_ISS_ENDPOINT, reverse("api-docs"))
        if settings.JWT_SIGNING_ALGORITHM != "HS256":
            document["jwks_uri"] = urljoin(oauth2_settings.OIDC_ISS_ENDPOINT, reverse("jwks"))
        return JsonResponse(document, headers={"Access-Control-Allow-Origin": "*"})


class ConsentView(toolkit.AuthorizationView):
    """The authorization endpoint. A staff login linked to an active identity consents (or not) for that
    identity; only PKCE with S256 and resources served here get as far as the consent page."""

    template_name = "oauth/authorize.html"
    login_url = reverse_lazy("admin:login")

    def get(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            self.identity = consent.consenting_identity(request.user)
        except ServiceError as exc:
            return self._refusal(request, exc)
        return super().get(request, *args, **kwargs)

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            self.identity = consent.consenting_identity(request.user)
        except ServiceError as exc:
            return self._refusal(request, exc)
        return super().post(request, *args, **kwargs)

    def _refusal(self, request: HttpRequest, exc: ServiceError) -> HttpResponse:
        return render(request, self.template_name, {"refusal": exc}, status=exc.http_status)

    def validate_authorization_request(self, request: HttpRequest):
        scopes, credentials = super().validate_authorization_request(request)
        try:
            consent.check_authorization_request(
                credentials.get("code_challenge_method"), request.GET.getlist("resource")
            )
            scopes = consent.authorization_scopes(
                credentials["client_id"],
                self.identity,
                scopes,
                named="scope" in request.GET,
                client_address=_client_address(request),
            )
        except rules.OAuthRuleBroken as exc:
            error = errors.CustomOAuth2Error(
                error=exc.oauth_error, description=exc.message, state=credentials.get("state")
            )
            raise OAuthToolkitError(error=error, redirect_uri=credentials["redirect_uri"]) from None
        return scopes, credentials

    def create_authorization_response(
        self, request: HttpRequest, scopes: str, credentials: dict, allow: bool
    ):
        """Consent given or refused, audited with the code it produced (or the refusal) in one transaction."""
        try:
            with transaction.atomic():
                consent.check_authorization_request(
                    credentials.get("code_challenge_method"), credentials.get("resource") or []
                )
                consent.authorization_scopes(
                    credentials["client_id"],
                    self.identity,
                    scopes.split(),
                    named=True,
                    client_address=_client_address(request),
                )
                response = super().create_authorization_response(request, scopes, credentials, allow)
                self._record_consent(request, scopes, credentials, allowed=True)
        except rules.OAuthRuleBroken as exc:
            self._record_consent(request, scopes, credentials, allowed=False, error=exc.oauth_error)
            error = errors.CustomOAuth2Error(
                error=exc.oauth_error, description=exc.message, state=credentials.get("state")
            )
            raise OAuthToolkitError(error=error, redirect_uri=credentials["redirect_uri"]) from None
        except OAuthToolkitError as exc:
            self._record_consent(request, scopes, credentials, allowed=False, error=exc.oauthlib_error.error)
            raise
        return response

    def _record_consent(
        self, request: HttpRequest, scopes: str, credentials: dict, *, allowed: bool, error: str = ""
    ) -> None:
        consent.record_consent(
            request.user,
            self.identity,
            credentials["client_id"],
            scopes.split() if scopes else [],
            allowed=allowed,
            client_address=_client_address(request),
            error=error,
        )

    def get_context_data(self, **kwargs) -> dict:
        context = super().get_context_data(**kwargs)
        context["identity"] = self.identity
        context["consent_scopes"] = consent.consent_scopes(kwargs.get("scopes", []))
        return context


class TokenView(toolkit.TokenView):
    """The token endpoint; every refusal is audited, and answered as JSON (RFC 6749 §5.2) even when it comes
    from a rule checked while the token is being saved."""

    def create_token_response(self, request: HttpRequest):
        url, headers, body, status = super().create_token_response(request)
        if status != 200:
            headers = {**ERROR_HEADERS, **headers}
            error, description = _error_fields(body)
            access_tokens.record_token_refusal(
                error=error,
                description=description,
                grant_type=request.POST.get("grant_type", ""),
                client_id=_presented_client_id(request),
                client_address=_client_address(request),
            )
        return url, headers, body, status


class RevokeView(toolkit.RevokeTokenView):
    """RFC 7009 revocation (the client must authenticate, or name itself if public); refusals are audited."""

    def create_revocation_response(self, request: HttpRequest):
        url, headers, body, status = super().create_revocation_response(request)
        if status != 200:
            error, description = _error_fields(body)
            access_tokens.record_token_refusal(
                error=error,
                description=description,
                grant_type="revocation",
                client_id=_presented_client_id(request),
                client_address=_client_address(request),
            )
        return url, headers, body, status


def _authenticated_client(request: HttpRequest):
    """The confidential client authenticating this request (HTTP Basic or body secret), or None."""
    core = get_oauthlib_core()
    oauth_request = OAuthlibRequest(
        request.build_absolute_uri(),
        request.method,
        urlencode(core.extract_body(request)),
        core.extract_headers(request),
    )
    if not core.server.request_validator.authenticate_client(oauth_request):
        return None
    return oauth_request.client


@method_decorator(csrf_exempt, name="dispatch")
class IntrospectView(View):
    """RFC 7662 introspection for resource servers: the caller authenticates as a confidential client."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> JsonResponse:
        client = _authenticated_client(request)
        if client is None:
            access_tokens.record_token_refusal(
                error="invalid_client",
                grant_type="introspection",
                client_id=_presented_client_id(request),
                client_address=_client_address(request),
            )
            return JsonResponse(
                {"error": "invalid_client", "error_description": "Authenticate as a confidential client"},
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="chittyauth"'},
            )
        token = request.POST.get("token")
        if not token:
            return JsonResponse(
                {"error": "invalid_request", "error_description": "token is required"}, status=400
            )
        answer = access_tokens.introspect(client, token, client_address=_client_address(request))
        return JsonResponse(answer, headers={"Cache-Control": "no-store"})


class RegistrationView(toolkit.DynamicClientRegistrationView):
    """RFC 7591 registration, authorized by `clients.authorize_registration` and audited with the client."""

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            registrar = clients.authorize_registration(
                request.META.get("HTTP_AUTHORIZATION", ""),
                client_address=_client_address(request),
                user_agent=request.META.get("HTTP_USER_AGENT", ""),
            )
        except CredentialRejected as exc:
            return _bearer_error("invalid_token", exc.message, 401)
        except PermissionDenied as exc:
            return _bearer_error("insufficient_scope", exc.message, 403)
        with transaction.atomic():
            response = _metadata_parsed(super().post, request, *args, **kwargs)
            if response.status_code == 201:
                clients.record_registration(
                    json.loads(response.content)["client_id"],
                    registrar=registrar,
                    client_address=_client_address(request),
                )
        response["Cache-Control"] = "no-store"
        return response


def _metadata_parsed(
    handle: Callable[..., HttpResponse], request: HttpRequest, *args, **kwargs
) -> HttpResponse:
    """The toolkit parses client metadata with `json.loads` and catches only ValueError: JSON nested past
    Python's recursion limit would be a 500."""
    try:
        return handle(request, *args, **kwargs)
    except RecursionError:
        return JsonResponse(
            {"error": "invalid_client_metadata", "error_description": "The JSON is nested too deeply"},
            status=400,
        )


def _bearer_error(error: str, description: str, status: int) -> JsonResponse:
    return JsonResponse(
        {"error": error, "error_description": description},
        status=status,
        headers={"WWW-Authenticate": f'Bearer error="{error}"'},
    )


class RegistrationManagementView(toolkit.DynamicClientRegistrationManagementView):
    """RFC 7592: a dynamically registered client reads, updates or deletes its registration; changes are audited."""

    def put(self, request: HttpRequest, client_id: str, *args, **kwargs) -> HttpResponse:
        with transaction.atomic():
            response = _metadata_parsed(super().put, request, client_id, *args, **kwargs)
            if response.status_code == 200:
                clients.record_registration_change(
                    client_id, "update", client_address=_client_address(request)
                )
        return response

    def delete(self, request: HttpRequest, client_id: str, *args, **kwargs) -> HttpResponse:
        with transaction.atomic():
            response = super().delete(request, client_id, *args, **kwargs)
            if response.status_code == 204:
                clients.record_registration_change(
                    client_id, "delete", client_address=_client_address(request)
                )
        return response
