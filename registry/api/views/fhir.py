"""`POST /api/fhir/GuidanceResponse/$rems-etasu`: the HL7 US Medication REMS IG (STU2) operation that
answers the status of each REMS requirement ("ETASU") for a patient and a medication.

Input: a FHIR `Parameters` with `patient` (a Patient: name, birthDate, and our registry ID as an identifier
of system `urn:lemtrada-rems:rems-patient-id`) and `medication` (a Medication or MedicationRequest coded
RxNorm 1594660 or a LEMTRADA NDC). Output: a `Parameters` whose `rems-etasu` GuidanceResponse carries the
overall status; its contained `Parameters` (its `outputParameters`) holds one GuidanceResponse per
requirement (`success`, `data-required`, `failure`) with a note, as the IG's example does.

Scoped (STYLE.md 3): the patient is looked up among the patients the caller may see
(`patient_visible_by_registry_id`, over `patients_visible_to(caller)`), so a prescriber sees
its own patients only (a delegate its prescriber's; an admin all); any other answers the same 404
OperationOutcome as an unknown one. Read-only: nothing is stored (services/etasu.py). Resources are
validated with `fhir.resources` (FHIR R4B models; the IG's R4 resources used here are unchanged in R4B):
the input before it is read, the output before it is sent.
"""

from __future__ import annotations

import io
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from fhir.resources.R4B.parameters import Parameters
from rest_framework import exceptions, serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from registry.api.parsers import SafeJSONParser
from registry.api.standards import OneFormatNegotiation, PayloadTooLarge, StandardsAutoSchema, read_capped
from registry.errors import RegistryError
from registry.localtime import local_today
from registry.models import Patient
from registry.permissions import CARE_TEAM
from registry.selectors import patient_visible_by_registry_id
from registry.services.access_log import access_log_record
from registry.services.etasu import EtasuResult, etasu_evaluate
from registry.standards import (
    FHIR_REASON_CODE_SYSTEM,
    FHIR_REMS_MODULE_URI,
    FHIR_REMS_PATIENT_ID_SYSTEM,
    NDC_SYSTEM,
    RXNORM_LEMTRADA,
    RXNORM_SYSTEM,
    is_lemtrada_ndc,
)

from . import standards_examples as examples
from .base import ThrottleFailuresMixin

FHIR_JSON = "application/fhir+json"
OPERATION_DESCRIPTION = __doc__
OUTPUT_PARAMETERS_ID = "etasuOutputParameters"

_LABELS = {
    "prescriber_certified": "Prescriber certification",
    "prescriber_of_record_certified": "Prescriber certification",
    "patient_authorized": "Patient enrollment and authorization",
    "no_contraindication": "No contraindication recorded",
    "attestations_hold": "Screening attestations still hold",
    "no_open_pregnancy": "No open pregnancy",
    "baseline_labs_complete": "Baseline labs",
    "screening_complete": "Baseline screening attestations",
    "pregnancy_test_negative": "Pregnancy test",
    "open_course": "Planned or in-progress course",
    "course_doses_remaining": "Doses left in the course",
    "course_interval_met": "Interval since the previous course",
    "dose_within_course_window": "Dose within the course window",
    "pre_course_labs_fresh": "Pre-course labs",
    "course_1_baseline_labs": "Course 1 baseline labs",
    "course_1_screening": "Course 1 screening attestations",
    "course_1_pregnancy_test": "Course 1 pregnancy test",
    "monitoring_current": "Monitoring labs up to date",
    "status_form_current": "Patient status form up to date",
}


FHIR_ETASU_ENDPOINT = "POST /api/fhir/GuidanceResponse/$rems-etasu"


class FhirProblem(Exception):
    """An OperationOutcome answer: FHIR issue `code` (issue-type value set), HTTP `status`."""

    def __init__(self, status: int, code: str, diagnostics: str, expression: list[str] | None = None) -> None:
        super().__init__(diagnostics)
        self.status, self.code, self.diagnostics = status, code, diagnostics
        self.issues = [(code, diagnostics, expression or [])]


