"""Treatment courses and infusions (CRS-1..4, GATE-3)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from dateutil.relativedelta import relativedelta
from django.db import IntegrityError, transaction

from registry import rules
from registry.errors import InvalidTransition, ReasonCode, ValidationFailed
from registry.localtime import local_today
from registry.models import (
    OPEN_COURSE_STATUSES,
    Course,
    CourseStatus,
    Facility,
    Infusion,
    Patient,
    RevokeCategory,
    Role,
    User,
)
from registry.selectors import participant_by_npi
from registry.selectors.facts import (
    Facts,
    dispense_backing,
    dispense_facts,
    facts_load,
)

from .audit import audit_record
from .decisions import COURSE_PLAN_GATE, INFUSION_CHECK_GATE, INFUSION_GATE, upcoming_course_number
from .dob_guard import patient_lookup_guarded
from .gate import Check, Outcome, Refused, gate_run
from .monitoring import monitoring_schedule_start
from .revocation import authorizations_revoke_where

# No LEMTRADA course predates the drug's approval; older dates are typing errors, even in legacy imports.
LEGACY_HISTORY_STARTS = dt.date(2010, 1, 1)


def course_plan(
    *, patient: Patient, actor: User, planned_start_on: dt.date, now: dt.datetime
) -> Outcome[Course]:
    """CRS-2..4: the prescriber of record plans the next course. Its number and planned doses follow from
    history (course 1: 5 doses; later: 3). A refusal (answered 409 `course_not_allowed` with every reason)
    is returned, not raised; the decision is stored either way (GATE-5). One open course per patient is
    also a database constraint.

    Planning checks what can be known when it is made (the interval against the planned start,
    contraindications, withdrawn attestations, the open course, blocks) and lists the requirements that
    depend on the day of the first dose (pre-course labs; for course 1 the baseline, screening and
    pregnancy test) as pending in the decision: they are checked at the dispense authorization (against its
    day) and at the first dose (against the infusion day), so a course can be planned up to a year ahead.
    "Today" is the prescriber's (registry/localtime.py)."""
    today = local_today(actor, now)
    if actor.role != Role.ADMIN and planned_start_on < today:
        raise ValidationFailed({"planned_start_on": ["Cannot be in the past."]})
    if planned_start_on > today + dt.timedelta(days=366):
        raise ValidationFailed({"planned_start_on": ["Plan a course at most a year ahead."]})
    if planned_start_on < LEGACY_HISTORY_STARTS:
        raise ValidationFailed(
            {"planned_start_on": [f"Cannot be before {LEGACY_HISTORY_STARTS.isoformat()}."]}
        )

    def load() -> Facts:
        locked = (
            Patient.objects.select_for_update(of=("self",)).select_related("prescriber").get(pk=patient.pk)
        )
        return facts_load(
            patient=locked, now=now, as_of=today, request={"planned_start_on": planned_start_on}
        )

    def approve(facts: Facts, decision_id: Any) -> Course:
        number = upcoming_course_number(facts)
        try:
            course = Course.objects.create(
                patient_id=patient.pk,
                number=number,
                planned_start_on=planned_start_on,
                planned_by=actor,
                planned_doses=rules.COURSE_1_DOSES if number == 1 else rules.LATER_COURSE_DOSES,
            )
        except IntegrityError as exc:  # CRS-3's unique index: cannot happen under the patient lock
            raise Refused(
                Check("no_open_course", False, ReasonCode.OPEN_COURSE_EXISTS, "Another course is open.")
            ) from exc
        audit_record(
            actor=actor,
            action="course.plan",
            subject=course,
            changes={
                "patient": patient.pk,
                "number": number,
                "planned_doses": course.planned_doses,
                "planned_start_on": planned_start_on,
                "decision": decision_id,
            },
        )
        return course

    return gate_run(
        COURSE_PLAN_GATE,
        actor=actor,
        load=load,
        inputs={"patient": patient.pk, "planned_start_on": planned_start_on},
        approve=approve,
    )


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
            actor=actor,
            now=now,
            reason=f"Course cancelled: {reason}",
            category=RevokeCategory.COURSE_CLOSED,
            course=locked,
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


