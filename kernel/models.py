from django.db import models
from django.db.models.functions import Now


class PendingInvalidation(models.Model):
    """A change's cache topics, written in the change's own transaction. The process that made the change
    publishes them after the commit and deletes the row; if it cannot reach Redis (cut off from it), any
    other process relays them (kernel.invalidation), so no node keeps trusting what changed."""

    topics = models.JSONField()
    # The database's clock, so processes with skewed clocks agree on a row's age.
    created_at = models.DateTimeField(db_default=Now(), db_index=True)

    def __str__(self) -> str:
        return f"#{self.pk} {', '.join(self.topics)[:80]}"
