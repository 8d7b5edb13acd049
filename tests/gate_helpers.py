"""Shared set-up for the gate tests (CRS-1..4, GATE-1..5): authorized patients built through the services,
courses planned through `course_plan`, infusions recorded through the API under frozen time.

Dates are anchored on a fixed calendar so the interval rules (CRS-2) can be tested on exact days: course
1 starts on `DAY0` (2026-03-02) and its fifth dose is infused on `COURSE_1_LAST` (2026-03-06). Every
moment is 15:00 UTC, far from midnight in UTC and in the registry's time zone.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import time_machine
from dateutil.relativedelta import relativedelta

from registry import rules
from registry.models import (
    OPEN_COURSE_STATUSES,
    AuthorizationStatus,
    CertificationStatus,
    Course,
    CourseStatus,
    Decision,
    DecisionKind,
    DecisionOutcome,
    Dispense,
    DispenseAuthorization,
    Facility,
    Infusion,
    LabResult,
    Patient,
    Pharmacy,
    Role,
    User,
)
from registry.services.accounts import participant_user_ensure
from registry.services.dispensing import authorization_request, dispense_record
from registry.services.enrollment import (
    contraindication_record,
    lab_result_record,
    lab_results_bulk_record,
    patient_authorize,
    patient_enroll,
    screening_record,
)
from registry.services.monitoring import status_form_record
from registry.services.treatment import course_plan

from .conftest import Persona
from .factories import PharmacyFactory

DOB = dt.date(1985, 4, 12)
DAY0 = dt.date(2026, 3, 2)  # course 1, day 1
COURSE_1_LAST = DAY0 + dt.timedelta(days=4)  # 2026-03-06
LABS_ON = DAY0 - dt.timedelta(days=3)  # 2026-02-27: the baseline, 3 days before course 1

BASELINE_LABS = (
    "cbc_differential",
    "serum_creatinine",
    "urinalysis",
    "urine_protein_creatinine_ratio",
    "thyroid_function",
    "liver_function",
    "skin_exam",
)
PRE_COURSE_LABS = ("cbc_differential", "serum_creatinine", "urinalysis")  # CRS-4


def moment(day: dt.date, hour: int = 15) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC)


def frozen(day: dt.date | dt.datetime, hour: int = 15) -> Any:
    """Time stands still at 15:00 UTC on `day` (or at the given datetime)."""
    when = day if isinstance(day, dt.datetime) else moment(day, hour)
    return time_machine.travel(when, tick=False)


def months_after(day: dt.date, months: int) -> dt.date:
    return day + relativedelta(months=months)


# --- Patients (ACT-6, ACT-7) ----------------------------------------------------------------------------

_patient_names = itertools.count(1)


def enroll_patient(
    prescriber: Persona,
    *,
    on: dt.date = DAY0,
    date_of_birth: dt.date = DOB,
    sex: str = "male",
    reproductive_potential: bool = False,
    first_name: str | None = None,
    last_name: str = "Ient",
) -> Patient:
    """ACT-6 through the service. Each patient gets a name of its own ("Pat 1 Ient", "Pat 2 Ient", ...), so
    that patients of one test are distinct people, not possible duplicates of one another."""
    first_name = first_name or f"Pat {next(_patient_names)}"
    return patient_enroll(
        actor=prescriber.user,
        data={
            "first_name": first_name,
            "last_name": last_name,
            "date_of_birth": date_of_birth,
            "sex": sex,
            "reproductive_potential": reproductive_potential,
            "enrollment_signed_on": on - dt.timedelta(days=1),
        },
        now=moment(on),
    )


def record_labs(
    patient: Patient, actor: User, *, collected_on: dt.date, tests: Iterable[str] = BASELINE_LABS
) -> None:
    for test in tests:
        lab_result_record(
            patient=patient,
            actor=actor,
            data={"test": test, "collected_on": collected_on, "result": "normal"},
            now=moment(collected_on),
        )


def record_screening(patient: Patient, actor: User, *, on: dt.date) -> None:
    screening_record(
        patient=patient,
        actor=actor,
        data={
            "hiv_negative": True,
            "no_active_infection": True,
            "tb_screened_on": on - dt.timedelta(days=30),
            "vaccinations_completed_on": on - dt.timedelta(days=60),
        },
        now=moment(on),
    )


def authorized_patient(
    prescriber: Persona, *, on: dt.date = DAY0, labs_on: dt.date | None = None, **enroll: Any
) -> Patient:
    """ACT-7: enrolled by `prescriber`, the seven baseline labs collected 3 days before `on`, screening
    attested, authorized on `on`."""
    patient = enroll_patient(prescriber, on=on, **enroll)
    record_labs(patient, prescriber.user, collected_on=labs_on or on - dt.timedelta(days=3))
    record_screening(patient, prescriber.user, on=on)
    outcome = patient_authorize(patient=patient, actor=prescriber.user, now=moment(on))
    assert outcome.approved, outcome.evaluation.reasons
    return outcome.created


def add_contraindication(
    patient: Patient, actor: User, *, on: dt.date, kind: str = "hypersensitivity"
) -> None:
    contraindication_record(
        patient=patient, actor=actor, data={"kind": kind, "noted_on": on, "notes": ""}, now=moment(on)
    )


def plan_course(
    prescriber: Persona, patient: Patient, *, start: dt.date, on: dt.date | None = None
) -> Course:
    """CRS-2..4 through the service, as the prescriber of record, on `on` (default: the start day)."""
    outcome = course_plan(
        patient=patient, actor=prescriber.user, planned_start_on=start, now=moment(on or start)
    )
    assert outcome.approved, outcome.evaluation.reasons
    return outcome.created


def course_path(patient: Patient) -> str:
    return f"/api/v1/patients/{patient.pk}/courses"


# --- Infusions (GATE-3) -----------------------------------------------------------------------------------


def infusion_body(patient: Patient, on: dt.date, *, day: int = 1, **overrides: Any) -> dict[str, Any]:
    """A compliant infusion: 12 mg, corticosteroids on days 1-3, antiviral prophylaxis, 120 minutes."""
    body: dict[str, Any] = {
        "rems_patient_id": patient.rems_patient_id,
        "date_of_birth": patient.date_of_birth.isoformat(),
        "administered_on": on.isoformat(),
        "dose_mg": 12,
        "corticosteroid_premedication": day <= 3,
        "antiviral_prophylaxis": True,
        "observation_minutes": 120,
    }
    body.update(overrides)
    return body


SUPPLY_PHARMACY = "Gate Helpers Supply Pharmacy"


def supply_pharmacy() -> tuple[Pharmacy, User]:
    """The certified pharmacy that ships the doses of the gate tests' infusions (one per test database)."""
    pharmacy = Pharmacy.objects.filter(name=SUPPLY_PHARMACY, status=CertificationStatus.CERTIFIED).first()
    if pharmacy is None:
        pharmacy = PharmacyFactory(certified=True, name=SUPPLY_PHARMACY)
    return pharmacy, participant_user_ensure(participant=pharmacy, actor=None)


