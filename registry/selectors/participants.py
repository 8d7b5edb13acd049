"""Participant reads (ACT-1..5): what a caller may see of prescribers, facilities and pharmacies."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from django.db.models import QuerySet

from registry.models import CertificationStatus, Facility, Pharmacy, Prescriber, Role, User

P = TypeVar("P", Prescriber, Facility, Pharmacy)


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
    qs = model.objects.filter(**{field: value}).exclude(status=CertificationStatus.DEACTIVATED)
    if exclude_pk is not None:
        qs = qs.exclude(pk=exclude_pk)
    return qs.exists()


def participant_by_npi(model: type[P], npi: str) -> P | None:
    """The registered (not deactivated) participant of this kind with this NPI, certified or not."""
    if not npi:
        return None
    return model.objects.filter(npi=npi).exclude(status=CertificationStatus.DEACTIVATED).first()


def participant_by_enrollment_id(model: type[P], enrollment_id: str) -> P | None:
    """The participant of this kind whose REMS enrollment ID (NCPDP `REMSHealthcareProviderEnrollmentID`,
    `REMSHealthcareSettingEnrollmentID`) is `enrollment_id`: the registry's participant id. None for an
    id that is not a UUID or names nobody of this kind."""
    try:
        pk = uuid.UUID(enrollment_id)
    except ValueError:
        return None
    return model.objects.filter(pk=pk).first()


def delegates_of(prescriber: Prescriber) -> QuerySet[User]:
    """The prescriber's active delegates (office staff acting for it, API.md)."""
    return User.objects.filter(role=Role.DELEGATE, prescriber=prescriber, is_active=True).order_by("email")
