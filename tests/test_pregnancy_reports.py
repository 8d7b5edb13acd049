"""Pregnancy reports through the API (PRG-1..3, PRG-5).

POST /api/v1/pregnancy-reports files a report for a patient of reproductive potential (dates derived from
the LMP when not given, PRG-2) and answers the exposure the registry computed from the patient's infusions,
naming the course; PATCH corrects dates (exposure recomputed and audited), records the outcome (PRG-3) and
the infant follow-up; GET lists and reads reports of visible patients only. Reports are kept forever.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import DatabaseError, connection, transaction

from registry.models import AuditEvent, Exposure, PregnancyReport, PregnancyStatus
from registry.services.enrollment import patient_status_change

from .gate_helpers import (
    COURSE_1_LAST,
    DAY0,
    enroll_patient,
    frozen,
    infuse,
    infuse_days,
    moment,
    plan_course,
    prior_courses_orm,
)
from .pregnancy_helpers import (
    COURSE_1_WINDOW_ENDS,
    COURSE_2_FIRST,
    COURSE_2_LAST,
    COURSE_2_WINDOW_ENDS,
    LIVE_BIRTH,
    REPORTS,
    file_report,
    file_report_api,
    patch_report,
    report_path,
    rp_patient,
)

pytestmark = pytest.mark.django_db

D = dt.date
DAY = dt.timedelta(days=1)


def _errors(response):
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["code"] == "validation_error"
    return body["errors"]


@pytest.fixture
def patient(prescriber):
    """Enrolled 2026-03-02, of reproductive potential, never infused."""
    with frozen(DAY0):
        return rp_patient(prescriber, authorize=False)


@pytest.fixture
def two_courses(prescriber, admin, facility):
    """A patient of reproductive potential with course 1 (2026-03-02..06) and course 2 (2027-03-06..08)
    on record (imported history)."""
    with frozen(DAY0):
        patient = rp_patient(prescriber, authorize=False)
    prior_courses_orm(
        patient, actor=admin.user, facility=facility.participant, first_days=[DAY0, COURSE_2_FIRST]
    )
    patient.refresh_from_db()
    return patient


# --- PRG-2: filing, with the dates derived ----------------------------------------------------------------


def test_report_from_lmp_derives_conception_and_due_date(prescriber, patient):
    """PRG-2: only the LMP given: conception = LMP + 14 days, due = LMP + 280 days; the report is open,
    not exposed (no infusion yet), filed by the caller and audited."""
    response = file_report_api(prescriber, patient, on=D(2026, 3, 20), lmp_on="2026-02-01")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["lmp_on"], body["estimated_conception_on"], body["estimated_due_on"]) == (
        "2026-02-01",
        "2026-02-15",
        "2026-11-08",
    )
    assert (body["conception_derived"], body["due_on_derived"]) == (True, True)
    assert (body["exposure"], body["exposed_course"], body["exposed_course_number"]) == (
        "not_exposed",
        None,
        None,
    )
    assert (body["status"], body["outcome"], body["maternal_thyroid_status"]) == ("open", None, None)
    assert (body["patient"], body["rems_patient_id"], body["reported_by"]) == (
        str(patient.pk),
        patient.rems_patient_id,
        str(prescriber.user.pk),
    )
    assert (body["reported_on"], body["outcome_overdue_on"], body["infant_follow_up_due_on"]) == (
        "2026-03-20",
        "2026-12-08",  # due + 30 days (PRG-4)
        None,
    )
    report = PregnancyReport.objects.get(pk=body["id"])
    assert (report.patient_id, report.status, report.exposure) == (patient.pk, "open", "not_exposed")
    event = AuditEvent.objects.get(action="pregnancy_report.file", subject_id=report.pk)
    assert event.actor == prescriber.user
    assert event.changes["exposure"] == "not_exposed"
    assert event.changes["estimated_conception_on"] == "2026-02-15"
    assert event.changes["authorizations_revoked"] == 0


def test_report_from_conception_derives_due_date_266_days_later(prescriber, patient):
    """PRG-2: only the conception date given: due = conception + 266 days; no LMP."""
    response = file_report_api(prescriber, patient, on=D(2026, 3, 20), estimated_conception_on="2026-02-15")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["lmp_on"], body["estimated_conception_on"], body["estimated_due_on"]) == (
        None,
        "2026-02-15",
        "2026-11-08",
    )
    assert (body["conception_derived"], body["due_on_derived"]) == (False, True)


def test_report_keeps_dates_that_are_given(prescriber, patient):
    """PRG-2: dates given are stored as given; nothing is derived."""
    response = file_report_api(
        prescriber,
        patient,
        on=D(2026, 3, 20),
        lmp_on="2026-02-01",
        estimated_conception_on="2026-02-18",
        estimated_due_on="2026-11-12",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["estimated_conception_on"], body["estimated_due_on"]) == ("2026-02-18", "2026-11-12")
    assert (body["conception_derived"], body["due_on_derived"]) == (False, False)


def test_report_needs_lmp_or_conception_date(prescriber, patient):
    response = file_report_api(prescriber, patient, on=D(2026, 3, 20))

    assert _errors(response) == {
        "lmp_on": ["Give the last menstrual period or the estimated conception date."]
    }
    assert PregnancyReport.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {"reported_on": "2026-03-21", "lmp_on": "2026-02-01"},
            {"reported_on": ["Cannot be in the future."]},
        ),
        ({"lmp_on": "2026-03-21"}, {"lmp_on": ["Cannot be in the future."]}),
        ({"lmp_on": "9999-12-31"}, {"lmp_on": ["Cannot be in the future."]}),
        # LMP in the past, but LMP + 14 days (the derived conception) is tomorrow.
        ({"lmp_on": "2026-03-07"}, {"lmp_on": ["The estimated conception date cannot be in the future."]}),
        (
            {"estimated_conception_on": "2026-03-21"},
            {"estimated_conception_on": ["Cannot be in the future."]},
        ),
        (
            {"estimated_conception_on": "9999-12-31"},
            {"estimated_conception_on": ["Cannot be in the future."]},
        ),
        (
            {"estimated_conception_on": "2026-02-15", "estimated_due_on": "9999-12-31"},
            {"estimated_due_on": ["Must be within 44 weeks of the estimated conception date."]},
        ),
        (
            {"reported_on": "2026-02-10", "estimated_conception_on": "2026-02-15"},
            {"estimated_conception_on": ["The estimated conception date cannot be after the report date."]},
        ),
        (
            {"lmp_on": "2026-02-10", "estimated_conception_on": "2026-02-01"},
            {"estimated_conception_on": ["Cannot be before the last menstrual period."]},
        ),
        (
            {"estimated_conception_on": "2026-02-15", "estimated_due_on": "2026-02-15"},
            {"estimated_due_on": ["Must be after the estimated conception date."]},
        ),
        (
            {"estimated_conception_on": "2026-02-15", "estimated_due_on": "2026-12-21"},  # 44 weeks + 1 day
            {"estimated_due_on": ["Must be within 44 weeks of the estimated conception date."]},
        ),
    ],
    ids=[
        "report-tomorrow",
        "lmp-tomorrow",
        "lmp-year-9999",
        "derived-conception-tomorrow",
        "conception-tomorrow",
        "conception-year-9999",
        "due-year-9999",
        "conception-after-report",
        "conception-before-lmp",
        "due-not-after-conception",
        "due-beyond-44-weeks",
    ],
)
def test_report_refuses_future_and_inconsistent_dates(prescriber, patient, body, errors):
    """PRG-2: no date in the future (today is 2026-03-20); conception between LMP and the report date;
    the due date after conception. Nothing is stored."""
    payload = {"reported_on": "2026-03-20", **body}
    with frozen(D(2026, 3, 20)):
        response = prescriber.post(REPORTS, {"patient": str(patient.pk), **payload})

    assert _errors(response) == errors
    assert PregnancyReport.objects.count() == 0


def test_report_today_with_conception_today_is_accepted(prescriber, patient):
    """PRG-2: the day itself is not in the future."""
    response = file_report_api(prescriber, patient, on=D(2026, 3, 20), estimated_conception_on="2026-03-20")
    assert response.status_code == 201, response.json()


def test_report_refused_for_patient_without_reproductive_potential(prescriber):
    """PRG-2: a report is filed for a patient of reproductive potential only: 409, nothing stored."""
    with frozen(DAY0):
        patient = enroll_patient(prescriber, sex="female", reproductive_potential=False)
    response = file_report_api(prescriber, patient, on=D(2026, 3, 20), lmp_on="2026-02-01")

    assert response.status_code == 409
    assert response.json() == {
        "code": "no_reproductive_potential",
        "detail": "The patient is not of reproductive potential; no pregnancy report can be filed.",
    }
    assert PregnancyReport.objects.count() == 0


def test_second_open_report_refused_but_allowed_once_the_first_has_an_outcome(prescriber, patient):
    """PRG-4: one open report per patient (also a database constraint); after the outcome a new pregnancy
    can be reported."""
    first = file_report_api(prescriber, patient, on=D(2026, 3, 20), lmp_on="2026-02-01")
    assert first.status_code == 201

    second = file_report_api(prescriber, patient, on=D(2026, 3, 21), lmp_on="2026-02-01")
    assert second.status_code == 409
    assert second.json()["code"] == "pregnancy_report_open"
    assert PregnancyReport.objects.count() == 1

    outcome = patch_report(
        prescriber,
        first.json()["id"],
        on=D(2026, 4, 1),
        outcome="spontaneous_abortion",
        outcome_on="2026-03-30",
        maternal_thyroid_status="normal",
    )
    assert (outcome.status_code, outcome.json()["status"]) == (200, "closed")

    third = file_report_api(prescriber, patient, on=D(2026, 6, 20), lmp_on="2026-05-20")
    assert third.status_code == 201, third.json()
    assert PregnancyReport.objects.filter(patient=patient).count() == 2


def test_one_open_report_is_a_database_constraint(prescriber, patient):
    report = file_report(prescriber, patient, on=D(2026, 3, 20), lmp_on=D(2026, 2, 1))
    clone = PregnancyReport.objects.filter(pk=report.pk).values().get()
    clone.pop("id")
    with pytest.raises(DatabaseError), transaction.atomic():
        PregnancyReport.objects.create(**clone)


def test_report_with_computed_or_unknown_field_is_refused(prescriber, patient):
    """The exposure is the registry's to compute (PRG-2): a client cannot send it."""
    response = file_report_api(
        prescriber, patient, on=D(2026, 3, 20), lmp_on="2026-02-01", exposure="not_exposed", colour="red"
    )
    assert _errors(response) == {
        "exposure": ["Computed by the registry; it cannot be set."],
        "colour": ["Unknown field."],
    }