def supply(facility: Persona, patient: Patient, *, on: dt.date, doses: int | None = None) -> Dispense | None:
    """GATE-1, GATE-2, GATE-3: ships doses of the patient's open course to the facility on `on`: a
    dispense authorization and its dispense, through the services, as the supply pharmacy. `doses`
    defaults to every dose the course has left to authorize. None when the gate refuses (or nothing is
    left): the infusion then has no dispense behind it."""
    course = Course.objects.filter(patient=patient, status__in=OPEN_COURSE_STATUSES).first()
    if course is None:
        return None
    now = moment(on)
    dispensed = sum(Dispense.objects.filter(authorization__course=course).values_list("vials", flat=True))
    holding = sum(
        DispenseAuthorization.objects.filter(
            course=course, status=AuthorizationStatus.ACTIVE, expires_at__gt=now
        ).values_list("doses_authorized", flat=True)
    )
    doses = doses or course.planned_doses - max(course.doses_given, dispensed + holding)
    if doses < 1:
        return None
    pharmacy, user = supply_pharmacy()
    prescriber = patient.prescriber
    outcome = authorization_request(
        actor=user,
        pharmacy=pharmacy,
        data={
            "rems_patient_id": patient.rems_patient_id,
            "date_of_birth": patient.date_of_birth,
            "prescriber_npi": prescriber.npi,
            "facility_npi": facility.participant.npi,
            "doses_requested": doses,
        },
        now=now,
    )
    if outcome.created is None:
        return None
    return dispense_record(
        actor=user, data={"authorization_number": outcome.created.number, "vials": doses}, now=now
    )


