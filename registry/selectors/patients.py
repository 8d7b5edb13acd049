"""Patient reads (ACT-6..8): what a caller may see of patients and their records. What a caller may not
see does not exist for it (404)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from registry.errors import NotFound
from registry.identifiers import parse_registry_id
from registry.matching import name_normalize, patient_match_key
from registry.models import Course, LabResult, Patient, Prescriber, Role, User

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


def patient_visible_by_registry_id(user: User, rems_patient_id: str, date_of_birth: Any) -> Patient | None:
    """ID-4: the patient the caller may see with this registry ID and date of birth (its prescriber of
    record read with it), or None: an unknown or malformed ID, a date-of-birth mismatch and a patient the
    caller may not see are one answer."""
    canonical = parse_registry_id(rems_patient_id)
    if canonical is None:
        return None
    return (
        patients_visible_to(user)
        .select_related("prescriber")
        .filter(rems_patient_id=canonical, date_of_birth=date_of_birth)
        .first()
    )


def patient_of_record_by_demographics(
    prescriber: Prescriber, *, first_name: str, last_name: str, date_of_birth: Any, sex: str | None = None
) -> Patient | None:
    """The one patient of record of `prescriber` with this name, date of birth and, when given, sex; None
    when there is none or more than one (an ambiguous match is no match). Names compare as enrollment's
    duplicate check compares them (registry/matching.py: case, accents, spaces and punctuation aside), so
    a pharmacy system that writes "Jose OBrien" finds "José O'Brien"; on the (date of birth, match key)
    index. Scoped to one prescriber's patients: a pharmacy naming a prescription's prescriber cannot
    search the registry."""
    if not name_normalize(first_name) or not name_normalize(last_name):
        return None  # a name of punctuation alone names nobody
    candidates = Patient.objects.filter(
        prescriber=prescriber,
        date_of_birth=date_of_birth,
        match_key=patient_match_key(first_name, last_name),
    )
    if sex is not None:
        candidates = candidates.filter(sex=sex)
    found = list(candidates[:2])
    return found[0] if len(found) == 1 else None


def courses_visible_to(user: User) -> QuerySet[Course]:
    """Courses of the patients the caller may see."""
    return Course.objects.filter(patient__in=patients_visible_to(user))


def patient_courses(patient: Patient) -> QuerySet[Course]:
    return patient.courses.order_by("number", "created_at")


def patient_lab_results(patient: Patient, *, test: str | None = None) -> QuerySet[LabResult]:
    """Newest first; optionally one test only."""
    labs = patient.lab_results.order_by("-collected_on", "-created_at", "id")
    return labs.filter(test=test) if test is not None else labs
