"""Patient reads (ACT-6..8): what a caller may see of patients and their records. What a caller may not
see does not exist for it (404)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from registry.errors import NotFound
from registry.models import Course, LabResult, Patient, Role, User

PATIENT_VIEW_PERMISSION = "view_patient"
PATIENT_ACT_PERMISSION = "act_on_patient"
CARE_TEAM_PERMISSIONS = (PATIENT_VIEW_PERMISSION, PATIENT_ACT_PERMISSION)


def patients_visible_to(user: User) -> QuerySet[Patient]:
    """Admins see every patient. The prescriber of record and its delegates see a patient through the
    care-team group's guardian grant (a direct foreign-key permission row: one indexed join). Pharmacies and
    facilities see none: they identify a patient by registry ID and date of birth at the gate instead."""
    if user.role == Role.ADMIN:
        return Patient.objects.all()
    if user.role in (Role.PRESCRIBER, Role.DELEGATE):
        return Patient.objects.filter(
            group_permissions__group__user=user,
            group_permissions__permission__codename=PATIENT_VIEW_PERMISSION,
        )
    return Patient.objects.none()


def patient_visible(user: User, patient_id: Any) -> Patient:
    """The patient with this id if the caller may see it; otherwise 404 (STYLE.md 3)."""
    patient = patients_visible_to(user).filter(pk=patient_id).first()
    if patient is None:
        raise NotFound()
    return patient


def courses_visible_to(user: User) -> QuerySet[Course]:
    """Courses of the patients the caller may see."""
    return Course.objects.filter(patient__in=patients_visible_to(user))


def patient_courses(patient: Patient) -> QuerySet[Course]:
    return patient.courses.order_by("number", "created_at")


def patient_lab_results(patient: Patient, *, test: str | None = None) -> QuerySet[LabResult]:
    """Newest first; optionally one test only."""
    labs = patient.lab_results.order_by("-collected_on", "-created_at", "id")
    return labs.filter(test=test) if test is not None else labs
