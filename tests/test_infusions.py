"""Infusions through the API (GATE-3, CRS-1..4, GATE-4, GATE-5, ID-4).

POST /api/v1/infusions (facility) records the dose when every check passes, otherwise 409 `do_not_infuse`
with every reason; the decision is stored either way and a refused infusion leaves no Infusion row.
POST /api/v1/infusions/check runs the same check and records nothing but the decision.
"""

from __future__ import annotations

import datetime as dt

import pytest

from registry import rules
from registry.api.refusals import PUBLIC_DETAIL
from registry.identifiers import new_registry_id
from registry.models import Course, CourseStatus, Decision, DecisionKind, DecisionOutcome, Facility, Infusion
from registry.services.certification import participant_suspend
from registry.services.enrollment import patient_status_change

from .gate_helpers import (
    COURSE_1_LAST,
    DAY0,
    PRE_COURSE_LABS,
    add_contraindication,
    authorized_patient,
    frozen,
    infuse,
    infuse_days,
    infusion_body,
    moment,
    patient_after_course_1,
    plan_course,
    record_labs,
    supply,
)

pytestmark = pytest.mark.django_db

INFUSIONS = "/api/v1/infusions"
CHECK = "/api/v1/infusions/check"
NOW = moment(DAY0)


@pytest.fixture
def clock():
    """Every test here runs on 2026-03-02 at 15:00 UTC unless it travels on."""
    with frozen(DAY0) as traveller:
        yield traveller


@pytest.fixture
def patient(clock, prescriber, facility):
    """Authorized on 2026-03-02 (labs of 2026-02-27), course 1 planned to start that day, its 5 doses
    dispensed to the facility that day (GATE-3: every infusion is backed by a dispense)."""
    patient = authorized_patient(prescriber)
    plan_course(prescriber, patient, start=DAY0)
    assert supply(facility, patient, on=DAY0) is not None
    return patient


def _do_not_infuse(response, reasons, *, infusions=0):
    """GATE-3, GATE-5: 409 `do_not_infuse` with exactly these reason codes; the denied decision is stored;
    the number of Infusion rows is unchanged."""
    assert response.status_code == 409, response.json()
    body = response.json()
    assert body["code"] == "do_not_infuse"
    assert [r["code"] for r in body["reasons"]] == reasons
    decision = Decision.objects.get(pk=body["decision_id"])
    assert (decision.kind, decision.outcome) == (DecisionKind.INFUSION, DecisionOutcome.DENIED)
    assert [r["code"] for r in decision.reasons] == reasons
    # Minimum necessary disclosure: facts about the patient reach the facility as neutral texts only.
    stored = {r["code"]: r["detail"] for r in decision.reasons}
    for reason in body["reasons"]:
        assert reason["detail"] in (PUBLIC_DETAIL.get(reason["code"]), stored[reason["code"]])
    assert [r["requirement"] for r in decision.requirements if not r["met"]] == [
        r["requirement"] for r in body["requirements"] if not r["met"]
    ]
    assert decision.program_settings == rules.current().as_dict()
    assert not Infusion.objects.filter(decision=decision).exists()
    assert Infusion.objects.count() == infusions
    return body


def _stored(body):
    """The reasons as stored with the decision (GATE-5), in full, for the prescriber and administrators."""
    return Decision.objects.get(pk=body["decision_id"]).reasons


def _course_2_planned(prescriber, facility):
    """Course 1 ran 2026-03-02..06; pre-course labs on 2027-03-01; course 2 planned for 2027-03-06."""
    patient = patient_after_course_1(prescriber, facility)
    with frozen(dt.date(2027, 3, 1)):
        record_labs(patient, prescriber.user, collected_on=dt.date(2027, 3, 1), tests=PRE_COURSE_LABS)
        plan_course(prescriber, patient, start=dt.date(2027, 3, 6), on=dt.date(2027, 3, 1))
    return patient


# --- GATE-3: recording -----------------------------------------------------------------------------------