def has_supply(facility: Persona, patient: Patient) -> bool:
    """A dispense to the facility for the patient's open course still has a vial left."""
    for dispense in Dispense.objects.filter(
        patient=patient,
        authorization__facility=facility.participant,
        authorization__course__status__in=OPEN_COURSE_STATUSES,
    ):
        if dispense.infusions.count() < dispense.vials:
            return True
    return False


def infuse(facility: Persona, patient: Patient, on: dt.date, *, day: int = 1, **overrides: Any) -> Any:
    """POST /infusions on the day itself. A facility's infusion is backed by a dispense (GATE-3): unless
    the test names one (`dispense_id`) or the facility already holds one with a vial left, the course's
    remaining doses are first shipped to it (`supply`) that day."""
    with frozen(on):
        if (
            facility.user.role == Role.FACILITY
            and "dispense_id" not in overrides
            and not has_supply(facility, patient)
        ):
            supply(facility, patient, on=on)
        return facility.post("/api/v1/infusions", infusion_body(patient, on, day=day, **overrides))


def infuse_days(facility: Persona, patient: Patient, first_on: dt.date, count: int) -> list[Any]:
    """`count` compliant infusions on consecutive days, each recorded on its day; each must be 201."""
    responses = []
    for day in range(1, count + 1):
        response = infuse(facility, patient, first_on + dt.timedelta(days=day - 1), day=day)
        assert response.status_code == 201, response.json()
        responses.append(response)
    return responses


# MON-1..4: the day the patients of `patient_after_course_1` last had every monitoring lab and a status
# form: current for course 2 on 2027-03-06 (nothing blocks before 2027-04-07), while the pre-course labs
# are then 34 days old, stale for CRS-4.
MONITORED_UNTIL = dt.date(2027, 1, 31)
MONITORING_LABS = (*BASELINE_LABS, "hpv_screening")


def monitoring_kept_up(patient: Patient, prescriber: Persona, *, on: dt.date) -> None:
    """MON-1, MON-2, MON-4: every monitoring lab and a status form on `on`, through the services."""
    lab_results_bulk_record(
        actor=prescriber.user,
        rows=[
            {"rems_patient_id": patient.rems_patient_id, "test": t, "collected_on": on, "result": "normal"}
            for t in MONITORING_LABS
        ],
        now=moment(on),
    )
    status_form_record(
        patient=patient,
        actor=prescriber.user,
        data={"completed_on": on, "labs_reviewed": True, "adverse_events": []},
        now=moment(on),
    )


def patient_after_course_1(
    prescriber: Persona,
    facility: Persona,
    *,
    monitored_until: dt.date | None = MONITORED_UNTIL,
    **enroll: Any,
) -> Patient:
    """An authorized patient whose course 1 (5 doses) ran 2026-03-02..2026-03-06 through the API, with its
    monitoring kept up until `monitored_until` (MON-1..4; None: no monitoring since course 1)."""
    patient = authorized_patient(prescriber, on=DAY0, **enroll)
    plan_course(prescriber, patient, start=DAY0)
    infuse_days(facility, patient, DAY0, 5)
    if monitored_until is not None:
        monitoring_kept_up(patient, prescriber, on=monitored_until)
    patient.refresh_from_db()
    return patient


# --- Dispense authorization (GATE-1, GATE-2) ---------------------------------------------------------------

