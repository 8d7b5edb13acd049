"""The stored monitoring schedule (MON-1, MON-2, MON-4), `GET /patients/{id}/monitoring`, status forms
(MON-4) and the gate's blocks (MON-3, GATE-4) read from the schedule at the moment of the check."""

from __future__ import annotations

import datetime as dt

import pytest

from registry.api.refusals import PUBLIC_DETAIL
from registry.models import (
    AuditEvent,
    Decision,
    MonitoringFlag,
    MonitoringSchedule,
    StatusForm,
    SweepRun,
)

from .gate_helpers import (
    COURSE_1_LAST,
    DAY0,
    PRE_COURSE_LABS,
    course_path,
    frozen,
    infuse_days,
    patient_after_course_1,
    plan_course,
    reason_codes,
    record_labs,
    request_authorization,
    supply,
)
from .monitoring_helpers import DUE, WINDOW_ENDS, days, monitored_patient

pytestmark = pytest.mark.django_db


def schedule_of(patient) -> dict[str, tuple]:
    return {
        row.requirement: (row.last_done_on, row.next_due_on, row.window_ends_on)
        for row in MonitoringSchedule.objects.filter(patient=patient)
    }


def monitoring(persona, patient, on: dt.date):
    with frozen(on):
        return persona.get(f"/api/v1/patients/{patient.pk}/monitoring")


# --- The schedule starts at the first infusion -----------------------------------------------------------


def test_schedule_starts_at_the_first_infusion_from_the_baseline_MON_1_MON_2_MON_4(prescriber, facility):
    """MON-1: monthly after the baseline result; MON-2: thyroid and liver 3 months, skin exam 12 months;
    MON-4: the status form 6 months after the first infusion; the window ends 48 months after the last
    infusion. Male patient: no HPV screening row."""
    patient = monitored_patient(prescriber, facility)
    baseline = dt.date(2026, 2, 27)

    assert schedule_of(patient) == {
        "cbc_differential": (baseline, dt.date(2026, 3, 27), WINDOW_ENDS),
        "serum_creatinine": (baseline, dt.date(2026, 3, 27), WINDOW_ENDS),
        "urinalysis": (baseline, dt.date(2026, 3, 27), WINDOW_ENDS),
        "thyroid_function": (baseline, dt.date(2026, 5, 27), WINDOW_ENDS),
        "liver_function": (baseline, dt.date(2026, 5, 27), WINDOW_ENDS),
        "skin_exam": (baseline, dt.date(2027, 2, 27), WINDOW_ENDS),
        "status_form": (None, dt.date(2026, 9, 2), WINDOW_ENDS),
    }


def test_female_patients_are_scheduled_for_hpv_screening_MON_2(prescriber, facility):
    """MON-2: HPV screening every 12 months for female patients; none done yet: 12 months after the first
    infusion."""
    patient = monitored_patient(prescriber, facility, sex="female")
    assert schedule_of(patient)["hpv_screening"] == (None, dt.date(2027, 3, 2), WINDOW_ENDS)


def test_no_schedule_before_the_first_infusion(prescriber):
    """Monitoring runs from the first infusion: an authorized patient without one has no schedule."""
    from .gate_helpers import authorized_patient

    with frozen(DAY0):
        patient = authorized_patient(prescriber)
        response = prescriber.get(f"/api/v1/patients/{patient.pk}/monitoring")

    assert response.status_code == 200
    assert response.json() == {"monitoring_ends_on": None, "requirements": []}
    assert not MonitoringSchedule.objects.filter(patient=patient).exists()


def test_a_new_course_extends_the_window_of_every_row(prescriber, facility):
    """Monitoring ends 48 months after the most recent infusion: course 2 (last dose 2027-03-08) pushes it
    to 2031-03-08 for every requirement."""
    patient = patient_after_course_1(prescriber, facility)
    with frozen(dt.date(2027, 3, 1)):
        record_labs(patient, prescriber.user, collected_on=dt.date(2027, 3, 1), tests=PRE_COURSE_LABS)
        plan_course(prescriber, patient, start=dt.date(2027, 3, 6), on=dt.date(2027, 3, 1))
    infuse_days(facility, patient, dt.date(2027, 3, 6), 3)

    ends = {row[2] for row in schedule_of(patient).values()}
    assert ends == {dt.date(2031, 3, 8)}
    assert schedule_of(patient)["cbc_differential"][:2] == (dt.date(2027, 3, 1), dt.date(2027, 4, 1))


