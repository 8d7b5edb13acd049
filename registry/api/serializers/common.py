from __future__ import annotations

from rest_framework import serializers


class ReasonSerializer(serializers.Serializer):
    code = serializers.CharField()
    detail = serializers.CharField()


class RequirementSerializer(serializers.Serializer):
    requirement = serializers.CharField()
    met = serializers.BooleanField()
    code = serializers.CharField(required=False, allow_null=True)
    detail = serializers.CharField(required=False, allow_blank=True)


class ReasonBodySerializer(serializers.Serializer):
    """Body of the lifecycle actions that must say why (ACT-5, ACT-8)."""

    reason = serializers.CharField(max_length=2000, trim_whitespace=True)


class ApiKeyCreatedSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    key = serializers.CharField(help_text="Shown once; store it now.")
