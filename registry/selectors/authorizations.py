"""Dispense authorization reads (GATE-2). `authorization_state` is the one answer to "what is this number
now": the API, the admin and the dispense service all ask it, so they cannot disagree."""

from __future__ import annotations

import datetime as dt

from django.db.models import Case, CharField, F, Q, QuerySet, Value, When

from registry.identifiers import parse_authorization_number
from registry.models import (
    OPEN_COURSE_STATUSES,
    AuthorizationState,
    AuthorizationStatus,
    CertificationStatus,
    DispenseAuthorization,
    PatientStatus,
    RevokeCategory,
    Role,
    User,
)


def authorizations_visible_to(user: User) -> QuerySet[DispenseAuthorization]:
    """The issuing pharmacy sees its own numbers; administrators see all; nobody else sees any."""
    qs = DispenseAuthorization.objects.select_related(
        "pharmacy", "facility", "prescriber", "patient", "course"
    )
    if user.role == Role.ADMIN:
        return qs
    if user.role == Role.PHARMACY:
        return qs.filter(pharmacy_id=user.pharmacy_id)  # type: ignore[misc]
    return qs.none()


def authorization_visible(user: User, number: str, *, lock: bool = False) -> DispenseAuthorization | None:
    """The authorization with this number (any spelling `parse_authorization_number` accepts) if the caller
    may see it."""
    canonical = parse_authorization_number(number)
    if canonical is None:
        return None
    qs = authorizations_visible_to(user).filter(number=canonical)
    if lock:
        qs = qs.select_for_update(of=("self",))
    return qs.first()


def authorization_lapse(authorization: DispenseAuthorization, now: dt.datetime) -> tuple[str, str]:
    """GATE-1 re-read at `now`: what no longer holds of the facts the number was granted on, as (revoke
    category, detail for administrators), or ("", "") when everything still holds."""
    a = authorization
    parties = (("pharmacy", a.pharmacy), ("facility", a.facility), ("prescriber", a.prescriber))
    for name, party in parties:
        if not party.is_certified_at(now):
            return RevokeCategory.PARTICIPANT_NOT_CERTIFIED, f"the {name} is not certified"
    if a.patient.prescriber_id != a.prescriber_id:
        return (
            RevokeCategory.PATIENT_NO_LONGER_ELIGIBLE,
            "the prescriber is no longer the patient's prescriber of record",
        )
    if a.patient.status != PatientStatus.AUTHORIZED:
        return RevokeCategory.PATIENT_NO_LONGER_ELIGIBLE, f"the patient is {a.patient.status}"
    if a.course.status not in OPEN_COURSE_STATUSES:
        return RevokeCategory.COURSE_CLOSED, f"the course is {a.course.status}"
    return "", ""


def _not_certified_q(party: str, now: dt.datetime) -> Q:
    return ~Q(**{f"{party}__status": CertificationStatus.CERTIFIED}) | Q(
        **{f"{party}__certification_expires_at__lte": now}
    )


def _lapse_conditions(now: dt.datetime) -> list[tuple[Q, str]]:
    """`authorization_lapse`'s conditions as query conditions, in its order, with their categories."""
    return [
        (
            _not_certified_q("pharmacy", now)
            | _not_certified_q("facility", now)
            | _not_certified_q("prescriber", now),
            RevokeCategory.PARTICIPANT_NOT_CERTIFIED,
        ),
        (
            ~Q(patient__prescriber_id=F("prescriber_id")) | ~Q(patient__status=PatientStatus.AUTHORIZED),
            RevokeCategory.PATIENT_NO_LONGER_ELIGIBLE,
        ),
        (~Q(course__status__in=OPEN_COURSE_STATUSES), RevokeCategory.COURSE_CLOSED),
    ]


def lapsed_q(now: dt.datetime) -> Q:
    """Set-based `authorization_lapse` (for the sweep): a number whose grounds no longer hold at `now`.
    selectors/facts.py `_HOLDING_DOSES_SQL` counts the doses of the numbers that do not match."""
    q = Q()
    for condition, _ in _lapse_conditions(now):
        q |= condition
    return q


def lapsed_category(now: dt.datetime) -> Case:
    """The revoke category of a lapsed number, chosen as `authorization_lapse` chooses it."""
    return Case(
        *(When(condition, then=Value(str(category))) for condition, category in _lapse_conditions(now)),
        default=Value(""),
        output_field=CharField(),
    )


def authorization_state(authorization: DispenseAuthorization, now: dt.datetime) -> AuthorizationState:
    """GATE-2: `used` and `revoked` as stored; an active number past its expiry is `expired` (before the
    daily sweep stores it so); an active number whose grounds no longer hold is `lapsed`."""
    if authorization.status != AuthorizationStatus.ACTIVE:
        return AuthorizationState(authorization.status)
    if authorization.expires_at <= now:
        return AuthorizationState.EXPIRED
    if authorization_lapse(authorization, now)[0]:
        return AuthorizationState.LAPSED
    return AuthorizationState.ACTIVE


def authorization_public_state(state: AuthorizationState) -> str:
    """API.md's `status` enum has no `lapsed`: a lapsed number reads `revoked`, as its dispense is refused."""
    return AuthorizationStatus.REVOKED if state == AuthorizationState.LAPSED else str(state)


def authorization_revoke_category(authorization: DispenseAuthorization, now: dt.datetime) -> str:
    """The category a pharmacy may read for a revoked or lapsed number (never the reason text)."""
    if authorization.status == AuthorizationStatus.REVOKED:
        return authorization.revoke_category or RevokeCategory.BY_ADMINISTRATOR
    if authorization_state(authorization, now) == AuthorizationState.LAPSED:
        return authorization_lapse(authorization, now)[0]
    return ""
