"""The one gate pipeline (GATE-4, GATE-5): adding a blocking condition is one function and one entry, every
check the registry answers stores exactly one decision, and an approval that the database turns down is
stored as the denial it became."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from registry.errors import ReasonCode
from registry.models import AuditEvent, Course, Decision, DecisionKind, DecisionOutcome
from registry.selectors.facts import Facts, facts_load
from registry.services.decisions import (
    COURSE_PLAN_GATE,
    DISPENSE_GATE,
    GATES,
    INFUSION_CHECK_GATE,
    INFUSION_GATE,
    PATIENT_AUTHORIZATION_GATE,
    needs_patient,
)
from registry.services.gate import (
    Check,
    Gate,
    Refused,
    blocking_condition,
    blocking_condition_remove,
    gate_run,
)
from registry.services.rows import rows_insert

from .gate_helpers import (
    DAY0,
    authorized_patient,
    course_path,
    enroll_patient,
    frozen,
    infusion_body,
    plan_course,
    request_authorization,
)

pytestmark = pytest.mark.django_db

MADE_UP = "made_up_hold"


@needs_patient(MADE_UP)
def no_made_up_hold(f: Facts) -> Check:
    """GATE-4 (a made-up blocking condition): patients whose last name is Held are on hold."""
    assert f.patient is not None
    if f.patient.last_name != "Held":
        return Check("no_made_up_hold", True)
    return Check("no_made_up_hold", False, MADE_UP, "Held for the test.")


@pytest.fixture
def made_up_block() -> Iterator[None]:
    """Registers the made-up condition through the public extension point, and removes it after."""
    blocking_condition(COURSE_PLAN_GATE, DISPENSE_GATE, INFUSION_GATE)(no_made_up_hold)
    yield
    blocking_condition_remove(no_made_up_hold, GATES)


@pytest.fixture
def clock() -> Iterator[None]:
    with frozen(DAY0):
        yield


def test_a_blocking_condition_is_one_function_and_one_entry_GATE_4(
    clock, made_up_block, prescriber, facility, pharmacy
):
    """GATE-4: registered once, the made-up hold refuses course planning, dispense authorization, the
    infusion and its check (which shares the infusion's list), and not patient authorization, which does
    not list it; each refusal is stored (GATE-5)."""
    patient = authorized_patient(prescriber, last_name="Held")
    assert no_made_up_hold in INFUSION_CHECK_GATE.all_requirements()
    assert no_made_up_hold not in PATIENT_AUTHORIZATION_GATE.all_requirements()

    planned = prescriber.post(course_path(patient), {"planned_start_on": DAY0.isoformat()})
    assert planned.status_code == 409, planned.json()
    assert [r["code"] for r in planned.json()["reasons"]] == [MADE_UP]

    blocking_condition_remove(no_made_up_hold, [COURSE_PLAN_GATE])
    plan_course(prescriber, patient, start=DAY0)

    denied = request_authorization(pharmacy, patient, prescriber, facility).json()
    assert (denied["decision"], [r["code"] for r in denied["reasons"]]) == ("denied", [MADE_UP])

    # The hold also kept the drug from being shipped, so no dispense backs the infusion (GATE-3).
    checked = facility.post("/api/v1/infusions/check", infusion_body(patient, DAY0)).json()
    assert (checked["decision"], [r["code"] for r in checked["reasons"]]) == (
        "do_not_infuse",
        ["no_dispense_for_facility", MADE_UP],
    )
    refused = facility.post("/api/v1/infusions", infusion_body(patient, DAY0))
    assert (refused.status_code, refused.json()["code"]) == (409, "do_not_infuse")

    stored = Decision.objects.filter(patient=patient, outcome=DecisionOutcome.DENIED)
    assert sorted(stored.values_list("kind", flat=True)) == sorted(
        [
            DecisionKind.COURSE_PLAN,
            DecisionKind.DISPENSE_AUTHORIZATION,
            DecisionKind.INFUSION_CHECK,
            DecisionKind.INFUSION,
        ]
    )
    for decision in stored:
        assert {
            "requirement": "no_made_up_hold",
            "met": False,
            "code": MADE_UP,
            "detail": "Held for the test.",
        } in (decision.requirements)


def test_a_refused_approval_is_stored_as_a_denial_and_its_writes_roll_back_GATE_5(clock, prescriber):
    """GATE-5: an approval action turned down by the database (a race the locks cannot exclude) leaves
    nothing of what it wrote, and the one stored decision is a denial naming the reason."""
    patient = authorized_patient(prescriber)
    gate = Gate(DecisionKind.COURSE_PLAN, [])
    now = timezone.now()

    def approve(facts: Facts, decision_id: object) -> Course:
        Course.objects.create(
            patient=patient, number=1, planned_doses=5, planned_start_on=DAY0, planned_by=prescriber.user
        )
        raise Refused(Check("no_open_course", False, ReasonCode.OPEN_COURSE_EXISTS, "Raced."))

    outcome = gate_run(
        gate,
        actor=prescriber.user,
        load=lambda: facts_load(patient=patient, now=now, as_of=DAY0),
        inputs={"patient": patient.pk},
        approve=approve,
    )

    assert not outcome.approved
    assert outcome.created is None
    assert not Course.objects.exists()
    decision = Decision.objects.get(kind=DecisionKind.COURSE_PLAN)  # the other one authorized the patient
    assert decision.pk == outcome.decision.pk
    assert (decision.outcome, decision.reasons) == (
        DecisionOutcome.DENIED,
        [{"code": "open_course_exists", "detail": "Raced."}],
    )


def _one_statement_run(prescriber: Any, approve: Any) -> Any:
    patient = authorized_patient(prescriber)
    now = timezone.now()
    return patient, lambda: gate_run(
        Gate(DecisionKind.COURSE_PLAN, [], one_statement_approval=True),
        actor=prescriber.user,
        load=lambda: facts_load(patient=patient, now=now, as_of=DAY0),
        inputs={"patient": patient.pk},
        approve=approve,
    )


def test_a_one_statement_approval_writes_its_decision_with_its_rows_GATE_5(clock, prescriber):
    """Issue 13: the approved decision is written by the approval's own statement, once."""

    def approve(facts: Facts, decision_id: object, decision_rows: list[Any]) -> Course:
        course = Course(
            patient=facts.patient,
            number=1,
            planned_doses=5,
            planned_start_on=DAY0,
            planned_by=prescriber.user,
        )
        assert rows_insert(course, *decision_rows)
        return course

    patient, run = _one_statement_run(prescriber, approve)
    with CaptureQueriesContext(connection) as queries:
        outcome = run()
    assert outcome.approved
    assert Decision.objects.get(kind=DecisionKind.COURSE_PLAN).pk == outcome.decision.pk
    assert Course.objects.get(patient=patient).pk == outcome.created.pk
    if connection.vendor == "postgresql":  # SQLite: ordinary saves
        inserts = [q["sql"] for q in queries if "INSERT INTO" in q["sql"]]
        assert len(inserts) == 1, inserts  # the course, the decision and its audit event: one statement
    assert (
        AuditEvent.objects.filter(subject_id=outcome.decision.pk, action="decision.course_plan").count() == 1
    )


def test_a_one_statement_approval_refused_before_its_statement_stores_one_denial_GATE_5(clock, prescriber):
    def approve(facts: Facts, decision_id: object, decision_rows: list[Any]) -> Course:
        raise Refused(Check("no_open_course", False, ReasonCode.OPEN_COURSE_EXISTS, "Raced."))

    patient, run = _one_statement_run(prescriber, approve)
    outcome = run()
    assert not outcome.approved
    decision = Decision.objects.get(kind=DecisionKind.COURSE_PLAN)
    assert (decision.pk, decision.outcome) == (outcome.decision.pk, DecisionOutcome.DENIED)
    assert decision.reasons == [{"code": "open_course_exists", "detail": "Raced."}]
    assert not Course.objects.filter(patient=patient).exists()


@pytest.mark.parametrize("when", ["after_its_statement", "in_a_doomed_transaction", "without_writing"])
def test_a_one_statement_approval_that_cannot_store_a_denial_fails_whole_GATE_5(clock, prescriber, when):
    """A Refused after the statement wrote the approved decision, or out of an atomic(savepoint=False)
    block (the transaction is doomed), and an approval that never wrote its decision: the request fails
    whole and nothing of it is stored (never an approval without its decision, never two decisions)."""

    def approve(facts: Facts, decision_id: object, decision_rows: list[Any]) -> None:
        refused = Refused(Check("no_open_course", False, ReasonCode.OPEN_COURSE_EXISTS, "Raced."))
        if when == "after_its_statement":
            rows_insert(*decision_rows)
            raise refused
        if when == "in_a_doomed_transaction":
            with transaction.atomic(savepoint=False):
                raise refused

    _patient, run = _one_statement_run(prescriber, approve)
    decisions = Decision.objects.count()
    with pytest.raises(RuntimeError if when == "without_writing" else Refused):
        run()
    assert Decision.objects.count() == decisions
    assert not Decision.objects.filter(kind=DecisionKind.COURSE_PLAN).exists()


def test_every_refusal_body_names_its_stored_decision_GATE_5(clock, prescriber, facility, pharmacy):
    """GATE-5: patient authorization, course planning, dispense authorization, the infusion and its check
    each answer with the id of the one decision they stored."""
    patient = authorized_patient(prescriber)
    unauthorized = enroll_patient(prescriber, first_name="Una")
    plan_course(prescriber, patient, start=DAY0)  # a second plan is refused: a course is open (CRS-3)
    bodies = [
        prescriber.post(course_path(patient), {"planned_start_on": DAY0.isoformat()}).json(),
        facility.post("/api/v1/infusions", infusion_body(unauthorized, DAY0)).json(),
        facility.post("/api/v1/infusions/check", infusion_body(unauthorized, DAY0)).json(),
    ]
    denied = request_authorization(pharmacy, unauthorized, prescriber, facility).json()
    ids = [b["decision_id"] for b in bodies] + [denied["id"]]
    assert all(ids)
    assert Decision.objects.filter(pk__in=ids).count() == 4
    assert Decision.objects.filter(patient=unauthorized).count() == 3


def test_planning_tomorrow_is_a_single_stored_decision(clock, prescriber):
    """GATE-5: one answer, one decision: an approved course plan stores exactly one decision."""
    patient = authorized_patient(prescriber)
    before = Decision.objects.count()
    plan_course(prescriber, patient, start=DAY0 + dt.timedelta(days=1))
    assert Decision.objects.count() == before + 1


def test_a_requirement_has_one_name_evaluated_or_not_GATE_5(clock, prescriber, facility, pharmacy):
    """GATE-5: the stored decision names each requirement the same way whether it was evaluated or not: an
    approval (every requirement evaluated) and an unknown patient's denial (patient requirements recorded
    as not evaluated) list the same names, in the same order."""
    patient = authorized_patient(prescriber)
    plan_course(prescriber, patient, start=DAY0)
    approved = request_authorization(pharmacy, patient, prescriber, facility, doses=1).json()
    assert approved["decision"] == "approved", approved
    unknown = request_authorization(
        pharmacy, patient, prescriber, facility, doses=1, date_of_birth="1901-01-01"
    ).json()
    assert unknown["decision"] == "denied", unknown
    stored = {
        str(d.pk): [r["requirement"] for r in d.requirements]
        for d in Decision.objects.filter(pk__in=[approved["id"], unknown["id"]])
    }
    assert stored[approved["id"]] == stored[unknown["id"]]
    not_evaluated = [
        r["requirement"]
        for r in Decision.objects.get(pk=unknown["id"]).requirements
        if not r.get("evaluated", True)
    ]
    assert "open_course" in not_evaluated