# --- Calendar-month arithmetic ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("test", "done_on", "due_on"),
    [
        ("cbc_differential", dt.date(2027, 1, 31), dt.date(2027, 2, 28)),
        ("cbc_differential", dt.date(2028, 1, 31), dt.date(2028, 2, 29)),  # leap year
        ("urinalysis", dt.date(2026, 10, 31), dt.date(2026, 11, 30)),
        ("thyroid_function", dt.date(2026, 11, 30), dt.date(2027, 2, 28)),
        ("liver_function", dt.date(2026, 8, 31), dt.date(2026, 11, 30)),
        ("skin_exam", dt.date(2028, 2, 29), dt.date(2029, 2, 28)),
    ],
)
def test_next_due_is_counted_in_calendar_months_with_month_end_clamping(
    prescriber, facility, test, done_on, due_on
):
    """MON-1, MON-2: a result on 31 January is next due on 28 (or 29) February."""
    patient = monitored_patient(prescriber, facility)
    with frozen(done_on):
        response = prescriber.post(
            f"/api/v1/patients/{patient.pk}/lab-results",
            {"test": test, "collected_on": done_on.isoformat(), "result": "normal"},
        )
    assert response.status_code == 201, response.json()
    assert schedule_of(patient)[test][:2] == (done_on, due_on)


def test_an_older_result_does_not_move_the_schedule_back(prescriber, facility):
    """MON-1: next due follows the latest result; a late-entered older one changes nothing."""
    patient = monitored_patient(prescriber, facility)
    with frozen(dt.date(2026, 5, 1)):
        record_labs(patient, prescriber.user, collected_on=dt.date(2026, 4, 20), tests=["cbc_differential"])
        record_labs(patient, prescriber.user, collected_on=dt.date(2026, 4, 2), tests=["cbc_differential"])
    assert schedule_of(patient)["cbc_differential"][:2] == (dt.date(2026, 4, 20), dt.date(2026, 5, 20))


def test_bulk_labs_update_the_schedule_of_every_patient_set_based(prescriber, facility):
    """MON-1, MON-2: bulk ingestion updates every row it concerns in the same transaction; pregnancy
    tests and the urine protein ratio are not monitoring requirements."""
    first = monitored_patient(prescriber, facility)
    second = monitored_patient(prescriber, facility)
    rows = [
        {"rems_patient_id": first.rems_patient_id, "test": "cbc_differential", "collected_on": "2026-04-01"},
        {"rems_patient_id": first.rems_patient_id, "test": "cbc_differential", "collected_on": "2026-04-10"},
        {"rems_patient_id": second.rems_patient_id, "test": "thyroid_function", "collected_on": "2026-04-10"},
        {
            "rems_patient_id": second.rems_patient_id,
            "test": "urine_protein_creatinine_ratio",
            "collected_on": "2026-04-10",
        },
    ]
    with frozen(dt.date(2026, 4, 12)):
        response = prescriber.post(
            "/api/v1/lab-results/bulk", {"results": [{**r, "result": "normal"} for r in rows]}
        )

    assert response.status_code == 201, response.json()
    assert schedule_of(first)["cbc_differential"][:2] == (dt.date(2026, 4, 10), dt.date(2026, 5, 10))
    assert schedule_of(second)["thyroid_function"][:2] == (dt.date(2026, 4, 10), dt.date(2026, 7, 10))
    assert schedule_of(second)["cbc_differential"][:2] == (dt.date(2026, 2, 27), dt.date(2026, 3, 27))


# --- GET /patients/{id}/monitoring: the day before due, the due day, the last grace day, the day after ----


@pytest.mark.parametrize(
    "requirement", ["cbc_differential", "thyroid_function", "skin_exam", "hpv_screening", "status_form"]
)
def test_overdue_only_after_the_last_grace_day_MON_3(prescriber, facility, requirement):
    """MON-3: overdue once due date + 7 days' grace (*setting*) has passed: not the day before due, not
    on the due day, not on the last grace day; from the day after. For each kind of requirement (monthly,
    3-monthly, 12-monthly, HPV for female patients, the 6-monthly status form)."""
    patient = monitored_patient(prescriber, facility, sex="female")
    due = DUE[requirement]
    seen = []
    for day in (due - days(1), due, due + days(7), due + days(8)):
        response = monitoring(prescriber, patient, day)
        assert response.status_code == 200
        row = next(r for r in response.json()["requirements"] if r["requirement"] == requirement)
        assert row["next_due_on"] == due.isoformat()
        seen.append(row["overdue"])
    assert seen == [False, False, False, True]


