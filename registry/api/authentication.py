"""`Authorization: Bearer <api key>`; nothing else authenticates on /api/ (no Basic, no session:
STACK.md pitfall 4)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from registry.errors import KeyInactive
from registry.services.accounts import api_key_authenticate


class InactiveKey(exceptions.AuthenticationFailed):
    """401 `key_inactive` (ACT-5): the key is genuine but its participant is deactivated."""

    error_code = KeyInactive.code
    default_detail = KeyInactive.default_detail


class ApiKeyAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = get_authorization_header(request).split()
        if not header:
            return None
        if header[0].lower() != self.keyword.lower().encode():
            raise exceptions.AuthenticationFailed("Use 'Authorization: Bearer <api key>'.")
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header.")
        try:
            raw = header[1].decode()
        except UnicodeError as exc:
            raise exceptions.AuthenticationFailed("Malformed API key.") from exc
        try:
            key = api_key_authenticate(raw)
        except KeyInactive as exc:
            raise InactiveKey(exc.detail) from None
        if key is None:
            raise exceptions.AuthenticationFailed("Unknown, revoked or inactive API key.")
        return key.user, key

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "registry.api.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "API key: `Authorization: Bearer <key>`."}
