"""Dispense authorization and dispensing through the API (GATE-1, GATE-2, GATE-4, GATE-5, ID-4).

POST /api/v1/dispense-authorizations always answers 201: `approved` with a single-use number valid 7 days,
or `denied` listing every unmet requirement. POST /api/v1/dispenses consumes a number exactly once.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from registry import rules
from registry.api.refusals import PUBLIC_DETAIL
from registry.identifiers import new_registry_id, parse_authorization_number
from registry.models import (
    AuthorizationStatus,
    Decision,
    DecisionKind,
    DecisionOutcome,
    Dispense,
    DispenseAuthorization,
    Pharmacy,
)
from registry.services.certification import participant_suspend
from registry.services.enrollment import patient_status_change

from .conftest import client_with_key, participant_persona
from .factories import PharmacyFactory
from .gate_helpers import (
    DAY0,
    DISPENSE_REQUIREMENT_NAMES,
    PRE_COURSE_LABS,
    add_contraindication,
    approved_number,
    authorization_body,
    authorized_patient,
    frozen,
    moment,
    old_labs_orm,
    patient_after_course_1,
    plan_course,
    prior_courses_orm,
    record_labs,
    request_authorization,
)

pytestmark = pytest.mark.django_db

AUTHORIZATIONS = "/api/v1/dispense-authorizations"
DISPENSES = "/api/v1/dispenses"
NOW = moment(DAY0)


@pytest.fixture
def clock():
    """Every test here runs on 2026-03-02 at 15:00 UTC unless it travels on."""
    with frozen(DAY0) as traveller:
        yield traveller


@pytest.fixture
def patient(clock, prescriber):
    """Authorized on 2026-03-02 (labs of 2026-02-27), course 1 planned to start that day."""
    patient = authorized_patient(prescriber)
    plan_course(prescriber, patient, start=DAY0)
    return patient


@pytest.fixture
def other_pharmacy(db):
    return participant_persona(PharmacyFactory(certified=True))


def _denied(response, reasons):
    """GATE-1: a denial is still 201, with `authorization_number: null` and exactly these reason codes."""
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["decision"] == "denied", body
    assert body["authorization_number"] is None
    assert body["expires_at"] is None
    assert [r["code"] for r in body["reasons"]] == reasons
    return body


def _stored_detail(body):
    """Minimum necessary disclosure: the pharmacy reads the code's neutral text for a fact about the
    patient; the stored decision keeps the full detail for the prescriber of record and administrators."""
    reason = body["reasons"][0]
    assert reason["detail"] == PUBLIC_DETAIL[reason["code"]]
    return Decision.objects.get(pk=body["id"]).reasons[0]["detail"]


def _met(requirements):
    return [(r["requirement"], r["met"]) for r in requirements]


def _without_nulls(requirements):
    return [{k: v for k, v in r.items() if v is not None} for r in requirements]


def _course_2_planned(prescriber, facility):
    """Course 1 ran 2026-03-02..06; pre-course labs on 2027-03-01; course 2 planned for 2027-03-06."""
    patient = patient_after_course_1(prescriber, facility)
    with frozen(dt.date(2027, 3, 1)):
        record_labs(patient, prescriber.user, collected_on=dt.date(2027, 3, 1), tests=PRE_COURSE_LABS)
        plan_course(prescriber, patient, start=dt.date(2027, 3, 6), on=dt.date(2027, 3, 1))
    return patient


# --- GATE-1/GATE-2: approval ----------------------------------------------------------------------------


def test_approved_authorization_carries_a_checked_number_valid_7_days(
    patient, prescriber, facility, pharmacy
):
    """GATE-1, GATE-2: approved with a number carrying a check character, valid 7 days, for the course's
    5 doses, with every requirement listed as met; bound to pharmacy, facility, prescriber, patient and
    course."""
    response = request_authorization(pharmacy, patient, prescriber, facility, doses=5)

    assert response.status_code == 201
    body = response.json()
    assert body["decision"] == "approved"
    number = body["authorization_number"]
    assert parse_authorization_number(number) == number
    assert parse_authorization_number(number[:-1] + ("0" if number[-1] != "0" else "1")) is None
    assert dt.datetime.fromisoformat(body["expires_at"]) == NOW + dt.timedelta(days=7)
    assert dt.datetime.fromisoformat(body["effective_at"]) == NOW
    assert (body["course_number"], body["doses_authorized"], body["reasons"]) == (1, 5, [])
    assert _met(body["requirements"]) == [(name, True) for name in DISPENSE_REQUIREMENT_NAMES]

    authorization = DispenseAuthorization.objects.get(number=number)
    assert authorization.id == uuid.UUID(body["id"])
    assert authorization.status == AuthorizationStatus.ACTIVE
    assert (authorization.pharmacy, authorization.facility, authorization.prescriber) == (
        pharmacy.participant,
        facility.participant,
        prescriber.participant,
    )
    assert (authorization.patient_id, authorization.course) == (patient.pk, patient.courses.get(number=1))
    assert authorization.decision.outcome == DecisionOutcome.APPROVED


def test_two_authorizations_get_different_numbers(patient, prescriber, facility, pharmacy):
    """GATE-2: numbers are unique and unguessable."""
    first = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=2))
    second = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=3))
    assert first != second


# --- GATE-1/GATE-4: denial reasons, one at a time -------------------------------------------------------


def test_denied_when_pharmacy_not_certified(patient, prescriber, facility, pharmacy, admin):
    """GATE-1, ACT-1: a pharmacy that is not certified (pending) fails the gate. (A suspended one is
    refused before the gate: 403 `participant_suspended`, tests/test_access.py.)"""
    Pharmacy.objects.filter(pk=pharmacy.participant.pk).update(status="pending")
    body = _denied(request_authorization(pharmacy, patient, prescriber, facility), ["pharmacy_not_certified"])
    assert body["reasons"] == [{"code": "pharmacy_not_certified", "detail": "The pharmacy is not certified."}]


def test_denied_when_facility_not_certified(patient, prescriber, facility, pharmacy, admin):
    """GATE-1, ACT-5: a suspended receiving facility fails the gate."""
    participant_suspend(participant=facility.participant, actor=admin.user, reason="Audit", now=NOW)
    _denied(request_authorization(pharmacy, patient, prescriber, facility), ["facility_not_certified"])


def test_denied_when_facility_npi_is_unknown(patient, prescriber, facility, pharmacy):
    """GATE-1: an NPI no registered facility has is `facility_not_certified`."""
    body = _denied(
        request_authorization(pharmacy, patient, prescriber, facility, facility_npi="1993999998"),
        ["facility_not_certified"],
    )
    assert body["reasons"][0]["detail"] == "No registered facility has this NPI."


def test_denied_when_prescriber_not_certified(patient, prescriber, facility, pharmacy, admin):
    """GATE-1, ACT-5: the prescriber of record, suspended, fails `prescriber_certified`."""
    participant_suspend(participant=prescriber.participant, actor=admin.user, reason="Audit", now=NOW)
    _denied(request_authorization(pharmacy, patient, prescriber, facility), ["prescriber_not_certified"])


def test_denied_when_prescriber_not_of_record(patient, prescriber, other_prescriber, facility, pharmacy):
    """GATE-1: a certified prescriber who is not the patient's prescriber of record."""
    body = _denied(
        request_authorization(pharmacy, patient, other_prescriber, facility), ["prescriber_not_of_record"]
    )
    assert body["reasons"] == [
        {
            "code": "prescriber_not_of_record",
            "detail": "The prescriber is not the patient's prescriber of record.",
        }
    ]


