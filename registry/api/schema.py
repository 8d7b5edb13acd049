"""OpenAPI: every 4xx the API can answer is declared (STACK.md pitfall 5), with the error body shape."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine code; clients branch on it.")
    detail = serializers.CharField(help_text="Human-readable explanation.")
    errors = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation errors by field (400 `validation_error` only).",
    )
    missing = serializers.ListField(child=serializers.CharField(), required=False)
    reasons = serializers.ListField(child=serializers.DictField(), required=False)


_DESCRIPTIONS = {
    400: "Invalid input (`validation_error`, `parse_error`).",
    401: "No or bad API key (`not_authenticated`, `authentication_failed`).",
    403: "The caller's role may not do this (`permission_denied`).",
    404: "Unknown, or not visible to the caller (`not_found`).",
    405: "Method not allowed.",
    406: "Not acceptable.",
    409: "State conflict; see `code`.",
    415: "Unsupported media type.",
    429: "Throttled; see `Retry-After`.",
}


def _error(code: int) -> dict[str, Any]:
    return {
        "description": _DESCRIPTIONS[code],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


class RegistryAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        self.registry.register_on_missing(self.resolve_serializer(ErrorSerializer, "response"))
        codes = [405, 406]
        authenticated = bool(self.get_auth())
        if authenticated:
            codes += [401, 403, 429]
        if "{" in self.path:
            codes.append(404)
        if self.method in ("POST", "PUT", "PATCH"):
            codes += [400, 415]
            if authenticated:
                codes.append(409)
        if self.method == "GET" and authenticated:
            codes.append(400)  # bad filter or pagination values
        for code in codes:
            responses.setdefault(str(code), _error(code))
        return responses

    def get_override_parameters(self) -> list[Any]:
        params = list(super().get_override_parameters())
        action = getattr(self.view, "action", None)
        handler = getattr(self.view, action, None) if action else None
        handler = handler or getattr(self.view, self.method.lower(), None)
        if self.method == "POST" and getattr(handler, "idempotent", False):
            from registry.api.idempotency import IDEMPOTENCY_HEADER

            params.append(IDEMPOTENCY_HEADER)
        return params


def strip_trailing_slashes(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """API.md writes paths without a trailing slash (both forms route); document them that way."""
    result["paths"] = {
        (path.rstrip("/") if path != "/" else path): item for path, item in result.get("paths", {}).items()
    }
    return result
