from django.db import models
from django.utils import timezone

from identities.models import Identity


class Grant(models.Model):
    """A permission held by a principal: `resource:action`, `*` wildcards, optionally one resource id."""

    principal = models.ForeignKey(Identity, on_delete=models.CASCADE, related_name="grants")
    permission = models.CharField(max_length=200, db_index=True)
    resource_id = models.CharField(max_length=255, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    granted_by = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True, db_index=True)
    revoked_by = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["principal", "revoked_at"])]

    def __str__(self) -> str:
        scope = f" on {self.resource_id}" if self.resource_id else ""
        return f"{self.principal_id}: {self.permission}{scope}"

    @property
    def is_live(self) -> bool:
        """Neither revoked nor expired: only live grants ever allow anything."""
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())
