from __future__ import annotations

from rest_framework import serializers

from registry.models import AdverseEvent, FlagStatus, MonitoringFlag, MonitoringRequirement, StatusForm


class StatusFormSerializer(serializers.ModelSerializer):
    """MON-4: `completed_on` (not in the future), `labs_reviewed`, `adverse_events` from the fixed list."""

    adverse_events = serializers.ListField(
        child=serializers.ChoiceField(choices=AdverseEvent.choices),
        allow_empty=True,
        max_length=len(AdverseEvent.values),
        required=False,
        default=list,
        help_text="Adverse events since the last form: " + ", ".join(AdverseEvent.values) + ".",
    )
    labs_reviewed = serializers.BooleanField(required=True)
    still_under_care = serializers.BooleanField(required=False, default=True)
    notes = serializers.CharField(required=False, allow_blank=True, max_length=5000, default="")
    prescriber = serializers.UUIDField(source="prescriber_id", read_only=True)

    class Meta:
        model = StatusForm
        fields = (
            "id",
            "completed_on",
            "still_under_care",
            "labs_reviewed",
            "adverse_events",
            "notes",
            "prescriber",
            "created_at",
        )
        read_only_fields = ("id", "prescriber", "created_at")


class RequirementStateSerializer(serializers.Serializer):
    requirement = serializers.ChoiceField(choices=MonitoringRequirement.choices)
    last_done_on = serializers.DateField(allow_null=True)
    next_due_on = serializers.DateField(
        allow_null=True, help_text="Null once the next due date falls after the monitoring window."
    )
    overdue = serializers.BooleanField(help_text="Due date plus grace has passed (MON-3).")
    blocking = serializers.BooleanField(
        help_text="Overdue beyond the blocking threshold: blocks courses and dispensing (GATE-4)."
    )


class MonitoringStateSerializer(serializers.Serializer):
    monitoring_ends_on = serializers.DateField(allow_null=True)
    requirements = RequirementStateSerializer(many=True)


class MonitoringFlagSerializer(serializers.ModelSerializer):
    patient = serializers.UUIDField(source="patient_id", read_only=True)
    rems_patient_id = serializers.CharField(source="patient.rems_patient_id", read_only=True)
    requirement = serializers.ChoiceField(choices=MonitoringRequirement.choices, read_only=True)
    status = serializers.ChoiceField(choices=FlagStatus.choices, read_only=True)

    class Meta:
        model = MonitoringFlag
        fields = (
            "id",
            "patient",
            "rems_patient_id",
            "requirement",
            "due_on",
            "opened_on",
            "status",
            "resolved_on",
            "blocking",
            "blocking_since",
            "resolution",
        )
        read_only_fields = fields
