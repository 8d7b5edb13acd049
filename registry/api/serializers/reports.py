"""The REMS assessment report (issue 12): query parameters and the documented response shape."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

MAX_PERIOD_DAYS = 3660  # ten years: FDA's assessments fall at 18 months, 3 years and 7 years


class AssessmentQuerySerializer(serializers.Serializer):
    """`from` and `to` are local calendar days, both inclusive (`from` is a Python keyword, hence
    `get_fields`)."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            "from": serializers.DateField(input_formats=["%Y-%m-%d"]),
            "to": serializers.DateField(input_formats=["%Y-%m-%d"]),
        }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        first, last = attrs["from"], attrs["to"]
        if first > last:
            raise serializers.ValidationError({"to": ["Must be on or after `from`."]})
        if (last - first).days >= MAX_PERIOD_DAYS:
            raise serializers.ValidationError(
                {"to": [f"The period may span at most {MAX_PERIOD_DAYS} days."]}
            )
        return attrs


class ReportFigureSerializer(serializers.Serializer):
    # `label` is an attribute of every DRF field: declared through get_fields.
    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            "key": serializers.CharField(),
            "label": serializers.CharField(),
            "value": serializers.FloatField(allow_null=True),
            "method": serializers.CharField(help_text="How the figure is computed from stored records."),
            "target": serializers.IntegerField(
                required=False, help_text="The program's target, where one is stated."
            ),
        }


class ReportSectionSerializer(serializers.Serializer):
    key = serializers.CharField()
    title = serializers.CharField()
    figures = ReportFigureSerializer(many=True)


class ReportGoalSerializer(serializers.Serializer):
    key = serializers.CharField()
    title = serializers.CharField()
    sections = ReportSectionSerializer(many=True)


class ReportPeriodSerializer(serializers.Serializer):
    # `from` is a keyword: declared through get_fields like the query.
    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            "from": serializers.DateField(),
            "to": serializers.DateField(),
            "time_zone": serializers.CharField(),
        }


class AssessmentReportSerializer(serializers.Serializer):
    period = ReportPeriodSerializer()
    generated_at = serializers.DateTimeField()
    program_settings = serializers.DictField(help_text="The program settings in force now (rules.py).")
    settings_in_decisions = serializers.ListField(
        child=serializers.DictField(),
        help_text="Every distinct set of settings stored with a decision of the period (GATE-5).",
    )
    goals = ReportGoalSerializer(many=True)
