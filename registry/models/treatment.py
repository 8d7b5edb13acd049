"""Treatment courses, infusions, dispense authorizations and dispenses (CRS-1..4, GATE-1..3)."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from .base import UUIDModel


class CourseStatus(models.TextChoices):
    PLANNED = "planned"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


OPEN_COURSE_STATUSES = (CourseStatus.PLANNED, CourseStatus.IN_PROGRESS)


class Course(UUIDModel):
    patient = models.ForeignKey("registry.Patient", on_delete=models.PROTECT, related_name="courses")
    number = models.PositiveSmallIntegerField()
    planned_doses = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=16, choices=CourseStatus.choices, default=CourseStatus.PLANNED)
    planned_start_on = models.DateField()
    doses_given = models.PositiveSmallIntegerField(default=0)
    first_infusion_on = models.DateField(null=True, blank=True)
    last_infusion_on = models.DateField(null=True, blank=True)
    cancelled_reason = models.TextField(blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    planned_by = models.ForeignKey("registry.User", on_delete=models.PROTECT, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("number", "created_at")
        constraints = [
            # CRS-3: at most one open course per patient.
            models.UniqueConstraint(
                fields=["patient"],
                condition=Q(status__in=OPEN_COURSE_STATUSES),
                name="one_open_course_per_patient",
            ),
            # A course number is used once, unless a course was cancelled before any dose.
            models.UniqueConstraint(
                fields=["patient", "number"],
                condition=~Q(status=CourseStatus.CANCELLED, doses_given=0),
                name="course_number_unique_per_patient",
            ),
            models.CheckConstraint(condition=Q(status__in=CourseStatus.values), name="course_status_domain"),
            models.CheckConstraint(condition=Q(planned_doses__in=[3, 5]), name="course_planned_doses_domain"),
            models.CheckConstraint(
                condition=Q(doses_given__lte=F("planned_doses")), name="course_doses_within_plan"
            ),
            models.CheckConstraint(condition=Q(number__gte=1), name="course_number_positive"),
        ]

    def __str__(self) -> str:
        return f"course {self.number} ({self.status})"


class DecisionKind(models.TextChoices):
    DISPENSE_AUTHORIZATION = "dispense_authorization"
    INFUSION = "infusion"
    INFUSION_CHECK = "infusion_check"
    COURSE_PLAN = "course_plan"
    PATIENT_AUTHORIZATION = "patient_authorization"


class DecisionOutcome(models.TextChoices):
    APPROVED = "approved"
    DENIED = "denied"


class Decision(UUIDModel):
    """GATE-5: every check, approved or denied, with every requirement evaluated, its result, the program
    settings in force, the inputs and the actor, so the decision can be explained later. Append-only:
    the database refuses UPDATE and DELETE (migration 0002)."""

    kind = models.CharField(max_length=32, choices=DecisionKind.choices)
    outcome = models.CharField(max_length=8, choices=DecisionOutcome.choices)
    patient = models.ForeignKey(
        "registry.Patient", on_delete=models.PROTECT, null=True, blank=True, related_name="decisions"
    )
    actor = models.ForeignKey("registry.User", on_delete=models.PROTECT, related_name="+")
    inputs = models.JSONField(default=dict)
    requirements = models.JSONField(default=list)
    reasons = models.JSONField(default=list)
    program_settings = models.JSONField(default=dict)
    # Requirements listed, not evaluated: checked later (course planning lists the labs, checked at the
    # dispense authorization and the first dose; issue 9 item 5).
    pending = models.JSONField(default=list, blank=True)
    request_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ("-created_at",)
        indexes = [
            models.Index(fields=["patient", "-created_at"]),
            models.Index(fields=["kind", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.outcome} {self.created_at:%Y-%m-%d %H:%M}"


class AuthorizationStatus(models.TextChoices):
    ACTIVE = "active"
    USED = "used"
    EXPIRED = "expired"
    REVOKED = "revoked"


class AuthorizationState(models.TextChoices):
    """What an authorization number is at a moment (registry/selectors/authorizations.py decides it). The
    stored `status` holds the first four; `lapsed` is an active number whose grounds no longer hold (a
    certification expired, the patient changed): the API reads it as `revoked` (API.md's enum), and a
    dispense of it is refused with `authorization_revoked`."""

    ACTIVE = "active"
    USED = "used"
    EXPIRED = "expired"
    REVOKED = "revoked"
    LAPSED = "lapsed"


class RevokeCategory(models.TextChoices):
    """Why a number was revoked, as a category a pharmacy may read (the reason text may name clinical
    facts and is shown only to administrators)."""

    BY_PHARMACY = "revoked_by_pharmacy", "revoked by the pharmacy"
    BY_ADMINISTRATOR = "revoked_by_administrator", "revoked by the REMS administrator"
    PARTICIPANT_NOT_CERTIFIED = "participant_not_certified", "a participant is no longer certified"
    PATIENT_NO_LONGER_ELIGIBLE = "patient_no_longer_eligible", "patient no longer eligible"
    COURSE_CLOSED = "course_closed", "the course is closed"


class DispenseAuthorization(models.Model):
    """GATE-2: an approved authorization; its id is the id of the Decision that granted it."""

    id = models.UUIDField(primary_key=True, editable=False)
    decision = models.OneToOneField(Decision, on_delete=models.PROTECT, related_name="authorization")
    number = models.CharField(max_length=24, unique=True)
    pharmacy = models.ForeignKey("registry.Pharmacy", on_delete=models.PROTECT, related_name="authorizations")
    facility = models.ForeignKey("registry.Facility", on_delete=models.PROTECT, related_name="authorizations")
    prescriber = models.ForeignKey(
        "registry.Prescriber", on_delete=models.PROTECT, related_name="authorizations"
    )
    patient = models.ForeignKey("registry.Patient", on_delete=models.PROTECT, related_name="authorizations")
    course = models.ForeignKey(Course, on_delete=models.PROTECT, related_name="authorizations")
    doses_authorized = models.PositiveSmallIntegerField()
    status = models.CharField(
        max_length=8, choices=AuthorizationStatus.choices, default=AuthorizationStatus.ACTIVE
    )
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        "registry.User", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    revoke_reason = models.TextField(blank=True)
    revoke_category = models.CharField(max_length=32, choices=RevokeCategory.choices, blank=True)

    class Meta:
        ordering = ("-issued_at",)
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=AuthorizationStatus.values), name="authorization_status_domain"
            ),
            models.CheckConstraint(
                condition=Q(doses_authorized__gte=1, doses_authorized__lte=5),
                name="authorization_doses_range",
            ),
        ]
        indexes = [models.Index(fields=["status", "expires_at"])]

    def __str__(self) -> str:
        return self.number


class Dispense(UUIDModel):
    """GATE-2: consumes exactly one authorization; the one-to-one is the database's guarantee."""

    authorization = models.OneToOneField(
        DispenseAuthorization, on_delete=models.PROTECT, related_name="dispense"
    )
    pharmacy = models.ForeignKey("registry.Pharmacy", on_delete=models.PROTECT, related_name="dispenses")
    patient = models.ForeignKey("registry.Patient", on_delete=models.PROTECT, related_name="dispenses")
    vials = models.PositiveSmallIntegerField()
    ndc = models.CharField("NDC", max_length=13, blank=True)
    lot_number = models.CharField(max_length=40, blank=True)
    dispensed_by = models.ForeignKey("registry.User", on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ("-created_at",)
        constraints = [
            models.CheckConstraint(condition=Q(vials__gte=1, vials__lte=5), name="dispense_vials_range")
        ]


class Infusion(UUIDModel):
    """GATE-3: one 12 mg dose (CRS-1) on one calendar day."""

    patient = models.ForeignKey("registry.Patient", on_delete=models.PROTECT, related_name="infusions")
    course = models.ForeignKey(Course, on_delete=models.PROTECT, related_name="infusions")
    facility = models.ForeignKey("registry.Facility", on_delete=models.PROTECT, related_name="infusions")
    dispense = models.ForeignKey(
        Dispense, on_delete=models.PROTECT, null=True, blank=True, related_name="infusions"
    )
    administered_on = models.DateField()
    day_in_course = models.PositiveSmallIntegerField()
    dose_mg = models.PositiveSmallIntegerField()
    corticosteroid_premedication = models.BooleanField()
    antiviral_prophylaxis = models.BooleanField()
    observation_minutes = models.PositiveSmallIntegerField()
    # GATE-3: every infusion is backed by a dispense to its facility, except legacy history an
    # administrator records (which says so here).
    legacy_history = models.BooleanField(
        default=False, help_text="Recorded by an administrator as legacy history, without a dispense."
    )
    recorded_by = models.ForeignKey("registry.User", on_delete=models.PROTECT, related_name="+")
    decision = models.OneToOneField(Decision, on_delete=models.PROTECT, related_name="infusion")

    class Meta:
        ordering = ("administered_on",)
        constraints = [
            # CRS-1: at most one infusion per calendar day.
            models.UniqueConstraint(
                fields=["patient", "administered_on"], name="one_infusion_per_patient_day"
            ),
            models.UniqueConstraint(fields=["course", "day_in_course"], name="one_infusion_per_course_day"),
            models.CheckConstraint(condition=Q(dose_mg=12), name="infusion_dose_12mg"),
            models.CheckConstraint(
                condition=Q(day_in_course__gte=1, day_in_course__lte=5), name="infusion_day_range"
            ),
            # GATE-3: a dispense backs every infusion but administrators' legacy history.
            models.CheckConstraint(
                condition=Q(dispense__isnull=False) | Q(legacy_history=True),
                name="infusion_backed_by_dispense",
            ),
        ]
        indexes = [models.Index(fields=["patient", "-administered_on"])]
