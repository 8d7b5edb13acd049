from __future__ import annotations

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Per API key (the same user with two keys has two budgets); per address when unauthenticated."""

    scope = "api_key"

    def get_cache_key(self, request: Request, view: object) -> str | None:
        key = request.auth
        ident = f"key-{key.pk}" if key is not None else f"ip-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
