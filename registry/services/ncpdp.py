"""NCPDP SCRIPT REMS transactions (API.md "Standards endpoints", DOMAIN.md "Standards to stay close to").

- REMSInitiationRequest: identifies the patient and answers the requirements still open (read-only, from
  the decision engine's own requirements: services/etasu.py), or `Closed` when the patient cannot be
  matched. An unknown patient and a date-of-birth mismatch get the same answer (ID-4).
- REMSRequest: the dispense gate itself. It calls `dispensing.authorization_request` exactly as the JSON
  endpoint does, so the decision stored is the same decision (GATE-1, GATE-2, GATE-5), and links the
  message to it.

Idempotency by message: a sender's MessageID names one message; a retransmission replays the first answer
byte for byte and runs nothing. Minimum necessary disclosure (API.md): answers carry reason codes and
notes that name no clinical fact (registry/standards.py); a caller that is itself not certified learns
nothing about the patient.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from registry.models import (
    Decision,
    Facility,
    NcpdpMessage,
    NcpdpTransaction,
    Patient,
    Pharmacy,
    Prescriber,
    Role,
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
from registry.standards import (
    disclosed_reason_codes,
    is_lemtrada_ndc,
    reason_category,
    reason_note,
)

from . import dispensing
from .audit import audit_record
from .etasu import etasu_evaluate
from .facts import certified_participant, patient_by_registry_id

_SEX = {"M": "male", "F": "female"}


@dataclass(frozen=True)
class NcpdpAnswer:
    status: int
    xml: bytes
    replayed: bool = False


def _reason(code: str) -> Reason:
    return Reason(category=reason_category(code), note=reason_note(code))


def _error(envelope: Envelope, description_code: str, description: str, **kw: Any) -> NcpdpError:
    return NcpdpError(
        description_code,
        description,
        relates_to=envelope.message_id,
        reply_to=envelope.header_from,
        **kw,
    )


def _caller(actor: User, envelope: Envelope) -> tuple[Pharmacy | Facility, str]:
    """The calling pharmacy or facility (the key's, never the message's say-so) and the reason code that
    stands for "the caller is not certified". A pharmacy's message must name that pharmacy."""
    if actor.role == Role.PHARMACY and actor.pharmacy is not None:
        pharmacy = actor.pharmacy
        ncpdp_id, npi = envelope.fields["pharmacy_ncpdp_id"], envelope.fields["pharmacy_npi"]
        if not (ncpdp_id or npi):
            raise _error(
                envelope, "missing_element", "Missing element Pharmacy/Identification/NCPDPID (or NPI)."
            )
        if (ncpdp_id and ncpdp_id != pharmacy.ncpdp_id) or (npi and npi != pharmacy.npi):
            raise _error(
                envelope,
                "pharmacy_mismatch",
                "The Pharmacy named in the message is not the pharmacy this API key belongs to.",
                status=403,
                code=UNABLE_TO_PROCESS,
            )
        return pharmacy, "pharmacy_not_certified"
    if actor.role == Role.FACILITY and actor.facility is not None:
        if envelope.transaction == NcpdpTransaction.REMS_REQUEST:
            raise _error(
                envelope,
                "transaction_not_allowed",
                "REMSRequest asks for a dispense authorization: only a pharmacy sends it. A healthcare setting "
                "sends REMSInitiationRequest, or checks an infusion with POST /api/v1/infusions/check.",
                status=403,
                code=UNABLE_TO_PROCESS,
            )
        return actor.facility, "facility_not_certified"
    raise _error(
        envelope,
        "role_not_allowed",
        "Only a pharmacy or a healthcare setting sends NCPDP REMS transactions.",
        status=403,
        code=UNABLE_TO_PROCESS,
    )


