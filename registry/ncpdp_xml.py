"""NCPDP SCRIPT REMS messages: reading them safely and writing the answers (API.md "Standards endpoints").

Pure message handling, no database: `message_parse` turns a request body into an `Envelope` or raises
`NcpdpError`; the `*_render` functions write answers. The rules (matching the patient, the gate) are in
registry/services/ncpdp.py.

Hostile XML is refused before anything else is looked at: the body is size-capped before it is parsed, and
defusedxml refuses document type declarations, so entity expansion ("billion laughs"), external entities
(XXE) and external DTDs never reach the parser's resolution. Namespaces are read leniently: elements are
matched by local name, with or without the NCPDP SCRIPT namespace; answers are written in it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

import defusedxml
import defusedxml.ElementTree as SafeET

from registry.errors import ErrorCode
from registry.standards import NCPDP_NAMESPACE, NCPDP_REMS_ADMINISTRATOR

VERSION_ATTRIBUTES = {
    "DatatypesVersion": "2017071",
    "TransportVersion": "2017071",
    "TransactionDomain": "SCRIPT",
    "TransactionVersion": "2017071",
    "StructuresVersion": "2017071",
    "ECLVersion": "2017071",
}
TRANSACTIONS = ("REMSInitiationRequest", "REMSRequest")
ANSWERS = {"REMSInitiationRequest": "REMSInitiationResponse", "REMSRequest": "REMSResponse"}

# NCPDP `Error/Code` values: 900 transaction rejected (the sender must fix the message), 601 receiver
# unable to process (this sender may not send it here), 600 communication problem (throttled: try later).
# `DescriptionCode` carries our machine code (registry/errors.py `ErrorCode`).
TRANSACTION_REJECTED = "900"
UNABLE_TO_PROCESS = "601"
TRY_LATER = "600"

_MESSAGE_ID = re.compile(r"[\x21-\x7e]{1,64}")  # printable ASCII, no spaces
_TEXT_MAX = 200


class NcpdpError(Exception):
    """A message that cannot be answered: rendered as an NCPDP `Error` message whose `DescriptionCode` is
    `description_code`; the HTTP status is that code's (`ErrorCode.http_status`)."""

    def __init__(
        self,
        description_code: ErrorCode,
        description: str,
        *,
        code: str = TRANSACTION_REJECTED,
        relates_to: str = "",
        reply_to: str = "",
    ) -> None:
        super().__init__(description)
        self.description_code = description_code
        self.description = description
        self.status = description_code.http_status
        self.code = code
        self.relates_to = relates_to
        self.reply_to = reply_to


@dataclass(frozen=True)
class Envelope:
    """A parsed message: its header, which transaction it carries, and that transaction's fields (text as
    sent, `None` when absent; dates already checked)."""

    message_id: str
    sent_time: str
    header_from: str
    header_to: str
    transaction: str
    fingerprint: str
    fields: dict[str, Any] = field(default_factory=dict)


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _strip_namespaces(root: ET.Element) -> str:
    """Matches elements by local name. Returns the root's namespace ('' when none)."""
    namespace = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    for element in root.iter():
        element.tag = _local(element.tag)
    return namespace


class _Reader:
    """Reads one transaction's elements, raising `missing_element` / `invalid_element` with the path."""

    def __init__(self, element: ET.Element, base: str, relates_to: str, reply_to: str) -> None:
        self.element, self.base, self.relates_to, self.reply_to = element, base, relates_to, reply_to

    def error(self, code: ErrorCode, description: str) -> NcpdpError:
        return NcpdpError(code, description, relates_to=self.relates_to, reply_to=self.reply_to)

    def text(self, *paths: str, required: bool = False, max_length: int = _TEXT_MAX) -> str | None:
        """The first of `paths` present with text."""
        for path in paths:
            found = self.element.find(path)
            if found is not None and (found.text or "").strip():
                value = (found.text or "").strip()
                if len(value) > max_length:
                    raise self.error(
                        ErrorCode.INVALID_ELEMENT,
                        f"{self.base}/{path} is longer than {max_length} characters.",
                    )
                return value
        if required:
            raise self.error(ErrorCode.MISSING_ELEMENT, f"Missing element {self.base}/{paths[0]}.")
        return None

    def date(self, *paths: str, required: bool = False) -> dt.date | None:
        value = self.text(*paths, required=required, max_length=10)
        if value is None:
            return None
        try:
            if len(value) != 10:  # fromisoformat would also take 20260302
                raise ValueError(value)
            return dt.date.fromisoformat(value)
        except ValueError:
            raise self.error(
                ErrorCode.INVALID_ELEMENT, f"{self.base}/{paths[0]} must be a date (YYYY-MM-DD)."
            ) from None


