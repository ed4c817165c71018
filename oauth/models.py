"""The OAuth client (django-oauth-toolkit's swappable application model) and the link from each access token
row django-oauth-toolkit keeps to the ChittyAuth JWT it stands for."""

from collections import defaultdict
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import models
from oauth2_provider.models import AbstractApplication, ApplicationManager
from oauth2_provider.settings import oauth2_settings

from identities.models import Identity

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class Client(AbstractApplication):
    """A registered OAuth client.

    An interactive client (authorization code with PKCE) acts for whichever person consents; a service client
    (client credentials) is confidential and acts for its `identity`. A revoked client is kept for the record
    but can neither authenticate nor use a token again.
    """

    identity = models.ForeignKey(
        Identity,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="oauth_clients",
        help_text="The principal a client-credentials client acts for",
    )
    allowed_scopes = models.JSONField(
        default=list,
        blank=True,
        help_text="The most a client may request (a service client's tokens never carry more); empty: no limit",
    )
    registered_by = models.CharField(max_length=255, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, db_index=True)
    revoked_by = models.CharField(max_length=255, blank=True)
    revoke_reason = models.CharField(max_length=255, blank=True)

    objects = ApplicationManager()

    class Meta:
        verbose_name = "OAuth client"
        ordering = ["-created"]

    def natural_key(self) -> tuple[str]:
        return (self.client_id,)

    def is_usable(self, request) -> bool:
        """django-oauth-toolkit asks this before every use: a revoked client, or one whose principal is no
        longer active, cannot authenticate, be authorized, or refresh."""
        if self.revoked_at is not None:
            return False
        return self.identity_id is None or self.identity.is_active

    def clean(self) -> None:
        errors: dict[str, list[ValidationError]] = defaultdict(list)
        try:
            super().clean()
        except ValidationError as exc:
            errors = exc.update_error_dict(errors)
        for uri in self.redirect_uris.split():
            parts = urlsplit(uri)
            if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
                errors["redirect_uris"].append(
                    ValidationError(f"{uri}: http is allowed only for loopback redirect URIs (RFC 8252)")
                )
        if self.authorization_grant_type == self.GRANT_CLIENT_CREDENTIALS:
            if self.identity_id is None:
                errors["identity"].append(ValidationError("A client-credentials client acts for an identity"))
            if self.client_type != self.CLIENT_CONFIDENTIAL:
                errors["client_type"].append(
                    ValidationError("A client-credentials client must be confidential")
                )
            if not self.allowed_scopes:
                errors["allowed_scopes"].append(
                    ValidationError("A client-credentials client needs allowed scopes")
                )
        elif self.authorization_grant_type == self.GRANT_AUTHORIZATION_CODE:
            if self.identity_id is not None:
                errors["identity"].append(
                    ValidationError(
                        "An authorization-code client acts for whoever consents, not for an identity"
                    )
                )
        else:
            errors["authorization_grant_type"].append(
                ValidationError(
                    "Only the authorization code (with PKCE) and client credentials grants are offered"
                )
            )
        if errors:
            raise ValidationError(errors)


class IssuedAccessToken(models.Model):
    """The ChittyAuth JWT behind one of django-oauth-toolkit's access token rows (which store only its hash).

    When the toolkit deletes that row — RFC 7009 revocation, refresh rotation, reuse detection, the admin, a
    revoked client — the JWT's `jti` is revoked and its session ended, so both sides always agree.
    """

    access_token = models.OneToOneField(
        oauth2_settings.ACCESS_TOKEN_MODEL, on_delete=models.CASCADE, related_name="issued_jwt"
    )
    jti = models.CharField(max_length=64, unique=True)
    identity = models.ForeignKey(Identity, on_delete=models.CASCADE, related_name="oauth_access_tokens")
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.jti
