"""Monitoring (API.md "Patients": status forms, monitoring; "Monitoring flags"). Patients are looked up
through `patient_visible`: one the caller may not see is 404."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.request import Request
from rest_framework.response import Response

from registry.api.access_logging import AccessLoggedMixin
from registry.api.idempotency import idempotent
from registry.api.serializers.monitoring import (
    MonitoringFlagSerializer,
    MonitoringStateSerializer,
    StatusFormSerializer,
)
from registry.localtime import local_today
from registry.models import FlagStatus, MonitoringFlag, MonitoringRequirement, Patient, StatusForm
from registry.permissions import CARE_TEAM, PRESCRIBER_OR_DELEGATE
from registry.selectors import (
    monitoring_flags_visible_to,
    monitoring_state,
    patient_status_forms,
    patient_visible,
)
from registry.services import monitoring

from .base import RegistryViewSet


class _PatientScoped(RegistryViewSet):
    lookup_value_regex = "[0-9a-fA-F-]{36}"

    def patient(self) -> Patient:
        return patient_visible(self.actor, self.kwargs["patient_pk"])


class StatusFormViewSet(AccessLoggedMixin, mixins.ListModelMixin, _PatientScoped):
    """MON-4: the patient's status forms, newest first; filed by the prescriber of record or its delegate."""

    serializer_class = StatusFormSerializer
    queryset = StatusForm.objects.none()
    roles = {"list": CARE_TEAM, "create": PRESCRIBER_OR_DELEGATE}
    # ACT-5: patient safety does not pause while the prescriber is suspended (registry/permissions.py).
    allowed_while_suspended = frozenset({"create"})

    def get_queryset(self) -> QuerySet[StatusForm]:
        return patient_status_forms(self.patient())

    @extend_schema(
        request=StatusFormSerializer,
        responses={
            201: StatusFormSerializer,
            403: OpenApiResponse(description="Not the prescriber of record or its delegate."),
        },
    )
    @idempotent
    def create(self, request: Request, patient_pk: str) -> Response:
        patient = self.patient()
        data = self.validated(StatusFormSerializer)
        form = monitoring.status_form_record(patient=patient, actor=self.actor, data=data, now=self.now())
        return Response(StatusFormSerializer(form).data, status=status.HTTP_201_CREATED)


class MonitoringViewSet(AccessLoggedMixin, _PatientScoped):
    """API.md `GET /patients/{id}/monitoring`: the stored schedule, per requirement."""

    roles = {"retrieve": CARE_TEAM}
    serializer_class = MonitoringStateSerializer

    @extend_schema(responses={200: MonitoringStateSerializer})
    def retrieve(self, request: Request, patient_pk: str) -> Response:
        patient = self.accessed(self.patient())  # the answer is the patient's data: access-logged
        state = monitoring_state(patient=patient, as_of=local_today(self.actor, self.now()))
        return Response(MonitoringStateSerializer(state).data)


class MonitoringFlagFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=FlagStatus.choices)
    requirement = django_filters.ChoiceFilter(choices=MonitoringRequirement.choices)
    blocking = django_filters.TypedChoiceFilter(
        choices=[("true", "true"), ("false", "false")], coerce=lambda value: value == "true"
    )
    patient = django_filters.UUIDFilter(field_name="patient_id")

    class Meta:
        model = MonitoringFlag
        fields = ("status", "requirement", "blocking", "patient")


class MonitoringFlagViewSet(AccessLoggedMixin, mixins.ListModelMixin, RegistryViewSet):
    """API.md `GET /monitoring-flags`: flags of the patients the caller may see, newest first; filter by
    `status`, `requirement`, `blocking`, `patient`."""

    serializer_class = MonitoringFlagSerializer
    queryset = MonitoringFlag.objects.none()
    filterset_class = MonitoringFlagFilter
    roles = {"list": CARE_TEAM}

    def get_queryset(self) -> QuerySet[MonitoringFlag]:
        return (
            monitoring_flags_visible_to(self.actor)
            .select_related("patient")
            .order_by("-opened_on", "requirement", "id")
        )
