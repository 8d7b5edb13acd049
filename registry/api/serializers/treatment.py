from __future__ import annotations

from typing import Any

from rest_framework import serializers

from registry import rules
from registry.models import Course, Dispense, DispenseAuthorization, Infusion

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


class InfusionInputSerializer(serializers.Serializer):
    rems_patient_id = serializers.CharField(max_length=32)
    date_of_birth = serializers.DateField()
    administered_on = serializers.DateField()
    dose_mg = serializers.IntegerField(min_value=0, max_value=1000)
    corticosteroid_premedication = serializers.BooleanField()
    antiviral_prophylaxis = serializers.BooleanField()
    observation_minutes = serializers.IntegerField(min_value=0, max_value=1440)
    dispense_id = serializers.UUIDField(required=False, allow_null=True)
    facility_npi = serializers.CharField(
        max_length=10, required=False, help_text="Admins recording legacy infusions name the facility."
    )


class InfusionSerializer(serializers.ModelSerializer):
    patient = serializers.UUIDField(source="patient_id", read_only=True)
    course = serializers.UUIDField(source="course_id", read_only=True)
    course_number = serializers.IntegerField(source="course.number", read_only=True)
    facility = serializers.UUIDField(source="facility_id", read_only=True)
    dispense_id = serializers.UUIDField(read_only=True, allow_null=True)
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
        from registry.services.dispensing import authorization_state

        return authorization_state(obj, self.context["now"])


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


def decision_body(outcome: Any) -> dict[str, Any]:
    """The AuthorizationDecision body for a dispense authorization outcome."""
    authorization = outcome.authorization
    course = outcome.facts.open_course
    when = serializers.DateTimeField().to_representation
    return {
        "id": outcome.decision.pk,
        "decision": outcome.decision.outcome,
        "authorization_number": authorization.number if authorization else None,
        "effective_at": when(authorization.issued_at) if authorization else None,
        "expires_at": when(authorization.expires_at) if authorization else None,
        "course_number": course.number if authorization and course else None,
        "doses_authorized": authorization.doses_authorized if authorization else None,
        "reasons": outcome.evaluation.reasons,
        "requirements": outcome.evaluation.requirements(),
    }