def test_infusion_is_recorded_with_its_course_and_day_in_course(patient, facility):
    """GATE-3: the record carries date, day in course, dose, premedication, prophylaxis, observation."""
    response = facility.post(INFUSIONS, infusion_body(patient, DAY0, day=1))

    assert response.status_code == 201, response.json()
    body = response.json()
    course = Course.objects.get(patient=patient, number=1)
    assert (body["course"], body["course_number"], body["day_in_course"]) == (str(course.pk), 1, 1)
    assert (body["administered_on"], body["dose_mg"], body["observation_minutes"]) == ("2026-03-02", 12, 120)
    assert (body["corticosteroid_premedication"], body["antiviral_prophylaxis"]) == (True, True)
    assert (body["patient"], body["facility"]) == (str(patient.pk), str(facility.participant.pk))
    infusion = Infusion.objects.get(pk=body["id"])
    assert (infusion.course, infusion.day_in_course, infusion.recorded_by) == (course, 1, facility.user)
    decision = Decision.objects.get(pk=body["decision_id"])
    assert (decision.kind, decision.outcome) == (DecisionKind.INFUSION, DecisionOutcome.APPROVED)
    course.refresh_from_db()
    assert (course.status, course.doses_given, course.first_infusion_on) == (
        CourseStatus.IN_PROGRESS,
        1,
        DAY0,
    )


def test_course_1_is_completed_after_its_fifth_dose(patient, facility, prescriber):
    """CRS-2, CRS-3: 5 doses on consecutive days; the course is `completed` when the last is infused."""
    responses = infuse_days(facility, patient, DAY0, 5)

    assert [r.json()["day_in_course"] for r in responses] == [1, 2, 3, 4, 5]
    course = Course.objects.get(patient=patient, number=1)
    assert (course.status, course.doses_given) == (CourseStatus.COMPLETED, 5)
    assert (course.first_infusion_on, course.last_infusion_on) == (DAY0, COURSE_1_LAST)
    listed = prescriber.get(f"/api/v1/patients/{patient.pk}/courses").json()
    assert [(c["status"], c["doses_given"], c["last_infusion_on"]) for c in listed] == [
        ("completed", 5, "2026-03-06")
    ]


def test_monitoring_ends_48_months_after_the_last_infusion(patient, facility, prescriber):
    """Monitoring runs until 48 months (*setting*) after the most recent infusion."""
    infuse_days(facility, patient, DAY0, 5)

    patient.refresh_from_db()
    assert (patient.first_infusion_on, patient.last_infusion_on) == (DAY0, COURSE_1_LAST)
    assert patient.monitoring_ends_on == dt.date(2030, 3, 6)
    assert prescriber.get(f"/api/v1/patients/{patient.pk}").json()["monitoring_ends_on"] == "2030-03-06"


def test_infusion_response_shows_the_monitoring_end_it_set(patient, facility):
    """The 201 body's `monitoring_ends_on` is the value after this infusion, not before it."""
    responses = infuse_days(facility, patient, DAY0, 2)

    assert [r.json()["monitoring_ends_on"] for r in responses] == ["2030-03-02", "2030-03-03"]


def test_a_new_course_pushes_the_monitoring_end_out(prescriber, facility):
    """Monitoring: a new course moves the end to 48 months after its last infusion; course 2 is
    completed after 3 doses (CRS-2)."""
    patient = _course_2_planned(prescriber, facility)
    responses = infuse_days(facility, patient, dt.date(2027, 3, 6), 3)

    assert [r.json()["day_in_course"] for r in responses] == [1, 2, 3]
    assert [r.json()["course_number"] for r in responses] == [2, 2, 2]
    patient.refresh_from_db()
    assert patient.monitoring_ends_on == dt.date(2031, 3, 8)
    assert Course.objects.get(patient=patient, number=2).status == CourseStatus.COMPLETED


# --- GATE-3: do_not_infuse, one reason at a time --------------------------------------------------------


