"""`GET /api/v1/reports/assessment?from=YYYY-MM-DD&to=YYYY-MM-DD` (admin): the REMS assessment report,
JSON, or CSV with `?format=csv` or `Accept: text/csv` (registry/selectors/assessment.py builds it)."""

from __future__ import annotations

import csv
import io
from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from registry.api.serializers.reports import AssessmentQuerySerializer, AssessmentReportSerializer
from registry.errors import ValidationFailed
from registry.permissions import ADMIN
from registry.selectors.assessment import assessment_report

from .base import ThrottleFailuresMixin

CSV_COLUMNS = ("goal", "section", "key", "label", "value", "target", "method")


class AssessmentCSVRenderer(BaseRenderer):
    """One row per figure; the period and the settings in force lead as rows of the `report` goal (errors
    are answered as JSON by the view)."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        period = data["period"]
        for key in ("from", "to", "time_zone"):
            writer.writerow(("report", "period", key, key, period[key], "", ""))
        writer.writerow(("report", "period", "generated_at", "generated at", data["generated_at"], "", ""))
        for key, value in data["program_settings"].items():
            writer.writerow(("report", "program_settings", key, key, value, "", "in force now"))
        for goal in data["goals"]:
            for section in goal["sections"]:
                for f in section["figures"]:
                    writer.writerow(
                        (
                            goal["key"],
                            section["key"],
                            f["key"],
                            f["label"],
                            f["value"],
                            f.get("target", ""),
                            f["method"],
                        )
                    )
        return out.getvalue().encode()


class AssessmentReportView(ThrottleFailuresMixin, APIView):
    roles = {"get": ADMIN}
    renderer_classes = [JSONRenderer, AssessmentCSVRenderer]
    FORMATS = ("json", "csv")

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        """An unknown `?format=` is a 400 `validation_error` on `format` (DRF answers 404 by default)."""
        requested = request.query_params.get("format")
        if requested is not None and requested not in self.FORMATS and not force:
            raise ValidationFailed({"format": ["Must be json or csv."]})
        return super().perform_content_negotiation(request, force=force)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        """Errors answer in the one error contract (JSON `code`, `detail`), whatever format was asked."""
        if response.status_code >= 400:
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)

    @extend_schema(
        operation_id="reports_assessment",
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATE, required=True, description="First day (inclusive)."),
            OpenApiParameter("to", OpenApiTypes.DATE, required=True, description="Last day (inclusive)."),
            OpenApiParameter(
                "format", str, enum=["json", "csv"], required=False, description="Or `Accept: text/csv`."
            ),
        ],
        responses={
            (200, "application/json"): AssessmentReportSerializer,
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="One row per figure."),
        },
    )
    def get(self, request: Request) -> Response:
        """The REMS assessment figures for the period, grouped by the program's goals, rebuilt from stored
        decisions and audit events; each figure states how it is computed. 400 `validation_error` for a
        missing or malformed `from`/`to`, or `to` before `from`."""
        query = AssessmentQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        report = assessment_report(
            first=query.validated_data["from"], last=query.validated_data["to"], now=timezone.now()
        )
        return Response(report)