def test_unknown_registry_id_and_wrong_date_of_birth_read_the_same(patient, prescriber, facility, pharmacy):
    """ID-4: an unknown registry ID, a date-of-birth mismatch and a malformed ID get byte-identical
    reasons and requirements: nothing tells a caller which part was wrong."""
    unknown = request_authorization(
        pharmacy, patient, prescriber, facility, rems_patient_id=new_registry_id()
    )
    wrong_dob = request_authorization(
        pharmacy,
        patient,
        prescriber,
        facility,
        date_of_birth=(patient.date_of_birth + dt.timedelta(days=1)).isoformat(),
    )
    malformed = request_authorization(pharmacy, patient, prescriber, facility, rems_patient_id="NOT-AN-ID")

    bodies = [_denied(r, ["patient_not_found"]) for r in (unknown, wrong_dob, malformed)]
    dumped = {json.dumps(b["reasons"], sort_keys=True).encode() for b in bodies}
    assert dumped == {
        b'[{"code": "patient_not_found", "detail": "No patient matches this registry ID and date of birth."}]'
    }
    assert bodies[0]["requirements"] == bodies[1]["requirements"] == bodies[2]["requirements"]
    assert set(
        Decision.objects.filter(kind=DecisionKind.DISPENSE_AUTHORIZATION).values_list("patient", flat=True)
    ) == {None}


