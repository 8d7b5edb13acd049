"""The audit trail: append-only, written in the same transaction as the change it records.

The database refuses UPDATE and DELETE on the table (a PostgreSQL trigger, migration 0002). TRUNCATE is
left to the database owner: it is what test isolation uses, and no application path issues it.
"""

from django.db import models
from django.utils import timezone

from .base import UUIDModel


class AuditEvent(UUIDModel):
    # Not auto_now_add: a transition is stamped with the moment the service was given (`now`), so the
    # event and the record it describes carry the same time.
    created_at = models.DateTimeField(default=timezone.now, db_index=True, editable=False)
    actor = models.ForeignKey(
        "registry.User",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Null for system actions (scheduled jobs).",
    )
    actor_role = models.CharField(max_length=16, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    subject_type = models.CharField(max_length=64)
    subject_id = models.UUIDField()
    changes = models.JSONField(default=dict, blank=True)
    request_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ("-created_at",)
        indexes = [models.Index(fields=["subject_type", "subject_id", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action} {self.subject_type}:{self.subject_id}"
