from __future__ import annotations

from typing import Any

from rest_framework import serializers

from registry import rules
from registry.models import Facility, Pharmacy, Prescriber, Role, User
from registry.services.certification import participant_requirements

_READ_ONLY = (
    "id",
    "status",
    "status_reason",
    "status_changed_at",
    "certified_at",
    "certification_expires_at",
    "created_at",
    "updated_at",
)


class _ParticipantSerializer(serializers.ModelSerializer):
    missing_requirements = serializers.SerializerMethodField(
        help_text="Certification requirements not yet met (ACT-2..4); empty when certifiable."
    )

    def get_missing_requirements(self, obj: Any) -> list[str]:
        return participant_requirements(obj)

    def validate_npi(self, value: str) -> str:
        return value.strip()


class PrescriberSerializer(_ParticipantSerializer):
    knowledge_assessment_score = serializers.IntegerField(  # ACT-2: 8 questions
        min_value=0, max_value=rules.KNOWLEDGE_ASSESSMENT_QUESTIONS, required=False, allow_null=True
    )

    class Meta:
        model = Prescriber
        fields = (
            "id",
            "npi",
            "first_name",
            "last_name",
            "email",
            "credentials",
            "phone",
            "dea_number",
            "time_zone",
            "knowledge_assessment_score",
            "knowledge_assessment_passed_on",
            "enrollment_signed_on",
            *_READ_ONLY[1:],
            "missing_requirements",
        )
        read_only_fields = _READ_ONLY
        validators: list[Any] = []  # duplicates are the database's call: 409 duplicate_identifier


_SITE_FIELDS = (
    "name",
    "address_line1",
    "city",
    "state",
    "postal_code",
    "authorized_rep_name",
    "authorized_rep_email",
    "enrollment_signed_on",
    "time_zone",
)


class FacilitySerializer(_ParticipantSerializer):
    class Meta:
        model = Facility
        fields = (
            "id",
            "npi",
            *_SITE_FIELDS,
            "infusion_reaction_readiness_attested_on",
            *_READ_ONLY[1:],
            "missing_requirements",
        )
        read_only_fields = _READ_ONLY
        validators: list[Any] = []


class PharmacySerializer(_ParticipantSerializer):
    class Meta:
        model = Pharmacy
        fields = (
            "id",
            "npi",
            "ncpdp_id",
            *_SITE_FIELDS,
            "staff_training_completed_on",
            *_READ_ONLY[1:],
            "missing_requirements",
        )
        read_only_fields = _READ_ONLY
        validators: list[Any] = []


class MeSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)
    participant = serializers.UUIDField(allow_null=True, help_text="The participant this key acts for.")
    user = serializers.UUIDField()
    username = serializers.CharField()

    def to_representation(self, instance: User) -> dict[str, Any]:
        return {
            "role": instance.role,
            "participant": instance.participant_id,
            "user": instance.pk,
            "username": instance.username,
        }


class DelegateCreateSerializer(serializers.Serializer):
    email = serializers.EmailField()
    first_name = serializers.CharField(max_length=150)
    last_name = serializers.CharField(max_length=150)


class DelegateSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ("id", "email", "first_name", "last_name", "date_joined")
        read_only_fields = fields