def test_denied_when_patient_not_authorized(patient, prescriber, facility, pharmacy, admin):
    """GATE-1, ACT-8: a suspended patient is not authorized."""
    patient_status_change(patient=patient, actor=admin.user, verb="suspend", reason="Review", now=NOW)
    body = _denied(request_authorization(pharmacy, patient, prescriber, facility), ["patient_not_authorized"])
    assert _stored_detail(body) == "The patient is suspended, not authorized."


def test_denied_with_contraindication_recorded(patient, prescriber, facility, pharmacy):
    """GATE-4, ACT-9: a contraindication recorded after the course was planned still blocks."""
    add_contraindication(patient, prescriber.user, on=DAY0, kind="hiv")
    body = _denied(
        request_authorization(pharmacy, patient, prescriber, facility), ["contraindication_recorded"]
    )
    assert _stored_detail(body) == "Contraindication recorded: hiv."


def test_denied_without_an_open_course(clock, prescriber, facility, pharmacy):
    """GATE-1: the patient needs an open course."""
    patient = authorized_patient(prescriber)
    _denied(request_authorization(pharmacy, patient, prescriber, facility), ["no_open_course"])


def test_denied_when_course_doses_are_all_committed(patient, prescriber, facility, pharmacy):
    """GATE-1: doses under an active authorization are committed; none is left for a second one."""
    approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    body = _denied(
        request_authorization(pharmacy, patient, prescriber, facility, doses=1), ["course_doses_exhausted"]
    )
    assert _stored_detail(body) == "Course 1 has no doses left to authorize."


def test_denied_when_course_doses_are_all_dispensed(patient, prescriber, facility, pharmacy):
    """GATE-1, GATE-2: vials dispensed stay committed after their authorization is used."""
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    assert pharmacy.post(DISPENSES, {"authorization_number": number, "vials": 5}).status_code == 201
    _denied(
        request_authorization(pharmacy, patient, prescriber, facility, doses=1), ["course_doses_exhausted"]
    )


def test_denied_when_doses_requested_exceed_what_is_left(patient, prescriber, facility, pharmacy):
    """GATE-1: 3 of 5 doses under an active authorization leave 2; asking for 3 is refused."""
    approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=3))
    body = _denied(
        request_authorization(pharmacy, patient, prescriber, facility, doses=3), ["doses_exceed_remaining"]
    )
    assert _stored_detail(body) == "3 doses requested; course 1 has 2 left to authorize."
    assert approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=2))


def test_expired_and_revoked_authorizations_free_their_doses(patient, prescriber, facility, pharmacy):
    """GATE-2: only active, unexpired authorizations commit doses."""
    first = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    assert pharmacy.post(f"{AUTHORIZATIONS}/{first}/revoke", {"reason": "Wrong facility"}).status_code == 200
    second = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    assert second != first
    with frozen(NOW + dt.timedelta(days=7)):
        assert approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))


@pytest.mark.parametrize(
    ("on", "decision"),
    [
        (dt.date(2027, 2, 26), "denied"),
        (dt.date(2027, 2, 27), "approved"),
        (dt.date(2027, 2, 28), "approved"),
    ],
    ids=["day-before-lead", "lead-day", "day-after-lead"],
)
def test_course_2_authorization_waits_for_the_12_month_interval_less_the_lead(
    prescriber, facility, pharmacy, on, decision
):
    """CRS-2, GATE-4, issue 9 item 5: a course 2 dose may be authorized from `authorization_lead_days`
    (*setting*, 7) before 12 months after course 1's last infusion (2026-03-06 + 12 months = 2027-03-06),
    so the drug can ship ahead; checked at the moment of the request (the labs of 2027-02-26 are fresh)."""
    patient = patient_after_course_1(prescriber, facility)
    with frozen(dt.date(2027, 2, 26)):
        record_labs(patient, prescriber.user, collected_on=dt.date(2027, 2, 26), tests=PRE_COURSE_LABS)
        plan_course(prescriber, patient, start=dt.date(2027, 3, 6), on=dt.date(2027, 2, 26))
    with frozen(on):
        response = request_authorization(pharmacy, patient, prescriber, facility, doses=3)

    if decision == "denied":
        body = _denied(response, ["course_interval_not_met"])
        assert _stored_detail(body) == (
            "Course 2 may not start before 2027-03-06. A dispense may be authorized from 2027-02-27."
        )
    else:
        assert approved_number(response)
        assert (response.json()["course_number"], response.json()["doses_authorized"]) == (2, 3)