class FhirJsonParser(SafeJSONParser):
    """JSON, capped at FHIR_MAX_BODY_BYTES before it is decoded."""

    media_type = FHIR_JSON

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        body = read_capped(stream, limit=settings.FHIR_MAX_BODY_BYTES, declared=declared)
        return super().parse(io.BytesIO(body), media_type, parser_context)


class FhirPlainJsonParser(FhirJsonParser):
    media_type = "application/json"


class FhirJsonRenderer(JSONRenderer):
    media_type = FHIR_JSON
    format = "fhir"


# --- Schema (the shapes, loosely: fhir.resources validates the resources themselves) ------------------


class FhirParameterSerializer(serializers.Serializer):
    name = serializers.CharField()
    resource = serializers.JSONField(required=False, help_text="A FHIR resource.")
    valueString = serializers.CharField(required=False)


class FhirParametersSerializer(serializers.Serializer):
    resourceType = serializers.ChoiceField(choices=["Parameters"])
    parameter = FhirParameterSerializer(many=True)


class FhirIssueSerializer(serializers.Serializer):
    severity = serializers.ChoiceField(choices=["fatal", "error", "warning", "information"])
    code = serializers.CharField(help_text="FHIR issue type (`invalid`, `required`, `not-found`, ...).")
    diagnostics = serializers.CharField()
    expression = serializers.ListField(child=serializers.CharField(), required=False)


class FhirOperationOutcomeSerializer(serializers.Serializer):
    resourceType = serializers.ChoiceField(choices=["OperationOutcome"])
    issue = FhirIssueSerializer(many=True)


def _outcome_doc(text: str) -> OpenApiResponse:
    return OpenApiResponse(FhirOperationOutcomeSerializer, description=text + " A FHIR OperationOutcome.")


# --- Reading the input -----------------------------------------------------------------------------------


def _validated(data: Any) -> Parameters:
    if not isinstance(data, dict) or data.get("resourceType") != "Parameters":
        raise FhirProblem(400, "structure", "The body must be a FHIR Parameters resource.")
    try:
        return Parameters.model_validate(data)
    except (ValueError, TypeError, LookupError, AttributeError, RecursionError) as exc:
        # pydantic's ValidationError is a ValueError; fhir.resources raises KeyError for an unknown
        # resourceType. Either way the input is not a valid resource.
        raise FhirProblem(400, "structure", f"Invalid FHIR Parameters: {str(exc)[:1000]}") from None


def _resource(parameters: Parameters, name: str, types: tuple[str, ...]) -> Any:
    for parameter in parameters.parameter or []:
        resource = parameter.resource
        if parameter.name == name and resource is not None:
            if resource.get_resource_type() in types:
                return resource
            raise FhirProblem(
                400,
                "invalid",
                f"Parameter {name!r} must be a {' or '.join(types)}.",
                [f"Parameters.parameter.{name}"],
            )
    raise FhirProblem(
        400,
        "required",
        f"Parameter {name!r} ({' or '.join(types)}) is required.",
        [f"Parameters.parameter.{name}"],
    )


def _codings(medication: Any) -> list[Any]:
    concept = (
        medication.code
        if medication.get_resource_type() == "Medication"
        else getattr(medication, "medicationCodeableConcept", None)
    )
    return list(concept.coding or []) if concept is not None else []


def _medication_check(medication: Any) -> None:
    for coding in _codings(medication):
        if coding.system == RXNORM_SYSTEM and coding.code == RXNORM_LEMTRADA:
            return
        if coding.system == NDC_SYSTEM and coding.code and is_lemtrada_ndc(coding.code):
            return
    raise FhirProblem(
        422,
        "not-supported",
        f"This REMS covers LEMTRADA (alemtuzumab): code the medication RxNorm {RXNORM_LEMTRADA} "
        f"({RXNORM_SYSTEM}) or its NDC ({NDC_SYSTEM}).",
        ["Parameters.parameter.medication"],
    )


