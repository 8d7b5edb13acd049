"""NCPDP SCRIPT REMS transactions (API.md "Standards endpoints", DOMAIN.md "Standards to stay close to").

- REMSInitiationRequest: identifies the patient and answers the requirements still open (read-only, from
  the decision engine's own requirements: services/etasu.py), or `Closed` when the patient cannot be
  matched. An unknown patient and a date-of-birth mismatch get the same answer (ID-4).
- REMSRequest: the dispense gate itself. It calls `dispensing.authorization_request` exactly as the JSON
  endpoint does, so the decision stored is the same decision (GATE-1, GATE-2, GATE-5), and links the
  message to it.

Idempotency by message: a sender's MessageID names one message; a retransmission replays the first answer
byte for byte and runs nothing. Minimum necessary disclosure (API.md): answers carry reason codes and the
very texts the JSON API gives a pharmacy or facility (registry/api/refusals.py `reasons_for`: neutral
texts for every requirement about the patient, no clinical fact); a caller that is itself not certified
learns nothing about the patient.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import IntegrityError, transaction

from registry.api.refusals import PUBLIC_DETAIL, reasons_for
from registry.errors import ErrorCode
from registry.errors import ReasonCode as R
from registry.localtime import local_today
from registry.models import (
    Decision,
    Facility,
    NcpdpMessage,
    NcpdpTransaction,
    Patient,
    Pharmacy,
    Prescriber,
    Role,
    Sex,
    User,
)
from registry.ncpdp_xml import (
    UNABLE_TO_PROCESS,
    Envelope,
    NcpdpError,
    Reason,
    Rendered,
    initiation_render,
    response_render,
)
from registry.selectors import (
    participant_by_enrollment_id,
    participant_by_npi,
)
from registry.standards import disclosed_reasons, is_lemtrada_ndc, reason_category, reason_note

from . import dispensing
from .audit import audit_record
from .dob_guard import patient_lookup_guarded, patient_of_record_guarded
from .etasu import etasu_evaluate
from .gate import Evaluation, Outcome

_SEX = {"M": Sex.MALE, "F": Sex.FEMALE}
Named = TypeVar("Named", Prescriber, Facility)


@dataclass(frozen=True)
class NcpdpAnswer:
    status: int
    xml: bytes
    replayed: bool = False


def _reason(reason: dict[str, str]) -> Reason:
    """One reason as the caller may read it (`{"code", "detail"}` from `reasons_for`) in NCPDP terms."""
    return Reason(category=reason_category(reason["code"]), note=reason_note(reason))


def _public_reasons(evaluation: Evaluation, viewer: User) -> list[dict[str, str]]:
    """The failed requirements as the JSON API answers them to this caller (refusals.py)."""
    return reasons_for(Outcome(None, evaluation), viewer)


def _only(code: R) -> Reason:
    """A one-reason answer (the caller is not certified, the patient is not matched) with the public text
    of its code."""
    return _reason({"code": code, "detail": PUBLIC_DETAIL[code]})


def _error(envelope: Envelope, description_code: ErrorCode, description: str, **kw: Any) -> NcpdpError:
    return NcpdpError(
        description_code,
        description,
        relates_to=envelope.message_id,
        reply_to=envelope.header_from,
        **kw,
    )


def _caller(actor: User, envelope: Envelope) -> tuple[Pharmacy | Facility, R]:
    """The calling pharmacy or facility (the key's, never the message's say-so) and the reason code that
    stands for "the caller is not certified". A pharmacy's message must name that pharmacy."""
    if actor.role == Role.PHARMACY and actor.pharmacy is not None:
        pharmacy = actor.pharmacy
        ncpdp_id, npi = envelope.fields["pharmacy_ncpdp_id"], envelope.fields["pharmacy_npi"]
        if not (ncpdp_id or npi):
            raise _error(
                envelope,
                ErrorCode.MISSING_ELEMENT,
                "Missing element Pharmacy/Identification/NCPDPID (or NPI).",
            )
        if (ncpdp_id and ncpdp_id != pharmacy.ncpdp_id) or (npi and npi != pharmacy.npi):
            raise _error(
                envelope,
                ErrorCode.PHARMACY_MISMATCH,
                "The Pharmacy named in the message is not the pharmacy this API key belongs to.",
                code=UNABLE_TO_PROCESS,
            )
        return pharmacy, R.PHARMACY_NOT_CERTIFIED
    if actor.role == Role.FACILITY and actor.facility is not None:
        if envelope.transaction == NcpdpTransaction.REMS_REQUEST:
            raise _error(
                envelope,
                ErrorCode.TRANSACTION_NOT_ALLOWED,
                "REMSRequest asks for a dispense authorization: only a pharmacy sends it. A healthcare setting "
                "sends REMSInitiationRequest, or checks an infusion with POST /api/v1/infusions/check.",
                code=UNABLE_TO_PROCESS,
            )
        return actor.facility, R.FACILITY_NOT_CERTIFIED
    raise _error(
        envelope,
        ErrorCode.PERMISSION_DENIED,
        "Only a pharmacy or a healthcare setting sends NCPDP REMS transactions.",
        code=UNABLE_TO_PROCESS,
    )


