"""Pregnancy surveillance (PRG-1..5): reports, their exposure classification, outcomes and infant
follow-up, and the reminders raised when an outcome or a follow-up is overdue.

PRG-5: reports are kept forever. The database refuses DELETE on reports and reminders (migration
0008_pregnancy), and the patient foreign key protects them, also once the patient is discontinued. Their
history is the audit trail (append-only, migration 0002).
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from .base import UUIDModel


class PregnancyStatus(models.TextChoices):
    OPEN = "open"  # no outcome yet: holds the gate (PRG-4)
    OUTCOME_RECORDED = "outcome_recorded"  # a live birth, infant follow-up pending (PRG-3)
    CLOSED = "closed"  # infant follow-up recorded, or an outcome that is not a live birth


class Exposure(models.TextChoices):
    EXPOSED = "exposed"
    NOT_EXPOSED = "not_exposed"


class PregnancyOutcome(models.TextChoices):
    LIVE_BIRTH = "live_birth"
    SPONTANEOUS_ABORTION = "spontaneous_abortion"
    STILLBIRTH = "stillbirth"
    ELECTIVE_TERMINATION = "elective_termination"
    ECTOPIC = "ectopic"
    LOST_TO_FOLLOW_UP = "lost_to_follow_up"


class MaternalThyroidStatus(models.TextChoices):
    """PRG-3: maternal thyroid status during pregnancy (alemtuzumab's thyroid disease crosses the
    placenta)."""

    NORMAL = "normal"
    HYPERTHYROID = "hyperthyroid"
    HYPOTHYROID = "hypothyroid"
    THYROIDITIS = "thyroiditis"
    NOT_ASSESSED = "not_assessed"


class PregnancyReport(UUIDModel):
    """PRG-2: patient, reporter, report date, LMP or estimated conception date, estimated due date; the
    exposure the registry computed from the patient's courses, naming the course."""

    patient = models.ForeignKey(
        "registry.Patient", on_delete=models.PROTECT, related_name="pregnancy_reports"
    )
    reported_by = models.ForeignKey("registry.User", on_delete=models.PROTECT, related_name="+")
    reported_on = models.DateField()
    lmp_on = models.DateField("last menstrual period", null=True, blank=True)
    estimated_conception_on = models.DateField()
    conception_derived = models.BooleanField(
        default=False, help_text="Derived as LMP + 14 days (no conception date was given)."
    )
    estimated_due_on = models.DateField()
    due_on_derived = models.BooleanField(
        default=False, help_text="Derived as LMP + 280 days or conception + 266 days."
    )
    # PRG-2: computed by the service, never entered.
    exposure = models.CharField(max_length=12, choices=Exposure.choices)
    exposed_course = models.ForeignKey(
        "registry.Course", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    exposure_computed_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=PregnancyStatus.choices, default=PregnancyStatus.OPEN)
    # PRG-3 outcome.
    outcome = models.CharField(max_length=24, choices=PregnancyOutcome.choices, blank=True)
    outcome_on = models.DateField(null=True, blank=True)
    gestational_age_weeks = models.PositiveSmallIntegerField(null=True, blank=True)
    birth_weight_grams = models.PositiveIntegerField(null=True, blank=True)
    major_malformation = models.BooleanField(null=True, blank=True)
    maternal_thyroid_status = models.CharField(
        max_length=16, choices=MaternalThyroidStatus.choices, blank=True
    )
    outcome_notes = models.TextField(blank=True)
    infant_follow_up_on = models.DateField(null=True, blank=True)
    infant_follow_up_notes = models.TextField(blank=True)
    # PRG-4 reminders (STYLE.md 6: the due dates are stored and indexed, the sweep compares).
    outcome_overdue_on = models.DateField(help_text="Estimated due date + 30 days (PRG-4).")
    infant_follow_up_due_on = models.DateField(
        null=True, blank=True, help_text="12 months after a live birth (PRG-3)."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-reported_on", "-created_at")
        constraints = [
            # PRG-4: one open pregnancy per patient at a time.
            models.UniqueConstraint(
                fields=["patient"], condition=Q(status="open"), name="one_open_pregnancy_per_patient"
            ),
            models.CheckConstraint(
                condition=Q(status__in=PregnancyStatus.values), name="pregnancy_status_domain"
            ),
            models.CheckConstraint(
                condition=Q(exposure__in=Exposure.values), name="pregnancy_exposure_domain"
            ),
            models.CheckConstraint(
                condition=Q(outcome="") | Q(outcome__in=PregnancyOutcome.values),
                name="pregnancy_outcome_domain",
            ),
            models.CheckConstraint(
                condition=Q(maternal_thyroid_status="")
                | Q(maternal_thyroid_status__in=MaternalThyroidStatus.values),
                name="pregnancy_thyroid_status_domain",
            ),
            # PRG-2: exposed names the course; not exposed names none.
            models.CheckConstraint(
                condition=Q(exposure="exposed", exposed_course__isnull=False)
                | Q(exposure="not_exposed", exposed_course__isnull=True),
                name="pregnancy_exposure_names_course",
            ),
            # Lifecycle: open has no outcome; outcome_recorded is a live birth awaiting follow-up; closed
            # is a follow-up or an outcome that is not a live birth (PRG-3).
            models.CheckConstraint(
                condition=(
                    Q(status="open", outcome="", outcome_on__isnull=True, infant_follow_up_on__isnull=True)
                    | Q(status="outcome_recorded", outcome="live_birth", infant_follow_up_on__isnull=True)
                    | Q(status="closed", outcome="live_birth", infant_follow_up_on__isnull=False)
                    | (
                        Q(status="closed", infant_follow_up_on__isnull=True)
                        & ~Q(outcome__in=["", "live_birth"])
                    )
                ),
                name="pregnancy_status_matches_outcome",
            ),
            models.CheckConstraint(
                condition=Q(outcome="") | Q(outcome_on__isnull=False, maternal_thyroid_status__gt=""),
                name="pregnancy_outcome_complete",
            ),
            # PRG-3: gestational age and birth weight belong to live births, which carry all three details.
            models.CheckConstraint(
                condition=Q(
                    outcome="live_birth",
                    gestational_age_weeks__isnull=False,
                    birth_weight_grams__isnull=False,
                    major_malformation__isnull=False,
                )
                | (
                    ~Q(outcome="live_birth")
                    & Q(gestational_age_weeks__isnull=True, birth_weight_grams__isnull=True)
                ),
                name="pregnancy_live_birth_details",
            ),
            models.CheckConstraint(
                condition=Q(estimated_due_on__gt=F("estimated_conception_on")),
                name="pregnancy_due_after_conception",
            ),
            models.CheckConstraint(
                condition=Q(outcome_on__isnull=True) | Q(outcome_on__gte=F("estimated_conception_on")),
                name="pregnancy_outcome_not_before_conception",
            ),
            models.CheckConstraint(
                condition=Q(infant_follow_up_on__isnull=True) | Q(infant_follow_up_on__gte=F("outcome_on")),
                name="pregnancy_follow_up_after_outcome",
            ),
        ]
        indexes = [
            models.Index(fields=["patient", "-reported_on"]),
            models.Index(fields=["status", "outcome_overdue_on"], name="pregnancy_outcome_overdue_idx"),
            models.Index(fields=["status", "infant_follow_up_due_on"], name="pregnancy_follow_up_due_idx"),
        ]

    def __str__(self) -> str:
        return f"pregnancy reported {self.reported_on.isoformat()} ({self.status})"


class ReminderKind(models.TextChoices):
    OUTCOME_OVERDUE = "outcome_overdue"
    INFANT_FOLLOW_UP_DUE = "infant_follow_up_due"


class PregnancyReminder(UUIDModel):
    """PRG-4: a reminder to the prescriber, raised once per report and kind (the unique constraint makes a
    second run of the daily sweep harmless). Kept like the report it belongs to."""

    report = models.ForeignKey(PregnancyReport, on_delete=models.PROTECT, related_name="reminders")
    kind = models.CharField(max_length=24, choices=ReminderKind.choices)
    due_on = models.DateField()
    raised_on = models.DateField()

    class Meta:
        ordering = ("-raised_on", "kind")
        constraints = [
            models.UniqueConstraint(fields=["report", "kind"], name="one_pregnancy_reminder_per_kind"),
            models.CheckConstraint(
                condition=Q(kind__in=ReminderKind.values), name="pregnancy_reminder_kind_domain"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} due {self.due_on.isoformat()}"
