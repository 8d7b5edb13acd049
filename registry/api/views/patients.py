"""Patients (API.md "Patients"): the prescriber of record, its delegates and admins. Every lookup goes
through `patients_visible_to`: a patient the caller cannot see is 404."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from registry.api.access_logging import AccessLoggedMixin
from registry.api.idempotency import idempotent
from registry.api.refusals import refusal_response
from registry.api.schema import ErrorSerializer
from registry.api.serializers.common import ReasonBodySerializer
from registry.api.serializers.patients import (
    BulkLabResponseSerializer,
    BulkLabSerializer,
    ContraindicationSerializer,
    LabResultSerializer,
    PatientEnrollSerializer,
    PatientSerializer,
    ScreeningSerializer,
    TransferSerializer,
    bulk_row_errors,
)
from registry.api.serializers.treatment import (
    CoursePlannedSerializer,
    CoursePlanSerializer,
    CourseSerializer,
)
from registry.models import LabTest, Patient
from registry.permissions import ADMIN, CARE_TEAM, PRESCRIBING
from registry.selectors import patient_courses, patient_lab_results, patients_visible_to
from registry.services import enrollment, treatment

from .base import RegistryViewSet


class PatientViewSet(AccessLoggedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, RegistryViewSet):
    serializer_class = PatientSerializer
    queryset = Patient.objects.none()
    filterset_fields = ("status", "rems_patient_id")
    roles = {
        "list": CARE_TEAM,
        "retrieve": CARE_TEAM,
        "create": PRESCRIBING,  # ACT-6: prescribers; administrators enroll for a named prescriber
        "lab_results": CARE_TEAM,
        "lab_results_list": CARE_TEAM,
        "screening": CARE_TEAM,
        "contraindications": PRESCRIBING,
        "authorize": PRESCRIBING,
        "transfer": PRESCRIBING,
        "suspend": ADMIN,
        "reinstate": ADMIN,
        "discontinue": PRESCRIBING,
        "deceased": PRESCRIBING,
        "courses": PRESCRIBING,
        "courses_list": CARE_TEAM,
    }
    # ACT-5: patient safety does not pause while the prescriber is suspended (registry/permissions.py).
    allowed_while_suspended = frozenset({"lab_results"})  # status forms: views/monitoring.py

    def get_queryset(self) -> QuerySet[Patient]:
        return patients_visible_to(self.actor).order_by("-created_at", "id")

    @extend_schema(
        request=PatientEnrollSerializer,
        responses={
            201: PatientSerializer,
            409: OpenApiResponse(
                ErrorSerializer,
                "`possible_duplicate_patient` (ACT-6: same normalized name and date of birth as an existing "
                "patient; nothing about that patient is named) or `prescriber_not_certified`.",
            ),
        },
    )
    @idempotent
    def create(self, request: Request) -> Response:
        """ACT-6: a certified prescriber enrolls a patient and becomes its prescriber of record; an
        administrator enrolls for a named prescriber (`prescriber_npi`) and alone may confirm a genuine
        non-duplicate (`confirm_not_duplicate`)."""
        data = self.validated(PatientEnrollSerializer)
        prescriber_npi = data.pop("prescriber_npi", None)
        confirm = data.pop("confirm_not_duplicate", False)
        patient = enrollment.patient_enroll(
            actor=self.actor,
            data=data,
            now=self.now(),
            prescriber_npi=prescriber_npi,
            confirm_not_duplicate=confirm,
        )
        return Response(PatientSerializer(patient).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=LabResultSerializer, responses={201: LabResultSerializer})
    @action(detail=True, methods=["post"], url_path="lab-results")
    @idempotent
    def lab_results(self, request: Request, pk: str) -> Response:
        patient = self.get_object()
        data = self.validated(LabResultSerializer)
        lab = enrollment.lab_result_record(patient=patient, actor=self.actor, data=data, now=self.now())
        return Response(LabResultSerializer(lab).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[OpenApiParameter("test", str, enum=LabTest.values, required=False)],
        responses={200: LabResultSerializer(many=True)},
    )
    @lab_results.mapping.get
    def lab_results_list(self, request: Request, pk: str) -> Response:
        """Newest first; `?test=` filters by test."""
        patient = self.get_object()
        test = request.query_params.get("test")
        if test is not None and test not in LabTest.values:
            raise ValidationError({"test": [f"Unknown test {test!r}."]})
        page = self.paginate_queryset(patient_lab_results(patient, test=test))
        return self.get_paginated_response(LabResultSerializer(page, many=True).data)

    @extend_schema(request=ScreeningSerializer, responses={201: ScreeningSerializer})
    @action(detail=True, methods=["post"])
    @idempotent
    def screening(self, request: Request, pk: str) -> Response:
        patient = self.get_object()
        data = self.validated(ScreeningSerializer)
        screening = enrollment.screening_record(patient=patient, actor=self.actor, data=data, now=self.now())
        return Response(ScreeningSerializer(screening).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ContraindicationSerializer, responses={201: ContraindicationSerializer})
    @action(detail=True, methods=["post"])
    @idempotent
    def contraindications(self, request: Request, pk: str) -> Response:
        patient = self.get_object()
        data = self.validated(ContraindicationSerializer)
        item = enrollment.contraindication_record(
            patient=patient, actor=self.actor, data=data, now=self.now()
        )
        return Response(ContraindicationSerializer(item).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: PatientSerializer})
    @action(detail=True, methods=["post"])
    def authorize(self, request: Request, pk: str) -> Response:
        """ACT-7: 409 `authorization_requirements_unmet` with every unmet reason."""
        outcome = enrollment.patient_authorize(patient=self.get_object(), actor=self.actor, now=self.now())
        if not outcome.approved:
            return refusal_response(outcome, self.actor)
        return Response(PatientSerializer(outcome.created).data)

    @extend_schema(request=TransferSerializer, responses={200: PatientSerializer})
    @action(detail=True, methods=["post"])
    def transfer(self, request: Request, pk: str) -> Response:
        """ACT-8: transfer of care to another certified prescriber; access moves with the patient."""
        patient = self.get_object()
        npi = self.validated(TransferSerializer)["prescriber_npi"]
        patient = enrollment.patient_transfer(
            patient=patient, actor=self.actor, prescriber_npi=npi, now=self.now()
        )
        return Response(PatientSerializer(patient).data)

    def _status(self, verb: str) -> Response:
        patient = self.get_object()
        reason = self.validated(ReasonBodySerializer)["reason"]
        patient = enrollment.patient_status_change(
            patient=patient, actor=self.actor, verb=verb, reason=reason, now=self.now()
        )
        return Response(PatientSerializer(patient).data)

    @extend_schema(request=ReasonBodySerializer, responses={200: PatientSerializer})
    @action(detail=True, methods=["post"])
    def suspend(self, request: Request, pk: str) -> Response:
        """ACT-8: REMS administrator only, with a reason."""
        return self._status("suspend")

    @extend_schema(request=ReasonBodySerializer, responses={200: PatientSerializer})
    @action(detail=True, methods=["post"])
    def reinstate(self, request: Request, pk: str) -> Response:
        """ACT-8: REMS administrator only; back to the status held before the suspension."""
        return self._status("reinstate")

    @extend_schema(request=ReasonBodySerializer, responses={200: PatientSerializer})
    @action(detail=True, methods=["post"])
    def discontinue(self, request: Request, pk: str) -> Response:
        """ACT-8: treatment stopped; monitoring continues."""
        return self._status("discontinue")

    @extend_schema(request=ReasonBodySerializer, responses={200: PatientSerializer})
    @action(detail=True, methods=["post"])
    def deceased(self, request: Request, pk: str) -> Response:
        """ACT-8: records the patient's death."""
        return self._status("record_death")

    @extend_schema(request=CoursePlanSerializer, responses={201: CoursePlannedSerializer})
    @action(detail=True, methods=["post"], pagination_class=None)
    @idempotent
    def courses(self, request: Request, pk: str) -> Response:
        """CRS-2..4: 409 `course_not_allowed` with every reason."""
        patient = self.get_object()
        start = self.validated(CoursePlanSerializer)["planned_start_on"]
        outcome = treatment.course_plan(
            patient=patient, actor=self.actor, planned_start_on=start, now=self.now()
        )
        if not outcome.approved:
            return refusal_response(outcome, self.actor)
        body = {
            **CourseSerializer(outcome.created).data,
            "decision_id": str(outcome.decision.pk) if outcome.decision else None,
            "pending": list(outcome.evaluation.pending),
        }
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: CourseSerializer(many=True)})
    @courses.mapping.get
    def courses_list(self, request: Request, pk: str) -> Response:
        patient = self.get_object()
        return Response(CourseSerializer(patient_courses(patient), many=True).data)


class LabResultBulkViewSet(RegistryViewSet):
    roles = {"create": CARE_TEAM}
    allowed_while_suspended = frozenset({"create"})  # ACT-5: monitoring labs continue
    serializer_class = BulkLabSerializer

    @extend_schema(request=BulkLabSerializer, responses={201: BulkLabResponseSerializer})
    @idempotent
    def create(self, request: Request) -> Response:
        """Up to 5,000 rows; all or nothing; 400 lists every bad row by index (`results.<i>.<field>`)."""
        rows = self.validated(BulkLabSerializer)["results"]
        valid, errors = bulk_row_errors(rows)
        created = enrollment.lab_results_bulk_record(
            actor=self.actor, rows=valid, format_errors=errors, now=self.now()
        )
        return Response({"created": created}, status=status.HTTP_201_CREATED)