def test_monitoring_answer_lists_every_requirement_with_the_window_end(prescriber, facility, delegate):
    """API.md: per requirement `requirement`, `last_done_on`, `next_due_on`, `overdue` (and `blocking`);
    plus `monitoring_ends_on`. The delegate reads it too."""
    patient = monitored_patient(prescriber, facility)
    response = monitoring(delegate, patient, dt.date(2026, 5, 4))

    assert response.status_code == 200
    body = response.json()
    assert body["monitoring_ends_on"] == "2030-03-06"
    assert body["requirements"] == [
        {"requirement": r, "last_done_on": last, "next_due_on": due, "overdue": overdue, "blocking": blocking}
        for r, last, due, overdue, blocking in [
            ("cbc_differential", "2026-02-27", "2026-03-27", True, True),
            ("serum_creatinine", "2026-02-27", "2026-03-27", True, True),
            ("urinalysis", "2026-02-27", "2026-03-27", True, True),
            ("thyroid_function", "2026-02-27", "2026-05-27", False, False),
            ("liver_function", "2026-02-27", "2026-05-27", False, False),
            ("skin_exam", "2026-02-27", "2027-02-27", False, False),
            ("status_form", None, "2026-09-02", False, False),
        ]
    ]


def test_monitoring_of_an_invisible_patient_is_404(prescriber, facility, other_prescriber, pharmacy):
    patient = monitored_patient(prescriber, facility)
    assert monitoring(other_prescriber, patient, DAY0).status_code == 404
    assert monitoring(pharmacy, patient, DAY0).status_code == 403


def test_next_due_after_the_window_reads_null(prescriber, facility):
    """Nothing is due after monitoring ends: a skin exam on 2029-06-01 would next be due after the window
    (2030-03-06)."""
    patient = monitored_patient(prescriber, facility)
    with frozen(dt.date(2029, 6, 1)):
        record_labs(patient, prescriber.user, collected_on=dt.date(2029, 6, 1), tests=["skin_exam"])
        body = prescriber.get(f"/api/v1/patients/{patient.pk}/monitoring").json()
    row = next(r for r in body["requirements"] if r["requirement"] == "skin_exam")
    assert row == {
        "requirement": "skin_exam",
        "last_done_on": "2029-06-01",
        "next_due_on": None,
        "overdue": False,
        "blocking": False,
    }


# --- Status forms (MON-4) ----------------------------------------------------------------------------------


def _form(persona, patient, on: dt.date, **body):
    with frozen(on):
        return persona.post(
            f"/api/v1/patients/{patient.pk}/status-forms",
            {"completed_on": on.isoformat(), "labs_reviewed": True, "adverse_events": [], **body},
        )


def test_status_form_is_filed_by_the_prescriber_and_moves_the_schedule_MON_4(prescriber, facility):
    patient = monitored_patient(prescriber, facility)
    response = _form(prescriber, patient, dt.date(2026, 8, 31), adverse_events=["stroke", "autoimmune"])

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["completed_on"], body["labs_reviewed"], body["still_under_care"]) == (
        "2026-08-31",
        True,
        True,
    )
    assert body["adverse_events"] == ["autoimmune", "stroke"]  # the fixed list's order
    assert body["prescriber"] == str(prescriber.participant.pk)
    assert schedule_of(patient)["status_form"][:2] == (dt.date(2026, 8, 31), dt.date(2027, 2, 28))
    event = AuditEvent.objects.get(action="status_form.record", subject_id=patient.pk)
    assert (event.actor_id, event.changes["status_form"]) == (prescriber.user.pk, body["id"])


