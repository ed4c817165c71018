from django.db import models

from identities.models import Identity


class AuthSession(models.Model):
    """A span of authenticated activity by one principal through one credential on one channel."""

    class Channel(models.TextChoices):
        REST = "rest"
        MCP_WEBSOCKET = "mcp-websocket"
        MCP_HTTP = "mcp-http"
        MCP_STDIO = "mcp-stdio"
        ADMIN = "admin"
        JWT = "jwt"

    class CredentialType(models.TextChoices):
        API_KEY = "api_key"
        JWT = "jwt"
        STAFF = "staff"

    session_id = models.CharField(max_length=40, unique=True)
    principal = models.ForeignKey(Identity, on_delete=models.CASCADE, related_name="sessions")
    credential_type = models.CharField(max_length=16, choices=CredentialType.choices)
    credential_id = models.CharField(max_length=64, db_index=True)
    channel = models.CharField(max_length=16, choices=Channel.choices, db_index=True)
    client_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=400, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    ended_at = models.DateTimeField(null=True, blank=True, db_index=True)
    end_reason = models.CharField(max_length=255, blank=True)
    ended_by = models.CharField(max_length=255, blank=True)

    class Meta:
        verbose_name = "session"
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["principal", "ended_at"]),
            models.Index(fields=["credential_id", "channel"]),
        ]

    def __str__(self) -> str:
        return self.session_id

    @property
    def is_live(self) -> bool:
        return self.ended_at is None