def test_denied_with_stale_pre_course_labs(prescriber, facility, pharmacy):
    """CRS-4, GATE-4: course 2's labs of 2027-03-01 are 35 days old on 2027-04-05."""
    patient = _course_2_planned(prescriber, facility)
    with frozen(dt.date(2027, 4, 5)):
        body = _denied(
            request_authorization(pharmacy, patient, prescriber, facility, doses=3), ["pre_course_labs_stale"]
        )
    assert _stored_detail(body) == (
        "Missing or older than 30 days: cbc_differential, serum_creatinine, urinalysis."
    )


# --- GATE-1: every reason at once -----------------------------------------------------------------------


def test_denial_lists_every_failed_requirement_at_once(
    patient, prescriber, other_prescriber, facility, pharmacy, admin
):
    """GATE-1: not just the first: facility, prescriber (suspended and not of record), patient
    (suspended, contraindicated) and stale labs, all in one answer to a certified pharmacy."""
    for persona in (facility, other_prescriber):
        participant_suspend(participant=persona.participant, actor=admin.user, reason="Audit", now=NOW)
    patient_status_change(patient=patient, actor=admin.user, verb="suspend", reason="Review", now=NOW)
    add_contraindication(patient, prescriber.user, on=DAY0, kind="active_infection")

    with frozen(DAY0 + dt.timedelta(days=31)):
        response = request_authorization(pharmacy, patient, other_prescriber, facility)

    body = _denied(
        response,
        [
            "facility_not_certified",
            "prescriber_not_certified",
            "prescriber_not_of_record",
            "patient_not_authorized",
            "contraindication_recorded",
            "pre_course_labs_stale",
            "baseline_incomplete",
        ],
    )
    unmet = [r["requirement"] for r in body["requirements"] if not r["met"]]
    assert unmet == [
        "facility_certified",
        "prescriber_certified",
        "prescriber_of_record",
        "patient_authorized",
        "no_contraindication",
        "pre_course_labs_fresh",
        "course_1_baseline_labs",
    ]


def test_uncertified_pharmacy_learns_nothing_about_the_patient_GATE_1(
    patient, prescriber, other_prescriber, facility, pharmacy, admin
):
    """GATE-1, minimum necessary disclosure: when the calling pharmacy is itself not certified only the
    parties' reasons are answered; nothing about the patient is evaluated, and the stored decision says
    so (GATE-5). The pharmacy is pending: a suspended one is refused before the gate (403
    `participant_suspended`, ACT-5; tests/test_access.py), which names nothing about the patient either."""
    Pharmacy.objects.filter(pk=pharmacy.participant.pk).update(status="pending")
    for persona in (facility, other_prescriber):
        participant_suspend(participant=persona.participant, actor=admin.user, reason="Audit", now=NOW)
    patient_status_change(patient=patient, actor=admin.user, verb="suspend", reason="Review", now=NOW)
    add_contraindication(patient, prescriber.user, on=DAY0, kind="hiv")

    body = _denied(
        request_authorization(pharmacy, patient, other_prescriber, facility),
        ["pharmacy_not_certified", "facility_not_certified", "prescriber_not_certified"],
    )
    assert body["reasons"] == [
        {"code": "pharmacy_not_certified", "detail": "The pharmacy is not certified."},
        {"code": "facility_not_certified", "detail": "The facility is not certified."},
        {"code": "prescriber_not_certified", "detail": "The prescriber is not certified."},
    ]
    evaluated = {r["requirement"]: r.get("evaluated", True) for r in body["requirements"]}
    assert [name for name, done in evaluated.items() if done] == [
        "pharmacy_certified",
        "facility_certified",
        "prescriber_certified",
    ]
    text = str(body)
    for fact in ("hiv", "suspended", "Contraindication", "2026-"):
        assert fact not in text
    stored = Decision.objects.get(pk=body["id"])
    assert [r["code"] for r in stored.reasons] == [
        "pharmacy_not_certified",
        "facility_not_certified",
        "prescriber_not_certified",
    ]


