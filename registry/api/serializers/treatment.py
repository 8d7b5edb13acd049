from __future__ import annotations

from typing import Any

from rest_framework import serializers

from registry import rules
from registry.models import Course, Dispense, DispenseAuthorization, Infusion, Role
from registry.selectors import authorization_public_state, authorization_revoke_category, authorization_state

from .common import ReasonSerializer, RequirementSerializer


class CourseSerializer(serializers.ModelSerializer):
    patient = serializers.UUIDField(source="patient_id", read_only=True)

    class Meta:
        model = Course
        fields = (
            "id",
            "patient",
            "number",
            "status",
            "planned_doses",
            "doses_given",
            "planned_start_on",
            "first_infusion_on",
            "last_infusion_on",
            "cancelled_reason",
            "cancelled_at",
            "created_at",
        )
        read_only_fields = fields


class CoursePlanSerializer(serializers.Serializer):
    planned_start_on = serializers.DateField()


class PendingRequirementSerializer(serializers.Serializer):
    requirement = serializers.CharField()
    code = serializers.CharField(help_text="The reason code it answers when checked and unmet.")
    detail = serializers.CharField()


class CoursePlannedSerializer(CourseSerializer):
    """The 201 of course planning: the course, the stored decision, and the requirements left pending
    (checked at the dispense authorization and at the first dose; issue 9 item 5)."""

    decision_id = serializers.UUIDField(read_only=True)
    pending = PendingRequirementSerializer(many=True, read_only=True)

    class Meta(CourseSerializer.Meta):
        fields = (*CourseSerializer.Meta.fields, "decision_id", "pending")  # type: ignore[assignment]
        read_only_fields = fields  # type: ignore[assignment]


class InfusionInputSerializer(serializers.Serializer):
    rems_patient_id = serializers.CharField(max_length=32)
    date_of_birth = serializers.DateField()
    administered_on = serializers.DateField()
    dose_mg = serializers.IntegerField(min_value=0, max_value=1000)
    corticosteroid_premedication = serializers.BooleanField()
    antiviral_prophylaxis = serializers.BooleanField()
    observation_minutes = serializers.IntegerField(min_value=0, max_value=1440)
    dispense_id = serializers.UUIDField(
        required=False,
        allow_null=True,
        help_text=(
            "The dispense backing this infusion; may be left out when exactly one dispense to the facility "
            "for the open course has a vial left. Administrators leaving it out record legacy history."
        ),
    )
    facility_npi = serializers.CharField(
        max_length=10, required=False, help_text="Admins recording legacy infusions name the facility."
    )


class InfusionSerializer(serializers.ModelSerializer):
    patient = serializers.UUIDField(source="patient_id", read_only=True)
    course = serializers.UUIDField(source="course_id", read_only=True)
    course_number = serializers.IntegerField(source="course.number", read_only=True)
    facility = serializers.UUIDField(source="facility_id", read_only=True)
    dispense_id = serializers.UUIDField(read_only=True, allow_null=True)
    legacy_history = serializers.BooleanField(
        read_only=True, help_text="Recorded by an administrator as legacy history, without a dispense."
    )
    decision_id = serializers.UUIDField(read_only=True)
    monitoring_ends_on = serializers.DateField(source="patient.monitoring_ends_on", read_only=True)

    class Meta:
        model = Infusion
        fields = (
            "id",
            "patient",
            "course",
            "course_number",
            "day_in_course",
            "administered_on",
            "dose_mg",
            "corticosteroid_premedication",
            "antiviral_prophylaxis",
            "observation_minutes",
            "facility",
            "dispense_id",
            "legacy_history",
            "decision_id",
            "monitoring_ends_on",
            "created_at",
        )
        read_only_fields = fields


class InfusionCheckSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["infuse", "do_not_infuse"])
    decision_id = serializers.UUIDField()
    day_in_course = serializers.IntegerField(allow_null=True)
    reasons = ReasonSerializer(many=True)
    requirements = RequirementSerializer(many=True)


class AuthorizationRequestSerializer(serializers.Serializer):
    rems_patient_id = serializers.CharField(max_length=32)
    date_of_birth = serializers.DateField()
    prescriber_npi = serializers.CharField(max_length=10)
    facility_npi = serializers.CharField(max_length=10)
    doses_requested = serializers.IntegerField(min_value=1, max_value=rules.MAX_DOSES_PER_AUTHORIZATION)


class AuthorizationDecisionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    decision = serializers.ChoiceField(choices=["approved", "denied"])
    authorization_number = serializers.CharField(allow_null=True)
    effective_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    course_number = serializers.IntegerField(allow_null=True)
    doses_authorized = serializers.IntegerField(allow_null=True)
    reasons = ReasonSerializer(many=True)
    requirements = RequirementSerializer(many=True)


class AuthorizationSerializer(serializers.ModelSerializer):
    authorization_number = serializers.CharField(source="number")
    status = serializers.SerializerMethodField()
    revocation = serializers.SerializerMethodField(
        help_text="Why a revoked number no longer holds, as a category (e.g. `patient_no_longer_eligible`)."
    )
    revoke_reason = serializers.CharField(
        read_only=True, required=False, help_text="The reason text; administrators only."
    )
    course_number = serializers.IntegerField(source="course.number")
    rems_patient_id = serializers.CharField(source="patient.rems_patient_id")
    pharmacy = serializers.UUIDField(source="pharmacy_id")
    facility = serializers.UUIDField(source="facility_id")
    prescriber = serializers.UUIDField(source="prescriber_id")

    class Meta:
        model = DispenseAuthorization
        fields = (
            "id",
            "authorization_number",
            "status",
            "issued_at",
            "expires_at",
            "used_at",
            "revoked_at",
            "revocation",
            "revoke_reason",
            "doses_authorized",
            "course_number",
            "rems_patient_id",
            "pharmacy",
            "facility",
            "prescriber",
        )
        read_only_fields = fields

    def get_status(self, obj: DispenseAuthorization) -> str:
        return authorization_public_state(authorization_state(obj, self.context["now"]))

    def get_revocation(self, obj: DispenseAuthorization) -> str:
        """A pharmacy reads the category; only administrators read the reason text."""
        return authorization_revoke_category(obj, self.context["now"])

    def to_representation(self, instance: DispenseAuthorization) -> dict[str, Any]:
        data = super().to_representation(instance)
        viewer = self.context.get("viewer")
        if viewer is None or viewer.role != Role.ADMIN:
            data.pop("revoke_reason", None)
        return data


class RevokeSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)


class DispenseInputSerializer(serializers.Serializer):
    authorization_number = serializers.CharField(max_length=32)
    vials = serializers.IntegerField(
        min_value=1,
        max_value=1000,
        help_text="409 `vials_exceed_authorization` above the authorization's doses.",
    )
    ndc = serializers.CharField(max_length=13, required=False, allow_blank=True, default="")
    lot_number = serializers.CharField(max_length=40, required=False, allow_blank=True, default="")


class DispenseSerializer(serializers.ModelSerializer):
    authorization_number = serializers.CharField(source="authorization.number")
    patient = serializers.UUIDField(source="patient_id")
    dispensed_at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = Dispense
        fields = ("id", "authorization_number", "vials", "ndc", "lot_number", "patient", "dispensed_at")
        read_only_fields = fields