def test_report_creation_is_idempotent(prescriber, patient):
    """API.md: the same Idempotency-Key and body returns the first answer and files nothing new."""
    body = {"patient": str(patient.pk), "reported_on": "2026-03-20", "lmp_on": "2026-02-01"}
    with frozen(D(2026, 3, 20)):
        first = prescriber.post(REPORTS, body, HTTP_IDEMPOTENCY_KEY="preg-1")
        second = prescriber.post(REPORTS, body, HTTP_IDEMPOTENCY_KEY="preg-1")
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json() == second.json()
    assert PregnancyReport.objects.count() == 1


# --- PRG-2: exposure, on the boundaries ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conception", "exposure", "course_number"),
    [
        (DAY0 - DAY, "not_exposed", None),  # the day before the first infusion of course 1
        (DAY0, "exposed", 1),  # the first infusion day
        (COURSE_1_LAST, "exposed", 1),
        (COURSE_1_WINDOW_ENDS, "exposed", 1),  # 4 months after the last infusion: the edge
        (COURSE_1_WINDOW_ENDS + DAY, "not_exposed", None),  # the day after
        (COURSE_2_FIRST - DAY, "not_exposed", None),
        (COURSE_2_FIRST, "exposed", 2),
        (COURSE_2_WINDOW_ENDS, "exposed", 2),
        (COURSE_2_WINDOW_ENDS + DAY, "not_exposed", None),
    ],
    ids=[
        "c1-day-before",
        "c1-first-infusion",
        "c1-last-infusion",
        "c1-4-month-edge",
        "c1-day-after-edge",
        "c2-day-before",
        "c2-first-infusion",
        "c2-4-month-edge",
        "c2-day-after-edge",
    ],
)
def test_exposure_boundaries_for_course_1_and_course_2(
    prescriber, two_courses, conception, exposure, course_number
):
    """PRG-2: exposed when conception falls between the first infusion of a course and 4 calendar months
    (setting) after its last infusion, both days included, naming the course; otherwise not exposed. Course 1
    ran 2026-03-02..06 (window to 2026-07-06), course 2 2027-03-06..08 (window to 2027-07-08)."""
    assert (COURSE_2_LAST, two_courses.last_infusion_on) == (D(2027, 3, 8), D(2027, 3, 8))
    reported = conception + dt.timedelta(days=30)
    response = file_report_api(
        prescriber, two_courses, on=reported, estimated_conception_on=conception.isoformat()
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["exposure"], body["exposed_course_number"]) == (exposure, course_number)
    report = PregnancyReport.objects.select_related("exposed_course").get(pk=body["id"])
    assert report.exposure == exposure
    assert (report.exposed_course.number if report.exposed_course else None) == course_number
    if course_number:
        assert body["exposed_course"] == str(two_courses.courses.get(number=course_number).pk)