def _header_text(header: ET.Element, name: str) -> str:
    found = header.find(name)
    return (found.text or "").strip() if found is not None else ""


def message_parse(body: bytes, *, max_bytes: int) -> Envelope:
    """Parses an NCPDP SCRIPT `Message` carrying a REMSInitiationRequest or a REMSRequest.

    Raises `NcpdpError`: `payload_too_large` (413) above `max_bytes`; `xml_declarations_refused` for any
    DTD, entity declaration or external reference; `malformed_xml`; `wrong_root` (not a `Message`);
    `missing_element` / `invalid_element` (with the element's path); `unsupported_transaction`."""
    if len(body) > max_bytes:
        raise NcpdpError(ErrorCode.PAYLOAD_TOO_LARGE, f"The message exceeds {max_bytes} bytes.")
    if not body.strip():
        raise NcpdpError(ErrorCode.MALFORMED_XML, "The request body is empty.")
    try:
        root = SafeET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException:
        raise NcpdpError(
            ErrorCode.XML_DECLARATIONS_REFUSED,
            "Document type declarations, entity declarations and external references are refused.",
        ) from None
    except (ET.ParseError, ValueError, LookupError) as exc:
        raise NcpdpError(ErrorCode.MALFORMED_XML, f"The message is not well-formed XML ({exc}).") from None
    namespace = _strip_namespaces(root)
    if root.tag != "Message" or namespace not in ("", NCPDP_NAMESPACE):
        raise NcpdpError(
            ErrorCode.WRONG_ROOT,
            f"The root element must be an NCPDP SCRIPT Message, not {root.tag!r}"
            + (f" in namespace {namespace!r}." if namespace and root.tag == "Message" else "."),
        )
    header = root.find("Header")
    if header is None:
        raise NcpdpError(ErrorCode.MISSING_ELEMENT, "Missing element Message/Header.")
    header_from = _header_text(header, "From")[:100]
    message_id = _header_text(header, "MessageID")
    if not message_id:
        raise NcpdpError(
            ErrorCode.MISSING_ELEMENT, "Missing element Message/Header/MessageID.", reply_to=header_from
        )
    if not _MESSAGE_ID.fullmatch(message_id):
        raise NcpdpError(
            ErrorCode.INVALID_ELEMENT,
            "Message/Header/MessageID must be 1 to 64 printable characters without spaces.",
            reply_to=header_from,
        )
    sent_time = _header_text(header, "SentTime")
    if not sent_time:
        raise NcpdpError(
            ErrorCode.MISSING_ELEMENT,
            "Missing element Message/Header/SentTime.",
            relates_to=message_id,
            reply_to=header_from,
        )
    try:
        dt.datetime.fromisoformat(sent_time.replace("Z", "+00:00"))
    except ValueError:
        raise NcpdpError(
            ErrorCode.INVALID_ELEMENT,
            "Message/Header/SentTime must be an ISO 8601 date-time.",
            relates_to=message_id,
            reply_to=header_from,
        ) from None
    message_body = root.find("Body")
    if message_body is None:
        raise NcpdpError(
            ErrorCode.MISSING_ELEMENT,
            "Missing element Message/Body.",
            relates_to=message_id,
            reply_to=header_from,
        )
    children = list(message_body)
    if len(children) != 1 or children[0].tag not in TRANSACTIONS:
        names = ", ".join(c.tag for c in children) or "nothing"
        raise NcpdpError(
            ErrorCode.UNSUPPORTED_TRANSACTION,
            f"Message/Body must hold one REMSInitiationRequest or REMSRequest, not {names}.",
            relates_to=message_id,
            reply_to=header_from,
        )
    transaction = children[0].tag
    reader = _Reader(children[0], f"Message/Body/{transaction}", message_id, header_from)
    fields = _transaction_fields(reader, transaction)
    fingerprint = hashlib.sha256(ET.tostring(message_body, encoding="utf-8")).hexdigest()
    return Envelope(
        message_id=message_id,
        sent_time=sent_time[:40],
        header_from=header_from,
        header_to=_header_text(header, "To")[:100],
        transaction=transaction,
        fingerprint=fingerprint,
        fields=fields,
    )


