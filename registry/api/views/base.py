from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone
from rest_framework import exceptions, viewsets
from rest_framework.request import Request

from registry.api.throttling import ApiKeyRateThrottle
from registry.models import User


class ThrottleFailuresMixin:
    """DRF authenticates before it throttles, so callers without a valid key would never meet the
    throttle. Failed authentication is counted against the caller's address (key guessing)."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        try:
            super().initial(request, *args, **kwargs)  # type: ignore[misc]
        except (exceptions.AuthenticationFailed, exceptions.NotAuthenticated):
            throttle = ApiKeyRateThrottle()
            if not throttle.allow_request(request, self):
                raise exceptions.Throttled(throttle.wait()) from None
            raise


class RegistryViewSet(ThrottleFailuresMixin, viewsets.GenericViewSet):
    """Adapts HTTP: validate with a serializer, call one service, render. `roles` maps action -> roles."""

    roles: dict[str, frozenset[str]] = {}
    lookup_value_regex = "[0-9a-fA-F-]{36}"

    @property
    def actor(self) -> User:
        return self.request.user  # type: ignore[return-value]

    @staticmethod
    def now() -> dt.datetime:
        return timezone.now()

    def idempotent_replay_check(self, body: Any) -> None:
        """An `Idempotency-Key` replay answers only while the caller can still see what the first answer
        named (ACT-5, ACT-8: a transfer of care or a lost grant ends it): a detail route's object must
        still be visible, and a `create` whose answer names an `id` of this view's queryset must still be
        in the caller's queryset. Raises 404 `not_found` otherwise, like any record the caller cannot
        see."""
        lookup = self.lookup_url_kwarg or self.lookup_field
        if lookup in self.kwargs:
            self.get_object()
            return
        scoped = type(self).get_queryset is not viewsets.GenericViewSet.get_queryset
        named = self.action == "create" and scoped and isinstance(body, dict) and "id" in body
        if named and not self.get_queryset().filter(pk=body["id"]).exists():
            raise exceptions.NotFound()

    def validated(self, serializer_class: Any, data: Any = None, **kwargs: Any) -> dict[str, Any]:
        serializer = serializer_class(data=self.request.data if data is None else data, **kwargs)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data