@pytest.mark.parametrize(
    ("months", "conception", "exposure"),
    [(4, D(2026, 7, 7), "not_exposed"), (6, D(2026, 7, 7), "exposed"), (6, D(2026, 9, 7), "not_exposed")],
)
def test_exposure_window_is_the_program_setting(
    settings, prescriber, two_courses, months, conception, exposure
):
    """PRG-2: the window is `pregnancy_exposure_months_after_course` (4 by default), not a literal."""
    settings.REMS_SETTINGS = {"pregnancy_exposure_months_after_course": months}
    response = file_report_api(
        prescriber, two_courses, on=conception + DAY * 20, estimated_conception_on=conception.isoformat()
    )
    assert response.json()["exposure"] == exposure


def test_exposure_from_infusions_recorded_through_the_api(prescriber, facility):
    """PRG-2 end to end: course 1 infused through the API; conception on day 3 of the course is exposed
    to course 1."""
    with frozen(DAY0):
        patient = rp_patient(prescriber)
        plan_course(prescriber, patient, start=DAY0)
    infuse_days(facility, patient, DAY0, 5)

    response = file_report_api(
        prescriber, patient, on=D(2026, 4, 20), lmp_on="2026-02-20"
    )  # conception 03-06

    assert response.status_code == 201, response.json()
    assert (response.json()["estimated_conception_on"], response.json()["exposure"]) == (
        "2026-03-06",
        "exposed",
    )
    assert response.json()["exposed_course_number"] == 1