def _patient_identity(patient: Any) -> tuple[str, Any]:
    registry_id = next(
        (i.value for i in patient.identifier or [] if i.system == FHIR_REMS_PATIENT_ID_SYSTEM and i.value),
        None,
    )
    if registry_id is None:
        raise FhirProblem(
            400,
            "required",
            f"The Patient needs our registry ID as an identifier of system {FHIR_REMS_PATIENT_ID_SYSTEM}.",
            ["Patient.identifier"],
        )
    if patient.birthDate is None:
        raise FhirProblem(400, "required", "The Patient needs its birthDate.", ["Patient.birthDate"])
    if not any(name.family or name.given for name in patient.name or []):
        raise FhirProblem(400, "required", "The Patient needs a name.", ["Patient.name"])
    return registry_id, patient.birthDate


# --- Writing the output ------------------------------------------------------------------------------------


def _subject(patient: Patient) -> dict[str, Any]:
    return {"identifier": {"system": FHIR_REMS_PATIENT_ID_SYSTEM, "value": patient.rems_patient_id}}


def etasu_parameters(result: EtasuResult, *, now_iso: str) -> dict[str, Any]:
    """The IG's output: Parameters { rems-etasu: GuidanceResponse (overall) { contained Parameters {
    one GuidanceResponse per requirement } } }."""
    patient = result.facts.patient
    assert patient is not None
    subject = _subject(patient)
    per_requirement = []
    for item in result.statuses:
        check = item.check
        response: dict[str, Any] = {
            "resourceType": "GuidanceResponse",
            "id": check.requirement.replace("_", "-"),
            "moduleUri": FHIR_REMS_MODULE_URI,
            "status": item.status,
            "subject": subject,
            "occurrenceDateTime": now_iso,
            "note": [
                {"text": _LABELS.get(check.requirement, check.requirement.replace("_", " ").capitalize())}
            ],
        }
        if not check.met:
            response["reasonCode"] = [
                {"coding": [{"system": FHIR_REASON_CODE_SYSTEM, "code": check.code}], "text": check.code}
            ]
            if check.detail:
                response["note"].append({"text": check.detail})
        per_requirement.append({"name": check.requirement, "resource": response})
    per_requirement.append({"name": "rems_patient_id", "valueString": patient.rems_patient_id})
    overall = {
        "resourceType": "GuidanceResponse",
        "id": "rems-etasu",
        "contained": [
            {"resourceType": "Parameters", "id": OUTPUT_PARAMETERS_ID, "parameter": per_requirement}
        ],
        "moduleUri": FHIR_REMS_MODULE_URI,
        "status": result.overall,
        "subject": subject,
        "occurrenceDateTime": now_iso,
        "outputParameters": {"reference": f"#{OUTPUT_PARAMETERS_ID}"},
        "note": [{"text": "LEMTRADA REMS requirements (elements to assure safe use) for this patient."}],
    }
    return {"resourceType": "Parameters", "parameter": [{"name": "rems-etasu", "resource": overall}]}


_ISSUE_CODES = (
    (exceptions.NotAuthenticated, "login"),
    (exceptions.AuthenticationFailed, "login"),
    (exceptions.PermissionDenied, "forbidden"),
    (exceptions.Throttled, "throttled"),
    (exceptions.UnsupportedMediaType, "not-supported"),
    (exceptions.NotAcceptable, "not-supported"),
    (exceptions.MethodNotAllowed, "not-supported"),
    (PayloadTooLarge, "too-long"),
    (exceptions.ParseError, "structure"),
)


def operation_outcome(issues: list[tuple[str, str, list[str]]]) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "error", "code": code, "diagnostics": text, **({"expression": expr} if expr else {})}
            for code, text, expr in issues
        ],
    }


