"""Privacy and access records (issue 8): who read what, date-of-birth guessing locks, and the shared
request counters behind the rate limit."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone


class AccessLogEntry(models.Model):
    """One read of one patient's data, through the API or the admin: who, when, which patient, which
    endpoint. Append-only: the database refuses UPDATE and DELETE (migration 0010), like the audit trail.
    A list read writes one row per patient returned, in one statement."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # No single-column indexes on the two keys: the (patient, time) and (user, time) indexes below serve
    # every lookup by either, and each index less is less work on an insert made on every read.
    user = models.ForeignKey("registry.User", on_delete=models.PROTECT, related_name="+", db_index=False)
    user_role = models.CharField(max_length=16)
    patient = models.ForeignKey(
        "registry.Patient", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    endpoint = models.CharField(max_length=200, help_text="The route read, e.g. 'GET /api/v1/patients/{id}'.")
    request_id = models.CharField(max_length=64, blank=True)

    class Meta:
        verbose_name = "access log entry"
        verbose_name_plural = "access log"
        ordering = ("-created_at",)
        indexes = [
            models.Index(fields=["patient", "-created_at"], name="accesslog_patient_time"),
            models.Index(fields=["user", "-created_at"], name="accesslog_user_time"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.user_id} read {self.patient_id} ({self.endpoint})"


class LookupKind(models.TextChoices):
    """How the caller named the patient it was guessing at (ID-4)."""

    REGISTRY_ID = "registry_id", "registry ID + date of birth"
    DEMOGRAPHICS = "demographics", "name + date of birth among one prescriber's patients (NCPDP)"


class DobLookupGuard(models.Model):
    """ID-4: one caller's date-of-birth mismatches for one patient as the caller names it. `failures` keeps
    the times of the recent mismatches (at most the threshold); `locked_until` is set when they reach the
    threshold within the window. An administrator may lift a lock (`lifted_at`, `lifted_by`). For a
    registry ID the ID is stored as asked (canonical form), whether or not a patient has it, so the record
    itself reveals nothing; for a name (the NCPDP initiation without a registry ID) only a keyed digest of
    the prescriber and the normalized name is stored, never the name."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey("registry.User", on_delete=models.CASCADE, related_name="+")
    lookup = models.CharField(
        max_length=16,
        choices=LookupKind.choices,
        default=LookupKind.REGISTRY_ID,
        db_default=LookupKind.REGISTRY_ID,  # rows written by a release that predates the column
    )
    prescriber = models.ForeignKey(
        "registry.Prescriber",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        help_text="For a name lookup: the prescriber whose patients were searched (no patient is named).",
    )
    rems_patient_id = models.CharField(
        "REMS patient ID or name digest",
        max_length=16,
        help_text="The registry ID asked for, or for a name lookup a digest of prescriber and name.",
    )
    failures = models.JSONField(default=list, blank=True)
    locked_at = models.DateTimeField(null=True, blank=True)
    locked_until = models.DateTimeField(null=True, blank=True, db_index=True)
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        "registry.User", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "date-of-birth lookup lock"
        constraints = [
            models.UniqueConstraint(
                fields=["user", "lookup", "rems_patient_id"], name="dob_guard_one_per_caller_and_lookup"
            )
        ]

    def __str__(self) -> str:
        return f"{self.rems_patient_id} / {self.user_id}"


class ThrottleBucket(models.Model):
    """A fixed-window request counter shared by every worker (the database store of
    registry/services/rate_limits.py; Redis replaces it when THROTTLE_STORE=cache). One row per caller,
    updated with a single atomic upsert per request."""

    key = models.CharField(max_length=200, primary_key=True)
    window_start = models.BigIntegerField()
    hits = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"{self.key}: {self.hits}"