def test_denial_lists_missing_course_interval_and_stale_labs_together(prescriber, facility, pharmacy):
    """GATE-1, CRS-2, CRS-4: after course 1, with no course 2 planned, six months on."""
    patient = patient_after_course_1(prescriber, facility)
    with frozen(dt.date(2026, 9, 1)):
        response = request_authorization(pharmacy, patient, prescriber, facility, doses=3)
    _denied(response, ["no_open_course", "course_interval_not_met", "pre_course_labs_stale"])


# --- GATE-5: the decision record ----------------------------------------------------------------------


def test_denial_is_stored_as_a_decision_and_issues_no_authorization(patient, prescriber, facility, pharmacy):
    """GATE-5: the denied check is stored with every requirement, its result, the settings in force and
    the actor; no authorization exists for it."""
    add_contraindication(patient, prescriber.user, on=DAY0)
    body = _denied(
        request_authorization(pharmacy, patient, prescriber, facility, doses=4), ["contraindication_recorded"]
    )

    decision = Decision.objects.get(pk=body["id"])
    assert (decision.kind, decision.outcome) == (DecisionKind.DISPENSE_AUTHORIZATION, DecisionOutcome.DENIED)
    assert (decision.patient_id, decision.actor) == (patient.pk, pharmacy.user)
    assert _met(decision.requirements) == _met(body["requirements"])
    assert [r["requirement"] for r in decision.requirements] == DISPENSE_REQUIREMENT_NAMES
    assert decision.reasons == [
        {"code": "contraindication_recorded", "detail": "Contraindication recorded: hypersensitivity."}
    ]
    assert body["reasons"] == [
        {"code": "contraindication_recorded", "detail": PUBLIC_DETAIL["contraindication_recorded"]}
    ]
    assert "hypersensitivity" not in str(body)
    assert decision.program_settings == rules.current().as_dict()
    assert decision.program_settings["authorization_validity_days"] == 7
    assert decision.inputs["doses_requested"] == 4
    assert decision.inputs["pharmacy"] == str(pharmacy.participant.pk)
    assert not DispenseAuthorization.objects.exists()


def test_approval_is_stored_as_a_decision_with_its_authorization(patient, prescriber, facility, pharmacy):
    """GATE-5: approved checks are stored too; the authorization's id is its decision's id."""
    response = request_authorization(pharmacy, patient, prescriber, facility, doses=5)
    decision = Decision.objects.get(pk=response.json()["id"])
    assert (decision.kind, decision.outcome) == (
        DecisionKind.DISPENSE_AUTHORIZATION,
        DecisionOutcome.APPROVED,
    )
    assert all(r["met"] for r in decision.requirements)
    assert decision.authorization.number == response.json()["authorization_number"]


# --- GATE-2: reading and revoking ----------------------------------------------------------------------


def test_issuing_pharmacy_reads_active_then_used(patient, prescriber, facility, pharmacy):
    """GATE-2: the issuing pharmacy reads `active`, then `used` once dispensed."""
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    active = pharmacy.get(f"{AUTHORIZATIONS}/{number}")
    assert active.status_code == 200
    body = active.json()
    assert (body["authorization_number"], body["status"], body["doses_authorized"]) == (number, "active", 5)
    assert (body["course_number"], body["rems_patient_id"]) == (1, patient.rems_patient_id)

    assert pharmacy.post(DISPENSES, {"authorization_number": number, "vials": 5}).status_code == 201
    used = pharmacy.get(f"{AUTHORIZATIONS}/{number}").json()
    assert used["status"] == "used"
    assert dt.datetime.fromisoformat(used["used_at"]) == NOW


@pytest.mark.parametrize(
    ("after", "status"),
    [
        (dt.timedelta(days=7) - dt.timedelta(seconds=1), "active"),
        (dt.timedelta(days=7), "expired"),
        (dt.timedelta(days=8), "expired"),
    ],
    ids=["just-before", "at-expiry", "day-after"],
)
def test_authorization_expires_after_7_days(patient, prescriber, facility, pharmacy, after, status):
    """GATE-2: valid 7 days (*setting*); read as expired from the expiry instant, before any sweep."""
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    with frozen(NOW + after):
        assert pharmacy.get(f"{AUTHORIZATIONS}/{number}").json()["status"] == status


