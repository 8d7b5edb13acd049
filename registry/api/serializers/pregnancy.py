"""Pregnancy reports (API.md "Monitoring flags and pregnancy"; PRG-2, PRG-3)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from registry.models import MaternalThyroidStatus, PregnancyOutcome, PregnancyReport

# Computed by the registry: a client that sends one is told so rather than silently ignored.
COMPUTED_FIELDS = (
    "exposure",
    "exposed_course",
    "exposed_course_number",
    "status",
    "conception_derived",
    "due_on_derived",
    "outcome_overdue_on",
    "infant_follow_up_due_on",
)


class _StrictFieldsMixin:
    """Refuses fields the endpoint does not take (a typo must not pass as "nothing to change")."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        initial = getattr(self, "initial_data", None)
        if isinstance(initial, dict):
            fields = self.fields  # type: ignore[attr-defined]
            errors = {
                name: ["Computed by the registry; it cannot be set."]
                if name in COMPUTED_FIELDS
                else ["Unknown field."]
                for name in initial
                if name not in fields
            }
            if errors:
                raise serializers.ValidationError(errors)
        return attrs


class PregnancyReportCreateSerializer(_StrictFieldsMixin, serializers.Serializer):
    patient = serializers.UUIDField(help_text="The patient's id (a patient of reproductive potential).")
    reported_on = serializers.DateField()
    lmp_on = serializers.DateField(required=False, help_text="Last menstrual period.")
    estimated_conception_on = serializers.DateField(
        required=False, help_text="Derived as LMP + 14 days when only `lmp_on` is given."
    )
    estimated_due_on = serializers.DateField(
        required=False, help_text="Derived when absent: LMP + 280 days, or conception + 266 days."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if attrs.get("lmp_on") is None and attrs.get("estimated_conception_on") is None:
            raise serializers.ValidationError(
                {"lmp_on": ["Give the last menstrual period or the estimated conception date."]}
            )
        return attrs


class PregnancyReportUpdateSerializer(_StrictFieldsMixin, serializers.Serializer):
    """Date corrections, the outcome (PRG-3) and the infant follow-up; every field optional."""

    reported_on = serializers.DateField(required=False)
    lmp_on = serializers.DateField(required=False)
    estimated_conception_on = serializers.DateField(required=False)
    estimated_due_on = serializers.DateField(required=False)
    outcome = serializers.ChoiceField(choices=PregnancyOutcome.choices, required=False)
    outcome_on = serializers.DateField(required=False)
    gestational_age_weeks = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=45,
        help_text="Live births only; null (or a correction to another outcome) clears it.",
    )
    birth_weight_grams = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=100,
        max_value=8000,
        help_text="Live births only; null (or a correction to another outcome) clears it.",
    )
    major_malformation = serializers.BooleanField(
        required=False, help_text="Yes/no; required for a live birth."
    )
    maternal_thyroid_status = serializers.ChoiceField(
        choices=MaternalThyroidStatus.choices,
        required=False,
        help_text="Maternal thyroid status during pregnancy; required with the outcome.",
    )
    outcome_notes = serializers.CharField(required=False, allow_blank=True, max_length=4000)
    infant_follow_up_on = serializers.DateField(
        required=False, help_text="Closes a live birth's report (due 12 months after the birth)."
    )
    infant_follow_up_notes = serializers.CharField(required=False, allow_blank=True, max_length=4000)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if not attrs:
            raise serializers.ValidationError({"non_field_errors": ["Nothing to change."]})
        return attrs


class PregnancyReportSerializer(serializers.ModelSerializer):
    patient = serializers.UUIDField(source="patient_id", read_only=True)
    rems_patient_id = serializers.CharField(source="patient.rems_patient_id", read_only=True)
    reported_by = serializers.UUIDField(source="reported_by_id", read_only=True)
    exposed_course = serializers.UUIDField(source="exposed_course_id", read_only=True, allow_null=True)
    exposed_course_number = serializers.SerializerMethodField()
    outcome = serializers.SerializerMethodField()
    maternal_thyroid_status = serializers.SerializerMethodField()

    class Meta:
        model = PregnancyReport
        fields = (
            "id",
            "patient",
            "rems_patient_id",
            "reported_by",
            "reported_on",
            "lmp_on",
            "estimated_conception_on",
            "conception_derived",
            "estimated_due_on",
            "due_on_derived",
            "exposure",
            "exposed_course",
            "exposed_course_number",
            "exposure_computed_at",
            "status",
            "outcome",
            "outcome_on",
            "gestational_age_weeks",
            "birth_weight_grams",
            "major_malformation",
            "maternal_thyroid_status",
            "outcome_notes",
            "outcome_overdue_on",
            "infant_follow_up_due_on",
            "infant_follow_up_on",
            "infant_follow_up_notes",
            "created_at",
            "updated_at",
        )
        read_only_fields = fields

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_exposed_course_number(self, report: PregnancyReport) -> int | None:
        return report.exposed_course.number if report.exposed_course_id else None  # type: ignore[union-attr]

    @extend_schema_field(serializers.ChoiceField(choices=PregnancyOutcome.choices, allow_null=True))
    def get_outcome(self, report: PregnancyReport) -> str | None:
        return report.outcome or None

    @extend_schema_field(serializers.ChoiceField(choices=MaternalThyroidStatus.choices, allow_null=True))
    def get_maternal_thyroid_status(self, report: PregnancyReport) -> str | None:
        return report.maternal_thyroid_status or None
