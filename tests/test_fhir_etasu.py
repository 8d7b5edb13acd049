"""FHIR `$rems-etasu` at POST /api/fhir/GuidanceResponse/$rems-etasu (API.md "Standards endpoints"; HL7 US
Medication REMS IG STU2; ACT-1, ACT-6..9, CRS-2..4, GATE-4).

Every answer is validated as a FHIR resource with fhir.resources: a Parameters holding one `rems-etasu`
GuidanceResponse (overall status) whose contained Parameters holds one GuidanceResponse per requirement,
or an OperationOutcome. Scoped to the patients the caller may see; read-only.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from fhir.resources.R4B.guidanceresponse import GuidanceResponse
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.parameters import Parameters

from registry.identifiers import new_registry_id
from registry.models import AccessLogEntry, AuditEvent, Decision, DispenseAuthorization
from registry.services.certification import participant_deactivate, participant_suspend

from .gate_helpers import (
    DAY0,
    add_contraindication,
    authorized_patient,
    enroll_patient,
    frozen,
    infuse_days,
    moment,
    plan_course,
)

pytestmark = pytest.mark.django_db

ETASU = "/api/fhir/GuidanceResponse/$rems-etasu"
FHIR_JSON = "application/fhir+json"
REGISTRY_ID_SYSTEM = "urn:lemtrada-rems:rems-patient-id"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


@pytest.fixture
def clock():
    with frozen(DAY0) as traveller:
        yield traveller


@pytest.fixture
def patient(clock, prescriber):
    """Authorized on 2026-03-02, course 1 planned to start that day: nothing outstanding."""
    patient = authorized_patient(prescriber)
    plan_course(prescriber, patient, start=DAY0)
    return patient


def medication(
    system: str = RXNORM, code: str = "1594660", resource_type: str = "Medication"
) -> dict[str, Any]:
    concept = {"coding": [{"system": system, "code": code}]}
    if resource_type == "Medication":
        return {"resourceType": "Medication", "code": concept}
    return {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/1"},
        "medicationCodeableConcept": concept,
    }


def etasu_input(
    patient: Any = None,
    *,
    registry_id: str | None = None,
    birth_date: str | None = None,
    med: dict[str, Any] | None = None,
    identifier_system: str = REGISTRY_ID_SYSTEM,
) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "patient",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [
                        {"system": identifier_system, "value": registry_id or patient.rems_patient_id}
                    ],
                    "name": [{"family": "Ient", "given": ["Pat"]}],
                    "birthDate": birth_date or patient.date_of_birth.isoformat(),
                },
            },
            {"name": "medication", "resource": med or medication()},
        ],
    }


def post(persona: Any, body: Any, content_type: str = FHIR_JSON) -> Any:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return persona.client.post(ETASU, data=data, content_type=content_type)


def guidance(response: Any) -> tuple[GuidanceResponse, dict[str, GuidanceResponse]]:
    """Validates the answer as FHIR and returns the overall GuidanceResponse and the per-requirement ones."""
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith(FHIR_JSON)
    parameters = Parameters.model_validate(response.json())
    assert [p.name for p in parameters.parameter] == ["rems-etasu"]
    overall = parameters.parameter[0].resource
    assert isinstance(overall, GuidanceResponse)
    assert overall.moduleUri == "https://build.fhir.org/ig/HL7/fhir-medication-rems-ig/"
    assert overall.outputParameters.reference == "#etasuOutputParameters"
    (contained,) = overall.contained
    assert isinstance(contained, Parameters)
    assert contained.id == "etasuOutputParameters"
    requirements = {}
    for parameter in contained.parameter:
        if parameter.resource is not None:
            assert isinstance(parameter.resource, GuidanceResponse)
            requirements[parameter.name] = parameter.resource
    return overall, requirements


def outcome(response: Any, status: int, code: str) -> OperationOutcome:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith(FHIR_JSON)
    result = OperationOutcome.model_validate(response.json())
    assert [issue.code for issue in result.issue] == [code]
    assert result.issue[0].severity == "error"
    return result


# --- Statuses ---------------------------------------------------------------------------------------------


def test_authorized_patient_with_open_course_is_success(patient, prescriber):
    response = post(prescriber, etasu_input(patient))

    overall, requirements = guidance(response)
    assert overall.status == "success"
    assert overall.subject.identifier.system == REGISTRY_ID_SYSTEM
    assert overall.subject.identifier.value == patient.rems_patient_id
    assert list(requirements) == [
        "prescriber_of_record_certified",
        "patient_authorized",
        "no_contraindication",
        "attestations_hold",
        "no_open_pregnancy",
        "open_course",
        "course_doses_remaining",
        "course_interval_met",
        "dose_within_course_window",
        "pre_course_labs_fresh",
        "course_1_baseline_labs",
        "course_1_screening",
        "course_1_pregnancy_test",
        "monitoring_current",
        "status_form_current",
    ]
    assert {r.status for r in requirements.values()} == {"success"}
    assert requirements["patient_authorized"].note[0].text == "Patient enrollment and authorization"
    assert requirements["patient_authorized"].reasonCode is None
    contained = Parameters.model_validate(response.json()["parameter"][0]["resource"]["contained"][0])
    assert contained.parameter[-1].name == "rems_patient_id"
    assert contained.parameter[-1].valueString == patient.rems_patient_id


def test_enrolled_patient_is_data_required_with_what_is_missing_act_7(clock, prescriber):
    """ACT-7: an enrolled patient's baseline is data the prescriber can still send: data-required."""
    patient = enroll_patient(prescriber)
    overall, requirements = guidance(post(prescriber, etasu_input(patient)))

    assert overall.status == "data-required"
    statuses = {name: r.status for name, r in requirements.items()}
    assert statuses == {
        "prescriber_of_record_certified": "success",
        "baseline_labs_complete": "data-required",
        "screening_complete": "data-required",
        "pregnancy_test_negative": "success",
        "no_contraindication": "success",
        "patient_authorized": "data-required",
        "attestations_hold": "success",
        "no_open_pregnancy": "success",
        "open_course": "data-required",
        "course_doses_remaining": "success",
        "course_interval_met": "success",
        "dose_within_course_window": "success",
        "pre_course_labs_fresh": "data-required",
        "monitoring_current": "success",
        "status_form_current": "success",
    }
    baseline = requirements["baseline_labs_complete"]
    assert baseline.reasonCode[0].coding[0].system == "urn:lemtrada-rems:reason-code"
    assert baseline.reasonCode[0].coding[0].code == "baseline_incomplete"
    assert baseline.note[1].text.startswith("Missing or older than 30 days: cbc_differential")


