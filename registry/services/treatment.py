"""Treatment courses and infusions (CRS-1..4, GATE-3)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from dateutil.relativedelta import relativedelta
from django.db import IntegrityError, transaction
from django.utils import timezone

from registry import rules
from registry.errors import Conflict, InvalidTransition, ValidationFailed
from registry.models import (
    OPEN_COURSE_STATUSES,
    Course,
    CourseStatus,
    Decision,
    DecisionKind,
    Dispense,
    Facility,
    Infusion,
    Patient,
    Role,
    User,
)

from .audit import audit_record
from .decisions import (
    COURSE_REQUIREMENTS,
    INFUSION_REQUIREMENTS,
    Evaluation,
    Outcome,
    decision_record,
    evaluate,
    upcoming_course_number,
)
from .facts import Facts, certified_participant, facts_load, patient_by_registry_id
from .revocation import authorizations_revoke_where

COURSE_NOT_ALLOWED = "course_not_allowed"
# No LEMTRADA course predates the drug's approval; older dates are typing errors, even in legacy imports.
LEGACY_HISTORY_STARTS = dt.date(2010, 1, 1)


class DoNotInfuse(Conflict):
    code = "do_not_infuse"
    default_detail = "Do not infuse: the infusion check failed."


def course_plan(*, patient: Patient, actor: User, planned_start_on: dt.date, now: dt.datetime) -> Outcome:
    """CRS-2..4: the prescriber of record plans the next course. Its number and planned doses follow from
    history (course 1: 5 doses; later: 3). A refusal (answered 409 `course_not_allowed` with every reason)
    is returned, not raised; the decision is stored either way (GATE-5). One open course per patient is
    also a database constraint."""
    today = timezone.localdate(now)
    if actor.role != Role.ADMIN and planned_start_on < today:
        raise ValidationFailed({"planned_start_on": ["Cannot be in the past."]})
    if planned_start_on > today + dt.timedelta(days=366):
        raise ValidationFailed({"planned_start_on": ["Plan a course at most a year ahead."]})
    if planned_start_on < LEGACY_HISTORY_STARTS:
        raise ValidationFailed(
            {"planned_start_on": [f"Cannot be before {LEGACY_HISTORY_STARTS.isoformat()}."]}
        )
    with transaction.atomic():
        locked = (
            Patient.objects.select_for_update(of=("self",)).select_related("prescriber").get(pk=patient.pk)
        )
        facts = facts_load(
            patient=locked,
            now=now,
            as_of=timezone.localdate(now),
            request={"planned_start_on": planned_start_on},
        )
        evaluation = evaluate(COURSE_REQUIREMENTS, facts)
        decision = decision_record(
            kind=DecisionKind.COURSE_PLAN,
            evaluation=evaluation,
            facts=facts,
            actor=actor,
            inputs={"patient": locked.pk, "planned_start_on": planned_start_on},
        )
        if evaluation.approved:
            number = upcoming_course_number(facts)
            course = Course.objects.create(
                patient=locked,
                number=number,
                planned_start_on=planned_start_on,
                planned_by=actor,
                planned_doses=rules.COURSE_1_DOSES if number == 1 else rules.LATER_COURSE_DOSES,
            )
            audit_record(
                actor=actor,
                action="course.plan",
                subject=course,
                changes={
                    "patient": locked.pk,
                    "number": number,
                    "planned_doses": course.planned_doses,
                    "planned_start_on": planned_start_on,
                },
            )
            return Outcome(decision, evaluation, course)
    return Outcome(decision, evaluation)


def course_cancel(*, course: Course, actor: User, reason: str, now: dt.datetime) -> Course:
    """CRS-3: an open course is cancelled with a reason. Its active dispense authorizations are revoked in
    the same transaction: no vial may be dispensed against a cancelled course."""
    with transaction.atomic():
        Patient.objects.select_for_update().filter(
            pk=course.patient_id
        ).first()  # lock order: patient, course
        locked = Course.objects.select_for_update().get(pk=course.pk)
        if locked.status not in OPEN_COURSE_STATUSES:
            raise InvalidTransition(f"A {locked.status} course cannot be cancelled.", status=locked.status)
        before = locked.status
        locked.status, locked.cancelled_reason, locked.cancelled_at = CourseStatus.CANCELLED, reason, now
        locked.save(update_fields=["status", "cancelled_reason", "cancelled_at", "updated_at"])
        revoked = authorizations_revoke_where(
            actor=actor, now=now, reason=f"Course cancelled: {reason}", course=locked
        )
        audit_record(
            actor=actor,
            action="course.cancel",
            subject=locked,
            changes={
                "status": [before, CourseStatus.CANCELLED],
                "reason": reason,
                "authorizations_revoked": revoked,
            },
        )
    return locked


@dataclass(frozen=True)
class InfusionOutcome:
    decision: Decision
    evaluation: Evaluation
    infusion: Infusion | None
    facts: Facts

    @property
    def approved(self) -> bool:
        return self.evaluation.approved


def _infusion_input_errors(*, actor: User, data: dict[str, Any], now: dt.datetime) -> dict[str, list[str]]:
    """API.md: nobody records a future infusion; facilities backdate up to 3 days (*setting*); admins
    may record any past date (legacy history) and must name the facility."""
    errors: dict[str, list[str]] = {}
    today = timezone.localdate(now)
    on = data["administered_on"]
    if on > today:
        errors["administered_on"] = ["Cannot be in the future."]
    elif on < LEGACY_HISTORY_STARTS:
        errors["administered_on"] = [f"Cannot be before {LEGACY_HISTORY_STARTS.isoformat()}."]
    elif actor.role == Role.FACILITY:
        limit = rules.current().facility_backdate_days
        if on < today - dt.timedelta(days=limit):
            errors["administered_on"] = [f"Facilities may record infusions at most {limit} days back."]
    if actor.role == Role.ADMIN and not data.get("facility_npi"):
        errors["facility_npi"] = ["Required when an administrator records an infusion."]
    return errors


def infusion_record(
    *, actor: User, data: dict[str, Any], now: dt.datetime, record: bool = True
) -> InfusionOutcome:
    """GATE-3: before each infusion the facility's check runs every requirement; the decision is stored
    either way (GATE-5). With `record`, an approved check records the infusion, advances the course (day in
    course, completion on the last planned dose, CRS-3) and moves the monitoring end to 48 months
    (*setting*) after the latest infusion. A denied `record` is answered 409 `do_not_infuse` by the view.

    Lock order: patient, then course (the same order as course planning and cancelling)."""
    errors = _infusion_input_errors(actor=actor, data=data, now=now)
    if errors:
        raise ValidationFailed(errors)
    facility: Facility | None
    if actor.role == Role.FACILITY:
        facility = actor.facility
    else:
        facility = certified_participant(Facility, data.get("facility_npi", ""))
    on = data["administered_on"]
    request = {
        k: data.get(k)
        for k in (
            "administered_on",
            "dose_mg",
            "corticosteroid_premedication",
            "antiviral_prophylaxis",
            "observation_minutes",
        )
    }
    inputs = {**{k: v for k, v in data.items()}, "facility": facility.pk if facility else None}
    with transaction.atomic():
        # With `record`, the patient row is locked as it is read: two infusions for one patient serialize.
        patient = patient_by_registry_id(
            data["rems_patient_id"],
            data["date_of_birth"],
            now=now,
            labs_as_of=on,
            on_date=on,
            lock=record,
            caller=actor,  # ID-4: date-of-birth guessing lock
        )
        facts = facts_load(
            patient=patient,
            annotated=True,
            now=now,
            as_of=timezone.localdate(now),
            facility=facility,
            request=request,
            on_date=on,
        )
        evaluation = evaluate(INFUSION_REQUIREMENTS, facts)
        dispense = (
            _dispense_for(
                data.get("dispense_id"),
                patient,
                facility,
                facts.open_course.id if facts.open_course else None,
            )
            if evaluation.approved
            else None
        )
        kind = DecisionKind.INFUSION if record else DecisionKind.INFUSION_CHECK
        decision = decision_record(kind=kind, evaluation=evaluation, facts=facts, actor=actor, inputs=inputs)
        infusion = None
        if record and evaluation.approved:
            assert patient is not None
            assert facility is not None
            assert facts.open_course is not None
            infusion = _infusion_create(
                patient=patient,
                course_id=facts.open_course.id,
                facility=facility,
                dispense=dispense,
                decision=decision,
                data=data,
                facts=facts,
                actor=actor,
            )
    return InfusionOutcome(decision=decision, evaluation=evaluation, infusion=infusion, facts=facts)


def _dispense_for(
    dispense_id: Any, patient: Patient | None, facility: Facility | None, course_id: Any
) -> Dispense | None:
    """The dispense an infusion draws its vial from: this patient's, to this facility, for the open course,
    with a vial left (GATE-2: a dispense backs at most `vials` infusions). Locked, so two infusions cannot
    both take its last vial."""
    if not dispense_id:
        return None
    dispense = (
        Dispense.objects.select_for_update(of=("self",))
        .select_related("authorization")
        .filter(pk=dispense_id)
        .first()
    )
    if (
        dispense is None
        or patient is None
        or dispense.patient_id != patient.pk
        or (facility is not None and dispense.authorization.facility_id != facility.pk)
        or dispense.authorization.course_id != course_id
    ):
        raise ValidationFailed(
            {"dispense_id": ["No dispense of this patient to this facility for the open course has this id."]}
        )
    if Infusion.objects.filter(dispense=dispense).count() >= dispense.vials:
        raise ValidationFailed(
            {"dispense_id": [f"All {dispense.vials} vial(s) of this dispense are infused."]}
        )
    return dispense


def _infusion_create(
    *,
    patient: Patient,
    course_id: Any,
    facility: Facility,
    dispense: Dispense | None,
    decision: Decision,
    data: dict[str, Any],
    facts: Facts,
    actor: User,
) -> Infusion:
    on = data["administered_on"]
    course = Course.objects.select_for_update().get(pk=course_id)
    if (
        course.status not in OPEN_COURSE_STATUSES
    ):  # cannot happen under the patient lock; never infuse into one
        raise DoNotInfuse(
            reasons=[{"code": "no_open_course", "detail": f"Course {course.number} is {course.status}."}]
        )
    day = course.doses_given + 1
    try:
        with transaction.atomic():
            infusion = Infusion.objects.create(
                patient=patient,
                course=course,
                facility=facility,
                dispense=dispense,
                administered_on=on,
                day_in_course=day,
                dose_mg=data["dose_mg"],
                decision=decision,
                recorded_by=actor,
                corticosteroid_premedication=data["corticosteroid_premedication"],
                antiviral_prophylaxis=data["antiviral_prophylaxis"],
                observation_minutes=data["observation_minutes"],
            )
    except IntegrityError as exc:  # a concurrent infusion for the same day slipped in: CRS-1 still holds
        raise DoNotInfuse(
            reasons=[
                {"code": "duplicate_infusion_day", "detail": "An infusion is already recorded for this day."}
            ]
        ) from exc
    before = course.status
    course.doses_given += 1
    course.first_infusion_on = min(filter(None, [course.first_infusion_on, on]))
    course.last_infusion_on = max(filter(None, [course.last_infusion_on, on]))
    course.status = (
        CourseStatus.COMPLETED if course.doses_given >= course.planned_doses else CourseStatus.IN_PROGRESS
    )
    course.save(
        update_fields=["doses_given", "first_infusion_on", "last_infusion_on", "status", "updated_at"]
    )
    first = min(filter(None, [patient.first_infusion_on, on]))
    last = max(filter(None, [patient.last_infusion_on, on]))
    monitoring_ends = last + relativedelta(months=facts.program.monitoring_months_after_last_infusion)
    Patient.objects.filter(pk=patient.pk).update(
        first_infusion_on=first, last_infusion_on=last, monitoring_ends_on=monitoring_ends
    )
    patient.first_infusion_on, patient.last_infusion_on, patient.monitoring_ends_on = (
        first,
        last,
        monitoring_ends,
    )
    audit_record(
        actor=actor,
        action="infusion.record",
        subject=infusion,
        changes={
            "patient": patient.pk,
            "course": course.pk,
            "day_in_course": day,
            "administered_on": on,
            "facility": facility.pk,
            "course_status": [before, course.status],
            "monitoring_ends_on": monitoring_ends,
        },
    )
    return infusion
