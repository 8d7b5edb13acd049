"""Pregnancy reports (API.md "Monitoring flags and pregnancy"; PRG-2..4): the prescriber of record, its
delegates and admins. Every report is reached through `pregnancy_reports_visible_to` (selectors/pregnancy.py): a report of a patient the
caller cannot see is 404, and such a patient named in a new report reads like an unknown one."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.request import Request
from rest_framework.response import Response

from registry.api.access_logging import AccessLoggedMixin
from registry.api.idempotency import idempotent
from registry.api.schema import ErrorSerializer
from registry.api.serializers.pregnancy import (
    PregnancyReportCreateSerializer,
    PregnancyReportSerializer,
    PregnancyReportUpdateSerializer,
)
from registry.errors import ValidationFailed
from registry.models import Exposure, PregnancyReport, PregnancyStatus
from registry.permissions import CARE_TEAM
from registry.selectors import patients_visible_to, pregnancy_report_visible, pregnancy_reports_visible_to
from registry.services import pregnancy

from .base import RegistryViewSet


class PregnancyReportFilter(django_filters.FilterSet):
    """`patient` is matched by id, not looked up: an id the caller cannot see and an id nobody has both
    answer an empty list (a model-choice filter would refuse the second, telling which ids exist)."""

    status = django_filters.ChoiceFilter(choices=PregnancyStatus.choices)
    exposure = django_filters.ChoiceFilter(choices=Exposure.choices)
    patient = django_filters.UUIDFilter(field_name="patient_id")

    class Meta:
        model = PregnancyReport
        fields = ("status", "exposure", "patient")


class PregnancyReportViewSet(
    AccessLoggedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, RegistryViewSet
):
    serializer_class = PregnancyReportSerializer
    queryset = PregnancyReport.objects.none()
    filterset_class = PregnancyReportFilter
    http_method_names = ["get", "post", "patch", "head", "options"]
    roles = {"list": CARE_TEAM, "retrieve": CARE_TEAM, "create": CARE_TEAM, "partial_update": CARE_TEAM}

    def get_queryset(self) -> QuerySet[PregnancyReport]:
        return pregnancy_reports_visible_to(self.actor)

    @extend_schema(
        request=PregnancyReportCreateSerializer,
        responses={
            201: PregnancyReportSerializer,
            409: OpenApiResponse(
                ErrorSerializer,
                "`no_reproductive_potential` (PRG-2) or `pregnancy_report_open` (PRG-4: one open report per "
                "patient).",
            ),
        },
    )
    @idempotent
    def create(self, request: Request) -> Response:
        """PRG-2, PRG-4: files a report; the registry classifies its exposure, holds the gate and revokes
        the patient's outstanding authorization numbers. 409 `no_reproductive_potential`,
        `pregnancy_report_open`."""
        data = self.validated(PregnancyReportCreateSerializer)
        patient = patients_visible_to(self.actor).filter(pk=data.pop("patient")).first()
        if patient is None:
            raise ValidationFailed({"patient": ["Unknown patient."]})
        report = pregnancy.pregnancy_report_file(patient=patient, actor=self.actor, data=data, now=self.now())
        report = pregnancy_report_visible(self.actor, report.pk)
        return Response(PregnancyReportSerializer(report).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=PregnancyReportUpdateSerializer,
        responses={
            200: PregnancyReportSerializer,
            409: OpenApiResponse(
                ErrorSerializer,
                "`invalid_status_transition`: a closed report's outcome and follow-up are final (PRG-3).",
            ),
        },
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        """PRG-2, PRG-3: date corrections (exposure recomputed), the outcome (`outcome_recorded`, or
        `closed` when not a live birth) and the infant follow-up (`closed`). 409
        `invalid_status_transition` for a closed report's outcome."""
        report = pregnancy_report_visible(self.actor, pk)
        data = self.validated(PregnancyReportUpdateSerializer)
        pregnancy.pregnancy_report_update(report=report, actor=self.actor, data=data, now=self.now())
        return Response(PregnancyReportSerializer(pregnancy_report_visible(self.actor, report.pk)).data)
