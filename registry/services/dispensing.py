"""Dispense authorization and dispensing (GATE-1, GATE-2)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from registry.errors import Conflict, InvalidTransition, NotFound
from registry.identifiers import new_authorization_number, parse_authorization_number
from registry.models import (
    OPEN_COURSE_STATUSES,
    AuditEvent,
    AuthorizationStatus,
    Decision,
    DecisionKind,
    Dispense,
    DispenseAuthorization,
    Facility,
    Patient,
    PatientStatus,
    Pharmacy,
    Prescriber,
    Role,
    User,
)

from .audit import audit_record
from .decisions import DISPENSE_REQUIREMENTS, Evaluation, decision_record, evaluate
from .facts import Facts, facts_load, participants_for_authorization, patient_by_registry_id


@dataclass(frozen=True)
class AuthorizationOutcome:
    decision: Decision
    evaluation: Evaluation
    authorization: DispenseAuthorization | None
    facts: Facts


def authorization_request(
    *, actor: User, pharmacy: Pharmacy | None, data: dict[str, Any], now: dt.datetime
) -> AuthorizationOutcome:
    """GATE-1: every requirement is evaluated at the moment of the check; a denial lists every unmet one.
    GATE-2: an approval issues a single-use authorization number valid 7 days (*setting*), bound to
    pharmacy, facility, patient, course and dose count. GATE-5: the decision is stored either way.

    The patient row is locked for the check, so two pharmacies asking at once cannot both be granted the
    course's last doses."""
    with transaction.atomic():
        patient = patient_by_registry_id(
            data["rems_patient_id"],
            data["date_of_birth"],
            now=now,
            labs_as_of=timezone.localdate(now),
            lock=True,
            caller=actor,  # ID-4: date-of-birth guessing lock
        )
        pharmacy, facility, prescriber = participants_for_authorization(
            pharmacy_id=pharmacy.pk if pharmacy else None,
            facility_npi=data["facility_npi"],
            prescriber_npi=data["prescriber_npi"],
        )
        facts = facts_load(
            patient=patient,
            annotated=True,
            now=now,
            as_of=timezone.localdate(now),
            pharmacy=pharmacy,
            facility=facility,
            prescriber=prescriber,
            request={"doses_requested": data["doses_requested"]},
        )
        evaluation = evaluate(DISPENSE_REQUIREMENTS, facts)
        inputs = {**data, "pharmacy": pharmacy.pk if pharmacy else None}
        decision = decision_record(
            kind=DecisionKind.DISPENSE_AUTHORIZATION,
            evaluation=evaluation,
            facts=facts,
            actor=actor,
            inputs=inputs,
            audit=not evaluation.approved,  # an approval is audited once, as the issue below
        )
        authorization = None
        if evaluation.approved:
            assert patient
            assert facility
            assert prescriber
            assert pharmacy
            assert facts.open_course
            authorization = _issue(
                decision=decision,
                pharmacy=pharmacy,
                facility=facility,
                prescriber=prescriber,
                patient_id=patient.pk,
                course_id=facts.open_course.id,
                doses=data["doses_requested"],
                now=now,
                validity_days=facts.program.authorization_validity_days,
            )
            audit_record(
                actor=actor,
                action="authorization.issue",
                subject=authorization,
                changes={
                    "decision": decision.pk,
                    "outcome": decision.outcome,
                    "number": authorization.number,
                    "doses": authorization.doses_authorized,
                    "expires_at": authorization.expires_at,
                    "course": facts.open_course.id,
                },
            )
    return AuthorizationOutcome(
        decision=decision, evaluation=evaluation, authorization=authorization, facts=facts
    )