def test_cancelled_course_with_a_dose_still_exposes(prescriber, facility):
    """PRG-2: a course cancelled after its first dose exposed the patient all the same."""
    from registry.services.treatment import course_cancel

    with frozen(DAY0):
        patient = rp_patient(prescriber)
        course = plan_course(prescriber, patient, start=DAY0)
    infuse_days(facility, patient, DAY0, 1)
    course_cancel(course=course, actor=prescriber.user, reason="reaction", now=moment(DAY0 + DAY))

    response = file_report_api(prescriber, patient, on=D(2026, 7, 30), estimated_conception_on="2026-07-02")
    assert (response.json()["exposure"], response.json()["exposed_course_number"]) == ("exposed", 1)


# --- PRG-2: date corrections recompute the exposure, audited -------------------------------------------------


def test_correcting_the_lmp_rederives_dates_and_recomputes_exposure_audited(prescriber, two_courses):
    """PRG-2: the LMP corrected from 2026-07-01 (conception 07-15: not exposed) to 2026-06-20 (conception
    07-04: within course 1's window): conception and due date follow, the exposure becomes exposed to
    course 1, and the audit event carries the change."""
    filed = file_report_api(prescriber, two_courses, on=D(2026, 8, 20), lmp_on="2026-07-01")
    assert (filed.json()["estimated_conception_on"], filed.json()["exposure"]) == (
        "2026-07-15",
        "not_exposed",
    )

    response = patch_report(prescriber, filed.json()["id"], on=D(2026, 8, 25), lmp_on="2026-06-20")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["lmp_on"], body["estimated_conception_on"], body["estimated_due_on"]) == (
        "2026-06-20",
        "2026-07-04",
        "2027-03-27",
    )
    assert (body["exposure"], body["exposed_course_number"], body["status"]) == ("exposed", 1, "open")
    course_1 = two_courses.courses.get(number=1)
    event = AuditEvent.objects.get(action="pregnancy_report.correct", subject_id=body["id"])
    assert event.actor == prescriber.user
    assert event.changes["exposure"] == ["not_exposed", "exposed"]
    assert event.changes["exposed_course"] == [None, str(course_1.pk)]
    assert event.changes["exposed_course_number"] == [None, 1]
    assert event.changes["estimated_conception_on"] == ["2026-07-15", "2026-07-04"]
    assert event.changes["lmp_on"] == ["2026-07-01", "2026-06-20"]
    report = PregnancyReport.objects.get(pk=body["id"])
    assert (report.exposure, report.exposed_course_id) == (Exposure.EXPOSED, course_1.pk)


def test_correcting_the_conception_date_can_clear_the_exposure(prescriber, two_courses):
    filed = file_report_api(prescriber, two_courses, on=D(2026, 8, 20), estimated_conception_on="2026-07-06")
    assert filed.json()["exposure"] == "exposed"

    response = patch_report(
        prescriber, filed.json()["id"], on=D(2026, 8, 21), estimated_conception_on="2026-07-07"
    )

    assert (response.json()["exposure"], response.json()["exposed_course_number"]) == ("not_exposed", None)
    assert response.json()["estimated_due_on"] == "2027-03-30"  # the derived due date follows
    event = AuditEvent.objects.get(action="pregnancy_report.correct", subject_id=filed.json()["id"])
    assert event.changes["exposure"] == ["exposed", "not_exposed"]


def test_an_entered_conception_date_stands_when_the_lmp_is_corrected(prescriber, patient):
    filed = file_report_api(
        prescriber, patient, on=D(2026, 3, 20), lmp_on="2026-02-01", estimated_conception_on="2026-02-17"
    )
    response = patch_report(prescriber, filed.json()["id"], on=D(2026, 3, 21), lmp_on="2026-02-03")

    body = response.json()
    assert (body["estimated_conception_on"], body["conception_derived"]) == ("2026-02-17", False)
    assert body["estimated_due_on"] == "2026-11-10"  # derived from the LMP: it follows


def test_a_correction_that_changes_nothing_writes_no_audit_event(prescriber, patient):
    filed = file_report_api(prescriber, patient, on=D(2026, 3, 20), lmp_on="2026-02-01")
    response = patch_report(prescriber, filed.json()["id"], on=D(2026, 3, 21), lmp_on="2026-02-01")

    assert response.status_code == 200
    assert (
        not AuditEvent.objects.filter(subject_id=filed.json()["id"])
        .exclude(action="pregnancy_report.file")
        .exists()
    )


def test_a_correction_into_the_future_is_refused(prescriber, patient):
    filed = file_report_api(prescriber, patient, on=D(2026, 3, 20), lmp_on="2026-02-01")
    response = patch_report(prescriber, filed.json()["id"], on=D(2026, 3, 21), lmp_on="2026-03-22")
    assert "lmp_on" in _errors(response)
    assert PregnancyReport.objects.get(pk=filed.json()["id"]).lmp_on == D(2026, 2, 1)


# --- PRG-3: outcome and infant follow-up ---------------------------------------------------------------------


@pytest.fixture
def open_report(prescriber, patient):
    """Conception 2026-02-15, due 2026-11-08, filed 2026-03-20."""
    response = file_report_api(prescriber, patient, on=D(2026, 3, 20), lmp_on="2026-02-01")
    assert response.status_code == 201
    return response.json()