def test_do_not_infuse_at_a_suspended_facility(patient, facility, admin):
    """GATE-3, ACT-5: a suspended facility records nothing: its writes are refused (403
    `participant_suspended`) before the gate, and no infusion is recorded."""
    participant_suspend(participant=facility.participant, actor=admin.user, reason="Inspection", now=NOW)
    response = facility.post(INFUSIONS, infusion_body(patient, DAY0))
    assert response.status_code == 403, response.json()
    assert response.json()["code"] == "participant_suspended"
    assert not Infusion.objects.exists()


def test_do_not_infuse_at_an_uncertified_facility(patient, facility):
    """GATE-3, ACT-1: a facility that is not certified (pending) fails the gate: `facility_not_certified`."""
    Facility.objects.filter(pk=facility.participant.pk).update(status="pending")
    body = _do_not_infuse(facility.post(INFUSIONS, infusion_body(patient, DAY0)), ["facility_not_certified"])
    assert body["reasons"] == [{"code": "facility_not_certified", "detail": "The facility is not certified."}]


@pytest.mark.parametrize("wrong", ["registry_id", "date_of_birth"])
def test_do_not_infuse_when_patient_not_found(patient, facility, wrong):
    """ID-4: an unknown registry ID and a date-of-birth mismatch both read `patient_not_found`."""
    overrides = (
        {"rems_patient_id": new_registry_id()}
        if wrong == "registry_id"
        else {"date_of_birth": (patient.date_of_birth - dt.timedelta(days=1)).isoformat()}
    )
    body = _do_not_infuse(
        facility.post(INFUSIONS, infusion_body(patient, DAY0, **overrides)), ["patient_not_found"]
    )
    assert body["reasons"] == [
        {"code": "patient_not_found", "detail": "No patient matches this registry ID and date of birth."}
    ]
    assert Decision.objects.get(pk=body["decision_id"]).patient is None


def test_do_not_infuse_a_patient_not_authorized(patient, facility, admin):
    """GATE-3, ACT-8: a suspended patient is not authorized."""
    patient_status_change(patient=patient, actor=admin.user, verb="suspend", reason="Review", now=NOW)
    _do_not_infuse(facility.post(INFUSIONS, infusion_body(patient, DAY0)), ["patient_not_authorized"])


def test_do_not_infuse_without_an_open_course(clock, prescriber, facility):
    """GATE-3: a dose belongs to the patient's open course."""
    patient = authorized_patient(prescriber)
    body = _do_not_infuse(facility.post(INFUSIONS, infusion_body(patient, DAY0)), ["no_open_course"])
    assert _stored(body)[0]["detail"] == "The patient has no planned or in-progress course."


def test_do_not_infuse_when_the_open_course_has_no_dose_left(patient, facility):
    """GATE-3: an open course whose planned doses are all given (imported history left open) allows no
    further dose."""
    Course.objects.filter(patient=patient).update(
        status=CourseStatus.IN_PROGRESS, doses_given=5, first_infusion_on=DAY0 - dt.timedelta(days=5)
    )
    body = _do_not_infuse(facility.post(INFUSIONS, infusion_body(patient, DAY0)), ["course_doses_exhausted"])
    assert _stored(body)[0]["detail"] == "Course 1 has no doses left to give."


def test_do_not_infuse_twice_on_one_day(patient, facility):
    """CRS-1: at most one infusion per calendar day."""
    assert facility.post(INFUSIONS, infusion_body(patient, DAY0, day=1)).status_code == 201
    body = _do_not_infuse(
        facility.post(INFUSIONS, infusion_body(patient, DAY0, day=2)), ["duplicate_infusion_day"], infusions=1
    )
    assert _stored(body)[0]["detail"] == "An infusion is already recorded for this day."
    assert Course.objects.get(patient=patient).doses_given == 1


