"""Post-infusion monitoring (MON-1..5): the stored schedule, status forms, flags, sweep runs and digests.

The schedule is the single source of what is due: one row per patient and requirement, kept current in the
same transaction as the lab result, status form or infusion that changes it. The daily sweep and the gate
both read it; neither recomputes it from history.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from .base import UUIDModel


class MonitoringRequirement(models.TextChoices):
    """MON-1 (monthly labs), MON-2 (thyroid, liver, skin exam, HPV for female patients), MON-4 (status
    form). The lab requirements carry the name of the lab test that satisfies them."""

    CBC_DIFFERENTIAL = "cbc_differential"
    SERUM_CREATININE = "serum_creatinine"
    URINALYSIS = "urinalysis"
    THYROID_FUNCTION = "thyroid_function"
    LIVER_FUNCTION = "liver_function"
    SKIN_EXAM = "skin_exam"
    HPV_SCREENING = "hpv_screening"
    STATUS_FORM = "status_form"


LAB_REQUIREMENTS = tuple(r for r in MonitoringRequirement if r != MonitoringRequirement.STATUS_FORM)


class MonitoringSchedule(models.Model):
    """One patient's one requirement: when it was last done, when it is next due (calendar months after
    the last result, or after the first infusion when there is none), and the end of the monitoring
    window (48 months, *setting*, after the most recent infusion). Not exposed by id."""

    id = models.BigAutoField(primary_key=True)
    patient = models.ForeignKey(
        "registry.Patient", on_delete=models.CASCADE, related_name="monitoring_schedule", db_index=False
    )
    requirement = models.CharField(max_length=24, choices=MonitoringRequirement.choices)
    last_done_on = models.DateField(null=True, blank=True)
    next_due_on = models.DateField()
    window_ends_on = models.DateField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ("patient", "requirement")
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "requirement"], name="one_schedule_row_per_requirement"
            ),
            models.CheckConstraint(
                condition=Q(requirement__in=MonitoringRequirement.values), name="schedule_requirement_domain"
            ),
        ]
        # The sweep's range scan: everything due before a day, inside its window. Covering, so the overdue
        # set is read from the index alone (an index-only scan once vacuumed), not from the table's pages.
        indexes = [
            models.Index(
                fields=["next_due_on"],
                include=["patient", "requirement", "window_ends_on"],
                name="schedule_overdue_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.requirement} due {self.next_due_on}"


class AdverseEvent(models.TextChoices):
    """MON-4: the adverse events a status form reports since the last form."""

    AUTOIMMUNE = "autoimmune"
    INFUSION_REACTION = "infusion_reaction"
    STROKE = "stroke"
    MALIGNANCY = "malignancy"
    INFECTION = "infection"


class StatusForm(UUIDModel):
    """MON-4: the prescriber of record's periodic patient status form."""

    patient = models.ForeignKey("registry.Patient", on_delete=models.PROTECT, related_name="status_forms")
    prescriber = models.ForeignKey(
        "registry.Prescriber",
        on_delete=models.PROTECT,
        related_name="status_forms",
        help_text="The prescriber of record when the form was filed.",
    )
    completed_on = models.DateField()
    still_under_care = models.BooleanField(default=True)
    labs_reviewed = models.BooleanField()
    adverse_events = models.JSONField(default=list, blank=True)
    notes = models.TextField(blank=True)
    recorded_by = models.ForeignKey("registry.User", on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ("-completed_on", "-created_at")
        indexes = [models.Index(fields=["patient", "-completed_on"])]


class FlagStatus(models.TextChoices):
    OPEN = "open"
    RESOLVED = "resolved"


class FlagResolution(models.TextChoices):
    RESULT = "result"  # a new lab result or status form (MON-3, MON-4)
    MONITORING_ENDED = "monitoring_ended"  # window ended or patient deceased (MON-5, ACT-8)


class MonitoringFlag(UUIDModel):
    """MON-3: one open flag per patient and requirement while the requirement is overdue (due date plus
    grace passed). `blocking` once overdue more than the blocking threshold counted from due date plus
    grace. The gate does not read flags: it reads the schedule, so it never waits for the sweep."""

    patient = models.ForeignKey(
        "registry.Patient", on_delete=models.PROTECT, related_name="monitoring_flags", db_index=False
    )
    requirement = models.CharField(max_length=24, choices=MonitoringRequirement.choices)
    due_on = models.DateField()
    opened_on = models.DateField()
    status = models.CharField(max_length=8, choices=FlagStatus.choices, default=FlagStatus.OPEN)
    blocking = models.BooleanField(default=False)
    blocking_since = models.DateField(null=True, blank=True)
    resolved_on = models.DateField(null=True, blank=True)
    resolution = models.CharField(max_length=16, choices=FlagResolution.choices, blank=True)
    sweep = models.ForeignKey(
        "registry.SweepRun",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="flags_opened",
        help_text="The sweep run that opened the flag.",
    )

    class Meta:
        ordering = ("-opened_on", "requirement")
        constraints = [
            # MON-3: one open flag per patient and requirement; re-runs and concurrent sweeps are harmless.
            models.UniqueConstraint(
                fields=["patient", "requirement"],
                condition=Q(status=FlagStatus.OPEN),
                name="one_open_flag_per_requirement",
            ),
            models.CheckConstraint(
                condition=Q(requirement__in=MonitoringRequirement.values), name="flag_requirement_domain"
            ),
            models.CheckConstraint(condition=Q(status__in=FlagStatus.values), name="flag_status_domain"),
            models.CheckConstraint(
                condition=(
                    Q(status=FlagStatus.OPEN, resolved_on__isnull=True)
                    | Q(status=FlagStatus.RESOLVED, resolved_on__isnull=False)
                ),
                name="flag_resolved_on_iff_resolved",
            ),
        ]
        # No index on (status, blocking, due_on): the sweep reads the open flags through the partial unique
        # index, and without `blocking` in an index marking a flag blocking is a HOT update.
        indexes = [models.Index(fields=["patient", "-opened_on"], name="flag_patient_idx")]

    def __str__(self) -> str:
        return f"{self.requirement} due {self.due_on} ({self.status})"


class SweepRun(UUIDModel):
    """MON-5: one row per sweep date, unique: the database guard that makes a second or concurrent run for
    the same day a no-op. A split sweep has `parts_total` parts; the part that completes last assembles
    the digests."""

    as_of = models.DateField(unique=True)
    now = models.DateTimeField(help_text="The moment the sweep runs as (authorization expiry, audit).")
    parts_total = models.PositiveSmallIntegerField(default=1)
    parts_done = models.PositiveSmallIntegerField(default=0)
    opened = models.PositiveIntegerField(default=0)
    resolved = models.PositiveIntegerField(default=0)
    blocking = models.PositiveIntegerField(default=0)
    completed = models.PositiveIntegerField(default=0)
    expired = models.PositiveIntegerField(default=0)
    lapsed = models.PositiveIntegerField(default=0, help_text="Authorization numbers stored as revoked.")
    digests = models.PositiveIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-as_of",)
        constraints = [
            models.CheckConstraint(
                condition=Q(parts_total__gte=1, parts_done__lte=models.F("parts_total")),
                name="sweep_parts_within_total",
            )
        ]

    def __str__(self) -> str:
        return f"sweep {self.as_of}"


class SweepPart(models.Model):
    """One patient-id range of a sweep run, done exactly once (the unique pair is the guard)."""

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(SweepRun, on_delete=models.CASCADE, related_name="parts")
    index = models.PositiveSmallIntegerField()
    done_at = models.DateTimeField()
    worker = models.CharField(max_length=200, blank=True, help_text="The Celery worker that did the part.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="one_sweep_part_per_index")]

    def __str__(self) -> str:
        return f"part {self.index} of {self.run_id}"


class DigestStatus(models.TextChoices):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class Digest(UUIDModel):
    """MON-5: one e-mail per prescriber per sweep listing its new flags (and other new items, e.g.
    pregnancy reminders); sent after the sweep commits, with retries."""

    # run: led by one_digest_per_prescriber_per_run (run, prescriber), no second index to maintain or to
    # tempt the planner (services/monitoring.py `_digests_assemble` links lines by one probe of it each).
    run = models.ForeignKey(SweepRun, on_delete=models.PROTECT, related_name="digest_set", db_index=False)
    prescriber = models.ForeignKey("registry.Prescriber", on_delete=models.PROTECT, related_name="digests")
    recipient = models.EmailField()
    status = models.CharField(max_length=8, choices=DigestStatus.choices, default=DigestStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ("-created_at",)
        constraints = [
            models.UniqueConstraint(fields=["run", "prescriber"], name="one_digest_per_prescriber_per_run"),
            models.CheckConstraint(condition=Q(status__in=DigestStatus.values), name="digest_status_domain"),
        ]

    def __str__(self) -> str:
        return f"digest {self.run.as_of} to {self.recipient}"


class DigestLine(models.Model):
    """One item of a digest: the patient's registry ID, what is due and when, blocking or not; no other
    patient data (minimum necessary). A flag is listed once, ever (unique)."""

    id = models.BigAutoField(primary_key=True)
    # run: led by digestline_run_prescriber_idx; flag: by the partial unique index (no second index each).
    run = models.ForeignKey(SweepRun, on_delete=models.PROTECT, related_name="digest_lines", db_index=False)
    prescriber = models.ForeignKey("registry.Prescriber", on_delete=models.PROTECT, related_name="+")
    digest = models.ForeignKey(Digest, on_delete=models.PROTECT, null=True, blank=True, related_name="lines")
    flag = models.ForeignKey(
        MonitoringFlag, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    rems_patient_id = models.CharField("REMS patient ID", max_length=16)
    kind = models.CharField(max_length=32)
    label = models.CharField(max_length=200)
    due_on = models.DateField()
    blocking = models.BooleanField()

    class Meta:
        ordering = ("rems_patient_id", "due_on", "kind")
        constraints = [
            models.UniqueConstraint(
                fields=["flag"], condition=Q(flag__isnull=False), name="flag_listed_in_one_digest"
            )
        ]
        indexes = [models.Index(fields=["run", "prescriber"], name="digestline_run_prescriber_idx")]

    def __str__(self) -> str:
        return f"{self.rems_patient_id} {self.kind} due {self.due_on}"