def test_issuing_pharmacy_revokes_an_active_authorization(patient, prescriber, facility, pharmacy):
    """GATE-2: revoked by the issuing pharmacy, with a reason."""
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    response = pharmacy.post(f"{AUTHORIZATIONS}/{number}/revoke", {"reason": "Prescription changed"})

    assert response.status_code == 200, response.json()
    assert (response.json()["status"], response.json()["revocation"]) == ("revoked", "revoked_by_pharmacy")
    assert "revoke_reason" not in response.json()  # the text is for administrators
    assert pharmacy.get(f"{AUTHORIZATIONS}/{number}").json()["status"] == "revoked"
    stored = DispenseAuthorization.objects.get(number=number)
    assert (stored.status, stored.revoked_by, stored.revoked_at) == (
        AuthorizationStatus.REVOKED,
        pharmacy.user,
        NOW,
    )


def test_revoking_a_used_authorization_is_refused(patient, prescriber, facility, pharmacy):
    """GATE-2: a used number cannot be revoked."""
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    pharmacy.post(DISPENSES, {"authorization_number": number, "vials": 5})
    response = pharmacy.post(f"{AUTHORIZATIONS}/{number}/revoke", {"reason": "Too late"})

    assert response.status_code == 409
    assert response.json()["code"] == "invalid_status_transition"
    assert DispenseAuthorization.objects.get(number=number).status == AuthorizationStatus.USED


@pytest.mark.parametrize(
    ("persona", "status"),
    [
        ("pharmacy", 200),
        ("admin", 200),
        ("other_pharmacy", 404),
        ("prescriber", 403),
        ("facility", 403),
        ("delegate", 403),
        ("anon", 401),
    ],
)
def test_authorization_read_permission_matrix(
    request, patient, prescriber, facility, pharmacy, persona, status
):
    """GATE-2, STYLE.md 3: the issuing pharmacy or an admin reads it; another pharmacy does not see it;
    other roles may not read authorizations at all."""
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    response = request.getfixturevalue(persona).get(f"{AUTHORIZATIONS}/{number}")
    assert response.status_code == status


def test_another_pharmacy_cannot_revoke(patient, prescriber, facility, pharmacy, other_pharmacy):
    """GATE-2: only the issuing pharmacy (or an admin) revokes; another pharmacy does not see it."""
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    response = other_pharmacy.post(f"{AUTHORIZATIONS}/{number}/revoke", {"reason": "Mine now"})
    assert response.status_code == 404
    assert DispenseAuthorization.objects.get(number=number).status == AuthorizationStatus.ACTIVE


@pytest.mark.parametrize(
    ("persona", "status"),
    [("prescriber", 403), ("facility", 403), ("admin", 403), ("delegate", 403), ("anon", 401)],
)
def test_only_pharmacies_request_authorizations(request, patient, prescriber, facility, persona, status):
    """GATE-1: the calling pharmacy is the key's pharmacy; nobody else asks."""
    caller = request.getfixturevalue(persona)
    response = caller.post(AUTHORIZATIONS, authorization_body(patient, prescriber, facility))
    assert response.status_code == status
    assert not Decision.objects.filter(kind=DecisionKind.DISPENSE_AUTHORIZATION).exists()


# --- GATE-2: dispensing ----------------------------------------------------------------------------------


def test_dispense_consumes_the_authorization(patient, prescriber, facility, pharmacy):
    """GATE-2: one dispense per number."""
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    response = pharmacy.post(
        DISPENSES, {"authorization_number": number, "vials": 5, "ndc": "58468-0200-1", "lot_number": "L123"}
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["authorization_number"], body["vials"], body["patient"]) == (number, 5, str(patient.pk))
    assert (body["ndc"], body["lot_number"]) == ("58468-0200-1", "L123")
    dispense = Dispense.objects.get(pk=body["id"])
    assert (dispense.pharmacy, dispense.dispensed_by) == (pharmacy.participant, pharmacy.user)
    assert dispense.authorization.status == AuthorizationStatus.USED


def test_dispense_accepts_the_number_as_read_aloud(patient, prescriber, facility, pharmacy):
    """GATE-2: lower case and no dashes read the same number."""
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    response = pharmacy.post(DISPENSES, {"authorization_number": number.replace("-", "").lower(), "vials": 5})
    assert response.status_code == 201, response.json()
    assert response.json()["authorization_number"] == number


def test_second_dispense_of_one_number_is_refused_as_used(patient, prescriber, facility, pharmacy):
    """GATE-2: consumed by exactly one dispense."""
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    assert pharmacy.post(DISPENSES, {"authorization_number": number, "vials": 5}).status_code == 201
    response = pharmacy.post(DISPENSES, {"authorization_number": number, "vials": 5})

    assert response.status_code == 409
    assert response.json()["code"] == "authorization_used"
    assert Dispense.objects.count() == 1


