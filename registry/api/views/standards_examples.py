"""Example exchanges for the OpenAPI schema of the standards endpoints (docs/standards.md has the same
exchanges, end to end)."""

from __future__ import annotations

from typing import Any

_HEADER = """<Message xmlns="http://www.ncpdp.org/schema/SCRIPT" DatatypesVersion="2017071" \
TransportVersion="2017071" TransactionDomain="SCRIPT" TransactionVersion="2017071" \
StructuresVersion="2017071" ECLVersion="2017071">"""

NCPDP_REMS_REQUEST = f"""<?xml version="1.0" encoding="UTF-8"?>
{_HEADER}
  <Header>
    <To Qualifier="ZZZ">LEMTRADA-REMS</To>
    <From Qualifier="P">1234567</From>
    <MessageID>6f1c2a9e3b7d4e58a0c4</MessageID>
    <SentTime>2026-03-02T15:00:00Z</SentTime>
  </Header>
  <Body>
    <REMSRequest>
      <Patient>
        <HumanPatient>
          <Identification><REMSPatientID>63VQ-RMDB-9</REMSPatientID></Identification>
          <Names><Name><LastName>Ient</LastName><FirstName>Pat</FirstName></Name></Names>
          <GenderAndSex><Gender>M</Gender></GenderAndSex>
          <DateOfBirth><Date>1985-04-12</Date></DateOfBirth>
        </HumanPatient>
      </Patient>
      <Pharmacy><Identification><NCPDPID>1234567</NCPDPID><NPI>1558598797</NPI></Identification></Pharmacy>
      <Prescriber><NonVeterinarian><Identification><NPI>1993999998</NPI></Identification></NonVeterinarian></Prescriber>
      <Facility><Identification><NPI>1234567893</NPI></Identification></Facility>
      <MedicationPrescribed>
        <DrugCoded><ProductCode><Code>58468020001</Code><Qualifier>ND</Qualifier></ProductCode></DrugCoded>
        <Quantity><Value>5</Value></Quantity>
      </MedicationPrescribed>
    </REMSRequest>
  </Body>
</Message>"""

NCPDP_INITIATION_REQUEST = f"""<?xml version="1.0" encoding="UTF-8"?>
{_HEADER}
  <Header>
    <To Qualifier="ZZZ">LEMTRADA-REMS</To>
    <From Qualifier="P">1234567</From>
    <MessageID>0b8e5d2c41f94a7b9e11</MessageID>
    <SentTime>2026-03-02T14:55:00Z</SentTime>
  </Header>
  <Body>
    <REMSInitiationRequest>
      <Patient>
        <HumanPatient>
          <Names><Name><LastName>Ient</LastName><FirstName>Pat</FirstName></Name></Names>
          <GenderAndSex><Gender>M</Gender></GenderAndSex>
          <DateOfBirth><Date>1985-04-12</Date></DateOfBirth>
        </HumanPatient>
      </Patient>
      <Pharmacy><Identification><NCPDPID>1234567</NCPDPID><NPI>1558598797</NPI></Identification></Pharmacy>
      <Prescriber><NonVeterinarian><Identification><NPI>1993999998</NPI></Identification></NonVeterinarian></Prescriber>
      <MedicationPrescribed>
        <DrugCoded><ProductCode><Code>58468020001</Code><Qualifier>ND</Qualifier></ProductCode></DrugCoded>
      </MedicationPrescribed>
    </REMSInitiationRequest>
  </Body>
</Message>"""


def _answer(relates_to: str, body: str) -> str:
    return f"""<?xml version='1.0' encoding='utf-8'?>
{_HEADER}<Header><To>1234567</To><From>LEMTRADA-REMS</From>\
<MessageID>3e2f0c6b9a8d4f1e8b7c6d5a4f3e2d1c</MessageID><RelatesToMessageID>{relates_to}</RelatesToMessageID>\
<SentTime>2026-03-02T15:00:00Z</SentTime></Header><Body>{body}</Body></Message>"""


