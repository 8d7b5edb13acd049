"""Building NCPDP SCRIPT REMS messages and reading the registry's answers (tests of POST /api/ncpdp/rems)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET

from registry.models import Patient

NCPDP = "/api/ncpdp/rems"
NS = "http://www.ncpdp.org/schema/SCRIPT"
LEMTRADA_NDC = "58468020001"


def envelope(
    transaction: str, *, message_id: str = "MSG-0001", sender: str = "", namespace: bool = True
) -> bytes:
    xmlns = f' xmlns="{NS}"' if namespace else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Message{xmlns} TransactionDomain="SCRIPT" '
        f'TransactionVersion="2017071"><Header><To Qualifier="ZZZ">LEMTRADA-REMS</To>'
        f'<From Qualifier="P">{sender}</From><MessageID>{message_id}</MessageID>'
        f"<SentTime>2026-03-02T15:00:00Z</SentTime></Header><Body>{transaction}</Body></Message>"
    ).encode()


def _patient(*, rems_patient_id: str | None, first: str, last: str, gender: str, dob: dt.date | str) -> str:
    identification = (
        f"<Identification><REMSPatientID>{rems_patient_id}</REMSPatientID></Identification>"
        if rems_patient_id
        else ""
    )
    return (
        f"<Patient><HumanPatient>{identification}<Names><Name><LastName>{last}</LastName>"
        f"<FirstName>{first}</FirstName></Name></Names><GenderAndSex><Gender>{gender}</Gender></GenderAndSex>"
        f"<DateOfBirth><Date>{dob}</Date></DateOfBirth></HumanPatient></Patient>"
    )


def _pharmacy(pharmacy: Any) -> str:
    return (
        f"<Pharmacy><Identification><NCPDPID>{pharmacy.ncpdp_id}</NCPDPID><NPI>{pharmacy.npi}</NPI>"
        "</Identification><BusinessName>Specialty Pharmacy</BusinessName></Pharmacy>"
    )


def _prescriber(npi: str | None = None, enrollment_id: str | None = None) -> str:
    ids = (f"<NPI>{npi}</NPI>" if npi else "") + (
        f"<REMSHealthcareProviderEnrollmentID>{enrollment_id}</REMSHealthcareProviderEnrollmentID>"
        if enrollment_id
        else ""
    )
    return (
        f"<Prescriber><NonVeterinarian><Identification>{ids}</Identification></NonVeterinarian></Prescriber>"
    )


def _medication(ndc: str, doses: int | str | None) -> str:
    quantity = f"<Quantity><Value>{doses}</Value><CodeListQualifier>38</CodeListQualifier></Quantity>"
    return (
        f"<MedicationPrescribed><DrugDescription>Lemtrada 12 mg/1.2 mL</DrugDescription><DrugCoded><ProductCode>"
        f"<Code>{ndc}</Code><Qualifier>ND</Qualifier></ProductCode></DrugCoded>"
        f"{quantity if doses is not None else ''}</MedicationPrescribed>"
    )


def rems_request(
    *,
    pharmacy: Any,
    patient: Patient | None = None,
    rems_patient_id: str | None = None,
    dob: dt.date | str | None = None,
    prescriber_npi: str | None = None,
    prescriber_enrollment_id: str | None = None,
    facility_npi: str | None = None,
    facility_enrollment_id: str | None = None,
    doses: int | str | None = 5,
    ndc: str = LEMTRADA_NDC,
    message_id: str = "MSG-0001",
) -> bytes:
    """A complete REMSRequest from `pharmacy` (a Pharmacy)."""
    facility_ids = (f"<NPI>{facility_npi}</NPI>" if facility_npi else "") + (
        f"<REMSHealthcareSettingEnrollmentID>{facility_enrollment_id}</REMSHealthcareSettingEnrollmentID>"
        if facility_enrollment_id
        else ""
    )
    body = (
        "<REMSRequest><REMSReferenceID>REF-1</REMSReferenceID>"
        + _patient(
            rems_patient_id=rems_patient_id or (patient.rems_patient_id if patient else None),
            first="Pat",
            last="Ient",
            gender="M",
            dob=dob or (patient.date_of_birth if patient else "1985-04-12"),
        )
        + _pharmacy(pharmacy)
        + _prescriber(prescriber_npi, prescriber_enrollment_id)
        + f"<Facility><Identification>{facility_ids}</Identification></Facility>"
        + _medication(ndc, doses)
        + "</REMSRequest>"
    )
    return envelope(
        body, message_id=message_id, sender=pharmacy.ncpdp_id if hasattr(pharmacy, "ncpdp_id") else ""
    )


def initiation_request(
    *,
    pharmacy: Any | None,
    prescriber_npi: str,
    first: str = "Pat",
    last: str = "Ient",
    gender: str = "M",
    dob: dt.date | str = "1985-04-12",
    rems_patient_id: str | None = None,
    ndc: str = LEMTRADA_NDC,
    message_id: str = "INIT-0001",
) -> bytes:
    """A complete REMSInitiationRequest (from `pharmacy`, or from a facility when None)."""
    body = (
        "<REMSInitiationRequest><REMSReferenceID>REF-1</REMSReferenceID>"
        + _patient(rems_patient_id=rems_patient_id, first=first, last=last, gender=gender, dob=dob)
        + (_pharmacy(pharmacy) if pharmacy is not None else "")
        + _prescriber(prescriber_npi)
        + _medication(ndc, None)
        + "</REMSInitiationRequest>"
    )
    return envelope(body, message_id=message_id, sender=pharmacy.ncpdp_id if pharmacy is not None else "FAC")


def send(persona: Any, body: bytes, content_type: str = "application/xml") -> Any:
    return persona.client.post(NCPDP, data=body, content_type=content_type)


def answer(response: Any) -> Element:
    """The answer's `Message`, namespaces stripped. Every answer is well-formed NCPDP XML."""
    assert response["Content-Type"].startswith("application/xml"), response["Content-Type"]
    root = SafeET.fromstring(response.content)
    assert root.tag == f"{{{NS}}}Message", root.tag
    for element in root.iter():
        element.tag = element.tag.rsplit("}", 1)[-1]
    return root


def text(root: Element, path: str) -> str | None:
    found = root.find(path)
    return found.text if found is not None else None


def texts(root: Element, path: str) -> list[str]:
    return [e.text or "" for e in root.findall(path)]


def error_of(response: Any) -> tuple[str | None, str | None]:
    """(Code, DescriptionCode) of an NCPDP Error answer."""
    root = answer(response)
    return text(root, "Body/Error/Code"), text(root, "Body/Error/DescriptionCode")


def without_message_identity(content: bytes) -> bytes:
    """The answer with its own MessageID and SentTime blanked: what differs between two answers."""
    content = re.sub(rb"<MessageID>[^<]*</MessageID>", b"<MessageID/>", content)
    return re.sub(rb"<SentTime>[^<]*</SentTime>", b"<SentTime/>", content)
