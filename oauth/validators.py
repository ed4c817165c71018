"""django-oauth-toolkit's request validator, deciding with ChittyAuth's rules (`oauth.rules`,
`oauth.access_tokens`)."""

from django.db import transaction
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauthlib.oauth2.rfc6749 import errors, utils

from kernel.errors import AuthorityUnavailable, ServiceError
from oauth import access_tokens, rules


def _client_address(request) -> str | None:
    return request.headers.get("REMOTE_ADDR") or None


class ChittyAuthValidator(OAuth2Validator):
    def validate_scopes(self, client_id, scopes, client, request, *args, **kwargs) -> bool:
        return rules.scopes_allowed(client, scopes)

    def is_within_original_scope(self, request_scopes, refresh_token, request, *args, **kwargs) -> bool:
        """A refresh may narrow the scopes, in the grammar's terms: `read` is within the granted `*:read`."""
        original = utils.scope_to_list(self.get_original_scopes(refresh_token, request))
        return rules.scopes_within(request_scopes, original)

    def validate_bearer_token(self, token, scopes, request) -> bool:
        """Bearer tokens are checked by `keys.credentials.authenticate_bearer` alone, never by the toolkit's
        resource-server path (which knows nothing of ChittyAuth's revocations and grants)."""
        return False

    def validate_refresh_token(self, refresh_token, client, request, *args, **kwargs) -> bool:
        """The toolkit's checks (rotation, reuse detection that revokes the family, expiry), then ChittyAuth's:
        a family whose access token was revoked here, or whose identity is not active, refreshes no more."""
        with transaction.atomic():
            if not super().validate_refresh_token(refresh_token, client, request, *args, **kwargs):
                access_tokens.record_refresh_reuse(refresh_token, client_address=_client_address(request))
                return False
            try:
                request.chittyauth_identity = access_tokens.refresh_identity(request.refresh_token_instance)
            except rules.RefreshRefused as refusal:
                access_tokens.refuse_refresh(
                    request.refresh_token_instance, refusal, client_address=_client_address(request)
                )
                return False
        return True

    def _save_bearer_token(self, token, request, *args, **kwargs) -> None:
        """When two requests race with one refresh token, the toolkit answers the loser with the winner's
        token as stored — only its hash here — so the loser is refused instead of handed an empty token."""
        super()._save_bearer_token(token, request, *args, **kwargs)
        if not token.get("access_token"):
            raise errors.InvalidGrantError(
                description="This refresh token has just been used by another request", request=request
            )

    def _create_access_token(self, expires, request, token, source_refresh_token=None):
        """Every access token is a ChittyAuth JWT: minted here, with its session, instead of an opaque string."""
        try:
            identity = access_tokens.token_identity(
                grant_type=request.grant_type,
                client=request.client,
                user=request.user,
                refresh_identity=getattr(request, "chittyauth_identity", None),
            )
            minted = access_tokens.mint_access_token(
                client=request.client,
                identity=identity,
                scopes=token["scope"].split(),
                resources=request.resource,
                grant_type=request.grant_type,
                client_address=_client_address(request),
                user_agent=request.headers.get("HTTP_USER_AGENT", ""),
            )
        except rules.OAuthRuleBroken as exc:
            raise errors.CustomOAuth2Error(
                error=exc.oauth_error, description=exc.message, request=request
            ) from None
        except AuthorityUnavailable as exc:
            raise errors.CustomOAuth2Error(
                error="temporarily_unavailable", description=exc.message, status_code=503, request=request
            ) from None
        except ServiceError as exc:
            raise errors.InvalidGrantError(description=exc.message, request=request) from None
        token["access_token"] = minted.token
        token["expires_in"] = minted.expires_in
        token["scope"] = " ".join(minted.scopes)
        access_token = super()._create_access_token(minted.expires_at, request, token, source_refresh_token)
        access_tokens.link_access_token(access_token, minted)
        return access_token

    def revoke_token(self, token, token_type_hint, request, *args, **kwargs) -> None:
        """RFC 7009: the toolkit deletes the client's matching token rows (which revokes the JWT and ends its
        session, see `oauth.signals`); the request itself is audited alongside."""
        with transaction.atomic():
            super().revoke_token(token, token_type_hint, request, *args, **kwargs)
            access_tokens.record_revocation_request(
                request.client, token_type_hint, client_address=_client_address(request)
            )
