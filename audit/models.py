from django.db import models

GENESIS_HASH = "0" * 64


class AuditEvent(models.Model):
    """One link of the append-only, hash-chained audit trail."""

    class Outcome(models.TextChoices):
        SUCCESS = "success"
        FAILURE = "failure"
        DENIED = "denied"

    sequence = models.BigIntegerField(unique=True)
    created_at = models.DateTimeField(db_index=True)
    actor = models.CharField(max_length=255, db_index=True, blank=True)
    action = models.CharField(max_length=100, db_index=True)
    target = models.CharField(max_length=255, blank=True, db_index=True)
    # The ChittyID the event is about when neither actor nor target names it (a failed use of its key, the
    # end of its session), so an identity's trail finds it by index.
    principal = models.CharField(max_length=255, blank=True, default="", db_index=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, db_index=True)
    client_address = models.GenericIPAddressField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-sequence"]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.action} {self.outcome}"


class AuditChainHead(models.Model):
    """The single row that every append locks, so the chain stays linear under concurrency."""

    sequence = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS_HASH)

    def __str__(self) -> str:
        return f"head at #{self.sequence}"


class AuditCheckpoint(models.Model):
    """The chain head at one moment, signed with the service's signing key (`keys/checkpoints.py`). Outside
    parties keep copies; a chain rewritten before a checkpoint no longer matches it."""

    sequence = models.BigIntegerField(db_index=True)
    hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(db_index=True)
    kid = models.CharField(max_length=64)
    token = models.TextField()  # the signed statement, a compact JWS: public, no secret in it

    class Meta:
        ordering = ["-sequence", "-created_at"]

    def __str__(self) -> str:
        return f"checkpoint at #{self.sequence}"
