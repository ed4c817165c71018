from django.db import models

from identities.models import Identity


class ApiKey(models.Model):
    """An API key. Only its SHA-256 and a short display prefix are stored; the secret is shown once."""

    class Environment(models.TextChoices):
        LIVE = "live"
        TEST = "test"

    key_id = models.CharField(max_length=40, unique=True)
    principal = models.ForeignKey(Identity, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200, blank=True)
    environment = models.CharField(max_length=8, choices=Environment.choices, default=Environment.LIVE)
    secret_hash = models.CharField(max_length=64, unique=True)
    display_prefix = models.CharField(max_length=32)
    scopes = models.JSONField(default=list, blank=True)
    created_by = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    revoked_at = models.DateTimeField(null=True, blank=True, db_index=True)
    revoked_by = models.CharField(max_length=255, blank=True)
    revoke_reason = models.CharField(max_length=255, blank=True)
    rotated_from = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="rotated_to"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    use_count = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.key_id} ({self.display_prefix}…)"


class SigningKey(models.Model):
    """An asymmetric JWT signing key. The private half is encrypted with a key from the environment."""

    class Algorithm(models.TextChoices):
        EDDSA = "EdDSA"
        ES256 = "ES256"

    kid = models.CharField(max_length=64, unique=True)
    algorithm = models.CharField(max_length=16, choices=Algorithm.choices)
    public_jwk = models.JSONField()
    private_key_encrypted = models.TextField()
    is_active = models.BooleanField(default=False, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    # A retired key stays published until every token it signed has expired.
    publish_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=models.Q(is_active=True), name="one_active_signing_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kid} ({self.algorithm})"


class RevokedToken(models.Model):
    """A revoked JWT id, kept until the token would have expired anyway."""

    jti = models.CharField(max_length=64, unique=True)
    chitty_id = models.CharField(max_length=128, blank=True)
    expires_at = models.DateTimeField(db_index=True)
    revoked_at = models.DateTimeField(auto_now_add=True)
    revoked_by = models.CharField(max_length=255, blank=True)
    reason = models.CharField(max_length=255, blank=True)

    def __str__(self) -> str:
        return self.jti


class VerificationHour(models.Model):
    """How many verifications, of one credential type with one outcome, one hour saw; per API key where the key
    is known (`key_id` blank for JWTs and for keys too malformed to name one). Written by `keys.verification_history`."""

    hour = models.DateTimeField()
    credential_type = models.CharField(max_length=16)
    outcome = models.CharField(max_length=40)
    key_id = models.CharField(max_length=64, blank=True)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "credential_type", "outcome", "key_id"], name="one_count_per_hour_and_outcome"
            )
        ]
        indexes = [models.Index(fields=["key_id", "hour"])]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}:00 {self.credential_type} {self.outcome}: {self.count}"
