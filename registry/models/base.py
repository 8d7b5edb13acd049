import uuid

from django.db import models


class UUIDModel(models.Model):
    """Every resource is addressed by a UUID; no sequential id is ever exposed (API.md conventions)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        abstract = True