def _issue(
    *,
    decision: Decision,
    pharmacy: Pharmacy,
    facility: Facility,
    prescriber: Prescriber,
    patient_id: Any,
    course_id: Any,
    doses: int,
    now: dt.datetime,
    validity_days: int,
) -> DispenseAuthorization:
    """GATE-2: 60 random bits make a collision of live numbers negligible; the unique index still refuses
    one (the request then fails whole and the client retries it under its Idempotency-Key)."""
    return DispenseAuthorization.objects.create(
        id=decision.pk,
        decision=decision,
        number=new_authorization_number(),
        pharmacy=pharmacy,
        facility=facility,
        prescriber=prescriber,
        patient_id=patient_id,
        course_id=course_id,
        doses_authorized=doses,
        issued_at=now,
        expires_at=now + dt.timedelta(days=validity_days),
    )


def authorization_for(*, user: User, number: str, lock: bool = False) -> DispenseAuthorization | None:
    """The authorization with this number as the caller may see it: the issuing pharmacy or an admin."""
    canonical = parse_authorization_number(number)
    if canonical is None:
        return None
    qs = DispenseAuthorization.objects.filter(number=canonical).select_related(
        "pharmacy", "facility", "prescriber", "patient", "course"
    )
    if user.role == Role.PHARMACY:
        qs = qs.filter(pharmacy_id=user.pharmacy_id)  # type: ignore[misc]
    elif user.role != Role.ADMIN:
        return None
    if lock:
        qs = qs.select_for_update(of=("self",))
    return qs.first()


def authorization_revoke(*, actor: User, number: str, reason: str, now: dt.datetime) -> DispenseAuthorization:
    """GATE-2: an active number can be revoked by the issuing pharmacy or an admin; used, expired or
    already revoked ones cannot."""
    with transaction.atomic():
        authorization = authorization_for(user=actor, number=number, lock=True)
        if authorization is None:
            raise NotFound("No authorization with this number.")
        state = authorization.status_at(now)
        if state != AuthorizationStatus.ACTIVE:
            raise InvalidTransition(f"The authorization is {state}.", status=state)
        authorization.status, authorization.revoked_at = AuthorizationStatus.REVOKED, now
        authorization.revoked_by, authorization.revoke_reason = actor, reason
        authorization.save(update_fields=["status", "revoked_at", "revoked_by", "revoke_reason"])
        audit_record(
            actor=actor,
            action="authorization.revoke",
            subject=authorization,
            changes={"status": [AuthorizationStatus.ACTIVE, AuthorizationStatus.REVOKED], "reason": reason},
        )
    return authorization


_REFUSALS: dict[str, tuple[str, str]] = {
    AuthorizationStatus.USED: ("authorization_used", "This authorization number has already been dispensed."),
    AuthorizationStatus.EXPIRED: ("authorization_expired", "This authorization number has expired."),
    AuthorizationStatus.REVOKED: ("authorization_revoked", "This authorization number was revoked."),
}


