"""The REMS assessment report (issue 12 item 3): `GET /api/v1/reports/assessment?from=&to=` (admin), JSON and
CSV, rebuilt from stored decisions and audit events. One program is built through the services day by day
(so every record carries the day it happened); the figures are checked against a count by hand of what
the program did, and against the rows they are computed from.

March 2026 is the reported period. Before it (February): prescribers P1, P2, P3 registered, P1 and P2
certified; pharmacy Ph1 and facility F1 registered and certified; patient C enrolled and authorized.
During it: P3 stays pending, P2 is suspended (03-10), P4 registered (03-15); pharmacy Ph2 registered
(03-03), never certified; patient A enrolled and authorized (03-02), course 1 planned, 3 doses
authorized to Ph1 and dispensed, infused on days 1-3 (03-02..03-04); Ph2 asks for A (03-03): denied
pharmacy_not_certified; patient B enrolled (03-05), not authorized; Ph1 asks for B (03-06): denied
patient_not_authorized; patient D (of reproductive potential) authorized (03-02), a pregnancy reported
(03-12), open; C discontinued (03-20). After it (04-01): one more approval that must not count.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import pytest

from registry.models import (
    AuditEvent,
    Decision,
    DecisionKind,
    DecisionOutcome,
    Dispense,
    Facility,
    Infusion,
    Pharmacy,
    Prescriber,
    User,
)
from registry.services.accounts import admin_user_ensure
from registry.services.certification import participant_certify, participant_register, participant_suspend
from registry.services.enrollment import patient_status_change
from registry.services.pregnancy import pregnancy_report_file

from .conftest import Persona, participant_persona
from .factories import make_npi
from .gate_helpers import (
    authorized_patient,
    enroll_patient,
    frozen,
    infusion_body,
    moment,
    plan_course,
    request_authorization,
)
from .pregnancy_helpers import rp_patient

pytestmark = pytest.mark.django_db

REPORT = "/api/v1/reports/assessment"
MARCH = {"from": "2026-03-01", "to": "2026-03-31"}
GOAL_ORDER = (
    "certified_participants",
    "enrolled_patients",
    "authorized_treatment",
    "monitoring",
    "pregnancy_surveillance",
)


def day(month: int, d: int) -> dt.date:
    return dt.date(2026, month, d)


def register(model: type, actor: User, on: dt.date, **extra: Any) -> Any:
    data: dict[str, Any] = {"npi": make_npi(), "enrollment_signed_on": on - dt.timedelta(days=1)}
    if model is Prescriber:
        data.update(
            first_name="Pat",
            last_name=f"Prescriber {data['npi'][-4:]}",
            email="p@example.org",
            knowledge_assessment_score=8,
            knowledge_assessment_passed_on=on - dt.timedelta(days=1),
        )
    else:
        data.update(
            name=f"Site {data['npi'][-4:]}",
            address_line1="1 Main St",
            city="Boston",
            state="MA",
            postal_code="02139",
            authorized_rep_name="Rep",
            authorized_rep_email="rep@example.org",
        )
        if model is Pharmacy:
            data.update(ncpdp_id=str(1000000 + int(data["npi"][-6:])), staff_training_completed_on=on)
        else:
            data.update(infusion_reaction_readiness_attested_on=on)
    data.update(extra)
    with frozen(on):
        return participant_register(model=model, actor=actor, data=data, now=moment(on))


def certified(model: type, actor: User, on: dt.date) -> Any:
    participant = register(model, actor, on)
    with frozen(on):
        return participant_certify(participant=participant, actor=actor, now=moment(on))


def dispense(pharmacy: Persona, number: str, vials: int, on: dt.date) -> None:
    with frozen(on):
        response = pharmacy.post(
            "/api/v1/dispenses",
            {"authorization_number": number, "vials": vials, "ndc": "58468-0200-1", "lot_number": "L1"},
        )
    assert response.status_code == 201, response.json()


def infuse_on(facility: Persona, patient: Any, on: dt.date, day_in_course: int) -> None:
    with frozen(on):
        response = facility.post("/api/v1/infusions", infusion_body(patient, on, day=day_in_course))
    assert response.status_code == 201, response.json()


@pytest.fixture
def program(db: None) -> dict[str, Any]:
    admin = admin_user_ensure(username="program-admin")
    p1 = certified(Prescriber, admin, day(2, 2))
    p2 = certified(Prescriber, admin, day(2, 2))
    register(Prescriber, admin, day(2, 3))  # P3: pending
    ph1 = participant_persona(certified(Pharmacy, admin, day(2, 2)))
    f1 = participant_persona(certified(Facility, admin, day(2, 2)))
    doctor = participant_persona(p1)
    with frozen(day(2, 10)):
        c = authorized_patient(doctor, on=day(2, 10), first_name="Cee")
    with frozen(day(3, 10)):
        participant_suspend(participant=p2, actor=admin, reason="License review", now=moment(day(3, 10)))
    register(Prescriber, admin, day(3, 15))  # P4: registered in the period, pending
    ph2 = participant_persona(register(Pharmacy, admin, day(3, 3)))

    with frozen(day(3, 2)):
        a = authorized_patient(doctor, on=day(3, 2), first_name="Ay")
        plan_course(doctor, a, start=day(3, 2))
        approved = request_authorization(ph1, a, doctor, f1, doses=3)
    assert approved.json()["decision"] == "approved", approved.json()
    dispense(ph1, approved.json()["authorization_number"], 3, day(3, 2))
    for n in (1, 2, 3):
        infuse_on(f1, a, day(3, 1 + n), n)
    with frozen(day(3, 3)):
        denied_pharmacy = request_authorization(ph2, a, doctor, f1, doses=2)
    assert denied_pharmacy.json()["decision"] == "denied"

    with frozen(day(3, 5)):
        b = enroll_patient(doctor, on=day(3, 5), first_name="Bee")
    with frozen(day(3, 6)):
        denied_patient = request_authorization(ph1, b, doctor, f1, doses=5)
    assert denied_patient.json()["decision"] == "denied"

    with frozen(day(3, 2)):
        d = rp_patient(doctor, on=day(3, 2))
    with frozen(day(3, 12)):
        pregnancy_report_file(
            patient=d,
            actor=doctor.user,
            data={"reported_on": day(3, 12), "estimated_conception_on": day(2, 20)},
            now=moment(day(3, 12)),
        )
    with frozen(day(3, 20)):
        patient_status_change(
            patient=c, actor=admin, verb="discontinue", reason="Moved", now=moment(day(3, 20))
        )

    with frozen(day(4, 1)):
        later = authorized_patient(doctor, on=day(4, 1), first_name="Later")
        plan_course(doctor, later, start=day(4, 1))
        assert request_authorization(ph1, later, doctor, f1, doses=5).json()["decision"] == "approved"
    return {"a": a, "b": b, "c": c, "d": d}


def figures(body: dict[str, Any]) -> dict[str, Any]:
    return {f["key"]: f["value"] for g in body["goals"] for s in g["sections"] for f in s["figures"]}


def test_report_figures_match_a_hand_count(admin, program):
    response = admin.client.get(REPORT, MARCH)

    assert response.status_code == 200, response.json()
    body = response.json()
    got = figures(body)
    hand = {
        # Goal 1: participants (ACT-1..5)
        "prescribers_certified_at_end": 1,  # P1 (P2 suspended)
        "prescribers_suspended_at_end": 1,  # P2
        "prescribers_pending_at_end": 2,  # P3, P4
        "prescribers_registered_in_period": 1,  # P4
        "prescribers_suspended_in_period": 1,  # P2
        "pharmacies_certified_at_end": 1,  # Ph1
        "pharmacies_pending_at_end": 1,  # Ph2
        "pharmacies_registered_in_period": 1,  # Ph2
        "facilities_certified_at_end": 1,  # F1
        # Goal 2: patients (ACT-6..9)
        "patients_enrolled": 3,  # A, B, D
        "patients_authorized": 2,  # A, D
        "patients_treated": 1,  # A
        "infusions": 3,  # A days 1-3
        "courses_started": 1,
        "patients_discontinued": 1,  # C
        "patients_authorized_at_end": 2,  # A, D
        "patients_enrolled_at_end": 1,  # B
        "patients_discontinued_at_end": 1,  # C
        # Goal 3: authorizations and integrity (GATE-1..5)
        "authorizations_requested": 3,
        "authorizations_approved": 1,
        "authorizations_denied": 2,
        "denied_pharmacy_not_certified": 1,
        "denied_patient_not_authorized": 1,
        "approved_then_used": 1,
        "dispenses": 1,
        "dispenses_without_valid_authorization": 0,
        "facility_infusions": 3,
        "infusions_without_valid_authorization": 0,
        "dispenses_over_infused": 0,
        # Goal 5: pregnancy (PRG-2..4)
        "pregnancies_reported": 1,
        "pregnancies_reported_exposed": 0,
        "pregnancies_open_at_end": 1,
    }
    assert {key: got.get(key) for key in hand} == hand


def test_report_figures_trace_to_rows(admin, program):
    """The same figures counted straight from the stored rows of the period."""
    got = figures(admin.client.get(REPORT, MARCH).json())
    start, end = moment(day(3, 1), 0) - dt.timedelta(hours=12), moment(day(4, 1), 0) + dt.timedelta(hours=12)
    dispense_decisions = [
        d
        for d in Decision.objects.filter(
            kind=DecisionKind.DISPENSE_AUTHORIZATION, created_at__range=(start, end)
        )
        if dt.date(2026, 3, 1) <= d.created_at.astimezone(dt.UTC).date() <= dt.date(2026, 3, 31)
    ]
    assert got["authorizations_approved"] == sum(
        d.outcome == DecisionOutcome.APPROVED for d in dispense_decisions
    )
    assert got["authorizations_denied"] == sum(
        d.outcome == DecisionOutcome.DENIED for d in dispense_decisions
    )
    assert got["infusions"] == Infusion.objects.filter(administered_on__month=3).count()
    assert got["dispenses"] == Dispense.objects.filter(created_at__month=3).count()
    assert (
        got["patients_enrolled"]
        == AuditEvent.objects.filter(action="patient.enroll", created_at__month=3).count()
    )


def test_report_states_the_settings_in_force_and_the_period(admin, program):
    body = admin.client.get(REPORT, MARCH).json()

    assert body["period"]["from"] == "2026-03-01"
    assert body["period"]["to"] == "2026-03-31"
    assert body["period"]["time_zone"]
    assert "authorization_validity_days" in body["program_settings"]
    assert body["settings_in_decisions"]
    goals = [g["key"] for g in body["goals"]]
    assert goals == [key for key in GOAL_ORDER if key in goals]
    assert {
        "certified_participants",
        "enrolled_patients",
        "authorized_treatment",
        "pregnancy_surveillance",
    } <= set(goals)
    targets = {f["key"]: f.get("target") for g in body["goals"] for s in g["sections"] for f in s["figures"]}
    assert targets["dispenses_without_valid_authorization"] == 0
    assert targets["infusions_without_valid_authorization"] == 0
    assert all(f["method"] for g in body["goals"] for s in g["sections"] for f in s["figures"])


@pytest.mark.parametrize("how", ["query", "accept"])
def test_report_as_csv(admin, program, how):
    if how == "query":
        response = admin.client.get(REPORT, {**MARCH, "format": "csv"})
    else:
        response = admin.client.get(REPORT, MARCH, HTTP_ACCEPT="text/csv")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    by_key = {row["key"]: row for row in rows}
    assert by_key["authorizations_denied"]["value"] == "2"
    assert by_key["dispenses_without_valid_authorization"]["target"] == "0"
    assert by_key["from"]["value"] == "2026-03-01"
    assert {row["goal"] for row in rows} >= {"report", "certified_participants", "authorized_treatment"}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({}, "from"),
        ({"from": "2026-03-01"}, "to"),
        ({"from": "2026-03-31", "to": "2026-03-01"}, "to"),
        ({"from": "03/01/2026", "to": "2026-03-31"}, "from"),
        ({"from": "2010-01-01", "to": "2026-03-31"}, "to"),
        ({**MARCH, "format": "xml"}, "format"),
    ],
)
def test_report_period_errors_are_400_validation_error(admin, query, field):
    response = admin.client.get(REPORT, query)

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert field in body["errors"]


@pytest.mark.parametrize("how", [{"format": "csv"}, {"HTTP_ACCEPT": "text/csv"}])
def test_report_errors_answer_json_even_to_a_csv_caller(admin, how):
    query = {"format": "csv"} if "format" in how else {}
    headers = {k: v for k, v in how.items() if k.startswith("HTTP_")}
    response = admin.client.get(REPORT, query, **headers)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "validation_error"


@pytest.mark.parametrize("persona", ["prescriber", "pharmacy", "facility", "delegate"])
def test_report_is_for_administrators_only(request, persona):
    caller = request.getfixturevalue(persona)
    response = caller.client.get(REPORT, MARCH)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_report_needs_a_key(anon):
    assert anon.client.get(REPORT, MARCH).status_code == 401


def test_report_query_count_does_not_grow_with_the_program(admin, program, prescriber, facility, pharmacy):
    """The report runs a bounded number of statements: another patient treated in the period adds none."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as before:
        admin.client.get(REPORT, MARCH)
    with frozen(day(3, 9)):
        more = authorized_patient(prescriber, on=day(3, 9), first_name="More")
        plan_course(prescriber, more, start=day(3, 9))
        request_authorization(pharmacy, more, prescriber, facility, doses=2)
    with CaptureQueriesContext(connection) as after:
        admin.client.get(REPORT, MARCH)
    assert len(after) == len(before)
