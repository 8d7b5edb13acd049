"""Patients, their screening, labs and contraindications (ACT-6..9, ID-4), and per-patient access."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q
from django.db.models.signals import pre_save
from django.dispatch import receiver
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from registry.matching import MATCH_KEY_MAX_LENGTH, patient_match_key

from .base import UUIDModel


class Sex(models.TextChoices):
    FEMALE = "female"
    MALE = "male"


class PatientStatus(models.TextChoices):
    ENROLLED = "enrolled"
    AUTHORIZED = "authorized"
    SUSPENDED = "suspended"
    DISCONTINUED = "discontinued"
    MONITORING_COMPLETE = "monitoring_complete"
    DECEASED = "deceased"


class Patient(UUIDModel):
    rems_patient_id = models.CharField("REMS patient ID", max_length=16, unique=True, editable=False)
    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    date_of_birth = models.DateField()
    # ACT-6: normalized first and last name (registry/matching.py), kept in step with the names on every
    # save; indexed with the date of birth so the duplicate check at enrollment is one index lookup.
    match_key = models.CharField(max_length=MATCH_KEY_MAX_LENGTH, editable=False, default="")
    sex = models.CharField(max_length=8, choices=Sex.choices)
    reproductive_potential = models.BooleanField()
    enrollment_signed_on = models.DateField()
    status = models.CharField(max_length=24, choices=PatientStatus.choices, default=PatientStatus.ENROLLED)
    status_reason = models.TextField(blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    # ACT-8: the status to return to when an administrator lifts a suspension.
    status_before_suspension = models.CharField(max_length=24, choices=PatientStatus.choices, blank=True)
    prescriber = models.ForeignKey(
        "registry.Prescriber",
        on_delete=models.PROTECT,
        related_name="patients",
        help_text="The prescriber of record.",
    )
    authorized_at = models.DateTimeField(null=True, blank=True)
    first_infusion_on = models.DateField(null=True, blank=True)
    last_infusion_on = models.DateField(null=True, blank=True)
    monitoring_ends_on = models.DateField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-created_at",)
        permissions = [("act_on_patient", "Record labs, screening, forms and reports for the patient")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=PatientStatus.values), name="patient_status_domain"
            ),
            models.CheckConstraint(condition=Q(sex__in=Sex.values), name="patient_sex_domain"),
        ]
        indexes = [
            models.Index(fields=["last_name", "first_name"]),
            models.Index(fields=["status"]),
            models.Index(fields=["prescriber", "-created_at"]),
            models.Index(fields=["date_of_birth", "match_key"], name="patient_possible_duplicate"),
        ]

    def __str__(self) -> str:
        return f"{self.rems_patient_id} {self.last_name}, {self.first_name}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and {"first_name", "last_name"} & set(update_fields):
            kwargs["update_fields"] = {*update_fields, "match_key"}
        super().save(*args, **kwargs)  # `_match_key_write` below sets the key


@receiver(pre_save, sender=Patient, dispatch_uid="registry.patient_match_key")
def _match_key_write(sender: type[Patient], instance: Patient, **kwargs: Any) -> None:
    """ACT-6: the key follows the names on every save, raw ones included (`loaddata` bypasses
    `Patient.save`), so a patient loaded from a fixture is found by the duplicate check and the NCPDP
    demographics match like any other."""
    instance.match_key = patient_match_key(instance.first_name, instance.last_name)


class PatientUserObjectPermission(UserObjectPermissionBase):
    """guardian's direct foreign-key table (STYLE.md 3): scoping stays an indexed join."""

    content_object = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="user_permissions")

    class Meta(UserObjectPermissionBase.Meta):
        pass


class PatientGroupObjectPermission(GroupObjectPermissionBase):
    """Care-team grants: one group per prescriber holds the permissions on that prescriber's patients."""

    content_object = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="group_permissions")

    class Meta(GroupObjectPermissionBase.Meta):
        pass


class Screening(UUIDModel):
    """ACT-7 attestations. Each submission is kept; the newest one counts."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="screenings")
    hiv_negative = models.BooleanField()
    no_active_infection = models.BooleanField()
    tb_screened_on = models.DateField(null=True, blank=True)
    vaccinations_completed_on = models.DateField(null=True, blank=True)
    recorded_by = models.ForeignKey("registry.User", on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ("-created_at",)
        indexes = [models.Index(fields=["patient", "-created_at"])]


class LabTest(models.TextChoices):
    CBC_DIFFERENTIAL = "cbc_differential"
    SERUM_CREATININE = "serum_creatinine"
    URINALYSIS = "urinalysis"
    URINE_PROTEIN_CREATININE_RATIO = "urine_protein_creatinine_ratio"
    THYROID_FUNCTION = "thyroid_function"
    LIVER_FUNCTION = "liver_function"
    SKIN_EXAM = "skin_exam"
    HPV_SCREENING = "hpv_screening"
    PREGNANCY_TEST = "pregnancy_test"


class LabOutcome(models.TextChoices):
    NORMAL = "normal"
    ABNORMAL = "abnormal"
    NEGATIVE = "negative"
    POSITIVE = "positive"


class LabResult(UUIDModel):
    # No index of its own: the (patient, test, collected_on) index leads with the patient, and a second
    # patient-only index lures the planner away from it (and costs every bulk insert).
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="lab_results", db_index=False)
    test = models.CharField(max_length=40, choices=LabTest.choices)
    collected_on = models.DateField()
    result = models.CharField(max_length=10, choices=LabOutcome.choices)
    value = models.CharField(max_length=50, blank=True)
    unit = models.CharField(max_length=30, blank=True)
    notes = models.TextField(blank=True)
    recorded_by = models.ForeignKey("registry.User", on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ("-collected_on", "-created_at")
        constraints = [
            models.CheckConstraint(condition=Q(test__in=LabTest.values), name="lab_test_domain"),
            models.CheckConstraint(
                condition=(
                    Q(test=LabTest.PREGNANCY_TEST, result__in=[LabOutcome.NEGATIVE, LabOutcome.POSITIVE])
                    | (
                        ~Q(test=LabTest.PREGNANCY_TEST)
                        & Q(result__in=[LabOutcome.NORMAL, LabOutcome.ABNORMAL])
                    )
                ),
                name="lab_result_matches_test",
            ),
        ]
        indexes = [models.Index(fields=["patient", "test", "-collected_on"])]


class ContraindicationKind(models.TextChoices):
    HIV = "hiv"
    ACTIVE_INFECTION = "active_infection"
    HYPERSENSITIVITY = "hypersensitivity"


class Contraindication(UUIDModel):
    """ACT-9: recorded at any time, blocks treatment."""

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="contraindications")
    kind = models.CharField(max_length=20, choices=ContraindicationKind.choices)
    noted_on = models.DateField()
    notes = models.TextField(blank=True)
    recorded_by = models.ForeignKey("registry.User", on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ("-noted_on", "-created_at")
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=ContraindicationKind.values), name="contraindication_kind_domain"
            )
        ]