class RemsEtasuView(ThrottleFailuresMixin, APIView):
    """HL7 US Medication REMS `$rems-etasu`, for prescriber EHRs (their delegates, and admins)."""

    roles = {"post": CARE_TEAM}
    # ACT-5: a read sent as POST (it stores nothing): a suspended prescriber's care team keeps it.
    allowed_while_suspended = frozenset({"post"})
    parser_classes = [FhirJsonParser, FhirPlainJsonParser]
    renderer_classes = [FhirJsonRenderer]
    content_negotiation_class = OneFormatNegotiation
    schema = StandardsAutoSchema()
    answer_media_type = FHIR_JSON

    @extend_schema(
        operation_id="fhir_rems_etasu",
        tags=["standards"],
        summary="FHIR $rems-etasu: the status of each REMS requirement for a patient",
        description=OPERATION_DESCRIPTION,
        request={FHIR_JSON: FhirParametersSerializer},
        examples=[
            OpenApiExample("input", value=examples.FHIR_INPUT, media_type=FHIR_JSON, request_only=True),
            OpenApiExample("output", value=examples.FHIR_OUTPUT, media_type=FHIR_JSON, response_only=True),
        ],
        responses={
            (200, FHIR_JSON): OpenApiResponse(
                FhirParametersSerializer,
                description="Parameters with one `rems-etasu` GuidanceResponse (see the example).",
            ),
            (400, FHIR_JSON): _outcome_doc("Not a valid Parameters, or a required parameter is missing."),
            (401, FHIR_JSON): _outcome_doc("No or bad API key."),
            (403, FHIR_JSON): _outcome_doc("The caller's role may not call this operation."),
            (404, FHIR_JSON): _outcome_doc(
                "No patient visible to the caller has this registry ID and birthDate."
            ),
            (405, FHIR_JSON): _outcome_doc("Method not allowed."),
            (413, FHIR_JSON): _outcome_doc("The body exceeds FHIR_MAX_BODY_BYTES (64 KiB)."),
            (415, FHIR_JSON): _outcome_doc("Send `Content-Type: application/fhir+json`."),
            (422, FHIR_JSON): _outcome_doc("The medication is not LEMTRADA."),
            (429, FHIR_JSON): _outcome_doc("Throttled; see `Retry-After`."),
        },
    )
    def post(self, request: Request) -> Response:
        parameters = _validated(request.data)
        patient_resource = _resource(parameters, "patient", ("Patient",))
        _medication_check(_resource(parameters, "medication", ("Medication", "MedicationRequest")))
        registry_id, birth_date = _patient_identity(patient_resource)
        patient = patient_visible_by_registry_id(request.user, registry_id, birth_date)  # type: ignore[arg-type]
        if patient is None:
            raise FhirProblem(
                404,
                "not-found",
                "No patient visible to you has this registry ID and birth date.",
                ["Patient"],
            )
        now = timezone.now()
        # The labs are judged against the caller's own calendar day (registry/localtime.py).
        result = etasu_evaluate(patient=patient, now=now, as_of=local_today(request.user, now))
        body = etasu_parameters(result, now_iso=now.isoformat(timespec="seconds"))
        Parameters.model_validate(body)  # what we send is a valid FHIR resource
        # A read of patient data that stores nothing else: access-logged (issue 8 item 6).
        access_log_record(user=request.user, patient_ids=[patient.pk], endpoint=FHIR_ETASU_ENDPOINT)  # type: ignore[arg-type]
        return Response(body)

    def handle_exception(self, exc: Exception) -> Response:
        """Every refusal is a FHIR OperationOutcome."""
        headers: dict[str, str] = {}
        if isinstance(exc, FhirProblem):
            status, issues = exc.status, exc.issues
        elif isinstance(exc, RegistryError):
            status, issues = exc.status_code, [("processing", exc.detail, [])]
        elif isinstance(exc, exceptions.APIException):
            code = next((c for cls, c in _ISSUE_CODES if isinstance(exc, cls)), "invalid")
            status = exc.status_code
            if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
                status = 401
                headers["WWW-Authenticate"] = self.get_authenticate_header(self.request) or "Bearer"
            if getattr(exc, "wait", None):
                headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]
            detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
            issues = [(code, str(detail), [])]
        else:
            return super().handle_exception(exc)  # a genuine server error
        return Response(operation_outcome(issues), status=status, headers=headers)


__all__ = ["RemsEtasuView"]
