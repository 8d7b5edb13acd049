"""Course planning and cancelling through the API (CRS-2, CRS-3, CRS-4, GATE-5).

POST /api/v1/patients/{id}/courses answers 201 with the course, or 409 `course_not_allowed` listing every
reason. Course 1 has 5 doses, later courses 3, each no earlier than 12 calendar months after the last
infusion of any prior course (tested on the day before, the day and the day after).
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError, transaction

from registry.models import (
    AuthorizationStatus,
    Course,
    CourseStatus,
    Decision,
    DecisionKind,
    DecisionOutcome,
    DispenseAuthorization,
)
from registry.services.enrollment import patient_status_change
from registry.services.gate import PENDING_DETAIL

from .gate_helpers import (
    COURSE_1_LAST,
    DAY0,
    PRE_COURSE_LABS,
    add_contraindication,
    approved_number,
    authorized_patient,
    course_path,
    enroll_patient,
    frozen,
    infuse_days,
    moment,
    monitoring_kept_up,
    patient_after_course_1,
    plan_course,
    record_labs,
    record_screening,
    request_authorization,
)

pytestmark = pytest.mark.django_db

COURSE_2_EARLIEST = dt.date(2027, 3, 6)  # 12 calendar months after 2026-03-06 (CRS-2)
COURSE_2_LABS_ON = dt.date(2027, 3, 1)
STALE = "Missing or older than 30 days: cbc_differential, serum_creatinine, urinalysis."


def reason_list(response):
    assert response.status_code == 409, response.json()
    assert response.json()["code"] == "course_not_allowed"
    return [r["code"] for r in response.json()["reasons"]]


def _refused(response, reasons):
    assert response.status_code == 409, response.json()
    body = response.json()
    assert body["code"] == "course_not_allowed"
    assert body["reasons"] == reasons


# --- CRS-2: doses per course ------------------------------------------------------------------------------


def test_course_1_is_planned_with_5_doses(prescriber):
    """CRS-2: course 1 is 5 doses; it starts `planned` (CRS-3)."""
    with frozen(DAY0):
        patient = authorized_patient(prescriber)
        response = prescriber.post(course_path(patient), {"planned_start_on": "2026-03-02"})

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["number"], body["planned_doses"], body["status"]) == (1, 5, "planned")
    assert (body["doses_given"], body["planned_start_on"], body["patient"]) == (
        0,
        "2026-03-02",
        str(patient.pk),
    )
    course = Course.objects.get(pk=body["id"])
    assert (course.number, course.planned_doses, course.status) == (1, 5, CourseStatus.PLANNED)
    decision = Decision.objects.get(kind=DecisionKind.COURSE_PLAN, patient=patient)
    assert decision.outcome == DecisionOutcome.APPROVED
    assert all(r["met"] for r in decision.requirements)


def test_course_2_is_planned_with_3_doses(prescriber, facility):
    """CRS-2: course 2 is 3 doses (36 mg)."""
    patient = patient_after_course_1(prescriber, facility)
    with frozen(COURSE_2_EARLIEST):
        record_labs(patient, prescriber.user, collected_on=COURSE_2_LABS_ON, tests=PRE_COURSE_LABS)
        response = prescriber.post(course_path(patient), {"planned_start_on": "2027-03-06"})

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["number"], body["planned_doses"], body["status"]) == (2, 3, "planned")
    listed = prescriber.get(course_path(patient)).json()
    assert [(c["number"], c["status"], c["planned_doses"], c["doses_given"]) for c in listed] == [
        (1, "completed", 5, 5),
        (2, "planned", 3, 0),
    ]
    assert (listed[0]["first_infusion_on"], listed[0]["last_infusion_on"]) == ("2026-03-02", "2026-03-06")


# --- CRS-2: the 12-month interval, the day before, the day and the day after --------------------------------


@pytest.mark.parametrize(
    ("start", "allowed"),
    [(dt.date(2027, 3, 5), False), (dt.date(2027, 3, 6), True), (dt.date(2027, 3, 7), True)],
    ids=["day-before", "due-day", "day-after"],
)
def test_course_2_allowed_from_12_months_after_last_infusion_of_course_1(
    prescriber, facility, start, allowed
):
    """CRS-2: course 1 ended 2026-03-06, so course 2 may start on 2027-03-06 and not a day earlier."""
    patient = patient_after_course_1(prescriber, facility)
    assert patient.last_infusion_on == COURSE_1_LAST
    with frozen(start):
        record_labs(patient, prescriber.user, collected_on=COURSE_2_LABS_ON, tests=PRE_COURSE_LABS)
        response = prescriber.post(course_path(patient), {"planned_start_on": start.isoformat()})

    if allowed:
        assert response.status_code == 201, response.json()
        assert (response.json()["number"], response.json()["planned_doses"]) == (2, 3)
    else:
        _refused(
            response,
            [{"code": "course_interval_not_met", "detail": "Course 2 may not start before 2027-03-06."}],
        )
        assert list(patient.courses.values_list("number", flat=True)) == [1]


@pytest.mark.parametrize(
    ("start", "allowed"),
    [(dt.date(2028, 3, 7), False), (dt.date(2028, 3, 8), True), (dt.date(2028, 3, 9), True)],
    ids=["day-before", "due-day", "day-after"],
)
def test_course_3_allowed_from_12_months_after_last_infusion_of_course_2(
    prescriber, facility, start, allowed
):
    """CRS-2: course 3 and later start no earlier than 12 months after the last infusion of any prior
    course: course 2 ran 2027-03-06..08, so course 3 may start on 2028-03-08."""
    patient = patient_after_course_1(prescriber, facility)
    with frozen(COURSE_2_EARLIEST):
        record_labs(patient, prescriber.user, collected_on=COURSE_2_LABS_ON, tests=PRE_COURSE_LABS)
        plan_course(prescriber, patient, start=COURSE_2_EARLIEST)
    infuse_days(facility, patient, COURSE_2_EARLIEST, 3)
    assert list(patient.courses.values_list("number", "status", "last_infusion_on")) == [
        (1, "completed", COURSE_1_LAST),
        (2, "completed", dt.date(2027, 3, 8)),
    ]
    monitoring_kept_up(patient, prescriber, on=dt.date(2028, 1, 31))  # MON-1..4: current for course 3
    with frozen(start):
        record_labs(patient, prescriber.user, collected_on=dt.date(2028, 3, 1), tests=PRE_COURSE_LABS)
        response = prescriber.post(course_path(patient), {"planned_start_on": start.isoformat()})

    if allowed:
        assert response.status_code == 201, response.json()
        assert (response.json()["number"], response.json()["planned_doses"]) == (3, 3)
    else:
        _refused(
            response,
            [{"code": "course_interval_not_met", "detail": "Course 3 may not start before 2028-03-08."}],
        )
        assert patient.courses.count() == 2


# --- course_not_allowed: each reason --------------------------------------------------------------------


def test_course_refused_for_patient_not_authorized(prescriber):
    """ACT-7, CRS-3: an enrolled patient who is not yet authorized cannot have a course."""
    with frozen(DAY0):
        patient = enroll_patient(prescriber)
        record_labs(patient, prescriber.user, collected_on=DAY0 - dt.timedelta(days=3))
        record_screening(patient, prescriber.user, on=DAY0)
        response = prescriber.post(course_path(patient), {"planned_start_on": "2026-03-02"})

    _refused(
        response, [{"code": "patient_not_authorized", "detail": "The patient is enrolled, not authorized."}]
    )
    assert not Course.objects.filter(patient=patient).exists()


def test_course_refused_with_contraindication_recorded(prescriber):
    """ACT-9, GATE-4: a recorded contraindication blocks a new course."""
    with frozen(DAY0):
        patient = authorized_patient(prescriber)
        add_contraindication(patient, prescriber.user, on=DAY0, kind="hypersensitivity")
        response = prescriber.post(course_path(patient), {"planned_start_on": "2026-03-02"})

    _refused(
        response,
        [{"code": "contraindication_recorded", "detail": "Contraindication recorded: hypersensitivity."}],
    )
    assert not Course.objects.filter(patient=patient).exists()


def test_second_course_refused_while_one_is_open(prescriber):
    """CRS-3: at most one open course per patient."""
    with frozen(DAY0):
        patient = authorized_patient(prescriber)
        first = prescriber.post(course_path(patient), {"planned_start_on": "2026-03-02"})
        second = prescriber.post(course_path(patient), {"planned_start_on": "2026-03-03"})

    assert first.status_code == 201
    _refused(second, [{"code": "open_course_exists", "detail": "Course 1 is still planned."}])
    assert Course.objects.filter(patient=patient).count() == 1


COURSE_2_PENDING = [
    {"requirement": "pre_course_labs_fresh", "code": "pre_course_labs_stale", "detail": PENDING_DETAIL}
]
COURSE_1_PENDING = [
    {"requirement": "pre_course_labs_fresh", "code": "pre_course_labs_stale", "detail": PENDING_DETAIL},
    {"requirement": "course_1_baseline_labs", "code": "baseline_incomplete", "detail": PENDING_DETAIL},
    {"requirement": "course_1_screening", "code": "screening_incomplete", "detail": PENDING_DETAIL},
    {"requirement": "course_1_pregnancy_test", "code": "pregnancy_test_required", "detail": PENDING_DETAIL},
]


def test_course_2_with_stale_labs_is_planned_with_the_labs_pending_CRS_4(prescriber, facility, pharmacy):
    """CRS-4, issue 9 item 5: the pre-course labs depend on the day of the first dose, so planning lists
    them as pending (in the 201 and in the stored decision) instead of refusing; course 1's labs from 2026
    do not count for course 2 at the dispense authorization, which is refused `pre_course_labs_stale`."""
    patient = patient_after_course_1(prescriber, facility)
    with frozen(COURSE_2_EARLIEST):
        response = prescriber.post(course_path(patient), {"planned_start_on": "2027-03-06"})
        denied = request_authorization(pharmacy, patient, prescriber, facility, doses=3)

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["number"], body["planned_doses"], body["pending"]) == (2, 3, COURSE_2_PENDING)
    decision = Decision.objects.get(pk=body["decision_id"])
    assert (decision.outcome, decision.reasons, decision.pending) == ("approved", [], COURSE_2_PENDING)
    assert "pre_course_labs_fresh" not in [r["requirement"] for r in decision.requirements]
    assert denied.json()["decision"] == "denied"
    assert [r["code"] for r in denied.json()["reasons"]] == ["pre_course_labs_stale"]


@pytest.mark.parametrize(
    ("authorized_on", "decision"),
    [(dt.date(2027, 3, 5), "approved"), (dt.date(2027, 3, 6), "approved"), (dt.date(2027, 3, 7), "denied")],
    ids=["day-29", "day-30", "day-31"],
)
def test_pre_course_labs_are_judged_on_the_authorization_day_CRS_4(
    prescriber, facility, pharmacy, authorized_on, decision
):
    """CRS-4, GATE-1, issue 9 item 5: at the dispense authorization the labs are judged against its own
    day: 30 days is the limit (a serum creatinine of 2027-02-04 holds on 2027-03-05 and 2027-03-06, not on
    2027-03-07)."""
    patient = patient_after_course_1(prescriber, facility)
    with frozen(dt.date(2027, 3, 1)):
        record_labs(
            patient,
            prescriber.user,
            collected_on=dt.date(2027, 3, 1),
            tests=["cbc_differential", "urinalysis"],
        )
        record_labs(patient, prescriber.user, collected_on=dt.date(2027, 2, 4), tests=["serum_creatinine"])
    plan_course(prescriber, patient, start=COURSE_2_EARLIEST, on=dt.date(2027, 3, 1))
    with frozen(authorized_on):
        response = request_authorization(pharmacy, patient, prescriber, facility, doses=3)

    assert response.json()["decision"] == decision, response.json()
    if decision == "denied":
        assert [r["code"] for r in response.json()["reasons"]] == ["pre_course_labs_stale"]
        stored = Decision.objects.get(pk=response.json()["id"]).reasons
        assert stored == [
            {"code": "pre_course_labs_stale", "detail": "Missing or older than 30 days: serum_creatinine."}
        ]


def test_course_1_planned_weeks_ahead_lists_the_full_baseline_pending_CRS_4(prescriber):
    """CRS-4, issue 9 item 5: course 1 planned four weeks ahead (labs of 2026-02-27 will be 31 days old)
    is planned; the pre-course labs and the full ACT-7 baseline are pending, for the dispense
    authorization and the first dose to check."""
    with frozen(DAY0):
        patient = authorized_patient(prescriber)  # labs of 2026-02-27
        response = prescriber.post(course_path(patient), {"planned_start_on": "2026-03-30"})

    assert response.status_code == 201, response.json()
    assert response.json()["pending"] == COURSE_1_PENDING


def test_course_planned_a_year_ahead_is_allowed_CRS_4(prescriber):
    """Issue 9 item 5: a plan up to a year ahead is no longer refused for labs that cannot exist yet."""
    with frozen(DAY0):
        patient = authorized_patient(prescriber)
        response = prescriber.post(course_path(patient), {"planned_start_on": "2027-03-02"})

    assert response.status_code == 201, response.json()
    assert response.json()["planned_start_on"] == "2027-03-02"


def test_course_refusal_lists_every_reason_at_once(prescriber, facility):
    """CRS-2..4, GATE-4: a refusal lists every unmet requirement, not just the first (the labs are pending,
    not reasons: issue 9 item 5)."""
    patient = patient_after_course_1(prescriber, facility)
    with frozen(dt.date(2027, 3, 5)):
        add_contraindication(patient, prescriber.user, on=dt.date(2027, 3, 5), kind="active_infection")
        response = prescriber.post(course_path(patient), {"planned_start_on": "2027-03-05"})

    _refused(
        response,
        [
            {"code": "contraindication_recorded", "detail": "Contraindication recorded: active_infection."},
            {"code": "course_interval_not_met", "detail": "Course 2 may not start before 2027-03-06."},
        ],
    )


def test_course_refusal_lists_suspension_contraindication_and_open_course_together(prescriber, admin):
    """ACT-8, ACT-9, CRS-3: every reason at once."""
    with frozen(DAY0):
        patient = authorized_patient(prescriber)
        plan_course(prescriber, patient, start=DAY0)
        add_contraindication(patient, prescriber.user, on=DAY0, kind="hiv")
        patient_status_change(
            patient=patient, actor=admin.user, verb="suspend", reason="Review", now=moment(DAY0)
        )
        response = prescriber.post(course_path(patient), {"planned_start_on": "2026-03-03"})

    assert reason_list(response) == [
        "patient_not_authorized",
        "contraindication_recorded",
        "open_course_exists",
    ]


def test_refused_course_plan_is_stored_as_a_denied_decision(prescriber):
    """GATE-5: the refusal is stored with every requirement evaluated and the settings in force."""
    with frozen(DAY0):
        patient = authorized_patient(prescriber)
        plan_course(prescriber, patient, start=DAY0)
        response = prescriber.post(course_path(patient), {"planned_start_on": "2026-03-03"})

    assert response.status_code == 409
    decisions = Decision.objects.filter(kind=DecisionKind.COURSE_PLAN, patient=patient)
    assert sorted(d.outcome for d in decisions) == [DecisionOutcome.APPROVED, DecisionOutcome.DENIED]
    denied = decisions.get(outcome=DecisionOutcome.DENIED)
    assert denied.actor == prescriber.user
    assert denied.reasons == [{"code": "open_course_exists", "detail": "Course 1 is still planned."}]
    assert [r["requirement"] for r in denied.requirements if not r["met"]] == ["no_open_course"]
    assert denied.program_settings["course_interval_months"] == 12
    assert denied.program_settings["course_interval_months"] == 12


def test_refused_course_plan_with_idempotency_key_still_stores_its_decision(prescriber):
    """GATE-5: every check, approved or denied, is stored, also when the client sends an Idempotency-Key
    (the refusal must not roll the decision back with the idempotency claim)."""
    with frozen(DAY0):
        patient = authorized_patient(prescriber)
        plan_course(prescriber, patient, start=DAY0)
        response = prescriber.post(
            course_path(patient), {"planned_start_on": "2026-03-03"}, HTTP_IDEMPOTENCY_KEY="plan-2"
        )

    assert response.status_code == 409
    outcomes = Decision.objects.filter(kind=DecisionKind.COURSE_PLAN, patient=patient).values_list(
        "outcome", flat=True
    )
    assert sorted(outcomes) == [DecisionOutcome.APPROVED, DecisionOutcome.DENIED]


def test_course_start_in_the_past_is_refused_for_the_prescriber(prescriber):
    """CRS-2: a prescriber plans forward; a start before today is a validation error, not a decision."""
    with frozen(DAY0):
        patient = authorized_patient(prescriber)
        response = prescriber.post(course_path(patient), {"planned_start_on": "2026-03-01"})

    assert response.status_code == 400
    assert response.json()["errors"] == {"planned_start_on": ["Cannot be in the past."]}


# --- Permissions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "status"),
    [
        ("prescriber", 201),
        ("admin", 201),
        ("delegate", 403),
        ("other_prescriber", 404),
        ("pharmacy", 403),
        ("facility", 403),
        ("anon", 401),
    ],
)
def test_course_plan_permission_matrix(request, prescriber, persona, status):
    """API.md: the prescriber of record (or an admin) plans; a delegate may not; other prescribers do
    not see the patient."""
    caller = request.getfixturevalue(persona)
    with frozen(DAY0):
        patient = authorized_patient(prescriber)
        response = caller.post(course_path(patient), {"planned_start_on": "2026-03-02"})

    assert response.status_code == status
    assert Course.objects.filter(patient=patient).count() == (1 if status == 201 else 0)


# --- CRS-3: cancelling ---------------------------------------------------------------------------------


def test_cancel_course_with_reason_revokes_its_active_authorizations(prescriber, facility, pharmacy):
    """CRS-3: a cancelled course is `cancelled` with its reason; its active dispense authorizations are
    revoked at once (a used one stays used)."""
    with frozen(DAY0):
        patient = authorized_patient(prescriber)
        course = plan_course(prescriber, patient, start=DAY0)
        used = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=2))
        assert (
            pharmacy.post("/api/v1/dispenses", {"authorization_number": used, "vials": 2}).status_code == 201
        )
        active = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=3))

        response = prescriber.post(f"/api/v1/courses/{course.pk}/cancel", {"reason": "Patient relocated"})

        assert response.status_code == 200, response.json()
        body = response.json()
        assert (body["status"], body["cancelled_reason"]) == ("cancelled", "Patient relocated")
        assert body["cancelled_at"] is not None
        course.refresh_from_db()
        assert course.status == CourseStatus.CANCELLED
        revoked = DispenseAuthorization.objects.get(number=active)
        assert revoked.status == AuthorizationStatus.REVOKED
        assert revoked.revoke_reason == "Course cancelled: Patient relocated"
        assert revoked.revoked_by == prescriber.user
        assert DispenseAuthorization.objects.get(number=used).status == AuthorizationStatus.USED
        assert pharmacy.get(f"/api/v1/dispense-authorizations/{active}").json()["status"] == "revoked"
        refused = pharmacy.post("/api/v1/dispenses", {"authorization_number": active, "vials": 3})
        assert (refused.status_code, refused.json()["code"]) == (409, "authorization_revoked")


def test_cancelled_course_frees_the_patient_for_a_new_course_1(prescriber):
    """CRS-3: a cancelled course is no longer open; a course cancelled before any dose does not count."""
    with frozen(DAY0):
        patient = authorized_patient(prescriber)
        course = plan_course(prescriber, patient, start=DAY0)
        prescriber.post(f"/api/v1/courses/{course.pk}/cancel", {"reason": "Rescheduled"})
        response = prescriber.post(course_path(patient), {"planned_start_on": "2026-03-03"})

    assert response.status_code == 201, response.json()
    assert (response.json()["number"], response.json()["planned_doses"]) == (1, 5)


def test_cancel_course_requires_a_reason(prescriber):
    """CRS-3: a course is cancelled *with a reason*."""
    with frozen(DAY0):
        patient = authorized_patient(prescriber)
        course = plan_course(prescriber, patient, start=DAY0)
        response = prescriber.post(f"/api/v1/courses/{course.pk}/cancel", {})

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["reason"]
    course.refresh_from_db()
    assert course.status == CourseStatus.PLANNED


def test_cancelling_a_completed_course_is_an_invalid_transition(prescriber, facility):
    """CRS-3: only an open course (planned or in progress) can be cancelled."""
    patient = patient_after_course_1(prescriber, facility)
    course = patient.courses.get(number=1)
    with frozen(dt.date(2026, 3, 7)):
        response = prescriber.post(f"/api/v1/courses/{course.pk}/cancel", {"reason": "Too late"})

    assert response.status_code == 409
    assert response.json()["code"] == "invalid_status_transition"
    course.refresh_from_db()
    assert (course.status, course.cancelled_reason) == (CourseStatus.COMPLETED, "")


@pytest.mark.parametrize(
    ("persona", "status"),
    [("delegate", 403), ("other_prescriber", 404), ("pharmacy", 403), ("facility", 403), ("anon", 401)],
)
def test_cancel_course_permission_matrix(request, prescriber, persona, status):
    """CRS-3, STYLE.md 3: only the prescriber of record (or an admin) cancels; others are refused."""
    caller = request.getfixturevalue(persona)
    with frozen(DAY0):
        patient = authorized_patient(prescriber)
        course = plan_course(prescriber, patient, start=DAY0)
        response = caller.post(f"/api/v1/courses/{course.pk}/cancel", {"reason": "No"})

    assert response.status_code == status
    course.refresh_from_db()
    assert course.status == CourseStatus.PLANNED


# --- CRS-3 in the database -----------------------------------------------------------------------------


def test_one_open_course_per_patient_is_a_database_constraint(prescriber):
    """CRS-3, STYLE.md 7: a second open course inserted behind the services' back is refused by the
    partial unique index, not by Python."""
    with frozen(DAY0):
        patient = authorized_patient(prescriber)
        plan_course(prescriber, patient, start=DAY0)

    # PostgreSQL names the index; SQLite (the quick start) names its column.
    refused = "one_open_course_per_patient|UNIQUE constraint failed: registry_course.patient_id"
    with pytest.raises(IntegrityError, match=refused), transaction.atomic():
        Course.objects.create(
            patient=patient,
            number=2,
            planned_doses=3,
            status=CourseStatus.IN_PROGRESS,
            planned_start_on=DAY0,
            planned_by=prescriber.user,
        )
    assert Course.objects.filter(patient=patient).count() == 1


def test_closed_courses_do_not_count_against_the_open_course_constraint(prescriber):
    """CRS-3: completed and cancelled courses may coexist with one open course."""
    with frozen(DAY0):
        patient = authorized_patient(prescriber)
    for number, status in (
        (1, CourseStatus.COMPLETED),
        (2, CourseStatus.CANCELLED),
        (3, CourseStatus.PLANNED),
    ):
        Course.objects.create(
            patient=patient,
            number=number,
            planned_doses=5 if number == 1 else 3,
            status=status,
            planned_start_on=DAY0,
            planned_by=prescriber.user,
        )
    assert Course.objects.filter(patient=patient).count() == 3