NCPDP_APPROVED = _answer(
    "6f1c2a9e3b7d4e58a0c4",
    "<REMSResponse><Response><ResponseStatus><Approved>"
    "<REMSCaseID>0f5b4c1e-7d2a-4b8e-9c3f-1a2b3c4d5e6f</REMSCaseID>"
    "<REMSAuthorizationNumber>PD36-TYK0-PMSV-A</REMSAuthorizationNumber>"
    "<AuthorizationPeriod><EffectiveDate><DateTime>2026-03-02T15:00:00Z</DateTime></EffectiveDate>"
    "<ExpirationDate><DateTime>2026-03-09T15:00:00Z</DateTime></ExpirationDate></AuthorizationPeriod>"
    "<REMSNote>Authorized for 5 dose(s); the number is single-use and valid until its expiration.</REMSNote>"
    "</Approved></ResponseStatus></Response></REMSResponse>",
)
NCPDP_DENIED = _answer(
    "6f1c2a9e3b7d4e58a0c4",
    "<REMSResponse><Response><ResponseStatus><Denied>"
    "<REMSCaseID>0f5b4c1e-7d2a-4b8e-9c3f-1a2b3c4d5e6f</REMSCaseID>"
    "<DeniedReasonCode>PHARMACY</DeniedReasonCode><DeniedReasonCode>CASE</DeniedReasonCode>"
    "<REMSNote>facility_not_certified: The facility is not certified. "
    "no_open_course: The patient has no course open for dosing.</REMSNote>"
    "</Denied></ResponseStatus></Response></REMSResponse>",
)
NCPDP_INITIATION_OPEN = _answer(
    "0b8e5d2c41f94a7b9e11",
    "<REMSInitiationResponse><Patient><HumanPatient><Identification><REMSPatientID>63VQ-RMDB-9</REMSPatientID>"
    "</Identification></HumanPatient></Patient><Response><ResponseStatus><Open><Requirement>"
    "<ReasonCode>CASE</ReasonCode><REMSNote>no_open_course: The patient has no course open for dosing.</REMSNote>"
    "</Requirement></Open></ResponseStatus></Response></REMSInitiationResponse>",
)
NCPDP_INITIATION_CLOSED = _answer(
    "0b8e5d2c41f94a7b9e11",
    "<REMSInitiationResponse><Response><ResponseStatus><Closed><ReasonCode>PATIENT</ReasonCode>"
    "<REMSNote>patient_not_found: No patient matches this registry ID and date of birth.</REMSNote>"
    "</Closed></ResponseStatus></Response></REMSInitiationResponse>",
)
NCPDP_ERROR = _answer(
    "6f1c2a9e3b7d4e58a0c4",
    "<Error><Code>900</Code><DescriptionCode>missing_element</DescriptionCode>"
    "<Description>Missing element Message/Body/REMSRequest/MedicationPrescribed/Quantity/Value.</Description>"
    "</Error>",
)

_PATIENT_ID = {"system": "urn:lemtrada-rems:rems-patient-id", "value": "63VQ-RMDB-9"}

FHIR_INPUT: dict[str, Any] = {
    "resourceType": "Parameters",
    "parameter": [
        {
            "name": "patient",
            "resource": {
                "resourceType": "Patient",
                "identifier": [_PATIENT_ID],
                "name": [{"family": "Ient", "given": ["Pat"]}],
                "gender": "male",
                "birthDate": "1985-04-12",
            },
        },
        {
            "name": "medication",
            "resource": {
                "resourceType": "Medication",
                "code": {
                    "coding": [
                        {
                            "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                            "code": "1594660",
                            "display": "alemtuzumab 10 MG/ML Injectable Solution [Lemtrada]",
                        }
                    ]
                },
            },
        },
    ],
}


def _requirement(
    name: str, status: str, label: str, code: str | None = None, detail: str = ""
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "GuidanceResponse",
        "id": name.replace("_", "-"),
        "moduleUri": "https://build.fhir.org/ig/HL7/fhir-medication-rems-ig/",
        "status": status,
        "subject": {"identifier": _PATIENT_ID},
        "occurrenceDateTime": "2026-03-02T15:00:00+00:00",
        "note": [{"text": label}, *([{"text": detail}] if detail else [])],
    }
    if code:
        resource["reasonCode"] = [
            {"coding": [{"system": "urn:lemtrada-rems:reason-code", "code": code}], "text": code}
        ]
    return {"name": name, "resource": resource}


FHIR_OUTPUT: dict[str, Any] = {
    "resourceType": "Parameters",
    "parameter": [
        {
            "name": "rems-etasu",
            "resource": {
                "resourceType": "GuidanceResponse",
                "id": "rems-etasu",
                "contained": [
                    {
                        "resourceType": "Parameters",
                        "id": "etasuOutputParameters",
                        "parameter": [
                            _requirement(
                                "prescriber_of_record_certified", "success", "Prescriber certification"
                            ),
                            _requirement(
                                "patient_authorized", "success", "Patient enrollment and authorization"
                            ),
                            _requirement("no_contraindication", "success", "No contraindication recorded"),
                            _requirement("attestations_hold", "success", "Screening attestations still hold"),
                            _requirement("no_open_pregnancy", "success", "No open pregnancy"),
                            _requirement(
                                "open_course",
                                "data-required",
                                "Planned or in-progress course",
                                "no_open_course",
                                "The patient has no planned or in-progress course.",
                            ),
                            {"name": "rems_patient_id", "valueString": "63VQ-RMDB-9"},
                        ],
                    }
                ],
                "moduleUri": "https://build.fhir.org/ig/HL7/fhir-medication-rems-ig/",
                "status": "data-required",
                "subject": {"identifier": _PATIENT_ID},
                "occurrenceDateTime": "2026-03-02T15:00:00+00:00",
                "outputParameters": {"reference": "#etasuOutputParameters"},
                "note": [
                    {"text": "LEMTRADA REMS requirements (elements to assure safe use) for this patient."}
                ],
            },
        }
    ],
}