def test_do_not_infuse_a_dose_other_than_12_mg(patient, facility):
    """CRS-1: every dose is 12 mg IV."""
    body = _do_not_infuse(
        facility.post(INFUSIONS, infusion_body(patient, DAY0, dose_mg=10)), ["invalid_dose"]
    )
    assert body["reasons"] == [{"code": "invalid_dose", "detail": "Each dose is 12 mg IV."}]


@pytest.mark.parametrize(("minutes", "status"), [(119, 409), (120, 201), (121, 201)])
def test_observation_must_last_at_least_120_minutes(patient, facility, minutes, status):
    """GATE-3: post-infusion observation of at least 120 minutes (*setting*)."""
    response = facility.post(INFUSIONS, infusion_body(patient, DAY0, observation_minutes=minutes))
    if status == 409:
        body = _do_not_infuse(response, ["observation_too_short"])
        assert _stored(body)[0]["detail"] == "Post-infusion observation must be at least 120 minutes."
    else:
        assert response.status_code == 201, response.json()
        assert Infusion.objects.get().observation_minutes == minutes


def test_do_not_infuse_without_corticosteroid_on_day_3(patient, facility):
    """GATE-3: corticosteroid premedication on days 1-3."""
    infuse_days(facility, patient, DAY0, 2)
    day_3 = DAY0 + dt.timedelta(days=2)
    response = infuse(facility, patient, day_3, day=3, corticosteroid_premedication=False)
    body = _do_not_infuse(response, ["premedication_missing"], infusions=2)
    assert _stored(body)[0]["detail"] == "Corticosteroid premedication is required on days 1-3."


def test_no_corticosteroid_needed_on_day_4(patient, facility):
    """GATE-3: premedication is required on days 1-3 only."""
    infuse_days(facility, patient, DAY0, 3)
    response = infuse(
        facility, patient, DAY0 + dt.timedelta(days=3), day=4, corticosteroid_premedication=False
    )
    assert response.status_code == 201, response.json()
    assert response.json()["day_in_course"] == 4


def test_do_not_infuse_without_antiviral_prophylaxis_on_day_1(patient, facility):
    """GATE-3: antiviral prophylaxis starts on day 1."""
    response = facility.post(INFUSIONS, infusion_body(patient, DAY0, antiviral_prophylaxis=False))
    body = _do_not_infuse(response, ["premedication_missing"])
    assert _stored(body)[0]["detail"] == "Antiviral prophylaxis must start on day 1."


def test_do_not_infuse_with_a_contraindication_recorded(patient, facility, prescriber):
    """ACT-9, GATE-4: a contraindication recorded at any time blocks the infusion."""
    add_contraindication(patient, prescriber.user, on=DAY0, kind="active_infection")
    body = _do_not_infuse(
        facility.post(INFUSIONS, infusion_body(patient, DAY0)), ["contraindication_recorded"]
    )
    assert _stored(body)[0]["detail"] == "Contraindication recorded: active_infection."


@pytest.mark.parametrize(
    ("on", "status"),
    [(dt.date(2027, 3, 5), 409), (dt.date(2027, 3, 6), 201), (dt.date(2027, 3, 7), 201)],
    ids=["day-before", "due-day", "day-after"],
)
def test_first_dose_of_course_2_waits_12_months_after_course_1(prescriber, facility, on, status):
    """CRS-2, GATE-4: checked on the infusion day itself, even when the course was planned for a later
    date: course 1 ended 2026-03-06, so course 2's first dose may be given from 2027-03-06."""
    patient = _course_2_planned(prescriber, facility)
    response = infuse(facility, patient, on, day=1)

    if status == 409:
        body = _do_not_infuse(response, ["course_interval_not_met"], infusions=5)
        assert _stored(body)[0]["detail"] == "Course 2 may not start before 2027-03-06."
    else:
        assert response.status_code == 201, response.json()
        assert (response.json()["course_number"], response.json()["day_in_course"]) == (2, 1)