# The dispense gate's requirements, in order, as its checks name them (GATE-5): the contract the tests hold
# the gate to.
DISPENSE_REQUIREMENT_NAMES = [
    "pharmacy_certified",
    "facility_certified",
    "prescriber_certified",
    "patient_found",
    "prescriber_of_record",
    "patient_authorized",
    "no_contraindication",
    "attestations_hold",
    "no_open_pregnancy",  # PRG-4
    "open_course",
    "course_doses_remaining",
    "doses_within_remaining",
    "course_interval_met",
    "dose_within_course_window",
    "pre_course_labs_fresh",
    "course_1_baseline_labs",
    "course_1_screening",
    "course_1_pregnancy_test",
    "monitoring_current",  # MON-3, GATE-4
    "status_form_current",  # MON-4, GATE-4
]


def authorization_body(
    patient: Patient, prescriber: Persona, facility: Persona, *, doses: int = 5, **overrides: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "rems_patient_id": patient.rems_patient_id,
        "date_of_birth": patient.date_of_birth.isoformat(),
        "prescriber_npi": prescriber.participant.npi,
        "facility_npi": facility.participant.npi,
        "doses_requested": doses,
    }
    body.update(overrides)
    return body


def request_authorization(
    pharmacy: Persona, patient: Patient, prescriber: Persona, facility: Persona, *, doses: int = 5, **kw: Any
) -> Any:
    return pharmacy.post(
        "/api/v1/dispense-authorizations",
        authorization_body(patient, prescriber, facility, doses=doses, **kw),
    )


def approved_number(response: Any) -> str:
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["decision"] == "approved", body
    return body["authorization_number"]


def reason_codes(response: Any) -> list[str]:
    return [reason["code"] for reason in response.json()["reasons"]]


# --- Imported history, straight into the database (query-count guards) ---------------------------------


def prior_courses_orm(
    patient: Patient, *, actor: User, facility: Facility, first_days: Sequence[dt.date]
) -> list[Course]:
    """Completed courses 1..n (5 doses, then 3) with their infusions and approving decisions, inserted
    directly: imported legacy history. `first_days[i]` is the first infusion day of course i+1."""
    program = rules.current().as_dict()
    courses, decisions, infusions = [], [], []
    for index, first in enumerate(first_days):
        doses = 5 if index == 0 else 3
        course = Course(
            patient=patient,
            number=index + 1,
            planned_doses=doses,
            status=CourseStatus.COMPLETED,
            planned_start_on=first,
            doses_given=doses,
            first_infusion_on=first,
            last_infusion_on=first + dt.timedelta(days=doses - 1),
            planned_by=actor,
        )
        courses.append(course)
        for day in range(1, doses + 1):
            decision = Decision(
                kind=DecisionKind.INFUSION,
                outcome=DecisionOutcome.APPROVED,
                patient=patient,
                actor=actor,
                program_settings=program,
            )
            decisions.append(decision)
            infusions.append(
                Infusion(
                    patient=patient,
                    course=course,
                    facility=facility,
                    administered_on=first + dt.timedelta(days=day - 1),
                    day_in_course=day,
                    dose_mg=12,
                    corticosteroid_premedication=day <= 3,
                    antiviral_prophylaxis=True,
                    observation_minutes=120,
                    legacy_history=True,
                    recorded_by=actor,
                    decision=decision,
                )
            )
    Course.objects.bulk_create(courses)
    Decision.objects.bulk_create(decisions)
    Infusion.objects.bulk_create(infusions)
    last = max(c.last_infusion_on for c in courses if c.last_infusion_on)
    Patient.objects.filter(pk=patient.pk).update(
        first_infusion_on=min(first_days), last_infusion_on=last, monitoring_ends_on=months_after(last, 48)
    )
    return courses


def old_labs_orm(patient: Patient, *, actor: User, count: int, before: dt.date) -> None:
    """`count` lab results of every kind, one a week going back from `before` (exclusive)."""
    tests = [*BASELINE_LABS, "hpv_screening"]
    LabResult.objects.bulk_create(
        LabResult(
            patient=patient,
            test=tests[i % len(tests)],
            collected_on=before - dt.timedelta(weeks=i + 1),
            result="normal",
            recorded_by=actor,
        )
        for i in range(count)
    )