def test_contraindication_is_a_failure_act_9(patient, prescriber):
    """ACT-9: a recorded contraindication cannot be fixed with data: failure, overall failure. The
    prescriber of record may read the clinical detail."""
    add_contraindication(patient, prescriber.user, on=DAY0, kind="hiv")
    overall, requirements = guidance(post(prescriber, etasu_input(patient)))

    assert overall.status == "failure"
    failed = requirements["no_contraindication"]
    assert failed.status == "failure"
    assert failed.reasonCode[0].coding[0].code == "contraindication_recorded"
    assert failed.note[1].text == "Contraindication recorded: hiv."
    assert {n: r.status for n, r in requirements.items() if r.status != "success"} == {
        "no_contraindication": "failure"
    }


def test_suspended_prescriber_of_record_is_a_failure_act_5(patient, prescriber, delegate, admin):
    """ACT-5: $rems-etasu is a read, which a suspended prescriber's care team keeps (nothing is stored)."""
    participant_suspend(
        participant=prescriber.participant, actor=admin.user, reason="audit", now=moment(DAY0)
    )
    overall, requirements = guidance(post(delegate, etasu_input(patient)))

    assert overall.status == "failure"
    assert requirements["prescriber_of_record_certified"].status == "failure"


def test_deactivated_prescriber_s_delegate_gets_401_act_5(patient, prescriber, delegate, admin):
    """ACT-5: deactivation stops the delegate's key too: 401, an OperationOutcome."""
    participant_deactivate(
        participant=prescriber.participant, actor=admin.user, reason="left", now=moment(DAY0)
    )

    response = post(delegate, etasu_input(patient))

    assert response.status_code == 401
    assert "inactive" in response.json()["issue"][0]["diagnostics"]


