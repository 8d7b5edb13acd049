"""Monitoring (API.md "Patients": status forms, monitoring; "Monitoring flags"). Patients are looked up
through `patients_visible_to`: one the caller may not see is 404."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.request import Request
from rest_framework.response import Response

from registry.api.idempotency import idempotent
from registry.api.serializers.monitoring import (
    MonitoringFlagSerializer,
    MonitoringStateSerializer,
    StatusFormSerializer,
)
from registry.errors import NotFound
from registry.models import FlagStatus, MonitoringFlag, MonitoringRequirement, Patient, Role, StatusForm
from registry.permissions import CARE_TEAM
from registry.selectors import monitoring_flags_visible_to, patients_visible_to
from registry.services import monitoring

from .base import RegistryViewSet

PRESCRIBER_OR_DELEGATE = frozenset({Role.PRESCRIBER, Role.DELEGATE})


class _PatientScoped(RegistryViewSet):
    lookup_value_regex = "[0-9a-fA-F-]{36}"

    def patient(self) -> Patient:
        patient = patients_visible_to(self.actor).filter(pk=self.kwargs["patient_pk"]).first()
        if patient is None:
            raise NotFound()
        return patient


class StatusFormViewSet(mixins.ListModelMixin, _PatientScoped):
    """MON-4: the patient's status forms, newest first; filed by the prescriber of record or its delegate."""

    serializer_class = StatusFormSerializer
    queryset = StatusForm.objects.none()
    roles = {"list": CARE_TEAM, "create": PRESCRIBER_OR_DELEGATE}

    def get_queryset(self) -> QuerySet[StatusForm]:
        return self.patient().status_forms.order_by("-completed_on", "-created_at", "id")

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


class MonitoringViewSet(_PatientScoped):
    """API.md `GET /patients/{id}/monitoring`: the stored schedule, per requirement."""

    roles = {"retrieve": CARE_TEAM}
    serializer_class = MonitoringStateSerializer

    @extend_schema(responses={200: MonitoringStateSerializer})
    def retrieve(self, request: Request, patient_pk: str) -> Response:
        state = monitoring.monitoring_state(patient=self.patient(), as_of=timezone.localdate(self.now()))
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


class MonitoringFlagViewSet(mixins.ListModelMixin, RegistryViewSet):
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