def test_delegate_files_a_status_form_and_both_list_it(prescriber, delegate, facility):
    """MON-4, API.md: the delegate acts for its prescriber on status forms; the list is newest first and
    paginated."""
    patient = monitored_patient(prescriber, facility)
    assert _form(delegate, patient, dt.date(2026, 8, 1)).status_code == 201
    assert _form(prescriber, patient, dt.date(2026, 9, 1)).status_code == 201

    with frozen(dt.date(2026, 9, 1)):
        listed = delegate.get(f"/api/v1/patients/{patient.pk}/status-forms").json()
    assert listed["count"] == 2
    assert [f["completed_on"] for f in listed["results"]] == ["2026-09-01", "2026-08-01"]


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"completed_on": "2026-09-02"}, {"completed_on": ["Cannot be in the future."]}),
        ({"adverse_events": ["headache"]}, {"adverse_events.0": ['"headache" is not a valid choice.']}),
        (
            {"adverse_events": ["stroke", "stroke"]},
            {"adverse_events": ["Each adverse event is listed once."]},
        ),
        ({"labs_reviewed": None}, {"labs_reviewed": ["This field may not be null."]}),
        ({"completed_on": "2020-01-01"}, {"completed_on": ["Cannot be before the patient's enrollment."]}),
    ],
)
def test_status_form_validation_MON_4(prescriber, facility, body, errors):
    patient = monitored_patient(prescriber, facility)
    response = _form(prescriber, patient, dt.date(2026, 9, 1), **body)

    assert response.status_code == 400, response.json()
    assert response.json()["code"] == "validation_error"
    assert response.json()["errors"] == errors
    assert not StatusForm.objects.exists()


def test_status_form_refused_to_admin_other_prescriber_and_pharmacy(
    prescriber, facility, admin, other_prescriber, pharmacy
):
    """MON-4: only the prescriber of record or its delegate files; another prescriber cannot see the
    patient (404); roles without the right are 403."""
    patient = monitored_patient(prescriber, facility)
    assert _form(admin, patient, dt.date(2026, 9, 1)).status_code == 403
    assert _form(pharmacy, patient, dt.date(2026, 9, 1)).status_code == 403
    assert _form(other_prescriber, patient, dt.date(2026, 9, 1)).status_code == 404
    assert not StatusForm.objects.exists()


# --- The gate reads the schedule (MON-3, MON-4, GATE-4) ------------------------------------------------------


def _course_2_planned_with_monitoring(prescriber, facility):
    """Monitoring kept up to 2027-01-31, course 2 planned 2027-03-06 (approved)."""
    patient = patient_after_course_1(prescriber, facility)
    with frozen(dt.date(2027, 3, 6)):
        record_labs(patient, prescriber.user, collected_on=dt.date(2027, 3, 1), tests=PRE_COURSE_LABS)
        plan_course(prescriber, patient, start=dt.date(2027, 3, 6))
    return patient


@pytest.mark.parametrize(
    ("day", "reasons"),
    [(dt.date(2027, 6, 6), []), (dt.date(2027, 6, 7), ["monitoring_overdue"])],
    ids=["threshold-day", "day-after"],
)
def test_dispense_authorization_denied_once_monitoring_overdue_beyond_30_days_GATE_4(
    prescriber, facility, pharmacy, day, reasons
):
    """MON-3, GATE-4: thyroid and liver tests of 2027-01-31 are due 2027-04-30; overdue from 2027-05-08;
    blocking once overdue more than 30 days counted from due + grace: from 2027-06-07. No sweep ran."""
    patient = _course_2_planned_with_monitoring(prescriber, facility)
    with frozen(day):
        record_labs(patient, prescriber.user, collected_on=day - days(2), tests=PRE_COURSE_LABS)
        response = request_authorization(pharmacy, patient, prescriber, facility, doses=3)

    assert response.status_code == 201
    assert reason_codes(response) == reasons
    assert response.json()["decision"] == ("denied" if reasons else "approved")
    decision = Decision.objects.filter(kind="dispense_authorization").latest("created_at")
    if reasons:
        # The pharmacy reads the code and the neutral text; the stored decision keeps what is overdue.
        assert response.json()["reasons"] == [
            {"code": "monitoring_overdue", "detail": PUBLIC_DETAIL["monitoring_overdue"]}
        ]
        assert decision.reasons == [
            {
                "code": "monitoring_overdue",
                "detail": "Monitoring overdue beyond the grace and blocking period: "
                "thyroid function, liver function.",
            }
        ]
    assert not SweepRun.objects.exists()
    check = next(r for r in decision.requirements if r["requirement"] == "monitoring_current")
    assert check["met"] is (not reasons)