def test_the_read_is_access_logged(patient, prescriber):
    """Issue 8 item 6: $rems-etasu reads the patient's data; the read is logged like a GET."""
    assert post(prescriber, etasu_input(patient)).status_code == 200

    assert list(AccessLogEntry.objects.values_list("user", "patient", "endpoint")) == [
        (prescriber.user.pk, patient.pk, "POST /api/fhir/GuidanceResponse/$rems-etasu")
    ]


def test_course_interval_not_met_is_a_failure_crs_2(clock, prescriber, facility):
    """CRS-2: three months after course 1, course 2 cannot start: failure (and a course must be planned)."""
    patient = authorized_patient(prescriber)
    plan_course(prescriber, patient, start=DAY0)
    infuse_days(facility, patient, DAY0, 5)
    with frozen(DAY0.replace(month=6)):
        overall, requirements = guidance(post(prescriber, etasu_input(patient)))

    assert overall.status == "failure"  # failure outranks data-required
    assert requirements["open_course"].status == "data-required"
    assert requirements["course_interval_met"].status == "failure"
    assert requirements["course_interval_met"].reasonCode[0].coding[0].code == "course_interval_not_met"


def test_etasu_is_read_only(patient, prescriber):
    """Nothing is stored: no decision, no authorization, no audit event; a bounded number of queries."""
    decisions, events = Decision.objects.count(), AuditEvent.objects.count()
    with CaptureQueriesContext(connection) as queries:
        response = post(prescriber, etasu_input(patient))

    assert response.status_code == 200
    assert Decision.objects.count() == decisions
    assert AuditEvent.objects.count() == events
    assert DispenseAuthorization.objects.count() == 0
    writes = [
        q["sql"]
        for q in queries.captured_queries
        # a data-modifying CTE (services/rows.py) is a write too; a locking read (FOR UPDATE) is not
        if re.match(r"\s*(INSERT|UPDATE|DELETE)\b", q["sql"], re.IGNORECASE)
        or re.match(r"\s*WITH\b.*\b(INSERT\s+INTO|DELETE\s+FROM|UPDATE\s+\S+\s+SET)\b", q["sql"], re.I | re.S)
    ]
    # Only the key's last-used stamp, the shared rate limit's counter and the access log's one row (issue 8:
    # who read this patient); the last two are outside the budget, which is the operation's own.
    bookkeeping = ("registry_throttlebucket", "registry_accesslogentry")
    assert writes == [q for q in writes if "registry_apikey" in q or any(t in q for t in bookkeeping)]
    assert sum("registry_accesslogentry" in q for q in writes) == 1
    own = [q for q in queries.captured_queries if not any(t in q["sql"] for t in bookkeeping)]
    assert len(own) <= 8


# --- Medication --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "med",
    [
        medication(),
        medication("http://hl7.org/fhir/sid/ndc", "58468-0200-1"),
        medication("http://hl7.org/fhir/sid/ndc", "58468020001"),
        medication(resource_type="MedicationRequest"),
    ],
    ids=["rxnorm", "ndc-hyphenated", "ndc-11", "medication-request"],
)
def test_lemtrada_is_recognised_by_rxnorm_or_ndc(patient, prescriber, med):
    overall, _ = guidance(post(prescriber, etasu_input(patient, med=med)))
    assert overall.status == "success"


def test_another_medication_is_unprocessable(patient, prescriber):
    response = post(prescriber, etasu_input(patient, med=medication(code="6064")))
    result = outcome(response, 422, "not-supported")
    assert result.issue[0].expression == ["Parameters.parameter.medication"]


# --- Scope: a prescriber sees its own patients ------------------------------------------------------------


