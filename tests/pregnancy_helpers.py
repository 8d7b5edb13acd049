"""Shared set-up for the pregnancy surveillance tests (PRG-1..5), on the calendar of gate_helpers: course 1
runs 2026-03-02..2026-03-06 (`DAY0`..`COURSE_1_LAST`), so its exposure window ends on 2026-07-06 (4 calendar
months after the last infusion, PRG-2)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from registry.models import Patient, User
from registry.services.enrollment import lab_result_record, patient_authorize
from registry.services.pregnancy import pregnancy_report_file

from .conftest import Persona
from .gate_helpers import (
    DAY0,
    enroll_patient,
    frozen,
    moment,
    record_labs,
    record_screening,
)

REPORTS = "/api/v1/pregnancy-reports"
COURSE_1_WINDOW_ENDS = dt.date(2026, 7, 6)  # COURSE_1_LAST + 4 calendar months
COURSE_2_FIRST = dt.date(2027, 3, 6)  # 12 months after COURSE_1_LAST (CRS-2)
COURSE_2_LAST = dt.date(2027, 3, 8)  # 3 doses
COURSE_2_WINDOW_ENDS = dt.date(2027, 7, 8)


def report_path(report_id: Any) -> str:
    return f"{REPORTS}/{report_id}"


def record_pregnancy_test(patient: Patient, actor: User, *, on: dt.date, result: str) -> None:
    lab_result_record(
        patient=patient,
        actor=actor,
        data={"test": "pregnancy_test", "collected_on": on, "result": result},
        now=moment(on),
    )


def rp_patient(prescriber: Persona, *, on: dt.date = DAY0, authorize: bool = True) -> Patient:
    """A female patient of reproductive potential enrolled by `prescriber`; with `authorize`, the seven
    baseline labs, a negative pregnancy test (ACT-7) and screening 3 days before `on`, authorized on `on`."""
    patient = enroll_patient(prescriber, on=on, sex="female", reproductive_potential=True)
    if not authorize:
        return patient
    before = on - dt.timedelta(days=3)
    record_labs(patient, prescriber.user, collected_on=before)
    record_pregnancy_test(patient, prescriber.user, on=before, result="negative")
    record_screening(patient, prescriber.user, on=on)
    outcome = patient_authorize(patient=patient, actor=prescriber.user, now=moment(on))
    assert outcome.approved, outcome.evaluation.reasons
    return outcome.created


def file_report_api(persona: Persona, patient: Patient, *, on: dt.date, **body: Any) -> Any:
    """POST /pregnancy-reports on `on` (the report date unless given)."""
    payload = {"patient": str(patient.pk), "reported_on": on.isoformat(), **body}
    with frozen(on):
        return persona.post(REPORTS, payload)


def file_report(persona: Persona, patient: Patient, *, on: dt.date, **data: Any) -> Any:
    """The service directly (set-up): `data` holds dates."""
    return pregnancy_report_file(
        patient=patient, actor=persona.user, data={"reported_on": on, **data}, now=moment(on)
    )


def patch_report(persona: Persona, report_id: Any, *, on: dt.date, **body: Any) -> Any:
    with frozen(on):
        return persona.patch(report_path(report_id), body)


LIVE_BIRTH = {
    "outcome": "live_birth",
    "gestational_age_weeks": 39,
    "birth_weight_grams": 3350,
    "major_malformation": False,
    "maternal_thyroid_status": "normal",
}
