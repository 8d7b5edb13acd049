"""`GET /api/v1/certifications/{npi}` (API.md "Access, duplicates and lookups")."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from registry.errors import NotFound
from registry.models import ParticipantKind
from registry.permissions import ALL_ROLES
from registry.selectors import certification_lookup

from .base import ThrottleFailuresMixin


class CertificationSerializer(serializers.Serializer):
    npi = serializers.CharField()
    kind = serializers.ChoiceField(choices=ParticipantKind.choices)
    certified = serializers.BooleanField(
        help_text="Certified now: not pending, suspended, deactivated or expired."
    )
    certification_expires_on = serializers.DateField(allow_null=True)


class CertificationQuerySerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ParticipantKind.choices, required=False)


class CertificationLookupView(ThrottleFailuresMixin, APIView):
    """Whether an NPI is certified, for any authenticated participant. Nothing else is revealed."""

    roles = {"get": ALL_ROLES}

    @extend_schema(
        operation_id="certification_lookup",
        parameters=[
            OpenApiParameter("npi", OpenApiTypes.STR, OpenApiParameter.PATH, description="A 10-digit NPI."),
            CertificationQuerySerializer,
        ],
        responses={200: CertificationSerializer},
    )
    def get(self, request: Request, npi: str) -> Response:
        """ACT-5: `certified` is the state at this moment. Unknown NPI: 404. `?kind=` chooses when an
        NPI is held by participants of two kinds."""
        query = CertificationQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        state = certification_lookup(npi=npi, now=timezone.now(), kind=query.validated_data.get("kind"))
        if state is None:
            raise NotFound("No participant has this NPI.")
        return Response(CertificationSerializer(state).data)


__all__ = ["CertificationLookupView"]