_HUMAN = "Patient/HumanPatient"
_PRESCRIBER_IDS = ("Prescriber/NonVeterinarian/Identification", "Prescriber/Identification")


def _transaction_fields(r: _Reader, transaction: str) -> dict[str, Any]:
    """The fields both transactions carry (Patient, Pharmacy, Prescriber, MedicationPrescribed), plus the
    REMSRequest's own: REMSPatientID (required there), the receiving facility, the quantity in doses."""
    request = transaction == "REMSRequest"
    fields: dict[str, Any] = {
        "rems_patient_id": r.text(f"{_HUMAN}/Identification/REMSPatientID", required=request, max_length=32),
        "last_name": r.text(f"{_HUMAN}/Names/Name/LastName", f"{_HUMAN}/Name/LastName", required=not request),
        "first_name": r.text(
            f"{_HUMAN}/Names/Name/FirstName", f"{_HUMAN}/Name/FirstName", required=not request
        ),
        "gender": r.text(f"{_HUMAN}/GenderAndSex/Gender", f"{_HUMAN}/Gender", max_length=1),
        "date_of_birth": r.date(f"{_HUMAN}/DateOfBirth/Date", required=True),
        "pharmacy_ncpdp_id": r.text("Pharmacy/Identification/NCPDPID", max_length=7),
        "pharmacy_npi": r.text("Pharmacy/Identification/NPI", max_length=10),
        "prescriber_npi": r.text(*(f"{p}/NPI" for p in _PRESCRIBER_IDS), max_length=10),
        "prescriber_enrollment_id": r.text(
            *(f"{p}/REMSHealthcareProviderEnrollmentID" for p in _PRESCRIBER_IDS), max_length=36
        ),
        "ndc": r.text(
            "MedicationPrescribed/DrugCoded/ProductCode/Code",
            "MedicationPrescribed/DrugCoded/NDC",
            required=True,
            max_length=13,
        ),
    }
    if r.element.find("Prescriber") is None:
        raise r.error(ErrorCode.MISSING_ELEMENT, f"Missing element {r.base}/Prescriber.")
    if not (fields["prescriber_npi"] or fields["prescriber_enrollment_id"]):
        raise r.error(
            ErrorCode.MISSING_ELEMENT,
            f"Missing element {r.base}/{_PRESCRIBER_IDS[0]}/NPI (or REMSHealthcareProviderEnrollmentID).",
        )
    if request:
        fields["facility_enrollment_id"] = r.text(
            "Facility/Identification/REMSHealthcareSettingEnrollmentID", max_length=36
        )
        fields["facility_npi"] = r.text("Facility/Identification/NPI", max_length=10)
        if not (fields["facility_enrollment_id"] or fields["facility_npi"]):
            raise r.error(
                ErrorCode.MISSING_ELEMENT,
                f"Missing element {r.base}/Facility/Identification/REMSHealthcareSettingEnrollmentID (or NPI).",
            )
        quantity = r.text("MedicationPrescribed/Quantity/Value", required=True, max_length=4)
        if quantity is None or not quantity.isascii() or not quantity.isdigit():
            raise r.error(
                ErrorCode.INVALID_ELEMENT,
                f"{r.base}/MedicationPrescribed/Quantity/Value must be a whole number of doses.",
            )
        fields["doses_requested"] = int(quantity)
    return fields


# --- Writing answers -----------------------------------------------------------------------------------


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    if text is not None:
        element.text = text
    return element


def _message(*, relates_to: str, reply_to: str, now: dt.datetime) -> tuple[ET.Element, ET.Element, str]:
    """A new answer `Message` with its header; returns (root, body, the answer's own MessageID)."""
    root = ET.Element("Message", {"xmlns": NCPDP_NAMESPACE, **VERSION_ATTRIBUTES})
    header = _sub(root, "Header")
    if reply_to:
        _sub(header, "To", reply_to)
    _sub(header, "From", NCPDP_REMS_ADMINISTRATOR)
    message_id = uuid.uuid4().hex
    _sub(header, "MessageID", message_id)
    if relates_to:
        _sub(header, "RelatesToMessageID", relates_to)
    _sub(header, "SentTime", _datetime(now))
    return root, _sub(root, "Body"), message_id