def _named(
    model: type[Named],
    envelope: Envelope,
    *,
    enrollment_id: str | None,
    npi: str | None,
    load: bool = True,
) -> tuple[Named | None, str]:
    """The participant a message names by REMS enrollment ID (our participant id) or NPI, and its NPI.
    An enrollment ID that names no participant of the kind is refused; one that disagrees with the NPI
    given beside it too. By NPI alone: whatever is registered (None when nothing is), not looked up
    without `load` (the gate reads the parties itself, locked)."""
    label = "prescriber" if model is Prescriber else "healthcare setting"
    if enrollment_id:
        found = participant_by_enrollment_id(model, enrollment_id)
        if found is None:
            raise _error(
                envelope, ErrorCode.UNKNOWN_ENROLLMENT_ID, f"No {label} is enrolled under {enrollment_id!r}."
            )
        if npi and npi != found.npi:
            raise _error(
                envelope,
                ErrorCode.INVALID_ELEMENT,
                f"The {label}'s enrollment ID and NPI name different participants.",
            )
        return found, found.npi
    return (participant_by_npi(model, npi or "") if load else None), npi or ""


def rems_request_data(*, actor: User, envelope: Envelope) -> dict[str, Any]:
    """The dispense gate's input (API.md `POST /api/v1/dispense-authorizations` body) carried by a
    REMSRequest, with enrollment IDs resolved to NPIs. Raises `NcpdpError` for a caller that may not send
    it, a medication outside this REMS or an unknown enrollment ID."""
    f = envelope.fields
    _caller(actor, envelope)
    _medication_check(envelope)
    _, prescriber_npi = _named(
        Prescriber,
        envelope,
        enrollment_id=f["prescriber_enrollment_id"],
        npi=f["prescriber_npi"],
        load=False,
    )
    _, facility_npi = _named(
        Facility, envelope, enrollment_id=f["facility_enrollment_id"], npi=f["facility_npi"], load=False
    )
    return {
        "rems_patient_id": f["rems_patient_id"],
        "date_of_birth": f["date_of_birth"],
        "prescriber_npi": prescriber_npi,
        "facility_npi": facility_npi,
        "doses_requested": f["doses_requested"],
    }


def _medication_check(envelope: Envelope) -> None:
    if not is_lemtrada_ndc(envelope.fields["ndc"]):
        raise _error(
            envelope,
            ErrorCode.MEDICATION_NOT_IN_PROGRAM,
            "This REMS covers LEMTRADA (alemtuzumab) only: MedicationPrescribed names another NDC.",
        )


def ncpdp_message_receive(
    *, actor: User, envelope: Envelope, now: dt.datetime, gate_data: dict[str, Any] | None = None
) -> NcpdpAnswer:
    """Answers one message. `gate_data`: a REMSRequest's validated gate input (`rems_request_data`, then
    the JSON endpoint's serializer), passed to the gate unchanged.

    The message is claimed first, (sender, MessageID) unique: a copy sent at the same time waits on the
    index and then replays the committed answer; a copy whose body differs is refused
    (`message_id_reused`). Errors are not stored, so a corrected message may reuse its MessageID. The claim,
    the gate's decision and the audit event commit together. Raises `NcpdpError`."""
    caller, caller_code = _caller(actor, envelope)
    _medication_check(envelope)
    if envelope.transaction == NcpdpTransaction.REMS_REQUEST and gate_data is None:
        raise ValueError("a REMSRequest needs its validated gate data")
    with transaction.atomic():
        record, replay = _claim(actor=actor, envelope=envelope)
        if replay:
            return NcpdpAnswer(
                status=record.response_status or 200, xml=record.response_xml.encode(), replayed=True
            )
        decision: Decision | None = None
        if envelope.transaction == NcpdpTransaction.REMS_REQUEST:
            assert gate_data is not None
            rendered, decision, patient = _rems_request(
                actor=actor, envelope=envelope, data=gate_data, now=now
            )
        else:
            rendered, patient = _initiation(
                actor=actor, caller=caller, caller_code=caller_code, envelope=envelope, now=now
            )
        record.decision, record.patient = decision, patient
        record.response_message_id, record.response_status = rendered.message_id, 200
        record.response_xml = rendered.xml.decode()
        record.save(
            update_fields=["decision", "patient", "response_message_id", "response_status", "response_xml"]
        )
        audit_record(
            actor=actor,
            action="ncpdp.receive",
            subject=record,
            changes={
                "transaction": envelope.transaction,
                "message_id": envelope.message_id,
                "response_message_id": rendered.message_id,
                "decision": decision.pk if decision else None,
            },
            at=now,
        )
    return NcpdpAnswer(status=200, xml=rendered.xml)