def test_do_not_infuse_with_stale_pre_course_labs(prescriber, facility):
    """CRS-4, GATE-4: course 2's labs of 2027-03-01 are 35 days old on 2027-04-05: the first dose is
    refused although its doses were dispensed on 2027-03-06, when the labs were fresh (the labs are
    checked at the dispense authorization and again at the first dose)."""
    patient = _course_2_planned(prescriber, facility)
    with frozen(dt.date(2027, 3, 6)):
        assert supply(facility, patient, on=dt.date(2027, 3, 6)) is not None
    body = _do_not_infuse(
        infuse(facility, patient, dt.date(2027, 4, 5)), ["pre_course_labs_stale"], infusions=5
    )
    assert _stored(body)[0]["detail"] == (
        "Missing or older than 30 days: cbc_differential, serum_creatinine, urinalysis."
    )


def test_pre_course_labs_are_checked_for_the_first_dose_only(clock, facility, prescriber):
    """CRS-4: once a course has begun, later doses do not recheck the pre-course labs: labs 29 days old
    on day 1 are 31 days old on day 3, and day 3 is still given."""
    patient = authorized_patient(prescriber, labs_on=DAY0 - dt.timedelta(days=29))
    plan_course(prescriber, patient, start=DAY0)
    infuse_days(facility, patient, DAY0, 2)
    response = infuse(facility, patient, DAY0 + dt.timedelta(days=2), day=3)
    assert response.status_code == 201, response.json()
    assert response.json()["day_in_course"] == 3


def test_a_course_cannot_be_stretched_past_its_dose_window_CRS_2(patient, facility):
    """CRS-2: a course's doses are given on consecutive days; a missed day may be made up within 2 days
    (*setting*). Day 2 on day 1 + 6 (5 doses - 1 + 2) is given; a dose after that is refused, so a course
    cannot straddle the 12-month interval or outlive its pre-course labs."""
    assert infuse(facility, patient, DAY0, day=1).status_code == 201
    assert infuse(facility, patient, DAY0 + dt.timedelta(days=6), day=2).status_code == 201
    response = infuse(facility, patient, DAY0 + dt.timedelta(days=7), day=3)
    body = _do_not_infuse(response, ["course_dose_window_missed"], infusions=2)
    assert "its doses are given by 2026-03-08" in _stored(body)[0]["detail"]


def test_a_dose_cannot_be_backdated_before_the_previous_dose_CRS_2(patient, facility):
    """CRS-2: each dose comes after the one before; a facility back-dating day 2 before day 1 is refused."""
    with frozen(DAY0 + dt.timedelta(days=2)):
        assert (
            facility.post(INFUSIONS, infusion_body(patient, DAY0 + dt.timedelta(days=1))).status_code == 201
        )
        response = facility.post(INFUSIONS, infusion_body(patient, DAY0, day=2))
    _do_not_infuse(response, ["course_dose_window_missed"], infusions=1)


def test_do_not_infuse_lists_every_reason_at_once(patient, facility, prescriber):
    """GATE-3: a failed check names every failed requirement, not just the first."""
    add_contraindication(patient, prescriber.user, on=DAY0)
    response = facility.post(
        INFUSIONS,
        infusion_body(patient, DAY0, dose_mg=10, antiviral_prophylaxis=False, observation_minutes=60),
    )
    _do_not_infuse(
        response,
        ["contraindication_recorded", "invalid_dose", "premedication_missing", "observation_too_short"],
    )


# --- GATE-3: the check endpoint -------------------------------------------------------------------------


def test_check_answers_infuse_and_records_no_infusion(patient, facility):
    """GATE-3: the same check, nothing recorded but the decision."""
    response = facility.post(CHECK, infusion_body(patient, DAY0))

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["decision"], body["reasons"], body["day_in_course"]) == ("infuse", [], 1)
    assert not Infusion.objects.exists()
    assert Course.objects.get(patient=patient).doses_given == 0
    decision = Decision.objects.get(pk=body["decision_id"])
    assert (decision.kind, decision.outcome) == (DecisionKind.INFUSION_CHECK, DecisionOutcome.APPROVED)


