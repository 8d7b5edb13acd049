"""Reads scoped to a user (STYLE.md 3). Every queryset an endpoint touches starts here: what a caller may
not see does not exist for it (404)."""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import QuerySet

from registry.models import Facility, Patient, Pharmacy, Prescriber, Role, User

P = TypeVar("P", Prescriber, Facility, Pharmacy)

PATIENT_VIEW_PERMISSION = "view_patient"
PATIENT_ACT_PERMISSION = "act_on_patient"
CARE_TEAM_PERMISSIONS = (PATIENT_VIEW_PERMISSION, PATIENT_ACT_PERMISSION)


def participants_visible_to(user: User, model: type[P]) -> QuerySet[P]:
    """Admins see every participant; a participant sees its own record (a delegate its prescriber's)."""
    qs = model.objects.all()
    if user.role == Role.ADMIN:
        return qs
    own = {
        (Role.PRESCRIBER, Prescriber): user.prescriber_id,
        (Role.DELEGATE, Prescriber): user.prescriber_id,
        (Role.FACILITY, Facility): user.facility_id,
        (Role.PHARMACY, Pharmacy): user.pharmacy_id,
    }.get((Role(user.role), model))
    return qs.filter(pk=own) if own else qs.none()


def identifier_in_use(model: type[P], *, field: str, value: str, exclude_pk: Any = None) -> bool:
    """ACT-5: an NPI (or NCPDP ID) is taken while a participant of this kind holding it is not deactivated;
    the database enforces it, forms use this to say so before saving."""
    qs = model.objects.filter(**{field: value}).exclude(status="deactivated")
    if exclude_pk is not None:
        qs = qs.exclude(pk=exclude_pk)
    return qs.exists()


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


def monitoring_flags_visible_to(user: User) -> QuerySet[Any]:
    """MON-3 flags of the patients `user` may see (issue 10)."""
    from registry.models import MonitoringFlag

    return MonitoringFlag.objects.filter(patient__in=patients_visible_to(user))