def _datetime(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _bytes(root: ET.Element) -> bytes:
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


@dataclass(frozen=True)
class Reason:
    """One unmet requirement as the standard carries it: the REMS category and `<our code>: <note>`."""

    category: str
    note: str


@dataclass(frozen=True)
class Rendered:
    message_id: str
    xml: bytes


def error_render(error: NcpdpError, *, now: dt.datetime) -> Rendered:
    root, body, message_id = _message(relates_to=error.relates_to, reply_to=error.reply_to, now=now)
    element = _sub(body, "Error")
    _sub(element, "Code", error.code)
    _sub(element, "DescriptionCode", str(error.description_code))
    _sub(element, "Description", error.description[:500])
    return Rendered(message_id, _bytes(root))


def _patient_id(parent: ET.Element, rems_patient_id: str) -> None:
    human = _sub(_sub(parent, "Patient"), "HumanPatient")
    _sub(_sub(human, "Identification"), "REMSPatientID", rems_patient_id)


def initiation_render(
    envelope: Envelope,
    *,
    rems_patient_id: str | None,
    open_reasons: list[Reason],
    closed: Reason | None,
    now: dt.datetime,
) -> Rendered:
    """REMSInitiationResponse: `Open` with the patient's REMSPatientID and one `Requirement` per open
    requirement (none: nothing is outstanding), or `Closed` with one reason."""
    root, body, message_id = _message(relates_to=envelope.message_id, reply_to=envelope.header_from, now=now)
    answer = _sub(body, "REMSInitiationResponse")
    if closed is None and rems_patient_id:
        _patient_id(answer, rems_patient_id)
    status = _sub(_sub(answer, "Response"), "ResponseStatus")
    if closed is not None:
        element = _sub(status, "Closed")
        _sub(element, "ReasonCode", closed.category)
        _sub(element, "REMSNote", closed.note)
    else:
        element = _sub(status, "Open")
        for reason in open_reasons:
            requirement = _sub(element, "Requirement")
            _sub(requirement, "ReasonCode", reason.category)
            _sub(requirement, "REMSNote", reason.note)
    return Rendered(message_id, _bytes(root))


def response_render(
    envelope: Envelope,
    *,
    case_id: str,
    authorization_number: str | None,
    effective_at: dt.datetime | None,
    expires_at: dt.datetime | None,
    doses_authorized: int | None,
    reasons: list[Reason],
    now: dt.datetime,
) -> Rendered:
    """REMSResponse: `Approved` (REMSCaseID, REMSAuthorizationNumber, AuthorizationPeriod) or `Denied`
    (REMSCaseID, one DeniedReasonCode per unmet requirement, and a REMSNote with our codes in order)."""
    root, body, message_id = _message(relates_to=envelope.message_id, reply_to=envelope.header_from, now=now)
    answer = _sub(body, "REMSResponse")
    status = _sub(_sub(answer, "Response"), "ResponseStatus")
    if authorization_number:
        assert effective_at is not None
        assert expires_at is not None
        approved = _sub(status, "Approved")
        _sub(approved, "REMSCaseID", case_id)
        _sub(approved, "REMSAuthorizationNumber", authorization_number)
        period = _sub(approved, "AuthorizationPeriod")
        _sub(_sub(period, "EffectiveDate"), "DateTime", _datetime(effective_at))
        _sub(_sub(period, "ExpirationDate"), "DateTime", _datetime(expires_at))
        _sub(
            approved,
            "REMSNote",
            f"Authorized for {doses_authorized} dose(s); the number is single-use and valid until its expiration.",
        )
    else:
        denied = _sub(status, "Denied")
        _sub(denied, "REMSCaseID", case_id)
        for reason in reasons:
            _sub(denied, "DeniedReasonCode", reason.category)
        _sub(denied, "REMSNote", " ".join(reason.note for reason in reasons))
    return Rendered(message_id, _bytes(root))