def test_live_birth_records_the_outcome_then_follow_up_closes(prescriber, open_report):
    """PRG-3: a live birth with gestational age, birth weight, major malformation and maternal thyroid
    status moves the report to `outcome_recorded`, infant follow-up due 12 months later; the follow-up
    closes it. Each step is audited."""
    response = patch_report(
        prescriber, open_report["id"], on=D(2026, 11, 10), outcome_on="2026-11-06", **LIVE_BIRTH
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["status"], body["outcome"], body["outcome_on"]) == (
        "outcome_recorded",
        "live_birth",
        "2026-11-06",
    )
    assert (body["gestational_age_weeks"], body["birth_weight_grams"], body["major_malformation"]) == (
        39,
        3350,
        False,
    )
    assert (body["maternal_thyroid_status"], body["infant_follow_up_due_on"]) == ("normal", "2027-11-06")
    recorded = AuditEvent.objects.get(action="pregnancy_report.record_outcome", subject_id=open_report["id"])
    assert recorded.changes["status"] == ["open", "outcome_recorded"]
    assert recorded.changes["outcome"] == ["", "live_birth"]

    closed = patch_report(
        prescriber,
        open_report["id"],
        on=D(2027, 11, 20),
        infant_follow_up_on="2027-11-18",
        infant_follow_up_notes="Developing normally.",
    )

    assert closed.status_code == 200, closed.json()
    assert (closed.json()["status"], closed.json()["infant_follow_up_on"]) == ("closed", "2027-11-18")
    event = AuditEvent.objects.get(
        action="pregnancy_report.record_infant_follow_up", subject_id=open_report["id"]
    )
    assert event.changes["status"] == ["outcome_recorded", "closed"]
    assert PregnancyReport.objects.get(pk=open_report["id"]).status == PregnancyStatus.CLOSED


def test_a_live_birth_corrected_to_another_outcome_drops_the_live_birth_values_PRG_3(prescriber, open_report):
    """PRG-3: a report whose live birth is recorded (not yet closed) can be corrected to another outcome;
    gestational age and birth weight, which only a live birth has, go with it (audited) and the report
    closes. Sending them with the correction is refused; null clears them too."""
    recorded = patch_report(
        prescriber,
        open_report["id"],
        on=D(2026, 11, 10),
        outcome_on="2026-11-06",
        infant_follow_up_notes="Seen at 2 weeks.",
        **LIVE_BIRTH,
    )
    assert recorded.status_code == 200, recorded.json()
    refused = patch_report(
        prescriber, open_report["id"], on=D(2026, 11, 11), outcome="stillbirth", birth_weight_grams=3000
    )
    assert refused.status_code == 400
    assert "birth_weight_grams" in refused.json()["errors"]

    corrected = patch_report(prescriber, open_report["id"], on=D(2026, 11, 11), outcome="stillbirth")

    assert corrected.status_code == 200, corrected.json()
    body = corrected.json()
    assert (body["outcome"], body["status"]) == ("stillbirth", "closed")
    assert (body["gestational_age_weeks"], body["birth_weight_grams"]) == (None, None)
    assert PregnancyReport.objects.get(pk=open_report["id"]).infant_follow_up_notes == ""
    event = AuditEvent.objects.filter(action="pregnancy_report.correct", subject_id=open_report["id"]).latest(
        "created_at"
    )
    assert event.changes["outcome"] == ["live_birth", "stillbirth"]
    assert event.changes["birth_weight_grams"] == [3350, None]


def test_null_clears_live_birth_values_only_away_from_a_live_birth_PRG_3(prescriber, open_report):
    recorded = patch_report(
        prescriber, open_report["id"], on=D(2026, 11, 10), outcome_on="2026-11-06", **LIVE_BIRTH
    )
    assert recorded.status_code == 200, recorded.json()
    kept = patch_report(prescriber, open_report["id"], on=D(2026, 11, 11), birth_weight_grams=None)
    assert kept.status_code == 400  # still a live birth: the weight is required
    assert "birth_weight_grams" in kept.json()["errors"]