def test_check_answers_do_not_infuse_with_reasons(patient, facility):
    """GATE-3: the check answers `do_not_infuse` with every reason, 200, and records no infusion."""
    response = facility.post(CHECK, infusion_body(patient, DAY0, dose_mg=10, observation_minutes=119))

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["decision"] == "do_not_infuse"
    assert [r["code"] for r in body["reasons"]] == ["invalid_dose", "observation_too_short"]
    assert not Infusion.objects.exists()
    decision = Decision.objects.get(pk=body["decision_id"])
    assert (decision.kind, decision.outcome) == (DecisionKind.INFUSION_CHECK, DecisionOutcome.DENIED)


def test_check_then_record_gives_the_same_day(patient, facility):
    """GATE-3: a check does not consume a day of the course."""
    assert facility.post(CHECK, infusion_body(patient, DAY0)).json()["decision"] == "infuse"
    assert facility.post(INFUSIONS, infusion_body(patient, DAY0)).json()["day_in_course"] == 1


# --- Dates: future, facility backdating, admin legacy history ---------------------------------------------


def test_future_infusion_is_refused(patient, facility):
    """API.md: nobody may record a future infusion."""
    response = facility.post(INFUSIONS, infusion_body(patient, DAY0 + dt.timedelta(days=1)))

    assert response.status_code == 400
    assert response.json()["errors"] == {"administered_on": ["Cannot be in the future."]}
    assert not Infusion.objects.exists()


@pytest.mark.parametrize(("days_back", "status"), [(3, 201), (4, 400)])
def test_facility_may_backdate_up_to_3_days(patient, facility, days_back, status):
    """API.md: facilities may backdate up to 3 days (*setting*)."""
    with frozen(DAY0 + dt.timedelta(days=days_back)):
        response = facility.post(INFUSIONS, infusion_body(patient, DAY0))

    assert response.status_code == status, response.json()
    if status == 400:
        assert response.json()["errors"] == {
            "administered_on": ["Facilities may record infusions at most 3 days back."]
        }
        assert not Infusion.objects.exists()
    else:
        assert Infusion.objects.get().administered_on == DAY0


def test_admin_records_a_legacy_infusion_naming_the_facility(patient, facility, admin):
    """API.md: an admin may record a past infusion of any date (legacy history), naming the facility."""
    with frozen(dt.date(2026, 4, 1)):
        response = admin.post(INFUSIONS, infusion_body(patient, DAY0, facility_npi=facility.participant.npi))

    assert response.status_code == 201, response.json()
    infusion = Infusion.objects.get(pk=response.json()["id"])
    assert (infusion.administered_on, infusion.facility, infusion.recorded_by) == (
        DAY0,
        facility.participant,
        admin.user,
    )


def test_admin_infusion_without_facility_npi_is_refused(patient, admin):
    """API.md: an admin recording an infusion must name the facility."""
    response = admin.post(INFUSIONS, infusion_body(patient, DAY0))

    assert response.status_code == 400
    assert response.json()["errors"] == {
        "facility_npi": ["Required when an administrator records an infusion."]
    }
    assert not Infusion.objects.exists()


# --- Permissions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [INFUSIONS, CHECK])
@pytest.mark.parametrize(
    ("persona", "status"), [("pharmacy", 403), ("prescriber", 403), ("delegate", 403), ("anon", 401)]
)
def test_only_facilities_and_admins_record_or_check_infusions(request, patient, path, persona, status):
    """GATE-3, STYLE.md 3: facilities (and admins) record and check; other roles 403, no key 401."""
    response = request.getfixturevalue(persona).post(path, infusion_body(patient, DAY0))

    assert response.status_code == status
    assert not Infusion.objects.exists()
    assert not Decision.objects.filter(kind__in=[DecisionKind.INFUSION, DecisionKind.INFUSION_CHECK]).exists()
