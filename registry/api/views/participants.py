"""Participants (API.md "Participants"): admin writes; participants read their own record."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from registry.api.idempotency import idempotent
from registry.api.serializers.common import ApiKeyCreatedSerializer, ReasonBodySerializer
from registry.api.serializers.participants import (
    DelegateCreateSerializer,
    DelegateSerializer,
    FacilitySerializer,
    MeSerializer,
    PharmacySerializer,
    PrescriberSerializer,
)
from registry.errors import PermissionDenied
from registry.models import Facility, Pharmacy, Prescriber, Role
from registry.permissions import ADMIN, ALL_ROLES, PRESCRIBING
from registry.selectors import delegates_of, participants_visible_to
from registry.services import certification
from registry.services.accounts import (
    api_key_issue,
    delegate_add,
    delegate_remove,
    participant_user_ensure,
)

from .base import RegistryViewSet, ThrottleFailuresMixin


class _ParticipantViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin, RegistryViewSet
):
    model: type[Any]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    roles = {
        "list": ADMIN,
        "create": ADMIN,
        "retrieve": ALL_ROLES,
        "partial_update": ADMIN,
        "certify": ADMIN,
        "suspend": ADMIN,
        "reinstate": ADMIN,
        "deactivate": ADMIN,
        "api_keys": ADMIN,
    }
    filterset_fields: tuple[str, ...] = ("status", "npi")
    search_fields = ("npi",)

    def get_queryset(self) -> QuerySet[Any]:
        return participants_visible_to(self.actor, self.model).order_by("-created_at", "id")

    @idempotent
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        participant = certification.participant_register(
            model=self.model, actor=self.actor, data=dict(serializer.validated_data), now=self.now()
        )
        return Response(self.get_serializer(participant).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        participant = self.get_object()
        serializer = self.get_serializer(participant, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        participant = certification.participant_update(
            participant=participant, actor=self.actor, data=dict(serializer.validated_data), now=self.now()
        )
        return Response(self.get_serializer(participant).data)

    def _transition(self, verb: str, reason: str) -> Response:
        participant = self.get_object()
        transition: Any = certification.TRANSITIONS[verb]
        participant = transition(participant=participant, actor=self.actor, reason=reason, now=self.now())
        return Response(self.get_serializer(participant).data)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def certify(self, request: Request, pk: str) -> Response:
        """ACT-2..5: 409 `certification_requirements_unmet` with `missing` when a requirement is unmet."""
        return self._transition("certify", "")

    @extend_schema(request=ReasonBodySerializer)
    @action(detail=True, methods=["post"])
    def suspend(self, request: Request, pk: str) -> Response:
        return self._transition("suspend", self.validated(ReasonBodySerializer)["reason"])

    @extend_schema(request=ReasonBodySerializer)
    @action(detail=True, methods=["post"])
    def reinstate(self, request: Request, pk: str) -> Response:
        return self._transition("reinstate", self.validated(ReasonBodySerializer)["reason"])

    @extend_schema(request=ReasonBodySerializer)
    @action(detail=True, methods=["post"])
    def deactivate(self, request: Request, pk: str) -> Response:
        return self._transition("deactivate", self.validated(ReasonBodySerializer)["reason"])

    @extend_schema(request=None, responses={201: ApiKeyCreatedSerializer})
    @action(detail=True, methods=["post"], url_path="api-keys")
    def api_keys(self, request: Request, pk: str) -> Response:
        """A new API key for the participant's own user (created on first call). Shown once: not
        idempotent, because replaying the answer would mean keeping the raw key."""
        participant = self.get_object()
        user = participant_user_ensure(participant=participant, actor=self.actor)
        key, raw = api_key_issue(user=user, actor=self.actor, name=f"{participant.kind} key")
        return Response({"id": key.pk, "key": raw}, status=status.HTTP_201_CREATED)


class PrescriberViewSet(_ParticipantViewSet):
    model = Prescriber
    serializer_class = PrescriberSerializer
    queryset = Prescriber.objects.none()
    roles = {
        **_ParticipantViewSet.roles,
        "delegates": PRESCRIBING,
        "delegates_list": PRESCRIBING,
        "delegate_remove": PRESCRIBING,
    }

    def _own_prescriber(self) -> Prescriber:
        prescriber: Prescriber = self.get_object()
        if self.actor.role == Role.PRESCRIBER and self.actor.prescriber_id != prescriber.pk:
            raise PermissionDenied()  # unreachable through visibility; kept as defence in depth
        return prescriber

    @extend_schema(request=DelegateCreateSerializer, responses={201: ApiKeyCreatedSerializer})
    @action(detail=True, methods=["post"], pagination_class=None)
    def delegates(self, request: Request, pk: str) -> Response:
        """Office staff acting for this prescriber: sees and acts on its patients but cannot enroll,
        authorize, plan courses or transfer."""
        prescriber = self._own_prescriber()
        data = self.validated(DelegateCreateSerializer)
        user, _, raw = delegate_add(prescriber=prescriber, actor=self.actor, **data)
        return Response({"id": user.pk, "key": raw}, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None})
    @action(detail=True, methods=["delete"], url_path=r"delegates/(?P<delegate_id>[0-9a-fA-F-]{36})")
    def delegate_remove(self, request: Request, pk: str, delegate_id: str) -> Response:
        """Removes the delegate and its access at once (care team membership, keys)."""
        prescriber = self._own_prescriber()
        delegate_remove(prescriber=prescriber, delegate_id=delegate_id, actor=self.actor, now=self.now())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses={200: DelegateSerializer(many=True)})
    @delegates.mapping.get
    def delegates_list(self, request: Request, pk: str) -> Response:
        prescriber = self._own_prescriber()
        return Response(DelegateSerializer(delegates_of(prescriber), many=True).data)


class FacilityViewSet(_ParticipantViewSet):
    model = Facility
    serializer_class = FacilitySerializer
    queryset = Facility.objects.none()


class PharmacyViewSet(_ParticipantViewSet):
    model = Pharmacy
    serializer_class = PharmacySerializer
    queryset = Pharmacy.objects.none()
    filterset_fields = ("status", "npi", "ncpdp_id")


class MeView(ThrottleFailuresMixin, APIView):
    """Who this key acts as."""

    roles = {"get": ALL_ROLES}

    @extend_schema(responses=MeSerializer)
    def get(self, request: Request) -> Response:
        return Response(MeSerializer(request.user).data)