@pytest.mark.parametrize(
    ("day", "reasons"),
    [
        (dt.date(2027, 9, 6), ["monitoring_overdue"]),
        (dt.date(2027, 9, 7), ["monitoring_overdue", "status_form_overdue"]),
    ],
    ids=["threshold-day", "day-after"],
)
def test_course_planning_refused_with_overdue_status_form_GATE_4(prescriber, facility, day, reasons):
    """MON-4, GATE-4: the status form of 2027-01-31 is due 2027-07-31 and blocks from 2027-09-07; the
    thyroid and liver tests block since 2027-06-07."""
    patient = patient_after_course_1(prescriber, facility)
    with frozen(day):
        record_labs(patient, prescriber.user, collected_on=day - days(2), tests=PRE_COURSE_LABS)
        response = prescriber.post(course_path(patient), {"planned_start_on": day.isoformat()})

    assert response.status_code == 409, response.json()
    assert response.json()["code"] == "course_not_allowed"
    assert reason_codes(response) == reasons
    # The prescriber of record reads what is overdue (no date, no result).
    details = {r["code"]: r["detail"] for r in response.json()["reasons"]}
    assert details["monitoring_overdue"] == (
        "Monitoring overdue beyond the grace and blocking period: thyroid function, liver function."
    )
    if "status_form_overdue" in reasons:
        assert details["status_form_overdue"] == (
            "The patient status form is overdue beyond the grace and blocking period."
        )


def test_a_new_result_lifts_the_block_at_once(prescriber, facility, pharmacy):
    """MON-3: the block follows the stored schedule: thyroid and liver results recorded today lift it
    before any sweep runs."""
    patient = _course_2_planned_with_monitoring(prescriber, facility)
    day = dt.date(2027, 6, 10)
    with frozen(day):
        record_labs(patient, prescriber.user, collected_on=day - days(2), tests=PRE_COURSE_LABS)
        assert reason_codes(request_authorization(pharmacy, patient, prescriber, facility, doses=3)) == [
            "monitoring_overdue"
        ]
        record_labs(patient, prescriber.user, collected_on=day, tests=["thyroid_function", "liver_function"])
        response = request_authorization(pharmacy, patient, prescriber, facility, doses=3)
    assert response.json()["decision"] == "approved", response.json()


def test_imported_history_blocks_at_once_without_a_sweep_MON_3(prescriber, facility, admin):
    """MON-3: a registry that imports history blocks at once: an administrator records course 1 of
    2026-03 as legacy history on 2027-03-10; course 2 is refused the same hour for the missing monitoring,
    although no sweep ever ran and no flag exists."""
    from .gate_helpers import authorized_patient, infusion_body

    with frozen(DAY0):
        patient = authorized_patient(prescriber)
        plan_course(prescriber, patient, start=DAY0)
    today = dt.date(2027, 3, 10)
    with frozen(today, hour=14):
        for day in range(1, 6):
            on = DAY0 + days(day - 1)
            response = admin.post(
                "/api/v1/infusions",
                infusion_body(patient, on, day=day, facility_npi=facility.participant.npi),
            )
            assert response.status_code == 201, response.json()
        record_labs(patient, prescriber.user, collected_on=today, tests=PRE_COURSE_LABS)
    with frozen(today, hour=15):
        response = prescriber.post(course_path(patient), {"planned_start_on": today.isoformat()})

    assert reason_codes(response) == ["monitoring_overdue", "status_form_overdue"]
    assert not SweepRun.objects.exists()
    assert not MonitoringFlag.objects.exists()
    patient.refresh_from_db()
    assert patient.last_infusion_on == COURSE_1_LAST


def test_infusion_is_not_blocked_by_overdue_monitoring(prescriber, facility, pharmacy):
    """GATE-4 names new courses and dispense authorizations: the first dose of a planned course is not
    refused for overdue monitoring (thyroid and liver block course planning and dispensing from
    2027-06-07), only for what GATE-3 and CRS-4 require."""
    patient = _course_2_planned_with_monitoring(prescriber, facility)
    day = dt.date(2027, 6, 7)
    with frozen(day - days(1)):
        record_labs(patient, prescriber.user, collected_on=day - days(2), tests=PRE_COURSE_LABS)
    # GATE-3: the doses were dispensed to the facility the day before the block (GATE-1 still approved).
    assert supply(facility, patient, on=day - days(1)) is not None
    with frozen(day):
        # A new dispense authorization would be refused that day (the course's doses are taken, too).
        codes = reason_codes(request_authorization(pharmacy, patient, prescriber, facility, doses=1))
        assert codes == ["course_doses_exhausted", "monitoring_overdue"]
    responses = infuse_days(facility, patient, day, 3)
    assert [r.json()["day_in_course"] for r in responses] == [1, 2, 3]


