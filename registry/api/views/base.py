from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone
from rest_framework import viewsets
from rest_framework.exceptions import ValidationError

from registry.models import User


class RegistryViewSet(viewsets.GenericViewSet):
    """Adapts HTTP: validate with a serializer, call one service, render. `roles` maps action -> roles."""

    roles: dict[str, frozenset[str]] = {}
    lookup_value_regex = "[0-9a-fA-F-]{36}"

    @property
    def actor(self) -> User:
        return self.request.user  # type: ignore[return-value]

    @staticmethod
    def now() -> dt.datetime:
        return timezone.now()

    def validated(self, serializer_class: Any, data: Any = None, **kwargs: Any) -> dict[str, Any]:
        serializer = serializer_class(data=self.request.data if data is None else data, **kwargs)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def check_json_object(self) -> None:
        if not isinstance(self.request.data, dict):
            raise ValidationError({"non_field_errors": ["Expected a JSON object."]})