def _claim(*, actor: User, envelope: Envelope) -> tuple[NcpdpMessage, bool]:
    """(record, True) to replay a stored answer, (new claim, False) to go ahead. A retransmission of an
    answered message is found by one indexed read; otherwise the insert claims the MessageID, waiting
    on the unique index while a copy of the message is being answered."""
    existing = NcpdpMessage.objects.filter(sender=actor, message_id=envelope.message_id).first()
    if existing is None:
        try:
            with transaction.atomic():
                record = NcpdpMessage.objects.create(
                    sender=actor,
                    message_id=envelope.message_id,
                    transaction=envelope.transaction,
                    fingerprint=envelope.fingerprint,
                    header_from=envelope.header_from,
                    sent_time=envelope.sent_time,
                )
                return record, False
        except IntegrityError:
            existing = NcpdpMessage.objects.get(sender=actor, message_id=envelope.message_id)
    if existing.fingerprint != envelope.fingerprint or existing.transaction != envelope.transaction:
        raise _error(
            envelope,
            ErrorCode.MESSAGE_ID_REUSED,
            "This MessageID was already used by this sender for a different message.",
        )
    return existing, True


def _initiation(
    *, actor: User, caller: Pharmacy | Facility, caller_code: R, envelope: Envelope, now: dt.datetime
) -> tuple[Rendered, Patient | None]:
    """A caller that is not certified is told so and nothing else. Otherwise the patient is matched by
    REMSPatientID and date of birth (ID-4) or, without a REMSPatientID, by name, date of birth (and sex
    when given) among the named prescriber's patients of record: an initiation comes with a prescription,
    and a pharmacy cannot look patients up registry-wide by demographics. Labs are judged against the
    caller's own calendar day, as at the dispense gate (registry/localtime.py)."""
    f = envelope.fields
    if not caller.is_certified_at(now):
        return initiation_render(
            envelope, rems_patient_id=None, open_reasons=[], closed=_only(caller_code), now=now
        ), None
    today = local_today(actor, now)
    prescriber, _ = _named(
        Prescriber, envelope, enrollment_id=f["prescriber_enrollment_id"], npi=f["prescriber_npi"]
    )
    patient: Patient | None
    if f["rems_patient_id"]:
        patient = patient_lookup_guarded(  # ID-4: the date-of-birth guessing lock, as at the gates
            f["rems_patient_id"], f["date_of_birth"], caller=actor, now=now, labs_as_of=today
        )
    elif prescriber is None:
        return initiation_render(
            envelope,
            rems_patient_id=None,
            open_reasons=[],
            closed=_only(R.PRESCRIBER_NOT_CERTIFIED),
            now=now,
        ), None
    else:
        patient = patient_of_record_guarded(  # ID-4: the same guessing lock, keyed by the name
            prescriber,
            first_name=f["first_name"],
            last_name=f["last_name"],
            date_of_birth=f["date_of_birth"],
            sex=_SEX.get(f["gender"] or ""),
            caller=actor,
            now=now,
        )
    if patient is None:
        return initiation_render(
            envelope, rems_patient_id=None, open_reasons=[], closed=_only(R.PATIENT_NOT_FOUND), now=now
        ), None
    result = etasu_evaluate(
        patient=patient,
        now=now,
        prescriber=prescriber,
        named_prescriber=True,
        annotated=bool(f["rems_patient_id"]),
        as_of=today,
    )
    reasons = [_reason(reason) for reason in _public_reasons(result.evaluation, actor)]
    return initiation_render(
        envelope, rems_patient_id=patient.rems_patient_id, open_reasons=reasons, closed=None, now=now
    ), patient


def _rems_request(
    *, actor: User, envelope: Envelope, data: dict[str, Any], now: dt.datetime
) -> tuple[Rendered, Decision, Patient | None]:
    """GATE-1/2/5: the JSON endpoint's gate call, unchanged. The answer carries what the JSON endpoint
    answers this pharmacy (`reasons_for`), and only the pharmacy's own reason when it is not certified."""
    outcome = dispensing.authorization_request(actor=actor, pharmacy=actor.pharmacy, data=data, now=now)
    decision, authorization = outcome.decision, outcome.created
    assert decision is not None  # the dispense gate always decides (no AlreadyDone)
    reasons = disclosed_reasons(reasons_for(outcome, actor), caller_code=R.PHARMACY_NOT_CERTIFIED)
    rendered = response_render(
        envelope,
        case_id=str(decision.pk),
        authorization_number=authorization.number if authorization else None,
        effective_at=authorization.issued_at if authorization else None,
        expires_at=authorization.expires_at if authorization else None,
        doses_authorized=authorization.doses_authorized if authorization else None,
        reasons=[_reason(reason) for reason in reasons],
        now=now,
    )
    return rendered, decision, outcome.facts.patient if outcome.facts else None


__all__ = ["NcpdpAnswer", "ncpdp_message_receive", "rems_request_data"]
