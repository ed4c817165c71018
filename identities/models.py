from django.conf import settings
from django.db import models

from identities.chitty_ids import ENTITY_TYPES


class Identity(models.Model):
    """A ChittyID principal. Its status gates every credential, grant and session it holds."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        SUSPENDED = "suspended"
        REVOKED = "revoked"

    class Source(models.TextChoices):
        LOCAL = "local", "Local authority"
        REMOTE = "remote", "Remote authority"

    chitty_id = models.CharField(max_length=128, unique=True)
    entity_type = models.CharField(max_length=16, choices=[(t, t) for t in ENTITY_TYPES], db_index=True)
    display_name = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE, db_index=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.LOCAL)
    status_reason = models.CharField(max_length=255, blank=True)
    last_validated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "identities"
        ordering = ["chitty_id"]

    def __str__(self) -> str:
        return self.chitty_id

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class StaffLink(models.Model):
    """The ChittyID a staff login acts as in the admin. Staff who are not superusers hold exactly that
    identity's grants there, so the no-escalation rule binds them as it binds any API caller."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_link")
    identity = models.ForeignKey(Identity, on_delete=models.CASCADE, related_name="staff_links")
    linked_by = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "staff link"
        ordering = ["user__username"]

    def __str__(self) -> str:
        return f"{self.user} acts as {self.identity.chitty_id}"