@pytest.mark.parametrize(
    "outcome", ["spontaneous_abortion", "stillbirth", "elective_termination", "ectopic", "lost_to_follow_up"]
)
def test_an_outcome_other_than_live_birth_closes_the_report(prescriber, open_report, outcome):
    """PRG-3: every outcome but a live birth closes the report; major malformation may be recorded."""
    response = patch_report(
        prescriber,
        open_report["id"],
        on=D(2026, 5, 2),
        outcome=outcome,
        outcome_on="2026-05-01",
        maternal_thyroid_status="hyperthyroid",
        major_malformation=True,
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["status"], body["outcome"], body["infant_follow_up_due_on"]) == ("closed", outcome, None)
    assert (body["major_malformation"], body["maternal_thyroid_status"]) == (True, "hyperthyroid")


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {"outcome": "live_birth", "outcome_on": "2026-11-06", "maternal_thyroid_status": "normal"},
            {
                "gestational_age_weeks": ["Required for a live birth."],
                "birth_weight_grams": ["Required for a live birth."],
                "major_malformation": ["Required for a live birth (yes or no)."],
            },
        ),
        (
            {
                "outcome": "stillbirth",
                "outcome_on": "2026-10-06",
                "maternal_thyroid_status": "normal",
                "gestational_age_weeks": 33,
                "birth_weight_grams": 1900,
            },
            {
                "gestational_age_weeks": ["Only recorded for a live birth."],
                "birth_weight_grams": ["Only recorded for a live birth."],
            },
        ),
        (
            {"outcome": "ectopic", "outcome_on": "2026-03-25"},
            {"maternal_thyroid_status": ["Required with the outcome (PRG-3)."]},
        ),
        (
            {"outcome": "ectopic", "maternal_thyroid_status": "normal"},
            {"outcome_on": ["Required with the outcome."]},
        ),
        (
            {"outcome": "ectopic", "outcome_on": "2026-02-14", "maternal_thyroid_status": "normal"},
            {"outcome_on": ["Cannot be before the estimated conception date."]},
        ),
        (
            {"outcome": "ectopic", "outcome_on": "2026-11-11", "maternal_thyroid_status": "normal"},
            {"outcome_on": ["Cannot be in the future."]},
        ),
        ({**LIVE_BIRTH, "outcome_on": "2026-11-06", "gestational_age_weeks": 46}, None),
        ({**LIVE_BIRTH, "outcome_on": "2026-11-06", "birth_weight_grams": 50}, None),
        ({"outcome": "twins"}, None),
        ({"maternal_thyroid_status": "normal"}, {"maternal_thyroid_status": ["Record the outcome with it."]}),
        (
            {"infant_follow_up_on": "2026-11-01"},
            {"infant_follow_up_on": ["Infant follow-up follows a live birth outcome."]},
        ),
        (
            {**LIVE_BIRTH, "outcome_on": "2026-11-06", "infant_follow_up_on": "2026-11-05"},
            {"infant_follow_up_on": ["Cannot be before the outcome date."]},
        ),
        ({}, {"non_field_errors": ["Nothing to change."]}),
        ({"status": "closed"}, {"status": ["Computed by the registry; it cannot be set."]}),
    ],
    ids=[
        "live-birth-without-details",
        "gestational-age-and-weight-for-stillbirth",
        "no-thyroid-status",
        "no-outcome-date",
        "outcome-before-conception",
        "outcome-in-future",
        "gestational-age-out-of-range",
        "birth-weight-out-of-range",
        "unknown-outcome",
        "details-without-outcome",
        "follow-up-without-outcome",
        "follow-up-before-birth",
        "empty",
        "status-is-computed",
    ],
)
def test_outcome_validation(prescriber, open_report, body, errors):
    """PRG-3: gestational age and birth weight only for (and required with) a live birth, with major
    malformation yes/no; the maternal thyroid status with any outcome; the outcome date not before
    conception (2026-02-15) and not in the future (today 2026-11-10). Nothing changes."""
    response = patch_report(prescriber, open_report["id"], on=D(2026, 11, 10), **body)

    found = _errors(response)
    if errors is not None:
        assert found == errors
    report = PregnancyReport.objects.get(pk=open_report["id"])
    assert (report.status, report.outcome, report.outcome_on) == ("open", "", None)


def test_outcome_on_the_conception_day_is_accepted(prescriber, open_report):
    response = patch_report(
        prescriber,
        open_report["id"],
        on=D(2026, 2, 15) + dt.timedelta(days=40),
        outcome="ectopic",
        outcome_on="2026-02-15",
        maternal_thyroid_status="not_assessed",
    )
    assert (response.status_code, response.json()["status"]) == (200, "closed")


def test_a_closed_reports_outcome_is_final_but_its_dates_can_be_corrected(prescriber, open_report):
    """Lifecycle: closed is final for the outcome and the follow-up (409); a date correction is still
    taken (and the exposure recomputed)."""
    patch_report(
        prescriber,
        open_report["id"],
        on=D(2026, 5, 2),
        outcome="spontaneous_abortion",
        outcome_on="2026-05-01",
        maternal_thyroid_status="normal",
    )

    refused = patch_report(prescriber, open_report["id"], on=D(2026, 5, 3), outcome="stillbirth")
    assert refused.status_code == 409
    assert refused.json()["code"] == "invalid_status_transition"
    follow_up = patch_report(
        prescriber, open_report["id"], on=D(2026, 5, 3), infant_follow_up_on="2026-05-03"
    )
    assert follow_up.status_code == 409

    corrected = patch_report(prescriber, open_report["id"], on=D(2026, 5, 3), lmp_on="2026-01-30")
    assert (corrected.status_code, corrected.json()["estimated_conception_on"]) == (200, "2026-02-13")
    assert PregnancyReport.objects.get(pk=open_report["id"]).outcome == "spontaneous_abortion"