@pytest.mark.parametrize(
    ("persona_name", "status", "code"),
    [
        ("prescriber", 200, None),
        ("delegate", 200, None),
        ("admin", 200, None),
        ("other_prescriber", 404, "not-found"),
        ("other_delegate", 404, "not-found"),
        ("pharmacy", 403, "forbidden"),
        ("facility", 403, "forbidden"),
        ("anon", 401, "login"),
    ],
)
def test_permission_matrix(request, patient, persona_name, status, code):
    persona = request.getfixturevalue(persona_name)
    response = post(persona, etasu_input(patient))

    if code is None:
        overall, _ = guidance(response)
        assert overall.status == "success"
    else:
        outcome(response, status, code)
    if status == 401:
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_unknown_patient_and_birth_date_mismatch_answer_the_same_404_id_4(patient, prescriber):
    unknown = post(prescriber, etasu_input(registry_id=new_registry_id(), birth_date="1985-04-12"))
    mismatch = post(prescriber, etasu_input(patient, birth_date="1985-04-13"))
    other = post(prescriber, etasu_input(registry_id="not-an-id", birth_date="1985-04-12"))

    outcome(unknown, 404, "not-found")
    assert unknown.json() == mismatch.json() == other.json()


# --- Bad input: an OperationOutcome, never a 500 ------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"resourceType": "Patient"}, 400, "structure"),
        ([1, 2], 400, "structure"),
        ({"resourceType": "Parameters", "parameter": "x"}, 400, "structure"),
        (
            {
                "resourceType": "Parameters",
                "parameter": [{"name": "patient", "resource": {"resourceType": "Nope"}}],
            },
            400,
            "structure",
        ),
        ({"resourceType": "Parameters"}, 400, "required"),
        (
            {"resourceType": "Parameters", "parameter": [{"name": "medication", "resource": medication()}]},
            400,
            "required",
        ),
        (b"{not json", 400, "structure"),
    ],
)
def test_invalid_input_is_an_operation_outcome(prescriber, body, status, code):
    outcome(post(prescriber, body), status, code)


def test_invalid_patient_resource_names_the_element(patient, prescriber):
    body = etasu_input(patient, birth_date="12/04/1985")
    result = outcome(post(prescriber, body), 400, "structure")
    assert "birthDate" in result.issue[0].diagnostics


@pytest.mark.parametrize(
    ("change", "expression"),
    [
        ({"identifier_system": "urn:other"}, ["Patient.identifier"]),
    ],
)
def test_patient_needs_our_registry_id(patient, prescriber, change, expression):
    result = outcome(post(prescriber, etasu_input(patient, **change)), 400, "required")
    assert result.issue[0].expression == expression


def test_patient_needs_a_name(patient, prescriber):
    body = etasu_input(patient)
    del body["parameter"][0]["resource"]["name"]
    result = outcome(post(prescriber, body), 400, "required")
    assert result.issue[0].expression == ["Patient.name"]


def test_patient_parameter_must_be_a_patient(patient, prescriber):
    body = etasu_input(patient)
    body["parameter"][0]["resource"] = medication()
    outcome(post(prescriber, body), 400, "invalid")


def test_oversized_body_is_too_long(settings, patient, prescriber):
    settings.FHIR_MAX_BODY_BYTES = 1024
    body = etasu_input(patient)
    body["parameter"][0]["resource"]["name"][0]["given"] = ["x" * 2000]
    outcome(post(prescriber, body), 413, "too-long")


def test_xml_is_unsupported(prescriber):
    outcome(post(prescriber, b"<Parameters/>", content_type="application/fhir+xml"), 415, "not-supported")


def test_plain_json_is_accepted_and_fhir_json_answered(patient, prescriber):
    overall, _ = guidance(post(prescriber, etasu_input(patient), content_type="application/json"))
    assert overall.status == "success"


def test_get_is_not_supported(prescriber):
    outcome(prescriber.client.get(ETASU), 405, "not-supported")


def test_schema_examples_are_valid_fhir(patient, prescriber):
    """The documented input and output (OpenAPI examples, docs/standards.md) validate as FHIR resources,
    and the output lists the requirements in the order the operation answers them."""
    from registry.api.views import standards_examples as examples

    Parameters.model_validate(examples.FHIR_INPUT)
    Parameters.model_validate(examples.FHIR_OUTPUT)
    _, actual = guidance(post(prescriber, etasu_input(patient)))
    documented = [
        p["name"]
        for p in examples.FHIR_OUTPUT["parameter"][0]["resource"]["contained"][0]["parameter"]
        if "resource" in p
    ]
    assert documented == list(actual)[: len(documented)]