def test_a_deceased_patient_shows_no_monitoring_overdue_ACT_8(prescriber, facility, admin):
    """ACT-8: monitoring ends with a recorded death. The sweep already flags nothing for a deceased patient
    and closes their flags; the patient's monitoring answer (and the console's page, which reads it) says
    the same: nothing overdue, blocking or due."""
    from registry.selectors.program import patients_overdue_counts
    from registry.services.enrollment import patient_status_change

    from .gate_helpers import moment

    patient = monitored_patient(prescriber, facility)
    assert patients_overdue_counts(as_of=dt.date(2026, 6, 1)) == {"overdue": 1, "blocking": 1}
    with frozen(dt.date(2026, 6, 1)):
        before = prescriber.get(f"/api/v1/patients/{patient.pk}/monitoring").json()
        assert any(r["overdue"] for r in before["requirements"])
        patient_status_change(
            patient=patient,
            actor=admin.user,
            verb="record_death",
            reason="Reported by the family.",
            now=moment(dt.date(2026, 6, 1)),
        )
        after = prescriber.get(f"/api/v1/patients/{patient.pk}/monitoring").json()

    assert after["requirements"], "the stored schedule is still listed"
    assert not any(r["overdue"] for r in after["requirements"])
    assert all(r["next_due_on"] is None for r in after["requirements"])
    assert patients_overdue_counts(as_of=dt.date(2026, 6, 1)) == {"overdue": 0, "blocking": 0}


def test_changed_intervals_and_window_are_applied_by_the_rebuild_MON_1_MON_2(prescriber, facility, settings):
    """*Settings*: the schedule stores due dates and window ends, so a changed thyroid interval (3 -> 2
    months) and a changed window (48 -> 60 months) reach existing patients through
    `rebuild_monitoring_schedule`: the API and the gate then read the new dates. Audited per patient; a
    second run changes nothing; month ends follow calendar months as `next_due` does."""
    import io

    from django.core.management import call_command

    from registry.models import AuditEvent, Patient

    patient = monitored_patient(prescriber, facility)  # last infusion 2026-03-06, baseline labs 2026-02-27
    settings.REMS_SETTINGS = {
        "monitoring_thyroid_interval_months": 2,
        "monitoring_months_after_last_infusion": 60,
    }
    with frozen(dt.date(2026, 5, 5)):
        stale = prescriber.get(f"/api/v1/patients/{patient.pk}/monitoring").json()
    thyroid = next(r for r in stale["requirements"] if r["requirement"] == "thyroid_function")
    assert thyroid["next_due_on"] == "2026-05-27"  # stored under the old 3-month interval

    out = io.StringIO()
    call_command("rebuild_monitoring_schedule", stdout=out)

    assert "patients changed: 1" in out.getvalue()
    with frozen(dt.date(2026, 5, 5)):
        fresh = prescriber.get(f"/api/v1/patients/{patient.pk}/monitoring").json()
    thyroid = next(r for r in fresh["requirements"] if r["requirement"] == "thyroid_function")
    assert thyroid["next_due_on"] == "2026-04-27"
    assert fresh["monitoring_ends_on"] == "2031-03-06"
    assert Patient.objects.get(pk=patient.pk).monitoring_ends_on == dt.date(2031, 3, 6)
    event = AuditEvent.objects.get(action="monitoring_schedule.rebuild", subject_id=patient.pk)
    assert event.changes["next_due_on"]["thyroid_function"] == ["2026-05-27", "2026-04-27"]
    assert event.changes["window_ends_on"] == ["2030-03-06", "2031-03-06"]
    again = io.StringIO()
    call_command("rebuild_monitoring_schedule", stdout=again)
    assert "schedule rows changed: 0, patients changed: 0" in again.getvalue()


