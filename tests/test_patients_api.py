"""Patients through the API: enrollment (ACT-6, ACT-9), authorization and its reason codes (ACT-7, GATE-5),
labs and bulk labs (MON-1..2 lab kinds, ID-4), transfer of care and status transitions (ACT-8), delegate
removal, and a query-count guard on the patient list (STYLE.md 9)."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from registry import rules
from registry.identifiers import new_registry_id, parse_registry_id
from registry.models import (
    Decision,
    LabResult,
    Patient,
    PatientStatus,
    Screening,
)
from registry.selectors import patients_visible_to
from registry.services.certification import participant_suspend
from registry.services.enrollment import (
    contraindication_record,
    lab_result_record,
    patient_authorize,
    patient_enroll,
    patient_status_change,
    screening_record,
)

from .conftest import Persona, participant_persona
from .factories import PrescriberFactory
from .gate_helpers import BASELINE_LABS as BASELINE

pytestmark = pytest.mark.django_db

# 15:00 UTC is 10:00 in New York: the UTC date and the registry's local date agree.
NOW = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)
TODAY = NOW.date()
DAY = dt.timedelta(days=1)

REQUIREMENT_NAMES = [
    "prescriber_of_record_certified",
    "baseline_labs_complete",
    "screening_complete",
    "pregnancy_test_negative",
    "no_contraindication",
]
UNMET_BODY_CODE = "authorization_requirements_unmet"
UNMET_BODY_DETAIL = "The patient does not meet the authorization requirements."


@pytest.fixture(autouse=True)
def _clock() -> Any:
    with time_machine.travel(NOW, tick=True):
        yield


# --- helpers ----------------------------------------------------------------------------------------


def enroll_body(**overrides: Any) -> dict[str, Any]:
    return {
        "first_name": "Grace",
        "last_name": "Hopper",
        "date_of_birth": "1990-05-17",
        "sex": "female",
        "reproductive_potential": True,
        "enrollment_signed_on": (TODAY - DAY).isoformat(),
        **overrides,
    }


_names = itertools.count(1)


def enroll(persona: Persona, **overrides: Any) -> Patient:
    """A patient enrolled through the service, so the care-team grants exist (ACT-6). Each is a person of
    its own ("Alan 1 Turing", ...), not a possible duplicate of the others (issue 9)."""
    data = {
        "first_name": f"Alan {next(_names)}",
        "last_name": "Turing",
        "date_of_birth": dt.date(1985, 6, 23),
        "sex": "male",
        "reproductive_potential": False,
        "enrollment_signed_on": TODAY - DAY,
        **overrides,
    }
    return patient_enroll(actor=persona.user, data=data, now=timezone.now())


def add_lab(patient: Patient, persona: Persona, test: str, on: dt.date, result: str = "normal") -> LabResult:
    return lab_result_record(
        patient=patient,
        actor=persona.user,
        data={"test": test, "collected_on": on, "result": result},
        now=timezone.now(),
    )


def add_baseline(patient: Patient, persona: Persona, *, on: dt.date = TODAY - DAY, skip: str = "") -> None:
    for test in BASELINE:
        if test != skip:
            add_lab(patient, persona, test, on)


def add_screening(patient: Patient, persona: Persona, **overrides: Any) -> Screening:
    data = {
        "hiv_negative": True,
        "no_active_infection": True,
        "tb_screened_on": TODAY - dt.timedelta(days=30),
        "vaccinations_completed_on": TODAY - dt.timedelta(weeks=8),
        **overrides,
    }
    return screening_record(patient=patient, actor=persona.user, data=data, now=timezone.now())


def make_ready(patient: Patient, persona: Persona) -> None:
    """Every ACT-7 requirement met as of TODAY."""
    add_baseline(patient, persona)
    add_screening(patient, persona)
    if patient.reproductive_potential:
        add_lab(patient, persona, "pregnancy_test", TODAY - DAY, "negative")


def authorize(persona: Persona, patient: Patient) -> Any:
    return persona.post(f"/api/v1/patients/{patient.pk}/authorize")


def reason_codes(response: Any) -> list[str]:
    assert response.status_code == 409, response.json()
    assert response.json()["code"] == UNMET_BODY_CODE
    return [r["code"] for r in response.json()["reasons"]]


def status_of(patient: Patient) -> str:
    return Patient.objects.values_list("status", flat=True).get(pk=patient.pk)


def listed_ids(persona: Persona) -> set[str]:
    response = persona.get("/api/v1/patients?limit=500")
    assert response.status_code == 200
    return {row["id"] for row in response.json()["results"]}


# --- Enrollment (ACT-6, ACT-9, ID-4) ----------------------------------------------------------------


def test_certified_prescriber_enrolls_patient_and_becomes_prescriber_of_record_ACT_6(prescriber):
    response = prescriber.post("/api/v1/patients", enroll_body())

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "enrolled"
    assert body["prescriber"] == str(prescriber.participant.pk)
    assert parse_registry_id(body["rems_patient_id"]) == body["rems_patient_id"]
    assert body["authorized_at"] is None
    patient = Patient.objects.get(pk=body["id"])
    assert patient.prescriber_id == prescriber.participant.pk
    assert patient.rems_patient_id == body["rems_patient_id"]
    assert patient.status == PatientStatus.ENROLLED
    assert (patient.first_name, patient.date_of_birth, patient.reproductive_potential) == (
        "Grace",
        dt.date(1990, 5, 17),
        True,
    )
    assert prescriber.get(f"/api/v1/patients/{body['id']}").status_code == 200


def test_registry_ids_are_distinct_and_carry_a_check_character_ID_4(prescriber):
    ids = [
        prescriber.post("/api/v1/patients", enroll_body(first_name=f"Grace {n}")).json()["rems_patient_id"]
        for n in range(5)
    ]

    assert len(set(ids)) == 5
    assert all(parse_registry_id(i) == i for i in ids)
    # A single mistyped character is caught by the check character.
    typo = ids[0][:-1] + ("0" if ids[0][-1] != "0" else "1")
    assert parse_registry_id(typo) is None


@pytest.mark.parametrize("state", ["pending", "suspended", "expired"])
def test_uncertified_prescriber_cannot_enroll_ACT_6(state):
    if state == "expired":
        prescriber_row = PrescriberFactory(certified=True, certification_expires_at=NOW - DAY)
    else:
        prescriber_row = PrescriberFactory(status=state)
    persona = participant_persona(prescriber_row)

    response = persona.post("/api/v1/patients", enroll_body())

    if state == "pending":
        assert response.status_code == 409
        assert response.json() == {
            "code": "prescriber_not_certified",
            "detail": "Only a certified prescriber may enroll patients (ACT-6).",
        }
    else:  # ACT-5: a suspended or expired prescriber's writes are refused before any service runs
        assert response.status_code == 403
        assert response.json()["code"] == "participant_suspended"
    assert Patient.objects.count() == 0


def test_enrollment_accepts_patient_on_17th_birthday_ACT_9(prescriber):
    with time_machine.travel(dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC), tick=False):
        response = prescriber.post(
            "/api/v1/patients", enroll_body(date_of_birth="2009-03-02", enrollment_signed_on="2026-03-02")
        )

    assert response.status_code == 201, response.json()
    assert Patient.objects.count() == 1


def test_enrollment_refuses_patient_the_day_before_17th_birthday_ACT_9(prescriber):
    with time_machine.travel(dt.datetime(2026, 3, 1, 15, 0, tzinfo=dt.UTC), tick=False):
        response = prescriber.post(
            "/api/v1/patients", enroll_body(date_of_birth="2009-03-02", enrollment_signed_on="2026-03-01")
        )

    assert response.status_code == 400
    assert response.json() == {
        "code": "patient_under_minimum_age",
        "detail": "The patient is below the minimum enrollment age (ACT-9).",
        "errors": {"date_of_birth": ["Patients under 17 cannot be enrolled."]},
    }
    assert Patient.objects.count() == 0


def test_enrollment_age_is_counted_on_the_registry_local_date_ACT_9(prescriber):
    """20:00 in New York on the day before the 17th birthday is already the birthday in UTC: the patient is
    still 16 where the registry operates (TIME_ZONE) and must be refused."""
    with time_machine.travel(dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC), tick=False):
        assert timezone.localdate() == dt.date(2026, 3, 1)
        response = prescriber.post(
            "/api/v1/patients", enroll_body(date_of_birth="2009-03-02", enrollment_signed_on="2026-03-01")
        )

    assert response.status_code == 400, response.json()
    assert response.json()["code"] == "patient_under_minimum_age"
    assert Patient.objects.count() == 0


@pytest.mark.parametrize("field", ["date_of_birth", "enrollment_signed_on"])
def test_enrollment_refuses_future_dates_ACT_6(prescriber, field):
    response = prescriber.post("/api/v1/patients", enroll_body(**{field: (TODAY + DAY).isoformat()}))

    assert response.status_code == 400
    assert response.json() == {
        "code": "validation_error",
        "detail": "Invalid input.",
        "errors": {field: ["Cannot be in the future."]},
    }
    assert Patient.objects.count() == 0


def test_enrollment_requires_every_field_ACT_6(prescriber):
    response = prescriber.post("/api/v1/patients", {})

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert set(response.json()["errors"]) == {
        "first_name",
        "last_name",
        "date_of_birth",
        "sex",
        "reproductive_potential",
        "enrollment_signed_on",
    }
    assert Patient.objects.count() == 0


# --- Authorization (ACT-7, ACT-9, GATE-5) -------------------------------------------------------------


def test_authorize_lists_every_unmet_reason_at_once_in_requirement_order_ACT_7_GATE_5(admin, prescriber):
    patient = enroll(prescriber, sex="female", reproductive_potential=True)
    contraindication_record(
        patient=patient, actor=prescriber.user, data={"kind": "hiv", "noted_on": TODAY}, now=timezone.now()
    )
    participant_suspend(
        participant=prescriber.participant, actor=admin.user, reason="audit finding", now=timezone.now()
    )

    response = authorize(admin, patient)

    assert response.status_code == 409
    reasons = [
        {
            "code": "prescriber_not_certified",
            "detail": "The patient's prescriber of record is not certified.",
        },
        {
            "code": "baseline_incomplete",
            "detail": "Missing or older than 30 days: " + ", ".join(BASELINE) + ".",
        },
        {"code": "screening_incomplete", "detail": "No screening recorded."},
        {
            "code": "pregnancy_test_required",
            "detail": "A negative pregnancy test within 7 days is required.",
        },
        {"code": "contraindication_recorded", "detail": "Contraindication recorded: hiv."},
    ]
    body = response.json()
    decision_id = body.get("decision_id")
    requirements = body.pop("requirements")
    assert body == {
        "code": UNMET_BODY_CODE,
        "detail": UNMET_BODY_DETAIL,
        "reasons": reasons,
        "decision_id": decision_id,
    }
    # GATE-5: the body lists every requirement evaluated, as stored.
    assert requirements == Decision.objects.get(pk=decision_id).requirements
    assert status_of(patient) == "enrolled"
    decision = Decision.objects.get(patient=patient)
    assert (decision.kind, decision.outcome, decision.actor_id) == (
        "patient_authorization",
        "denied",
        admin.user.pk,
    )
    assert decision.reasons == reasons
    assert decision.requirements == [
        {"requirement": name, "met": False, **reason}
        for name, reason in zip(REQUIREMENT_NAMES, reasons, strict=True)
    ]
    assert decision.program_settings == rules.current().as_dict()
    assert decision.inputs == {"patient": str(patient.pk)}


@pytest.mark.parametrize("missing", BASELINE)
def test_authorize_refused_when_one_baseline_lab_is_missing_ACT_7(prescriber, missing):
    patient = enroll(prescriber)
    make_ready(patient, prescriber)
    LabResult.objects.filter(patient=patient, test=missing).delete()

    response = authorize(prescriber, patient)

    assert reason_codes(response) == ["baseline_incomplete"]
    assert response.json()["reasons"][0]["detail"] == f"Missing or older than 30 days: {missing}."
    assert status_of(patient) == "enrolled"


@pytest.mark.parametrize(("age_days", "expected"), [(30, 200), (31, 409)])
def test_baseline_lab_30_days_old_accepted_31_days_refused_ACT_7(prescriber, age_days, expected):
    patient = enroll(prescriber)
    add_baseline(patient, prescriber, skip="skin_exam")
    add_lab(patient, prescriber, "skin_exam", TODAY - dt.timedelta(days=age_days))
    add_screening(patient, prescriber)

    response = authorize(prescriber, patient)

    assert response.status_code == expected, response.json()
    if expected == 409:
        assert response.json()["reasons"] == [
            {"code": "baseline_incomplete", "detail": "Missing or older than 30 days: skin_exam."}
        ]
        assert status_of(patient) == "enrolled"
    else:
        assert status_of(patient) == "authorized"


def test_newer_lab_makes_stale_baseline_current_again_ACT_7(prescriber):
    patient = enroll(prescriber)
    make_ready(patient, prescriber)
    LabResult.objects.filter(patient=patient, test="thyroid_function").delete()
    add_lab(patient, prescriber, "thyroid_function", TODAY - dt.timedelta(days=45))
    assert reason_codes(authorize(prescriber, patient)) == ["baseline_incomplete"]

    add_lab(patient, prescriber, "thyroid_function", TODAY)

    assert authorize(prescriber, patient).status_code == 200


def test_authorize_refused_without_screening_ACT_7(prescriber):
    patient = enroll(prescriber)
    add_baseline(patient, prescriber)

    response = authorize(prescriber, patient)

    assert response.json()["reasons"] == [
        {"code": "screening_incomplete", "detail": "No screening recorded."}
    ]
    assert reason_codes(response) == ["screening_incomplete"]


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"hiv_negative": False}, "HIV negative not attested."),
        ({"no_active_infection": False}, "Absence of active infection not attested."),
        ({"tb_screened_on": None}, "TB screening date missing."),
        ({"vaccinations_completed_on": None}, "Vaccination completion date missing."),
        (
            {"vaccinations_completed_on": TODAY - dt.timedelta(days=41)},
            "Vaccinations completed less than 6 weeks before.",
        ),
    ],
    ids=["hiv_not_negative", "active_infection", "no_tb_date", "no_vaccination_date", "vaccinated_41_days"],
)
def test_authorize_refused_when_screening_incomplete_ACT_7(prescriber, overrides, detail):
    patient = enroll(prescriber)
    add_baseline(patient, prescriber)
    add_screening(patient, prescriber, **overrides)

    response = authorize(prescriber, patient)

    assert reason_codes(response) == ["screening_incomplete"]
    assert response.json()["reasons"][0]["detail"] == detail
    assert status_of(patient) == "enrolled"


def test_vaccinations_exactly_6_weeks_before_accepted_ACT_7(prescriber):
    patient = enroll(prescriber)
    add_baseline(patient, prescriber)
    add_screening(patient, prescriber, vaccinations_completed_on=TODAY - dt.timedelta(weeks=6))

    response = authorize(prescriber, patient)

    assert response.status_code == 200, response.json()
    assert (response.json()["status"], status_of(patient)) == ("authorized", "authorized")


def test_newest_screening_counts_ACT_7(prescriber):
    patient = enroll(prescriber)
    add_baseline(patient, prescriber)
    add_screening(patient, prescriber)
    add_screening(patient, prescriber, hiv_negative=False)

    assert reason_codes(authorize(prescriber, patient)) == ["screening_incomplete"]


def test_patient_of_reproductive_potential_needs_a_pregnancy_test_ACT_7(prescriber):
    patient = enroll(prescriber, sex="female", reproductive_potential=True)
    add_baseline(patient, prescriber)
    add_screening(patient, prescriber)

    response = authorize(prescriber, patient)

    assert response.json()["reasons"] == [
        {
            "code": "pregnancy_test_required",
            "detail": "A negative pregnancy test within 7 days is required.",
        }
    ]


@pytest.mark.parametrize(("age_days", "expected"), [(7, 200), (8, 409)])
def test_negative_pregnancy_test_7_days_old_accepted_8_days_refused_ACT_7(prescriber, age_days, expected):
    patient = enroll(prescriber, sex="female", reproductive_potential=True)
    add_baseline(patient, prescriber)
    add_screening(patient, prescriber)
    add_lab(patient, prescriber, "pregnancy_test", TODAY - dt.timedelta(days=age_days), "negative")

    response = authorize(prescriber, patient)

    assert response.status_code == expected, response.json()
    if expected == 409:
        assert reason_codes(response) == ["pregnancy_test_required"]
    assert status_of(patient) == ("authorized" if expected == 200 else "enrolled")


def test_positive_pregnancy_test_after_the_negative_refuses_ACT_7(prescriber):
    patient = enroll(prescriber, sex="female", reproductive_potential=True)
    add_baseline(patient, prescriber)
    add_screening(patient, prescriber)
    add_lab(patient, prescriber, "pregnancy_test", TODAY - 3 * DAY, "negative")
    add_lab(patient, prescriber, "pregnancy_test", TODAY - DAY, "positive")

    response = authorize(prescriber, patient)

    assert reason_codes(response) == ["pregnancy_test_required"]
    assert status_of(patient) == "enrolled"


def test_negative_pregnancy_test_after_an_earlier_positive_accepted_ACT_7(prescriber):
    patient = enroll(prescriber, sex="female", reproductive_potential=True)
    add_baseline(patient, prescriber)
    add_screening(patient, prescriber)
    add_lab(patient, prescriber, "pregnancy_test", TODAY - 5 * DAY, "positive")
    add_lab(patient, prescriber, "pregnancy_test", TODAY - DAY, "negative")

    response = authorize(prescriber, patient)

    assert response.status_code == 200, response.json()
    assert (response.json()["status"], status_of(patient)) == ("authorized", "authorized")


def test_patient_without_reproductive_potential_needs_no_pregnancy_test_ACT_7(prescriber):
    patient = enroll(prescriber, sex="female", reproductive_potential=False)
    add_baseline(patient, prescriber)
    add_screening(patient, prescriber)

    response = authorize(prescriber, patient)

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "authorized"
    assert LabResult.objects.filter(patient=patient, test="pregnancy_test").count() == 0


@pytest.mark.parametrize("kind", ["hiv", "active_infection", "hypersensitivity"])
def test_recorded_contraindication_refuses_authorization_ACT_9(prescriber, kind):
    patient = enroll(prescriber)
    make_ready(patient, prescriber)
    response = prescriber.post(
        f"/api/v1/patients/{patient.pk}/contraindications", {"kind": kind, "noted_on": TODAY.isoformat()}
    )
    assert response.status_code == 201, response.json()

    response = authorize(prescriber, patient)

    assert response.json()["reasons"] == [
        {"code": "contraindication_recorded", "detail": f"Contraindication recorded: {kind}."}
    ]
    assert status_of(patient) == "enrolled"


def test_prescriber_suspended_after_enrollment_refuses_authorization_ACT_6_ACT_7(admin, prescriber):
    patient = enroll(prescriber)
    make_ready(patient, prescriber)
    participant_suspend(
        participant=prescriber.participant, actor=admin.user, reason="lapsed", now=timezone.now()
    )

    response = authorize(admin, patient)

    assert reason_codes(response) == ["prescriber_not_certified"]
    assert status_of(patient) == "enrolled"


def test_authorize_succeeds_when_every_requirement_is_met_ACT_7_GATE_5(prescriber):
    patient = enroll(prescriber, sex="female", reproductive_potential=True)
    make_ready(patient, prescriber)

    response = authorize(prescriber, patient)

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "authorized"
    assert body["id"] == str(patient.pk)
    assert body["authorized_at"] is not None
    patient.refresh_from_db()
    assert patient.status == PatientStatus.AUTHORIZED
    assert patient.authorized_at is not None
    decision = Decision.objects.get(patient=patient)
    assert (decision.kind, decision.outcome, decision.actor_id) == (
        "patient_authorization",
        "approved",
        prescriber.user.pk,
    )
    assert decision.requirements == [{"requirement": name, "met": True} for name in REQUIREMENT_NAMES]
    assert decision.reasons == []
    assert decision.program_settings == rules.current().as_dict()


def test_denied_then_approved_attempts_are_both_stored_GATE_5(prescriber):
    patient = enroll(prescriber)
    add_baseline(patient, prescriber)

    assert reason_codes(authorize(prescriber, patient)) == ["screening_incomplete"]
    add_screening(patient, prescriber)
    assert authorize(prescriber, patient).status_code == 200

    decisions = Decision.objects.filter(patient=patient, kind="patient_authorization").order_by("created_at")
    assert [d.outcome for d in decisions] == ["denied", "approved"]
    denied, approved = decisions
    assert [r["requirement"] for r in denied.requirements] == REQUIREMENT_NAMES
    assert [(r["requirement"], r["met"]) for r in denied.requirements] == [
        ("prescriber_of_record_certified", True),
        ("baseline_labs_complete", True),
        ("screening_complete", False),
        ("pregnancy_test_negative", True),
        ("no_contraindication", True),
    ]
    assert denied.reasons == [{"code": "screening_incomplete", "detail": "No screening recorded."}]
    assert all(r["met"] for r in approved.requirements)
    assert denied.program_settings == approved.program_settings == rules.current().as_dict()


def test_decision_records_the_program_settings_in_force_GATE_5(settings, prescriber):
    settings.REMS_SETTINGS = {"baseline_lab_max_age_days": 10}
    patient = enroll(prescriber)
    add_baseline(patient, prescriber, on=TODAY - 11 * DAY)
    add_screening(patient, prescriber)

    response = authorize(prescriber, patient)

    assert reason_codes(response) == ["baseline_incomplete"]
    assert response.json()["reasons"][0]["detail"].startswith("Missing or older than 10 days: ")
    assert Decision.objects.get(patient=patient).program_settings["baseline_lab_max_age_days"] == 10


# --- Labs ---------------------------------------------------------------------------------------------


def test_lab_result_is_recorded_for_the_patient(prescriber):
    patient = enroll(prescriber)

    response = prescriber.post(
        f"/api/v1/patients/{patient.pk}/lab-results",
        {
            "test": "cbc_differential",
            "collected_on": TODAY.isoformat(),
            "result": "abnormal",
            "value": "3.1",
            "unit": "10^9/L",
            "notes": "low platelets",
        },
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (
        body["test"],
        body["collected_on"],
        body["result"],
        body["value"],
        body["unit"],
        body["notes"],
    ) == (
        "cbc_differential",
        TODAY.isoformat(),
        "abnormal",
        "3.1",
        "10^9/L",
        "low platelets",
    )
    lab = LabResult.objects.get(pk=body["id"])
    assert (lab.patient_id, lab.recorded_by_id) == (patient.pk, prescriber.user.pk)


def test_lab_result_dated_in_the_future_is_refused(prescriber):
    patient = enroll(prescriber)

    response = prescriber.post(
        f"/api/v1/patients/{patient.pk}/lab-results",
        {"test": "cbc_differential", "collected_on": (TODAY + DAY).isoformat(), "result": "normal"},
    )

    assert response.status_code == 400
    assert response.json() == {
        "code": "validation_error",
        "detail": "Invalid input.",
        "errors": {"collected_on": ["Cannot be in the future."]},
    }
    assert LabResult.objects.count() == 0


@pytest.mark.parametrize(
    ("test", "result", "message"),
    [
        ("pregnancy_test", "normal", "For pregnancy_test the result is one of: negative, positive."),
        ("cbc_differential", "negative", "For cbc_differential the result is one of: normal, abnormal."),
    ],
)
def test_lab_result_must_match_its_test(prescriber, test, result, message):
    patient = enroll(prescriber)

    response = prescriber.post(
        f"/api/v1/patients/{patient.pk}/lab-results",
        {"test": test, "collected_on": TODAY.isoformat(), "result": result},
    )

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert response.json()["errors"] == {"result": [message]}
    assert LabResult.objects.count() == 0


def test_lab_results_are_listed_newest_first_and_filter_by_test(prescriber):
    patient = enroll(prescriber)
    add_lab(patient, prescriber, "cbc_differential", TODAY - 20 * DAY)
    add_lab(patient, prescriber, "thyroid_function", TODAY - 2 * DAY)
    add_lab(patient, prescriber, "cbc_differential", TODAY - DAY)
    add_lab(patient, prescriber, "urinalysis", TODAY - 10 * DAY)
    other = enroll(prescriber)
    add_lab(other, prescriber, "cbc_differential", TODAY)

    everything = prescriber.get(f"/api/v1/patients/{patient.pk}/lab-results")
    cbc = prescriber.get(f"/api/v1/patients/{patient.pk}/lab-results?test=cbc_differential")

    assert everything.status_code == 200
    assert [(r["test"], r["collected_on"]) for r in everything.json()["results"]] == [
        ("cbc_differential", (TODAY - DAY).isoformat()),
        ("thyroid_function", (TODAY - 2 * DAY).isoformat()),
        ("urinalysis", (TODAY - 10 * DAY).isoformat()),
        ("cbc_differential", (TODAY - 20 * DAY).isoformat()),
    ]
    assert everything.json()["count"] == 4
    assert cbc.status_code == 200
    assert [(r["test"], r["collected_on"]) for r in cbc.json()["results"]] == [
        ("cbc_differential", (TODAY - DAY).isoformat()),
        ("cbc_differential", (TODAY - 20 * DAY).isoformat()),
    ]


def test_lab_results_unknown_test_filter_is_refused(prescriber):
    patient = enroll(prescriber)

    response = prescriber.get(f"/api/v1/patients/{patient.pk}/lab-results?test=xray")

    assert response.status_code == 400
    assert response.json() == {
        "code": "validation_error",
        "detail": "Invalid input.",
        "errors": {"test": ["Unknown test 'xray'."]},
    }


@pytest.mark.parametrize(
    ("suffix", "body", "field"),
    [
        (
            "screening",
            {"hiv_negative": True, "no_active_infection": True, "tb_screened_on": "FUTURE"},
            "tb_screened_on",
        ),
        (
            "screening",
            {"hiv_negative": True, "no_active_infection": True, "vaccinations_completed_on": "FUTURE"},
            "vaccinations_completed_on",
        ),
        ("contraindications", {"kind": "hiv", "noted_on": "FUTURE"}, "noted_on"),
    ],
    ids=["screening-tb", "screening-vaccinations", "contraindication-noted_on"],
)
def test_screening_and_contraindication_dates_cannot_be_in_the_future_ACT_7_ACT_9(
    prescriber, suffix, body, field
):
    patient = enroll(prescriber)
    body = {k: (TODAY + DAY).isoformat() if v == "FUTURE" else v for k, v in body.items()}

    response = prescriber.post(f"/api/v1/patients/{patient.pk}/{suffix}", body)

    assert response.status_code == 400
    assert response.json()["errors"] == {field: ["Cannot be in the future."]}
    assert Screening.objects.count() == 0
    assert patient.contraindications.count() == 0


def test_unknown_contraindication_kind_is_refused_ACT_9(prescriber):
    patient = enroll(prescriber)

    response = prescriber.post(
        f"/api/v1/patients/{patient.pk}/contraindications", {"kind": "allergy", "noted_on": TODAY.isoformat()}
    )

    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"kind"}
    assert patient.contraindications.count() == 0


# --- Bulk labs ----------------------------------------------------------------------------------------


def bulk_row(patient: Patient | str, **overrides: Any) -> dict[str, Any]:
    rems_id = patient if isinstance(patient, str) else patient.rems_patient_id
    return {
        "rems_patient_id": rems_id,
        "test": "cbc_differential",
        "collected_on": (TODAY - DAY).isoformat(),
        "result": "normal",
        **overrides,
    }


def test_bulk_lab_results_create_exactly_one_row_each(prescriber):
    first, second = enroll(prescriber), enroll(prescriber)
    rows = [bulk_row(first, test=t) for t in BASELINE] + [
        bulk_row(second, test="pregnancy_test", result="negative"),
        bulk_row(second, test="hpv_screening", result="abnormal", value="HPV16", notes="refer"),
    ]

    response = prescriber.post("/api/v1/lab-results/bulk", {"results": rows})

    assert response.status_code == 201, response.json()
    assert response.json() == {"created": 9}
    assert LabResult.objects.count() == 9
    assert sorted(LabResult.objects.filter(patient=first).values_list("test", flat=True)) == sorted(BASELINE)
    hpv = LabResult.objects.get(patient=second, test="hpv_screening")
    assert (hpv.result, hpv.value, hpv.notes, hpv.recorded_by_id) == (
        "abnormal",
        "HPV16",
        "refer",
        prescriber.user.pk,
    )


def test_bulk_lab_results_accept_registry_ids_as_typed_ID_4(prescriber):
    patient = enroll(prescriber)
    typed = patient.rems_patient_id.replace("-", "").lower()

    response = prescriber.post("/api/v1/lab-results/bulk", {"results": [bulk_row(typed)]})

    assert response.status_code == 201, response.json()
    assert LabResult.objects.filter(patient=patient).count() == 1


def test_bulk_lab_results_are_all_or_nothing_and_list_bad_rows_by_index(prescriber):
    patient = enroll(prescriber)
    rows = [
        bulk_row(patient),
        bulk_row(patient, test="serum_creatinine"),
        bulk_row(patient, test="pregnancy_test", result="normal"),
        bulk_row(patient, collected_on=(TODAY + DAY).isoformat()),
        bulk_row(patient, test="xray"),
        bulk_row(patient, test="urinalysis"),
    ]

    response = prescriber.post("/api/v1/lab-results/bulk", {"results": rows})

    assert response.status_code == 400
    assert response.json() == {
        "code": "validation_error",
        "detail": "3 of 6 rows are invalid; nothing was recorded.",
        "errors": {
            "results.2.result": ["For pregnancy_test the result is one of: negative, positive."],
            "results.3.collected_on": ["Cannot be in the future."],
            "results.4.test": ['"xray" is not a valid choice.'],
        },
    }
    assert LabResult.objects.count() == 0


def test_bulk_unknown_patient_and_another_prescribers_patient_read_the_same_ID_4(
    prescriber, other_prescriber
):
    mine = enroll(prescriber)
    theirs = enroll(other_prescriber)

    unknown = prescriber.post(
        "/api/v1/lab-results/bulk", {"results": [bulk_row(mine), bulk_row(new_registry_id())]}
    )
    hidden = prescriber.post("/api/v1/lab-results/bulk", {"results": [bulk_row(mine), bulk_row(theirs)]})
    malformed = prescriber.post(
        "/api/v1/lab-results/bulk", {"results": [bulk_row(mine), bulk_row("NOT-AN-ID")]}
    )

    expected = {
        "code": "validation_error",
        "detail": "1 of 2 rows are invalid; nothing was recorded.",
        "errors": {"results.1.rems_patient_id": ["Unknown patient."]},
    }
    assert (unknown.status_code, unknown.json()) == (400, expected)
    assert (hidden.status_code, hidden.json()) == (400, expected)
    assert (malformed.status_code, malformed.json()) == (400, expected)
    assert LabResult.objects.count() == 0


def test_bulk_lab_results_refuse_more_than_5000_rows(prescriber):
    patient = enroll(prescriber)

    response = prescriber.post("/api/v1/lab-results/bulk", {"results": [bulk_row(patient)] * 5001})

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert response.json()["errors"] == {"results": ["Ensure this field has no more than 5000 elements."]}
    assert LabResult.objects.count() == 0


def test_bulk_lab_results_accept_exactly_5000_rows(prescriber):
    patient = enroll(prescriber)

    response = prescriber.post("/api/v1/lab-results/bulk", {"results": [bulk_row(patient)] * 5000})

    assert response.status_code == 201, response.json()
    assert response.json() == {"created": 5000}
    assert LabResult.objects.filter(patient=patient).count() == 5000


def test_bulk_lab_results_refuse_an_empty_list(prescriber):
    response = prescriber.post("/api/v1/lab-results/bulk", {"results": []})

    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert set(response.json()["errors"]) == {"results"}


def test_delegate_may_bulk_post_for_its_prescribers_patients(prescriber, delegate):
    patient = enroll(prescriber)

    response = delegate.post(
        "/api/v1/lab-results/bulk", {"results": [bulk_row(patient), bulk_row(patient, test="urinalysis")]}
    )

    assert response.status_code == 201, response.json()
    assert response.json() == {"created": 2}
    assert set(LabResult.objects.filter(patient=patient).values_list("recorded_by", flat=True)) == {
        delegate.user.pk
    }


# --- Transfer of care (ACT-8) -------------------------------------------------------------------------


@pytest.mark.parametrize("actor", ["prescriber", "admin"])
def test_transfer_moves_the_patient_and_its_access_to_the_new_prescriber_ACT_8(
    request, prescriber, delegate, other_prescriber, other_delegate, actor
):
    patient = enroll(prescriber)
    caller = request.getfixturevalue(actor)
    assert other_prescriber.get(f"/api/v1/patients/{patient.pk}").status_code == 404

    response = caller.post(
        f"/api/v1/patients/{patient.pk}/transfer", {"prescriber_npi": other_prescriber.participant.npi}
    )

    assert response.status_code == 200, response.json()
    assert response.json()["prescriber"] == str(other_prescriber.participant.pk)
    patient.refresh_from_db()
    assert patient.prescriber_id == other_prescriber.participant.pk
    for old in (prescriber, delegate):
        assert old.get(f"/api/v1/patients/{patient.pk}").status_code == 404
        assert str(patient.pk) not in listed_ids(old)
        assert (
            old.post(
                f"/api/v1/patients/{patient.pk}/lab-results",
                {"test": "urinalysis", "collected_on": TODAY.isoformat(), "result": "normal"},
            ).status_code
            == 404
        )
    for new in (other_prescriber, other_delegate):
        detail = new.get(f"/api/v1/patients/{patient.pk}")
        assert detail.status_code == 200
        assert detail.json()["prescriber"] == str(other_prescriber.participant.pk)
        assert str(patient.pk) in listed_ids(new)
    assert LabResult.objects.count() == 0


def test_new_prescriber_of_record_may_authorize_after_transfer_ACT_8(prescriber, other_prescriber):
    patient = enroll(prescriber)
    make_ready(patient, prescriber)
    prescriber.post(
        f"/api/v1/patients/{patient.pk}/transfer", {"prescriber_npi": other_prescriber.participant.npi}
    )

    assert authorize(prescriber, patient).status_code == 404
    assert authorize(other_prescriber, patient).status_code == 200


@pytest.mark.parametrize("state", ["pending", "suspended", "unknown"])
def test_transfer_to_an_uncertified_prescriber_is_refused_ACT_8(prescriber, state):
    patient = enroll(prescriber)
    npi = PrescriberFactory(status=state).npi if state != "unknown" else "1558598797"

    response = prescriber.post(f"/api/v1/patients/{patient.pk}/transfer", {"prescriber_npi": npi})

    assert response.status_code == 409
    assert response.json() == {
        "code": "prescriber_not_certified",
        "detail": "No certified prescriber has this NPI.",
    }
    patient.refresh_from_db()
    assert patient.prescriber_id == prescriber.participant.pk
    assert prescriber.get(f"/api/v1/patients/{patient.pk}").status_code == 200


def test_transfer_to_the_current_prescriber_is_refused_ACT_8(prescriber):
    patient = enroll(prescriber)

    response = prescriber.post(
        f"/api/v1/patients/{patient.pk}/transfer", {"prescriber_npi": prescriber.participant.npi}
    )

    assert response.status_code == 409
    assert response.json()["code"] == "already_prescriber_of_record"


# --- Delegates ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("remover", ["prescriber", "admin"])
def test_removing_a_delegate_revokes_its_access_at_once(request, prescriber, delegate, remover):
    patient = enroll(prescriber)
    assert delegate.get(f"/api/v1/patients/{patient.pk}").status_code == 200

    response = request.getfixturevalue(remover).delete(
        f"/api/v1/prescribers/{prescriber.participant.pk}/delegates/{delegate.user.pk}"
    )

    assert response.status_code == 204
    assert delegate.get(f"/api/v1/patients/{patient.pk}").status_code == 401
    assert delegate.get("/api/v1/patients").status_code == 401
    lab = delegate.post(
        f"/api/v1/patients/{patient.pk}/lab-results",
        {"test": "urinalysis", "collected_on": TODAY.isoformat(), "result": "normal"},
    )
    assert lab.status_code == 401
    assert LabResult.objects.count() == 0
    delegate.user.refresh_from_db()
    assert not patients_visible_to(delegate.user).exists()
    assert prescriber.get(f"/api/v1/patients/{patient.pk}").status_code == 200


def test_another_prescriber_cannot_remove_a_delegate(prescriber, delegate, other_prescriber):
    patient = enroll(prescriber)

    response = other_prescriber.delete(
        f"/api/v1/prescribers/{prescriber.participant.pk}/delegates/{delegate.user.pk}"
    )

    assert response.status_code == 404
    assert delegate.get(f"/api/v1/patients/{patient.pk}").status_code == 200


# --- Status transitions (ACT-8) -----------------------------------------------------------------------


def test_only_the_rems_administrator_may_suspend_a_patient_ACT_8(admin, prescriber, delegate):
    patient = enroll(prescriber)

    for refused in (prescriber, delegate):
        response = refused.post(f"/api/v1/patients/{patient.pk}/suspend", {"reason": "non-adherence"})
        assert response.status_code == 403
        assert response.json()["code"] == "permission_denied"
        assert status_of(patient) == "enrolled"

    response = admin.post(f"/api/v1/patients/{patient.pk}/suspend", {"reason": "non-adherence"})

    assert response.status_code == 200, response.json()
    assert (response.json()["status"], response.json()["status_reason"]) == ("suspended", "non-adherence")
    assert status_of(patient) == "suspended"


def test_suspension_needs_a_reason_ACT_8(admin, prescriber):
    patient = enroll(prescriber)

    response = admin.post(f"/api/v1/patients/{patient.pk}/suspend", {})

    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"reason"}
    assert status_of(patient) == "enrolled"


@pytest.mark.parametrize("prior", ["enrolled", "authorized", "discontinued"])
def test_reinstate_returns_to_the_status_before_suspension_ACT_8(admin, prescriber, prior):
    patient = enroll(prescriber)
    if prior == "authorized":
        make_ready(patient, prescriber)
        patient_authorize(patient=patient, actor=prescriber.user, now=timezone.now())
    elif prior == "discontinued":
        patient_status_change(
            patient=patient, actor=prescriber.user, verb="discontinue", reason="stopped", now=timezone.now()
        )
    assert status_of(patient) == prior

    suspended = admin.post(f"/api/v1/patients/{patient.pk}/suspend", {"reason": "investigation"})
    assert suspended.json()["status"] == "suspended"
    assert (
        prescriber.post(f"/api/v1/patients/{patient.pk}/reinstate", {"reason": "cleared"}).status_code == 403
    )
    response = admin.post(f"/api/v1/patients/{patient.pk}/reinstate", {"reason": "cleared"})

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == prior
    assert status_of(patient) == prior


def test_prescriber_discontinues_treatment_and_keeps_seeing_the_patient_ACT_8(prescriber, delegate):
    patient = enroll(prescriber)

    response = prescriber.post(f"/api/v1/patients/{patient.pk}/discontinue", {"reason": "patient choice"})

    assert response.status_code == 200, response.json()
    assert (response.json()["status"], response.json()["status_reason"]) == ("discontinued", "patient choice")
    assert status_of(patient) == "discontinued"
    # Monitoring continues: the care team still sees the patient and records labs.
    assert delegate.get(f"/api/v1/patients/{patient.pk}").status_code == 200
    assert (
        delegate.post(
            f"/api/v1/patients/{patient.pk}/lab-results",
            {"test": "cbc_differential", "collected_on": TODAY.isoformat(), "result": "normal"},
        ).status_code
        == 201
    )


def test_prescriber_records_the_patients_death_ACT_8(prescriber):
    patient = enroll(prescriber)

    response = prescriber.post(f"/api/v1/patients/{patient.pk}/deceased", {"reason": "reported by family"})

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "deceased"
    assert status_of(patient) == "deceased"


@pytest.mark.parametrize(
    ("setup", "action", "from_status"),
    [
        ([], "reinstate", "enrolled"),
        (["suspend"], "suspend", "suspended"),
        (["discontinue"], "discontinue", "discontinued"),
        (["record_death"], "suspend", "deceased"),
        (["record_death"], "reinstate", "deceased"),
        (["record_death"], "discontinue", "deceased"),
        (["record_death"], "deceased", "deceased"),
        (["suspend"], "authorize", "suspended"),
        (["discontinue"], "authorize", "discontinued"),
    ],
    ids=lambda v: "-".join(v or ["none"]) if isinstance(v, list) else v,
)
def test_refused_status_transitions_ACT_8(admin, prescriber, setup, action, from_status):
    patient = enroll(prescriber)
    make_ready(patient, prescriber)
    for verb in setup:
        patient_status_change(
            patient=patient, actor=admin.user, verb=verb, reason="setup", now=timezone.now()
        )
    assert status_of(patient) == from_status

    body = None if action == "authorize" else {"reason": "try"}
    response = admin.post(f"/api/v1/patients/{patient.pk}/{action}", body)

    assert response.status_code == 409, response.json()
    assert response.json()["code"] == "invalid_status_transition"
    assert response.json()["status"] == from_status
    assert status_of(patient) == from_status


# --- Query count (STYLE.md 9) -------------------------------------------------------------------------


def test_patient_list_costs_the_same_queries_for_1_and_200_patients(prescriber, other_prescriber):
    enroll(prescriber)
    for _ in range(200):
        enroll(other_prescriber)
    for persona in (prescriber, other_prescriber):  # warm up: the key's last_used_at write happens once
        persona.get("/api/v1/patients")

    with CaptureQueriesContext(connection) as one:
        few = prescriber.get("/api/v1/patients?limit=500")
    with CaptureQueriesContext(connection) as many:
        lots = other_prescriber.get("/api/v1/patients?limit=500")

    assert (few.status_code, few.json()["count"], len(few.json()["results"])) == (200, 1, 1)
    assert (lots.status_code, lots.json()["count"], len(lots.json()["results"])) == (200, 200, 200)
    assert len(one.captured_queries) == len(many.captured_queries), [q["sql"] for q in many.captured_queries]


def test_patient_detail_for_a_delegate_costs_a_constant_number_of_queries(prescriber, delegate):
    first = enroll(prescriber)
    add_baseline(first, prescriber)
    second = enroll(prescriber)
    delegate.get(f"/api/v1/patients/{first.pk}")

    with CaptureQueriesContext(connection) as a:
        assert delegate.get(f"/api/v1/patients/{first.pk}").status_code == 200
    with CaptureQueriesContext(connection) as b:
        assert delegate.get(f"/api/v1/patients/{second.pk}").status_code == 200

    assert len(a.captured_queries) == len(b.captured_queries)
