"""The walk-through of docs/pregnancy.md, step by step through the API, with the values the document shows
(PRG-1..4): a report filed after course 1, its exposure, the hold, a date correction that re-classifies
the exposure, the outcome update, and the infant follow-up."""

from __future__ import annotations

import datetime as dt

import pytest

from registry.models import AuditEvent

from .gate_helpers import DAY0, frozen, infuse_days, monitoring_kept_up, plan_course
from .pregnancy_helpers import REPORTS, report_path, rp_patient

pytestmark = pytest.mark.django_db

D = dt.date


def test_docs_pregnancy_walkthrough(prescriber, delegate, facility):
    with frozen(DAY0):
        patient = rp_patient(prescriber)
        plan_course(prescriber, patient, start=DAY0)
    infuse_days(facility, patient, DAY0, 5)

    # 0. PRG-1: the contraception window.
    with frozen(D(2026, 8, 20)):
        shown = prescriber.get(f"/api/v1/patients/{patient.pk}").json()
    assert (shown["last_infusion_on"], shown["contraception_required_until"]) == ("2026-03-06", "2026-07-06")

    # 1. The delegate files the report with the LMP only.
    with frozen(D(2026, 8, 20)):
        filed = delegate.post(
            REPORTS, {"patient": str(patient.pk), "reported_on": "2026-08-20", "lmp_on": "2026-06-10"}
        )
    assert filed.status_code == 201, filed.json()
    body = filed.json()
    assert {
        k: body[k]
        for k in (
            "status",
            "estimated_conception_on",
            "estimated_due_on",
            "exposure",
            "exposed_course_number",
        )
    } == {
        "status": "open",
        "estimated_conception_on": "2026-06-24",
        "estimated_due_on": "2027-03-17",
        "exposure": "exposed",
        "exposed_course_number": 1,
    }
    report_id = body["id"]

    # Monitoring is kept up throughout (MON-1..4), so the only hold shown is the pregnancy's.
    with frozen(D(2026, 8, 20)):
        monitoring_kept_up(patient, prescriber, on=D(2026, 8, 20))

    # 2. The gate holds (the pre-course labs are not a reason at planning: they are pending, checked at the
    # dispense authorization and the first dose; issue 9 item 5).
    with frozen(D(2026, 8, 20)):
        refused = prescriber.post(
            f"/api/v1/patients/{patient.pk}/courses", {"planned_start_on": "2027-03-08"}
        )
    assert (refused.json()["code"], [r["code"] for r in refused.json()["reasons"]]) == (
        "course_not_allowed",
        ["pregnancy_open"],
    )

    # 3. An ultrasound dates conception to 2026-07-09: after course 1's window (to 2026-07-06).
    with frozen(D(2026, 9, 3)):
        corrected = prescriber.patch(report_path(report_id), {"estimated_conception_on": "2026-07-09"})
    assert corrected.status_code == 200, corrected.json()
    assert {
        k: corrected.json()[k]
        for k in ("estimated_conception_on", "estimated_due_on", "exposure", "exposed_course_number")
    } == {
        "estimated_conception_on": "2026-07-09",
        "estimated_due_on": "2027-03-17",
        "exposure": "not_exposed",
        "exposed_course_number": None,
    }
    event = AuditEvent.objects.get(action="pregnancy_report.correct", subject_id=report_id)
    assert event.changes["exposure"] == ["exposed", "not_exposed"]

    # 4. The outcome: a live birth.
    with frozen(D(2027, 3, 25)):
        outcome = prescriber.patch(
            report_path(report_id),
            {
                "outcome": "live_birth",
                "outcome_on": "2027-03-20",
                "gestational_age_weeks": 38,
                "birth_weight_grams": 3250,
                "major_malformation": False,
                "maternal_thyroid_status": "hypothyroid",
            },
        )
    assert outcome.status_code == 200, outcome.json()
    assert {k: outcome.json()[k] for k in ("status", "outcome", "infant_follow_up_due_on")} == {
        "status": "outcome_recorded",
        "outcome": "live_birth",
        "infant_follow_up_due_on": "2028-03-20",
    }
    with frozen(D(2027, 3, 25)):
        monitoring_kept_up(patient, prescriber, on=D(2027, 3, 25))
        again = prescriber.post(f"/api/v1/patients/{patient.pk}/courses", {"planned_start_on": "2027-03-26"})
    assert again.status_code == 201, again.json()
    assert (again.json()["number"], [p["code"] for p in again.json()["pending"]]) == (
        2,
        ["pre_course_labs_stale"],
    )

    # 5. The infant follow-up closes the report.
    with frozen(D(2028, 3, 22)):
        closed = prescriber.patch(report_path(report_id), {"infant_follow_up_on": "2028-03-22"})
    assert closed.json()["status"] == "closed"
