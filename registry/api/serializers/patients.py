from __future__ import annotations

import datetime as dt
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from registry.matching import name_normalize
from registry.models import Contraindication, LabOutcome, LabResult, LabTest, Patient, Screening
from registry.services.enrollment import BULK_LAB_LIMIT
from registry.services.pregnancy import contraception_required_until


class PatientSerializer(serializers.ModelSerializer):
    prescriber = serializers.UUIDField(
        source="prescriber_id", read_only=True, help_text="The prescriber of record."
    )
    contraception_required_until = serializers.SerializerMethodField(
        help_text="PRG-1: for a patient of reproductive potential, 4 months (setting) after the last infusion "
        "of the latest course; null before any infusion and for other patients."
    )

    @extend_schema_field(serializers.DateField(allow_null=True))
    def get_contraception_required_until(self, patient: Patient) -> dt.date | None:
        return contraception_required_until(patient)

    class Meta:
        model = Patient
        fields = (
            "id",
            "rems_patient_id",
            "first_name",
            "last_name",
            "date_of_birth",
            "sex",
            "reproductive_potential",
            "enrollment_signed_on",
            "status",
            "status_reason",
            "prescriber",
            "authorized_at",
            "first_infusion_on",
            "last_infusion_on",
            "monitoring_ends_on",
            "contraception_required_until",
            "created_at",
            "updated_at",
        )
        read_only_fields = (
            "id",
            "rems_patient_id",
            "status",
            "status_reason",
            "prescriber",
            "authorized_at",
            "first_infusion_on",
            "last_infusion_on",
            "monitoring_ends_on",
            "created_at",
            "updated_at",
        )


class PatientEnrollSerializer(serializers.Serializer):
    first_name = serializers.CharField(max_length=100)
    last_name = serializers.CharField(max_length=100)
    date_of_birth = serializers.DateField()
    sex = serializers.ChoiceField(choices=["female", "male"])
    reproductive_potential = serializers.BooleanField()
    enrollment_signed_on = serializers.DateField(
        help_text="The signed enrollment form's date; age (ACT-9) is judged on it."
    )
    prescriber_npi = serializers.CharField(
        max_length=10,
        required=False,
        help_text="Administrators only: the certified prescriber of record they enroll for.",
    )
    confirm_not_duplicate = serializers.BooleanField(
        required=False,
        default=False,
        help_text=(
            "Administrators only: enroll although a patient with the same normalized name and date of "
            "birth exists (409 `possible_duplicate_patient` otherwise). Audited."
        ),
    )

    def validate_first_name(self, value: str) -> str:
        return _has_letters(value)

    def validate_last_name(self, value: str) -> str:
        return _has_letters(value)


def _has_letters(value: str) -> str:
    if not name_normalize(value):
        raise serializers.ValidationError("Must contain a letter or digit.")
    return value


class ScreeningSerializer(serializers.ModelSerializer):
    class Meta:
        model = Screening
        fields = (
            "id",
            "hiv_negative",
            "no_active_infection",
            "tb_screened_on",
            "vaccinations_completed_on",
            "created_at",
        )
        read_only_fields = ("id", "created_at")
        extra_kwargs = {"hiv_negative": {"required": True}, "no_active_infection": {"required": True}}


class LabResultSerializer(serializers.ModelSerializer):
    test = serializers.ChoiceField(choices=LabTest.choices)
    result = serializers.ChoiceField(
        choices=LabOutcome.choices,
        help_text="`normal`/`abnormal`; for `pregnancy_test`, `negative`/`positive`.",
    )

    class Meta:
        model = LabResult
        fields = ("id", "test", "collected_on", "result", "value", "unit", "notes", "created_at")
        read_only_fields = ("id", "created_at")


class BulkLabRowSerializer(LabResultSerializer):
    rems_patient_id = serializers.CharField(max_length=32)

    class Meta:
        model = LabResult
        fields = ("rems_patient_id", "test", "collected_on", "result", "value", "unit", "notes")


class BulkLabSerializer(serializers.Serializer):
    results = serializers.ListField(
        child=serializers.DictField(),
        min_length=1,
        max_length=BULK_LAB_LIMIT,
        help_text="Up to 5,000 rows, each a lab result with `rems_patient_id`.",
    )


class BulkLabResponseSerializer(serializers.Serializer):
    created = serializers.IntegerField()


class ContraindicationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Contraindication
        fields = ("id", "kind", "noted_on", "notes", "created_at")
        read_only_fields = ("id", "created_at")


class TransferSerializer(serializers.Serializer):
    prescriber_npi = serializers.CharField(max_length=10)


def bulk_row_errors(rows: list[Any]) -> tuple[list[dict[str, Any] | None], dict[str, list[str]]]:
    """Validates each bulk row's format; returns the validated rows (None where invalid) and the errors
    keyed `results.<index>.<field>`."""
    child = BulkLabRowSerializer()  # one instance: its fields are built once, not 5,000 times
    valid: list[dict[str, Any] | None] = []
    errors: dict[str, list[str]] = {}
    for index, row in enumerate(rows):
        try:
            valid.append(dict(child.run_validation(row)))
        except serializers.ValidationError as exc:
            valid.append(None)
            detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
            for name, messages in detail.items():
                errors[f"results.{index}.{name}"] = [str(m) for m in messages]
    return valid, errors
