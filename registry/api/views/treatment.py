"""Courses, infusions, dispense authorizations and dispenses (API.md "Courses and infusions",
"Dispense authorization")."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from registry.api.access_logging import AccessLoggedMixin
from registry.api.idempotency import idempotent
from registry.api.refusals import authorization_decision_body, decision_parts, refusal_response
from registry.api.schema import ErrorSerializer
from registry.api.serializers.common import ReasonBodySerializer
from registry.api.serializers.treatment import (
    AuthorizationDecisionSerializer,
    AuthorizationRequestSerializer,
    AuthorizationSerializer,
    CourseSerializer,
    DispenseInputSerializer,
    DispenseSerializer,
    InfusionCheckSerializer,
    InfusionInputSerializer,
    InfusionSerializer,
    RevokeSerializer,
)
from registry.errors import NotFound
from registry.models import Course, DispenseAuthorization, Role
from registry.permissions import FACILITY_OR_ADMIN, PHARMACY, PHARMACY_OR_ADMIN, PRESCRIBING
from registry.selectors import authorization_visible, courses_visible_to
from registry.services import dispensing, treatment
from registry.services.decisions import next_day_in_course

from .base import RegistryViewSet


class CourseViewSet(AccessLoggedMixin, RegistryViewSet):
    roles = {"cancel": PRESCRIBING, "retrieve": PRESCRIBING | {Role.DELEGATE}}
    serializer_class = CourseSerializer
    queryset = Course.objects.none()

    def get_queryset(self) -> QuerySet[Course]:
        return courses_visible_to(self.actor)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(CourseSerializer(self.get_object()).data)

    @extend_schema(request=ReasonBodySerializer, responses={200: CourseSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """CRS-3: cancels an open course with a reason; its active authorizations are revoked."""
        course = self.get_object()
        reason = self.validated(ReasonBodySerializer)["reason"]
        course = treatment.course_cancel(course=course, actor=self.actor, reason=reason, now=self.now())
        return Response(CourseSerializer(course).data)


class InfusionViewSet(RegistryViewSet):
    roles = {"create": FACILITY_OR_ADMIN, "check": FACILITY_OR_ADMIN}
    serializer_class = InfusionInputSerializer

    @extend_schema(
        request=InfusionInputSerializer,
        responses={
            201: InfusionSerializer,
            409: OpenApiResponse(ErrorSerializer, "`do_not_infuse` with `reasons`."),
        },
    )
    @idempotent
    def create(self, request: Request) -> Response:
        """GATE-3: records the infusion when every check passes; otherwise 409 `do_not_infuse` with every
        reason. The decision is stored either way."""
        data = self.validated(InfusionInputSerializer)
        outcome = treatment.infusion_record(actor=self.actor, data=data, now=self.now(), record=True)
        if outcome.created is None:
            return refusal_response(outcome, self.actor)  # GATE-3: returned, so the decision stays
        return Response(InfusionSerializer(outcome.created).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=InfusionInputSerializer, responses={200: InfusionCheckSerializer})
    @action(detail=False, methods=["post"])
    def check(self, request: Request) -> Response:
        """GATE-3: the same check, nothing recorded but the decision itself."""
        data = self.validated(InfusionInputSerializer)
        outcome = treatment.infusion_record(actor=self.actor, data=data, now=self.now(), record=False)
        facts = outcome.facts
        return Response(
            {
                "decision": "infuse" if outcome.approved else "do_not_infuse",
                "day_in_course": next_day_in_course(facts) if facts and outcome.approved else None,
                **decision_parts(outcome, self.actor),
            }
        )


class DispenseAuthorizationViewSet(AccessLoggedMixin, RegistryViewSet):
    roles = {"create": PHARMACY, "retrieve": PHARMACY_OR_ADMIN, "revoke": PHARMACY_OR_ADMIN}
    serializer_class = AuthorizationSerializer
    lookup_field = "number"
    lookup_value_regex = "[0-9A-Za-z-]{1,32}"

    def _get(self, number: str) -> DispenseAuthorization:
        authorization = authorization_visible(self.actor, number)
        if authorization is None:
            raise NotFound("No authorization with this number.")
        return authorization

    @extend_schema(request=AuthorizationRequestSerializer, responses={201: AuthorizationDecisionSerializer})
    @idempotent
    def create(self, request: Request) -> Response:
        """GATE-1/2: always 201; the decision is `approved` (with a single-use number) or `denied` (with
        every unmet requirement)."""
        data = self.validated(AuthorizationRequestSerializer)
        pharmacy = self.actor.pharmacy
        outcome = dispensing.authorization_request(
            actor=self.actor, pharmacy=pharmacy, data=data, now=self.now()
        )
        return Response(authorization_decision_body(outcome, self.actor), status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: AuthorizationSerializer})
    def retrieve(self, request: Request, number: str) -> Response:
        """`status`: `active`, `used`, `expired` or `revoked`. The answer names the patient (registry ID):
        the read is access-logged."""
        authorization = self.accessed(self._get(number))
        return Response(
            AuthorizationSerializer(authorization, context={"now": self.now(), "viewer": self.actor}).data
        )

    @extend_schema(request=RevokeSerializer, responses={200: AuthorizationSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, number: str) -> Response:
        reason = self.validated(RevokeSerializer)["reason"]
        authorization = dispensing.authorization_revoke(
            actor=self.actor, number=number, reason=reason, now=self.now()
        )
        return Response(
            AuthorizationSerializer(authorization, context={"now": self.now(), "viewer": self.actor}).data
        )


class DispenseViewSet(RegistryViewSet):
    roles = {"create": PHARMACY}
    serializer_class = DispenseInputSerializer

    @extend_schema(request=DispenseInputSerializer, responses={201: DispenseSerializer})
    @idempotent
    def create(self, request: Request) -> Response:
        """GATE-2: consumes the authorization; 409 `authorization_used`, `authorization_expired`,
        `authorization_revoked`, `authorization_not_found` or `vials_exceed_authorization`."""
        data = self.validated(DispenseInputSerializer)
        dispense = dispensing.dispense_record(actor=self.actor, data=data, now=self.now())
        return Response(DispenseSerializer(dispense).data, status=status.HTTP_201_CREATED)


__all__ = ["CourseViewSet", "DispenseAuthorizationViewSet", "DispenseViewSet", "InfusionViewSet"]