def test_dispense_of_an_expired_number_is_refused(patient, prescriber, facility, pharmacy):
    """GATE-2: 7 days after issue the number is expired."""
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    with frozen(NOW + dt.timedelta(days=7)):
        response = pharmacy.post(DISPENSES, {"authorization_number": number, "vials": 5})

    assert response.status_code == 409
    assert response.json()["code"] == "authorization_expired"
    assert not Dispense.objects.exists()


def test_dispense_of_a_revoked_number_is_refused(patient, prescriber, facility, pharmacy):
    """GATE-2: a revoked number is refused."""
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    pharmacy.post(f"{AUTHORIZATIONS}/{number}/revoke", {"reason": "Prescription changed"})
    response = pharmacy.post(DISPENSES, {"authorization_number": number, "vials": 5})

    assert response.status_code == 409
    assert response.json()["code"] == "authorization_revoked"
    assert not Dispense.objects.exists()


def test_dispense_of_an_unknown_or_foreign_number_is_not_found(
    patient, prescriber, facility, pharmacy, other_pharmacy
):
    """GATE-2: garbage and another pharmacy's number read the same: `authorization_not_found`."""
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    garbage = other_pharmacy.post(DISPENSES, {"authorization_number": "garbage", "vials": 1})
    foreign = other_pharmacy.post(DISPENSES, {"authorization_number": number, "vials": 5})

    assert (garbage.status_code, foreign.status_code) == (409, 409)
    assert garbage.json()["code"] == foreign.json()["code"] == "authorization_not_found"
    assert garbage.json() == foreign.json()
    assert not Dispense.objects.exists()
    assert DispenseAuthorization.objects.get(number=number).status == AuthorizationStatus.ACTIVE


def test_dispense_of_more_vials_than_authorized_is_refused(patient, prescriber, facility, pharmacy):
    """GATE-2: an authorization covers a stated number of doses."""
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=3))
    response = pharmacy.post(DISPENSES, {"authorization_number": number, "vials": 4})

    assert response.status_code == 409
    assert response.json()["code"] == "vials_exceed_authorization"
    assert not Dispense.objects.exists()
    assert DispenseAuthorization.objects.get(number=number).status == AuthorizationStatus.ACTIVE


@pytest.mark.parametrize(("persona", "status"), [("prescriber", 403), ("facility", 403), ("anon", 401)])
def test_only_pharmacies_dispense(request, patient, prescriber, facility, pharmacy, persona, status):
    """GATE-2: dispensing is the pharmacy's act."""
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))
    response = request.getfixturevalue(persona).post(DISPENSES, {"authorization_number": number, "vials": 5})
    assert response.status_code == status
    assert not Dispense.objects.exists()


# --- Idempotency-Key -----------------------------------------------------------------------------------


def test_idempotency_key_replays_the_first_authorization(patient, prescriber, facility, pharmacy):
    """API.md conventions: the same key and body return the first answer and create nothing new."""
    body = authorization_body(patient, prescriber, facility, doses=5)
    first = pharmacy.post(AUTHORIZATIONS, body, HTTP_IDEMPOTENCY_KEY="rx-0001")
    second = pharmacy.post(AUTHORIZATIONS, body, HTTP_IDEMPOTENCY_KEY="rx-0001")

    assert (first.status_code, second.status_code) == (201, 201)
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["authorization_number"] == first.json()["authorization_number"]
    assert second.json() == first.json()
    assert Decision.objects.filter(kind=DecisionKind.DISPENSE_AUTHORIZATION).count() == 1
    assert DispenseAuthorization.objects.count() == 1


def test_idempotency_key_reused_with_another_body_is_refused(patient, prescriber, facility, pharmacy):
    """API.md conventions: one key, one request; a different body is a conflict."""
    pharmacy.post(
        AUTHORIZATIONS, authorization_body(patient, prescriber, facility, doses=2), HTTP_IDEMPOTENCY_KEY="k"
    )
    response = pharmacy.post(
        AUTHORIZATIONS, authorization_body(patient, prescriber, facility, doses=3), HTTP_IDEMPOTENCY_KEY="k"
    )
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_reused"
    assert DispenseAuthorization.objects.count() == 1


# --- GATE-2 under concurrency -----------------------------------------------------------------------------