def test_a_live_birth_outcome_can_be_corrected_before_follow_up(prescriber, open_report):
    patch_report(prescriber, open_report["id"], on=D(2026, 11, 10), outcome_on="2026-11-06", **LIVE_BIRTH)
    response = patch_report(prescriber, open_report["id"], on=D(2026, 11, 20), major_malformation=True)

    assert (response.status_code, response.json()["major_malformation"], response.json()["status"]) == (
        200,
        True,
        "outcome_recorded",
    )
    event = AuditEvent.objects.get(action="pregnancy_report.correct", subject_id=open_report["id"])
    assert event.changes == {"major_malformation": [False, True]}


# --- Reading: scoping, pagination -------------------------------------------------------------------------------


def test_list_shows_visible_reports_only_paginated(prescriber, other_prescriber, delegate):
    """Scoping: a prescriber and its delegate see the reports of its patients; another prescriber sees
    none of them; the list is paginated."""
    with frozen(DAY0):
        mine = [rp_patient(prescriber, authorize=False) for _ in range(3)]
        theirs = rp_patient(other_prescriber, authorize=False)
    for p in mine:
        file_report(prescriber, p, on=D(2026, 3, 20), lmp_on=D(2026, 2, 1))
    other = file_report(other_prescriber, theirs, on=D(2026, 3, 20), lmp_on=D(2026, 2, 1))

    for persona in (prescriber, delegate):
        page = persona.get(f"{REPORTS}?limit=2")
        assert page.status_code == 200
        assert (page.json()["count"], len(page.json()["results"])) == (3, 2)
        everything = persona.get(REPORTS).json()["results"]
        assert {r["patient"] for r in everything} == {str(p.pk) for p in mine}
    assert [r["id"] for r in other_prescriber.get(REPORTS).json()["results"]] == [str(other.pk)]


def test_list_filters_by_status_and_exposure(prescriber, two_courses, patient):
    file_report(prescriber, two_courses, on=D(2026, 4, 20), estimated_conception_on=D(2026, 3, 10))
    file_report(prescriber, patient, on=D(2026, 4, 20), estimated_conception_on=D(2026, 3, 10))

    exposed = prescriber.get(f"{REPORTS}?exposure=exposed").json()["results"]
    assert [r["patient"] for r in exposed] == [str(two_courses.pk)]
    assert prescriber.get(f"{REPORTS}?status=closed").json()["count"] == 0
    assert prescriber.get(f"{REPORTS}?status=open").json()["count"] == 2


def test_another_prescribers_patients_report_is_404(
    prescriber, other_prescriber, other_delegate, open_report
):
    """Scoping: another prescriber (or its delegate) cannot read or change the report: 404, as if it did
    not exist; nor can it file one for a patient it cannot see (the same answer as an unknown patient)."""
    for persona in (other_prescriber, other_delegate):
        assert persona.get(report_path(open_report["id"])).status_code == 404
        response = patch_report(persona, open_report["id"], on=D(2026, 4, 1), lmp_on="2026-02-02")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
        filed = file_report_api(
            persona, PregnancyReport.objects.get().patient, on=D(2026, 4, 1), lmp_on="2026-02-02"
        )
        assert _errors(filed) == {"patient": ["Unknown patient."]}
    assert PregnancyReport.objects.get().lmp_on == D(2026, 2, 1)


def test_access_follows_a_transfer_of_care(prescriber, other_prescriber, open_report):
    """ACT-8: the report moves with the patient."""
    from registry.services.enrollment import patient_transfer

    report = PregnancyReport.objects.get()
    patient_transfer(
        patient=report.patient,
        actor=prescriber.user,
        prescriber_npi=other_prescriber.participant.npi,
        now=moment(D(2026, 4, 1)),
    )
    assert prescriber.get(report_path(report.pk)).status_code == 404
    assert other_prescriber.get(report_path(report.pk)).status_code == 200


# --- Permission matrix ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "create", "read", "update", "listed"),
    [
        ("admin", 201, 200, 200, 1),
        ("prescriber", 201, 200, 200, 1),
        ("delegate", 201, 200, 200, 1),
        ("other_prescriber", 400, 404, 404, 0),
        ("other_delegate", 400, 404, 404, 0),
        ("pharmacy", 403, 403, 403, None),
        ("facility", 403, 403, 403, None),
        ("anon", 401, 401, 401, None),
    ],
)
def test_permission_matrix(request, prescriber, persona, create, read, update, listed):
    """Deny by default: the care team (prescriber of record, its delegate) and admins file, read and update
    reports; another prescriber's care team meets 404 (400 unknown patient when filing); pharmacies and
    facilities are refused (403); no key is 401."""
    caller = request.getfixturevalue(persona)
    with frozen(DAY0):
        patient_a = rp_patient(prescriber, authorize=False)
        patient_b = rp_patient(prescriber, authorize=False)
    existing = file_report(prescriber, patient_a, on=D(2026, 3, 20), lmp_on=D(2026, 2, 1))

    filed = file_report_api(caller, patient_b, on=D(2026, 3, 21), lmp_on="2026-02-03")
    assert filed.status_code == create, filed.json()
    with frozen(D(2026, 3, 21)):
        assert caller.get(report_path(existing.pk)).status_code == read
        listing = caller.get(REPORTS)
    patched = patch_report(caller, existing.pk, on=D(2026, 3, 21), lmp_on="2026-02-02")
    assert patched.status_code == update
    if listed is None:
        assert listing.status_code == read
    else:
        assert listing.json()["count"] == listed + (1 if create == 201 else 0)
    expected_reports = 2 if create == 201 else 1
    assert PregnancyReport.objects.count() == expected_reports
    assert PregnancyReport.objects.get(pk=existing.pk).lmp_on == (
        D(2026, 2, 2) if update == 200 else D(2026, 2, 1)
    )