def test_the_rebuild_keeps_calendar_month_ends_MON_1(prescriber, facility, settings):
    """A result on 31 January is next due 28 February, on PostgreSQL's set-based rebuild as in `next_due`."""
    import io

    from django.core.management import call_command

    patient = monitored_patient(prescriber, facility)
    with frozen(dt.date(2027, 2, 1)):
        record_labs(patient, prescriber.user, collected_on=dt.date(2027, 1, 31), tests=["cbc_differential"])
    settings.REMS_SETTINGS = {"monitoring_months_after_last_infusion": 60}
    call_command("rebuild_monitoring_schedule", stdout=io.StringIO())
    row = MonitoringSchedule.objects.get(patient=patient, requirement="cbc_differential")
    assert (row.last_done_on, row.next_due_on) == (dt.date(2027, 1, 31), dt.date(2027, 2, 28))


def test_the_rebuild_leaves_ended_monitoring_alone_and_works_in_batches_ACT_8(
    prescriber, facility, settings, admin
):
    """A deceased patient's schedule is not written again (monitoring ended), and patients are taken a
    batch at a time: with batches of one the result is the same."""
    from registry.services.enrollment import patient_status_change
    from registry.services.monitoring import monitoring_schedule_rebuild

    from .gate_helpers import moment

    first = monitored_patient(prescriber, facility)
    second = monitored_patient(prescriber, facility)
    gone = monitored_patient(prescriber, facility)
    patient_status_change(
        patient=gone,
        actor=admin.user,
        verb="record_death",
        reason="Reported.",
        now=moment(dt.date(2026, 6, 1)),
    )
    before = dict(
        MonitoringSchedule.objects.filter(patient=gone).values_list("requirement", "window_ends_on")
    )
    settings.REMS_SETTINGS = {"monitoring_months_after_last_infusion": 60}

    rows, patients = monitoring_schedule_rebuild(actor=None, now=moment(dt.date(2026, 6, 2)), batch=1)

    assert patients == 2
    assert rows == MonitoringSchedule.objects.filter(patient__in=[first, second]).count()
    assert set(
        MonitoringSchedule.objects.filter(patient__in=[first, second]).values_list(
            "window_ends_on", flat=True
        )
    ) == {dt.date(2031, 3, 6)}
    assert (
        dict(MonitoringSchedule.objects.filter(patient=gone).values_list("requirement", "window_ends_on"))
        == before
    )


@pytest.mark.postgres_only  # a real concurrent transaction
@pytest.mark.django_db(transaction=True)
def test_a_result_committed_while_the_rebuild_waits_is_not_overwritten_MON_1(prescriber, facility, settings):
    """The rebuild computes from the rows it has locked: a result whose transaction holds the schedule row
    makes the rebuild wait, and once it commits the rebuild starts from that result."""
    import threading

    from django.db import connection, transaction

    from registry.services.monitoring import monitoring_results_record, monitoring_schedule_rebuild

    from .gate_helpers import moment

    patient = monitored_patient(prescriber, facility)
    settings.REMS_SETTINGS = {"monitoring_months_after_last_infusion": 60}
    recorded, release = threading.Event(), threading.Event()

    def result_in_flight() -> None:
        try:
            with transaction.atomic():
                monitoring_results_record(
                    results=[(patient.pk, "cbc_differential", dt.date(2026, 6, 1))],
                    actor=prescriber.user,
                    now=moment(dt.date(2026, 6, 2)),
                )
                recorded.set()
                release.wait(timeout=20)
        finally:
            connection.close()

    def rebuild() -> None:
        try:
            monitoring_schedule_rebuild(actor=None, now=moment(dt.date(2026, 6, 2)))
        finally:
            connection.close()

    writer = threading.Thread(target=result_in_flight)
    writer.start()
    assert recorded.wait(timeout=20)
    rebuilder = threading.Thread(target=rebuild)
    rebuilder.start()
    rebuilder.join(timeout=1)
    assert rebuilder.is_alive(), "the rebuild did not wait for the result's row"
    release.set()
    writer.join(timeout=20)
    rebuilder.join(timeout=20)
    assert not rebuilder.is_alive()

    row = MonitoringSchedule.objects.get(patient=patient, requirement="cbc_differential")
    assert (row.last_done_on, row.next_due_on, row.window_ends_on) == (
        dt.date(2026, 6, 1),
        dt.date(2026, 7, 1),
        dt.date(2031, 3, 6),
    )