@pytest.mark.postgres_only  # threads racing on row locks
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_dispenses_of_one_number_give_exactly_one_201(clock, prescriber, facility, pharmacy):
    """GATE-2: consumed by exactly one dispense, with two real threads on two database connections (on
    the frozen DAY0: the set-up and the threads' requests share one calendar day)."""
    today = DAY0
    patient = authorized_patient(prescriber, on=today)
    plan_course(prescriber, patient, start=today)
    number = approved_number(request_authorization(pharmacy, patient, prescriber, facility, doses=5))

    barrier = threading.Barrier(2, timeout=30)
    results: list[tuple[int, dict]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def dispense() -> None:
        client = client_with_key(pharmacy.key)
        try:
            barrier.wait()
            response = client.post(DISPENSES, {"authorization_number": number, "vials": 5}, format="json")
            with lock:
                results.append((response.status_code, response.json()))
        except BaseException as exc:  # reported below: a thread must not swallow a failure
            with lock:
                errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=dispense) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sorted(status for status, _ in results) == [201, 409]
    assert next(body for status, body in results if status == 409)["code"] == "authorization_used"
    assert Dispense.objects.filter(authorization__number=number).count() == 1
    assert DispenseAuthorization.objects.get(number=number).status == AuthorizationStatus.USED


# --- Query-count guard on the hot endpoint ----------------------------------------------------------------


def _authorization_queries(prescriber, facility, pharmacy, admin):
    """Queries of one approved authorization request for a patient with no history, and for one with 500
    labs and 4 prior courses (imported, 2014-2020) and course 5 open. Inside the test's transaction the
    request's BEGIN/COMMIT show as SAVEPOINT/RELEASE: the count is the same as in production."""
    fresh = authorized_patient(prescriber)
    plan_course(prescriber, fresh, start=DAY0)

    veteran = authorized_patient(prescriber)
    old_labs_orm(veteran, actor=prescriber.user, count=500, before=dt.date(2025, 1, 1))
    prior_courses_orm(
        veteran,
        actor=admin.user,
        facility=facility.participant,
        first_days=[dt.date(2014, 5, 5), dt.date(2015, 6, 1), dt.date(2017, 1, 9), dt.date(2020, 2, 3)],
    )
    assert veteran.lab_results.count() == 507
    assert veteran.infusions.count() == 14
    plan_course(prescriber, veteran, start=DAY0)
    assert veteran.courses.get(status="planned").number == 5

    pharmacy.get("/api/v1/me")  # the key's last-used stamp is written at most once a minute: not measured
    with CaptureQueriesContext(connection) as fresh_queries:
        fresh_response = request_authorization(pharmacy, fresh, prescriber, facility, doses=3)
    with CaptureQueriesContext(connection) as veteran_queries:
        veteran_response = request_authorization(pharmacy, veteran, prescriber, facility, doses=3)

    assert approved_number(fresh_response)
    assert approved_number(veteran_response)
    assert (fresh_response.json()["course_number"], veteran_response.json()["course_number"]) == (1, 5)
    return [q["sql"] for q in fresh_queries], [q["sql"] for q in veteran_queries]


def test_authorization_request_queries_do_not_grow_with_patient_history(
    clock, prescriber, facility, pharmacy, admin
):
    """GATE-1, STYLE.md 9: the facts load in a constant number of queries, whatever the history."""
    fresh, veteran = _authorization_queries(prescriber, facility, pharmacy, admin)
    print(f"authorization request queries: no history={len(fresh)}, 500 labs + 4 courses={len(veteran)}")
    assert len(veteran) == len(fresh), [sql[:60] for sql in veteran]


def test_authorization_request_costs_at_most_12_queries(clock, prescriber, facility, pharmacy, admin):
    """STYLE.md 9: the hot endpoint's budget, every round trip counted (transaction control included).
    The shared rate limit's one statement per request (THROTTLE_STORE=database; a Redis round trip with
    THROTTLE_STORE=cache) is counted on its own: exactly one, outside the endpoint's budget."""
    fresh, veteran = _authorization_queries(prescriber, facility, pharmacy, admin)
    for queries in (fresh, veteran):
        throttle = [sql for sql in queries if sql.startswith("INSERT INTO registry_throttlebucket")]
        assert len(throttle) == 1
        own = [sql for sql in queries if sql not in throttle]
        assert len(own) <= 12, [sql[:60] for sql in own]
