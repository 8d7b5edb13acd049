"""Users, roles and API keys (API.md "Conventions")."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models import Q

from .base import UUIDModel


class Role(models.TextChoices):
    ADMIN = "admin"
    PRESCRIBER = "prescriber"
    PHARMACY = "pharmacy"
    FACILITY = "facility"
    DELEGATE = "delegate"  # office staff acting for one prescriber


class User(AbstractUser):
    """A user has exactly one role; participant roles point at their participant.

    A delegate points at the prescriber it acts for. The database refuses a role without its participant
    (or an admin with one), and a participant with two primary users.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    role = models.CharField(max_length=16, choices=Role.choices)
    prescriber = models.ForeignKey(
        "registry.Prescriber", on_delete=models.PROTECT, null=True, blank=True, related_name="users"
    )
    facility = models.ForeignKey(
        "registry.Facility", on_delete=models.PROTECT, null=True, blank=True, related_name="users"
    )
    pharmacy = models.ForeignKey(
        "registry.Pharmacy", on_delete=models.PROTECT, null=True, blank=True, related_name="users"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(role__in=Role.values), name="user_role_domain"),
            models.CheckConstraint(
                condition=(
                    Q(role=Role.ADMIN, prescriber__isnull=True, facility__isnull=True, pharmacy__isnull=True)
                    | Q(
                        role__in=[Role.PRESCRIBER, Role.DELEGATE],
                        prescriber__isnull=False,
                        facility__isnull=True,
                        pharmacy__isnull=True,
                    )
                    | Q(
                        role=Role.FACILITY,
                        prescriber__isnull=True,
                        facility__isnull=False,
                        pharmacy__isnull=True,
                    )
                    | Q(
                        role=Role.PHARMACY,
                        prescriber__isnull=True,
                        facility__isnull=True,
                        pharmacy__isnull=False,
                    )
                ),
                name="user_role_matches_participant",
            ),
            models.UniqueConstraint(
                fields=["prescriber"], condition=Q(role=Role.PRESCRIBER), name="one_user_per_prescriber"
            ),
            models.UniqueConstraint(
                fields=["facility"], condition=Q(role=Role.FACILITY), name="one_user_per_facility"
            ),
            models.UniqueConstraint(
                fields=["pharmacy"], condition=Q(role=Role.PHARMACY), name="one_user_per_pharmacy"
            ),
        ]

    @property
    def participant_id(self) -> uuid.UUID | None:
        if self.role in (Role.PRESCRIBER, Role.DELEGATE):
            return self.prescriber_id
        if self.role == Role.FACILITY:
            return self.facility_id
        if self.role == Role.PHARMACY:
            return self.pharmacy_id
        return None


class ApiKey(UUIDModel):
    """A bearer key. Only a SHA-256 of the secret is stored (STACK.md pitfall 4: never the password hasher);
    the public prefix finds the row with an index lookup. Shown once at creation; revocable."""

    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(User, on_delete=models.PROTECT, null=True, blank=True, related_name="+")

    class Meta:
        verbose_name = "API key"
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class IdempotencyRecord(models.Model):
    """The first answer to a creating POST under an `Idempotency-Key` (API.md conventions).

    The row is inserted before the work runs, inside the request's transaction: a concurrent request with
    the same key waits on the unique index and then replays the committed answer.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=500)
    fingerprint = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True)
    response_body = models.JSONField(null=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_per_user")]

    def __str__(self) -> str:
        return f"{self.method} {self.path} [{self.key}]"