def _infusion_input_errors(*, actor: User, data: dict[str, Any], now: dt.datetime) -> dict[str, list[str]]:
    """API.md: nobody records a future infusion; facilities backdate up to 3 days (*setting*); admins
    may record any past date (legacy history) and must name the facility. "Today" is the recording
    party's: a facility's in its own time zone, an administrator's in the registry's."""
    errors: dict[str, list[str]] = {}
    today = local_today(actor, now)  # a facility's own calendar day (registry/localtime.py)
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
) -> Outcome[Infusion]:
    """GATE-3: before each infusion the facility's check runs every requirement; the decision is stored
    either way (GATE-5). With `record`, an approved check records the infusion, advances the course (day in
    course, completion on the last planned dose, CRS-3) and moves the monitoring end to 48 months
    (*setting*) after the latest infusion. A denied `record` is answered 409 `do_not_infuse` by the view.

    Every facility infusion is backed by a dispense to that facility for the open course with a vial left:
    the one named by `dispense_id`, or the only one there is (`no_dispense_for_facility` otherwise). An
    administrator who names no dispense records legacy history: exempt, and the infusion says so
    (`legacy_history`, audited).

    Lock order (with `record`): patient, then dispense, then course, as everywhere else."""
    errors = _infusion_input_errors(actor=actor, data=data, now=now)
    if errors:
        raise ValidationFailed(errors)
    facility: Facility | None
    if actor.role == Role.FACILITY:
        facility = actor.facility
    else:
        facility = participant_by_npi(Facility, data.get("facility_npi", ""))
    on = data["administered_on"]
    request = {
        k: data.get(k)
        for k in (
            "administered_on",
            "dose_mg",
            "corticosteroid_premedication",
            "antiviral_prophylaxis",
            "observation_minutes",
            "dispense_id",
        )
    }
    legacy = actor.role == Role.ADMIN and not data.get("dispense_id")
    if legacy:
        request["legacy_history"] = True
    today = local_today(actor, now)

    def load() -> Facts:
        patient = patient_lookup_guarded(  # ID-4: date-of-birth guessing lock
            data["rems_patient_id"],
            data["date_of_birth"],
            now=now,
            labs_as_of=on,
            on_date=on,
            lock=record,
            caller=actor,
        )
        dispense, candidates = None, 0
        if patient is not None and data.get("dispense_id"):
            dispense = dispense_facts(data["dispense_id"], lock=record)
        elif patient is not None and not legacy:
            dispense, candidates = dispense_backing(
                patient_id=patient.pk, facility_id=facility.pk if facility else None, lock=record
            )
        return facts_load(
            patient=patient,
            annotated=True,
            now=now,
            as_of=today,
            facility=facility,
            request=request,
            on_date=on,
            dispense=dispense,
            dispense_candidates=candidates,
        )

    def approve(facts: Facts, decision_id: Any) -> Infusion:
        return _infusion_create(
            facts=facts, facility=facility, decision_id=decision_id, data=data, actor=actor
        )

    return gate_run(
        INFUSION_GATE if record else INFUSION_CHECK_GATE,
        actor=actor,
        load=load,
        inputs={**data, "facility": facility.pk if facility else None},
        approve=approve if record else None,
    )


def _infusion_create(
    *, facts: Facts, facility: Facility | None, decision_id: Any, data: dict[str, Any], actor: User
) -> Infusion:
    patient, open_course = facts.patient, facts.open_course
    assert patient is not None
    assert facility is not None
    assert open_course is not None
    on = data["administered_on"]
    course = Course.objects.select_for_update().get(pk=open_course.id)
    day = course.doses_given + 1
    try:  # gate_run holds a savepoint around the approval
        infusion = Infusion.objects.create(
            patient=patient,
            course=course,
            facility=facility,
            dispense_id=facts.dispense.id if facts.dispense else None,
            administered_on=on,
            day_in_course=day,
            dose_mg=data["dose_mg"],
            decision_id=decision_id,
            recorded_by=actor,
            corticosteroid_premedication=data["corticosteroid_premedication"],
            antiviral_prophylaxis=data["antiviral_prophylaxis"],
            observation_minutes=data["observation_minutes"],
            legacy_history=bool(facts.request.get("legacy_history")) and facts.dispense is None,
        )
    except IntegrityError as exc:  # a concurrent infusion for the same day slipped in: CRS-1 still holds
        raise Refused(
            Check(
                "one_infusion_per_day",
                False,
                ReasonCode.DUPLICATE_INFUSION_DAY,
                "An infusion is already recorded for this day.",
            )
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
    monitoring_schedule_start(
        patient_id=patient.pk,
        sex=patient.sex,
        first_infusion_on=first,
        window_ends_on=monitoring_ends,
        program=facts.program,
        now=facts.now,
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
            "dispense": infusion.dispense_id,
            "legacy_history": infusion.legacy_history,
            "course_status": [before, course.status],
            "monitoring_ends_on": monitoring_ends,
        },
    )
    return infusion