def dispense_record(*, actor: User, data: dict[str, Any], now: dt.datetime) -> Dispense:
    """GATE-2: consumes an authorization exactly once. The row lock serializes concurrent dispenses of one
    number (the second sees it used); the one-to-one constraint is the last line of defence.

    Events that break a gate revoke outstanding numbers (services/revocation.py); what can lapse without
    an event (a certification's expiry) is re-checked here, so a number never outlives the facts it was
    granted on. Lock order: patient, then authorization, as everywhere else."""
    with transaction.atomic():
        found = authorization_for(user=actor, number=data["authorization_number"])
        if found is None:
            raise Conflict(
                "No authorization issued to this pharmacy has this number.", code="authorization_not_found"
            )
        list(Patient.objects.select_for_update().filter(pk=found.patient_id).values_list("pk"))
        if connection.vendor == "postgresql":
            # The pharmacy is shared-locked before the authorization: a suspension (which locks the pharmacy,
            # then its authorizations) and this dispense then queue in one order instead of deadlocking.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT id FROM registry_pharmacy WHERE id = %s FOR SHARE", [found.pharmacy_id]
                )
        authorization = (
            DispenseAuthorization.objects.select_for_update(of=("self",))
            .select_related("pharmacy", "facility", "prescriber", "patient", "course")
            .get(pk=found.pk)
        )
        state = authorization.status_at(now)
        if state in _REFUSALS:
            code, detail = _REFUSALS[state]
            raise Conflict(detail, code=code)
        lapsed = _lapsed(authorization, now)
        if lapsed:
            raise Conflict(
                f"This authorization number no longer holds: {lapsed}.", code="authorization_revoked"
            )
        if data["vials"] > authorization.doses_authorized:
            raise Conflict(
                f"At most {authorization.doses_authorized} vials may be dispensed on this authorization.",
                code="vials_exceed_authorization",
            )
        try:
            with transaction.atomic():
                dispense = Dispense.objects.create(
                    authorization=authorization,
                    pharmacy_id=authorization.pharmacy_id,
                    patient_id=authorization.patient_id,
                    vials=data["vials"],
                    ndc=data.get("ndc", ""),
                    lot_number=data.get("lot_number", ""),
                    dispensed_by=actor,
                )
        except IntegrityError as exc:
            raise Conflict(_REFUSALS[AuthorizationStatus.USED][1], code="authorization_used") from exc
        authorization.status, authorization.used_at = AuthorizationStatus.USED, now
        authorization.save(update_fields=["status", "used_at"])
        audit_record(
            actor=actor,
            action="dispense.record",
            subject=dispense,
            changes={
                "authorization": authorization.number,
                "vials": dispense.vials,
                "ndc": dispense.ndc,
                "lot_number": dispense.lot_number,
            },
        )
    return dispense


def authorization_state(authorization: DispenseAuthorization, now: dt.datetime) -> str:
    """The status a reader sees (GATE-2): past its expiry an active number is expired; an active number
    whose grounds no longer hold (a certification lapsed without an event) reads as revoked, as a dispense
    of it would be refused."""
    state = authorization.status_at(now)
    if state == AuthorizationStatus.ACTIVE and _lapsed(authorization, now):
        return AuthorizationStatus.REVOKED
    return state


def _lapsed(authorization: DispenseAuthorization, now: dt.datetime) -> str:
    """What no longer holds of the facts an authorization was granted on (GATE-1), or ''."""
    if not authorization.pharmacy.is_certified_at(now):
        return "the pharmacy is not certified"
    if not authorization.facility.is_certified_at(now):
        return "the facility is not certified"
    if not authorization.prescriber.is_certified_at(now):
        return "the prescriber is not certified"
    if authorization.patient.prescriber_id != authorization.prescriber_id:
        return "the prescriber is no longer the patient's prescriber of record"
    if authorization.patient.status != PatientStatus.AUTHORIZED:
        return f"the patient is {authorization.patient.status}"
    if authorization.course.status not in OPEN_COURSE_STATUSES:
        return f"the course is {authorization.course.status}"
    return ""


def authorizations_expire(*, now: dt.datetime) -> int:
    """MON-5: flips active numbers past their expiry to `expired` (reads already treat them as expired),
    set-based: one locking read, one UPDATE, one multi-row audit insert. Idempotent; rows another worker
    holds are skipped and picked up next run."""
    with transaction.atomic():
        ids = list(
            DispenseAuthorization.objects.select_for_update(skip_locked=True)
            .filter(status=AuthorizationStatus.ACTIVE, expires_at__lte=now)
            .values_list("pk", flat=True)
        )
        if not ids:
            return 0
        DispenseAuthorization.objects.filter(pk__in=ids).update(status=AuthorizationStatus.EXPIRED)
        AuditEvent.objects.bulk_create(
            AuditEvent(
                actor=None,
                actor_role="system",
                action="authorization.expire",
                subject_type="dispenseauthorization",
                subject_id=pk,
                changes={"status": [AuthorizationStatus.ACTIVE, AuthorizationStatus.EXPIRED]},
            )
            for pk in ids
        )
    return len(ids)