def test_put_and_delete_are_not_routes(prescriber, open_report):
    """PRG-5: no API deletes a report."""
    assert prescriber.delete(report_path(open_report["id"])).status_code == 405
    assert prescriber.client.put(report_path(open_report["id"]), {}, format="json").status_code == 405
    assert PregnancyReport.objects.filter(pk=open_report["id"]).exists()


# --- PRG-5: kept forever ------------------------------------------------------------------------------------------


def test_database_refuses_to_delete_a_report_even_after_discontinuation(prescriber, open_report):
    """PRG-5: DELETE is refused by the database, by the ORM and by raw SQL, also once the patient is
    discontinued; the report and its audit history remain."""
    report = PregnancyReport.objects.get(pk=open_report["id"])
    patient_status_change(
        patient=report.patient,
        actor=prescriber.user,
        verb="discontinue",
        reason="moved",
        now=moment(D(2026, 4, 1)),
    )
    with pytest.raises(DatabaseError, match="kept forever"), transaction.atomic():
        report.delete()
    with pytest.raises(DatabaseError, match="kept forever"), transaction.atomic():
        PregnancyReport.objects.all().delete()
    with (
        pytest.raises(DatabaseError, match="kept forever"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM registry_pregnancyreport")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(subject_id=report.pk).delete()
    assert PregnancyReport.objects.filter(pk=report.pk).exists()
    assert AuditEvent.objects.filter(subject_id=report.pk, action="pregnancy_report.file").exists()


def test_patient_with_a_report_cannot_be_deleted(open_report):
    """PRG-5: the patient foreign key protects the report."""
    from django.db.models import ProtectedError

    report = PregnancyReport.objects.get(pk=open_report["id"])
    with pytest.raises((ProtectedError, DatabaseError)), transaction.atomic():
        report.patient.delete()
    assert PregnancyReport.objects.filter(pk=report.pk).exists()


# --- PRG-1: the contraception window -----------------------------------------------------------------------------


def test_contraception_required_until_4_months_after_the_latest_course(prescriber, facility, admin):
    """PRG-1: null before any infusion; 4 months after the last infusion of the latest course; null for a
    patient without reproductive potential."""
    with frozen(DAY0):
        patient = rp_patient(prescriber)
        other = enroll_patient(prescriber, sex="female", reproductive_potential=False)
        assert prescriber.get(f"/api/v1/patients/{patient.pk}").json()["contraception_required_until"] is None
        plan_course(prescriber, patient, start=DAY0)
    infuse_days(facility, patient, DAY0, 2)
    with frozen(DAY0 + DAY):
        assert (
            prescriber.get(f"/api/v1/patients/{patient.pk}").json()["contraception_required_until"]
            == "2026-07-03"
        )
    for day in (3, 4, 5):
        assert infuse(facility, patient, DAY0 + (day - 1) * DAY, day=day).status_code == 201
    with frozen(COURSE_1_LAST):
        body = prescriber.get(f"/api/v1/patients/{patient.pk}").json()
        assert (body["last_infusion_on"], body["contraception_required_until"]) == (
            "2026-03-06",
            "2026-07-06",
        )
        assert prescriber.get(f"/api/v1/patients/{other.pk}").json()["contraception_required_until"] is None
        listed = {
            p["id"]: p["contraception_required_until"]
            for p in prescriber.get("/api/v1/patients").json()["results"]
        }
    assert listed == {str(patient.pk): "2026-07-06", str(other.pk): None}


def test_the_patient_filter_answers_an_invisible_and_an_unknown_id_alike(prescriber, other_prescriber):
    """Minimum disclosure: filtering by another prescriber's patient and by an id nobody has both answer an
    empty list, so the filter cannot tell which ids exist; a malformed id is a 400 either way."""
    with frozen(DAY0):
        theirs = rp_patient(other_prescriber, authorize=False)
    file_report(other_prescriber, theirs, on=D(2026, 5, 1), estimated_conception_on=D(2026, 4, 1))
    invisible = prescriber.client.get(f"/api/v1/pregnancy-reports?patient={theirs.pk}")
    unknown = prescriber.client.get("/api/v1/pregnancy-reports?patient=00000000-0000-0000-0000-000000000000")

    assert invisible.status_code == unknown.status_code == 200
    assert invisible.json()["results"] == unknown.json()["results"] == []
    assert prescriber.client.get("/api/v1/pregnancy-reports?patient=not-an-id").status_code == 400
    mine = other_prescriber.client.get(f"/api/v1/pregnancy-reports?patient={theirs.pk}").json()
    assert [r["patient"] for r in mine["results"]] == [str(theirs.pk)]