def _named(
    model: type[Prescriber] | type[Facility],
    envelope: Envelope,
    *,
    enrollment_id: str | None,
    npi: str | None,
    load: bool = True,
) -> tuple[Any, str]:
    """The participant a message names by REMS enrollment ID (our participant id) or NPI, and its NPI.
    An enrollment ID that names no participant of the kind is refused; one that disagrees with the NPI
    given beside it too. By NPI alone: whatever is registered (None when nothing is), not looked up
    without `load` (the gate reads the parties itself, locked)."""
    label = "prescriber" if model is Prescriber else "healthcare setting"
    if enrollment_id:
        try:
            pk = uuid.UUID(enrollment_id)
        except ValueError:
            pk = None
        found = model.objects.filter(pk=pk).first() if pk else None
        if found is None:
            raise _error(
                envelope, "unknown_enrollment_id", f"No {label} is enrolled under {enrollment_id!r}."
            )
        if npi and npi != found.npi:
            raise _error(
                envelope,
                "invalid_element",
                f"The {label}'s enrollment ID and NPI name different participants.",
            )
        return found, found.npi
    return (certified_participant(model, npi or "") if load else None), npi or ""


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
            "medication_not_in_program",
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
                caller=caller, caller_code=caller_code, envelope=envelope, now=now
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
            "message_id_reused",
            "This MessageID was already used by this sender for a different message.",
            status=409,
        )
    return existing, True


def _initiation(
    *, caller: Pharmacy | Facility, caller_code: str, envelope: Envelope, now: dt.datetime
) -> tuple[Rendered, Patient | None]:
    """A caller that is not certified is told so and nothing else. Otherwise the patient is matched by
    REMSPatientID and date of birth (ID-4) or, without a REMSPatientID, by name, date of birth (and sex
    when given) among the named prescriber's patients of record: an initiation comes with a prescription,
    and a pharmacy cannot look patients up registry-wide by demographics."""
    f = envelope.fields
    if not caller.is_certified_at(now):
        return initiation_render(
            envelope, rems_patient_id=None, open_reasons=[], closed=_reason(caller_code), now=now
        ), None
    prescriber, _ = _named(
        Prescriber, envelope, enrollment_id=f["prescriber_enrollment_id"], npi=f["prescriber_npi"]
    )
    patient: Patient | None
    if f["rems_patient_id"]:
        patient = patient_by_registry_id(
            f["rems_patient_id"], f["date_of_birth"], now=now, labs_as_of=timezone.localdate(now)
        )
    elif prescriber is None:
        return initiation_render(
            envelope,
            rems_patient_id=None,
            open_reasons=[],
            closed=_reason("prescriber_not_certified"),
            now=now,
        ), None
    else:
        candidates = Patient.objects.filter(
            prescriber=prescriber,
            first_name__iexact=f["first_name"],
            last_name__iexact=f["last_name"],
            date_of_birth=f["date_of_birth"],
        )
        if f["gender"] in _SEX:
            candidates = candidates.filter(sex=_SEX[f["gender"]])
        found = list(candidates[:2])
        patient = found[0] if len(found) == 1 else None  # an ambiguous match is no match
    if patient is None:
        return initiation_render(
            envelope, rems_patient_id=None, open_reasons=[], closed=_reason("patient_not_found"), now=now
        ), None
    result = etasu_evaluate(
        patient=patient,
        now=now,
        prescriber=prescriber,
        named_prescriber=True,
        annotated=bool(f["rems_patient_id"]),
    )
    reasons = [_reason(reason["code"]) for reason in result.evaluation.reasons]
    return initiation_render(
        envelope, rems_patient_id=patient.rems_patient_id, open_reasons=reasons, closed=None, now=now
    ), patient


def _rems_request(
    *, actor: User, envelope: Envelope, data: dict[str, Any], now: dt.datetime
) -> tuple[Rendered, Decision, Patient | None]:
    """GATE-1/2/5: the JSON endpoint's gate call, unchanged; the answer discloses reason codes only, and
    only the pharmacy's own when it is not certified."""
    outcome = dispensing.authorization_request(actor=actor, pharmacy=actor.pharmacy, data=data, now=now)
    authorization = outcome.authorization
    codes = disclosed_reason_codes(
        [reason["code"] for reason in outcome.evaluation.reasons], caller_code="pharmacy_not_certified"
    )
    rendered = response_render(
        envelope,
        case_id=str(outcome.decision.pk),
        authorization_number=authorization.number if authorization else None,
        effective_at=authorization.issued_at if authorization else None,
        expires_at=authorization.expires_at if authorization else None,
        doses_authorized=authorization.doses_authorized if authorization else None,
        reasons=[_reason(code) for code in codes],
        now=now,
    )
    return rendered, outcome.decision, outcome.facts.patient


__all__ = ["NcpdpAnswer", "ncpdp_message_receive", "rems_request_data"]
