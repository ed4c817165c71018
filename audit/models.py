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


class AuditDelivery(models.Model):
    """How far one export sink has got: everything up to `delivered_sequence` (and checkpoint
    `delivered_checkpoint_id`) has been accepted. A run takes the row with a lease, so two workers never send
    the same sink's events side by side, and a sink that failed waits until `next_attempt_at`."""

    sink = models.CharField(max_length=32, unique=True)
    delivered_sequence = models.BigIntegerField(default=0)
    delivered_checkpoint_id = models.BigIntegerField(default=0)
    failures_in_a_row = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    last_delivered_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True)
    leased_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["sink"]
        verbose_name_plural = "audit deliveries"

    def __str__(self) -> str:
        return f"{self.sink} at #{self.delivered_sequence}"


class AuditDeadLetter(models.Model):
    """An event or checkpoint a sink refused for good (400, 413, 415 or 422): set aside so the events
    after it still flow, and kept until staff send it again."""

    sink = models.CharField(max_length=32, db_index=True)
    event = models.ForeignKey(AuditEvent, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    checkpoint = models.ForeignKey(
        AuditCheckpoint, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.CharField(max_length=300)
    created_at = models.DateTimeField()
    redeliver_requested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["sink", "-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(event__isnull=False, checkpoint__isnull=True)
                | models.Q(event__isnull=True, checkpoint__isnull=False),
                name="audit_dead_letter_holds_one_item",
            )
        ]

    def __str__(self) -> str:
        what = f"event #{self.event.sequence}" if self.event_id else f"checkpoint {self.checkpoint_id}"
        return f"{what} refused by {self.sink}"
